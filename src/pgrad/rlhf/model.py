"""The language-model policy: the default tiny GPT-2 and its tokenizer, loading a local model,
and the value head PPO puts on the policy.

In RL terms the policy is pi_theta(y_t | x, y_<t) = softmax(LM logits at the last position):
the state is the prompt x plus the tokens generated so far, an action is the next token.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pgrad.errors import PgradError

# The default task's alphabet: digits and the prompt separator, one token per character.
ALPHABET = "0123456789>"
SPECIAL = ("<pad>", "<bos>", "<eos>")


def default_tokenizer():
    """A character-level ``PreTrainedTokenizerFast`` over ``<pad> <bos> <eos> 0-9 >``.

    Built in code (no hub download) and saved beside the model with ``save_pretrained``, so a
    saved policy directory loads with ``AutoTokenizer`` like any other.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([*SPECIAL, *ALPHABET])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        padding_side="left",
    )


def default_model(tokenizer, seed: int, n_layer: int = 2, n_embd: int = 64, n_head: int = 4):
    """A small randomly initialised GPT-2 (``GPT2Config``) for the default task (~0.1M
    parameters); SFT trains it first. Dropout 0.1 for SFT; RL turns it off (``model.eval()``)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=32,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def load(path: str | Path):
    """(model, tokenizer) from a local directory written by ``save_pretrained``; never
    touches a model hub. A tokenizer without a pad token pads with its EOS token (GPT-2)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    path = check_dir(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PgradError(f"cannot load a causal LM from {str(path)!r}: {first}") from None
    if tokenizer.eos_token_id is None:
        raise PgradError(f"the tokenizer in {str(path)!r} has no EOS token; responses need one")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model, tokenizer


def check_dir(path: str | Path) -> Path:
    """``path``, if it looks like a ``save_pretrained`` directory (a cheap check before
    anything is loaded or written)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise PgradError(
            f"model directory {str(path)!r} has no config.json; expected a directory written by "
            "save_pretrained (a transformers causal LM with its tokenizer)"
        )
    return path


def save(model, tokenizer, path: Path) -> None:
    """``save_pretrained`` of both, so ``load`` (and any transformers user) can read them."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


class ValueHead(nn.Module):
    """V(x, y_<t) = w . h_t + b on the LM's last hidden state h_t (the critic PPO needs).

    Initialised to output 0, so early advantages are the rewards themselves.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """V in at least float32, also under autocast (the critic's targets and losses are)."""
        with torch.autocast(hidden.device.type, enabled=False):
            hidden = hidden.to(torch.promote_types(hidden.dtype, self.linear.weight.dtype))
            return self.linear(hidden).squeeze(-1)


def hidden_size(model) -> int:
    config = model.config
    return int(getattr(config, "hidden_size", None) or config.n_embd)
