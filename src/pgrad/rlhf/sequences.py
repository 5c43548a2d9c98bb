"""The RLHF rollout: prompts in, sampled responses out, with the masks that say which tokens
are actions.

Layout of a batch of B sequences (prompt length P after left padding, T generated tokens)::

    input_ids      [pad pad bos 5 3 7 >][9 1 2 eos pad pad]
    attention_mask [ 0   0   1  1 1 1 1][1 1 1  1   0   0 ]
    mask (B, T)                         [1 1 1  1   0   0 ]   tokens up to and including EOS

Token t of a response is the action a_t taken in state s_t = (prompt, y_<t); its log-prob is
read from the logits at position P - 1 + t. Tokens after the first EOS (padding from
``generate``, or EOS itself repeated when pad == eos) are not actions: ``mask`` drops them from
log-probs, KL, values and losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pgrad import device
from pgrad.errors import PgradError
from pgrad.policies import Categorical


@dataclass
class Responses:
    prompts: list[str]
    texts: list[str]
    """Decoded responses, up to (not including) the first EOS, special tokens kept: a policy
    that slips a BOS or pad token into its answer is judged on what it wrote (hiding them let
    PPO pad answers with invisible tokens)."""
    input_ids: torch.Tensor
    """(B, P + T) prompt and response tokens."""
    attention_mask: torch.Tensor
    """(B, P + T) 1 on real tokens: the prompt's and the response's up to its EOS."""
    prompt_length: int
    mask: torch.Tensor
    """(B, T) bool: response tokens that are actions (up to and including the first EOS)."""
    ended: torch.Tensor
    """(B,) bool: the response emitted EOS (within ``max_new_tokens``)."""
    sample_log_probs: torch.Tensor | None = None
    """(B, T) log-probs of the tokens under the logits ``generate`` sampled them from (KV cache,
    incremental positions); 0 where ``mask`` is false. A check on ``forward``, not used in
    training."""

    def to(self, where: torch.device) -> Responses:
        """The responses with their tensors on ``where`` (itself if they are there already)."""
        return self if self.input_ids.device == where else device.moved(self, where)

    @property
    def lengths(self) -> torch.Tensor:
        """Tokens per response, EOS included."""
        return self.mask.sum(-1)

    @property
    def last(self) -> torch.Tensor:
        """(B,) index of each response's last real token, where its score is placed."""
        return (self.lengths - 1).clamp(min=0)


def encode_prompts(tokenizer, prompts: list[str]) -> dict[str, torch.Tensor]:
    """Left-padded prompt ids, each starting with BOS where the tokenizer has one."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ids = [bos + tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
    width = max(len(i) for i in ids)
    input_ids = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, width - len(seq) :] = torch.tensor(seq)
        attention[row, width - len(seq) :] = 1
    return {"input_ids": input_ids, "attention_mask": attention}


def response_mask(tokens: torch.Tensor, eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask, ended) for generated ``tokens`` (B, T): mask keeps tokens up to and including the
    first EOS (all T if there is none); ended says whether there was one."""
    is_eos = tokens == eos_id
    before = is_eos.long().cumsum(-1) - is_eos.long()  # EOS seen strictly before t
    return before == 0, is_eos.any(-1)


NEUTRAL_SAMPLING = {
    "do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": None,
    "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0, "bad_words_ids": None, "min_length": 0,
    "min_new_tokens": None, "sequence_bias": None, "forced_bos_token_id": None,
    "forced_eos_token_id": None, "exponential_decay_length_penalty": None, "suppress_tokens": None,
    "begin_suppress_tokens": None, "renormalize_logits": False, "num_beams": 1,
}  # fmt: skip
"""Every ``GenerationConfig`` setting that reshapes the next-token distribution, set to leave
it alone: a model's saved ``generation_config.json`` (an instruct model's repetition penalty)
would otherwise apply while sampling, and the samples would no longer come from the policy
whose log-probs the update uses."""


def _check_length(model, prompt_tokens: int, max_new_tokens: int) -> None:
    """A one-line error where the longest prompt plus ``max_new_tokens`` passes the model's
    positions (it would fail as an index error inside the model)."""
    config = getattr(model, "config", None)
    limit = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    if isinstance(limit, int) and prompt_tokens + max_new_tokens > limit:
        raise PgradError(
            f"max_new_tokens={max_new_tokens} with prompts of up to {prompt_tokens} tokens passes "
            f"the model's {limit} positions; expected max_new_tokens <= {limit - prompt_tokens}"
        )


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int) -> Responses:
    """Sample one response per prompt from pi_theta (temperature 1, no top-k/top-p, and none of
    the model's saved generation settings: ``NEUTRAL_SAMPLING``), so that the log-probs are
    the ones the gradient needs."""
    on = device.of(model)
    encoded = {k: v.to(on) for k, v in encode_prompts(tokenizer, prompts).items()}
    _check_length(model, encoded["input_ids"].shape[1], max_new_tokens)
    out = model.generate(
        **encoded,
        **NEUTRAL_SAMPLING,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        output_logits=True,
        return_dict_in_generate=True,
    )
    P = encoded["input_ids"].shape[1]
    tokens = out.sequences[:, P:]
    sampled = Categorical(torch.stack(out.logits, dim=1).float()).log_prob(tokens)
    if tokens.shape[1] < max_new_tokens:  # generate stops early once every row has ended
        missing = max_new_tokens - tokens.shape[1]
        pad = torch.full((tokens.shape[0], missing), tokenizer.pad_token_id, dtype=tokens.dtype,
                         device=on)  # fmt: skip
        tokens = torch.cat([tokens, pad], dim=1)
        sampled = torch.cat([sampled, sampled.new_zeros((tokens.shape[0], missing))], dim=1)
    mask, ended = response_mask(tokens, tokenizer.eos_token_id)
    tokens = torch.where(mask, tokens, tokenizer.pad_token_id)
    texts = [
        tokenizer.decode(row[: int(n) - int(e)].tolist(), skip_special_tokens=False)
        for row, n, e in zip(tokens, mask.sum(-1), ended, strict=True)
    ]
    return Responses(
        prompts=list(prompts),
        texts=texts,
        input_ids=torch.cat([encoded["input_ids"], tokens], dim=1),
        attention_mask=torch.cat([encoded["attention_mask"], mask.long()], dim=1),
        prompt_length=P,
        mask=mask,
        ended=ended,
        sample_log_probs=torch.where(mask, sampled, 0.0),
    )


def run(model, responses: Responses, hidden: bool = False):
    """The model's output on the batch, with position ids that count real tokens only, so
    left padding does not shift them."""
    attention = responses.attention_mask
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    # A checkpointed model recomputes its blocks in the backward pass: no cache to update twice.
    cache = {"use_cache": False} if getattr(model, "pgrad_checkpointing", False) else {}
    return model(input_ids=responses.input_ids, attention_mask=attention, position_ids=positions,
                 output_hidden_states=hidden, **cache)  # fmt: skip


def forward(model, responses: Responses, hidden: bool = False):
    """Log-probs log pi(a_t|s_t) (0 where ``mask`` is false) and entropies
    H(pi(.|s_t)) = -sum_a pi(a|s_t) log pi(a|s_t) of the response tokens, (B, T) each, from one
    forward pass in at least float32; with ``hidden``, also the last hidden states h_t
    (B, T, H) at the same positions (for a value head).

    The distribution is ``policies.Categorical``'s: tokens a model rules out (logit -inf,
    pi = 0) add 0 log 0 = 0 to the entropy, not NaN."""
    ids = responses.input_ids
    out = run(model, responses, hidden)
    P = responses.prompt_length
    logits = out.logits[:, P - 1 : -1]
    pi = Categorical(logits.to(torch.promote_types(logits.dtype, torch.float32)))
    log_probs = torch.where(responses.mask, pi.log_prob(ids[:, P:]), 0.0)  # a banned pad: -inf
    entropy = pi.entropy()
    if hidden:
        return log_probs, entropy, out.hidden_states[-1][:, P - 1 : -1]
    return log_probs, entropy


def masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) per-sequence sums of ``x`` (B, T) over the positions where ``mask`` is true."""
    return torch.where(mask, x, 0.0).sum(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is true."""
    return x[mask].mean()
