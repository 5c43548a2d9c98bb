"""Policy-gradient fine-tuning of a language model: REINFORCE, RLOO and PPO with a per-token
KL penalty to the frozen reference (SFT) model.

One iteration: sample k responses for each of a batch of prompts from pi_theta; score them;
rewards r_t = -beta k1_t, k1_t = log pi_old(a_t|s_t) - log pi_ref(a_t|s_t) (+ the score on the
last token; ``advantages.token_rewards``); then

- ``reinforce``: Psi_t = G_t - b, b a running mean of past batches' G_0 (EMA; 0 for the first
  batch, so it never depends on the samples it weights); one gradient step on
  ``losses.policy_gradient_loss``.
- ``rloo``: Psi_t = G_t - b_i, b_i the mean G_0 of the prompt's other k - 1 samples; one step.
- ``ppo``: a value head on the policy's last hidden state, Psi_t = GAE(lambda) over tokens,
  ``losses.clipped_surrogate_loss`` + ``losses.value_loss`` (clipped) for several epochs of
  minibatches.
- ``grpo`` (Shao et al., 2024): no critic; Psi_t = (G_t - b_i) / s_i with b_i the mean and s_i
  the std of G_0 over the prompt's k samples (``advantages.group_baseline``); the per-token
  clipped surrogate (``losses.clipped_surrogate``) in PPO's epochs and minibatches (by default
  one step per batch), averaged per response, then over responses. ``loss_type: dr_grpo``
  (Liu et al., 2025) drops both biases: no division by s_i, and a sum over tokens divided by a
  constant (responses x ``max_new_tokens``) instead of a per-response mean.

With ``kl_loss_coef`` > 0 every loss (each PPO minibatch's) also gets GRPO's KL term
``kl_loss_coef * kl_loss``: k3 of log pi_theta - log pi_ref, differentiated.

Losses average over response tokens (``mask``); the policy runs in ``eval()`` mode throughout,
so dropout is off in sampling, in the old log-probs and in the gradient passes alike.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from pgrad import device, losses, returns
from pgrad.algos.ppo import minibatch_orders
from pgrad.config import ConfigError, RunConfig, at_least, positive
from pgrad.errors import PgradError
from pgrad.optim import gradient_step
from pgrad.rlhf import advantages
from pgrad.rlhf.model import ValueHead, hidden_size
from pgrad.rlhf.sequences import Responses, forward, generate, masked_mean, masked_sum

ALGOS = ("reinforce", "rloo", "ppo", "grpo")


@dataclass
class RLHFConfig(RunConfig):
    """Settings of ``pgrad rlhf train`` (the run's own as in every algorithm's config; the rest
    named as in TRL where it has them). Counts are iterations, not env steps."""

    learning_rate: float = 1e-3
    max_grad_norm: float | None = 1.0
    normalize_advantage: bool = False
    """Standardise Psi_t over the batch's tokens (PPO's default turns it on)."""
    log_every: int = 5
    eval_every: int = 25
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    iterations: int = 150
    """Batches sampled (and, for REINFORCE/RLOO, gradient steps)."""
    prompts_per_batch: int = 32
    samples_per_prompt: int = 4
    """k responses per prompt (RLOO's group; >= 2 for rloo)."""
    max_new_tokens: int = 6
    beta: float = 0.05
    """Weight of the per-token KL penalty in the reward, r_t = -beta (log pi_old - log pi_ref):
    its expected policy gradient is -beta grad KL(pi_theta || pi_ref) of whole responses."""
    kl_loss_coef: float = 0.0
    """Weight of a KL term in the loss (GRPO's beta), ``kl_loss``: it descends
    sum_t E_{s_t ~ pi_old}[KL(pi_ref || pi_theta)(s_t)], the reverse KL at fixed states."""
    missing_eos_penalty: float = 1.0
    """Subtracted from the score of a response that never emits EOS."""
    baseline_momentum: float = 0.9
    """REINFORCE's running-mean baseline: b <- m b + (1 - m) mean G_0."""
    ppo_epochs: int = 4
    minibatch_size: int = 32
    """PPO: responses per minibatch."""
    clip_range: float = 0.2
    clip_range_value: float | None = 0.2
    value_coef: float = 0.1
    gae_lambda: float = 0.95
    lora_r: int = 0
    """LoRA rank (PEFT, on the model type's default modules); 0: fine-tune every weight. With
    LoRA the reference is the policy with its adapters disabled: one copy of the base weights."""
    loss_type: Literal["grpo", "dr_grpo"] = "grpo"
    """GRPO: ``grpo`` divides each group's centred returns by their std and averages tokens per
    response; ``dr_grpo`` does neither (the unbiased variant)."""
    aggregation: Literal["token", "response"] = "token"
    """REINFORCE and RLOO: how the per-token terms Psi_t log pi(a_t|s_t) become the loss.
    ``token``: their mean over the batch's response tokens; ``response``: each response's sum,
    averaged over responses, the sequence-level estimator grad log pi(y|x) (R - b) (TRL's RLOO):
    the same direction, (tokens / responses) times longer, so more steps reach max_grad_norm."""
    gradient_checkpointing: bool = False
    """Recompute the transformer blocks' activations in the backward pass instead of keeping
    them: less memory for longer sequences or larger batches, for about one more forward pass."""
    bf16: bool = True
    """bf16 autocast for generation and forward passes on a CUDA device that supports it (the
    log-probs, losses and optimizer stay float32); no effect on the CPU."""
    value_detach: bool = False
    """PPO: train the value head on detached hidden states (no value gradient into the LM)."""
    eval_prompts: int = 64
    eval_samples: int = 8
    """Responses per eval prompt (diversity = distinct responses / this)."""

    def check(self) -> None:
        super().check()
        for key in ("iterations", "prompts_per_batch", "samples_per_prompt", "max_new_tokens",
                    "ppo_epochs", "minibatch_size", "eval_prompts", "eval_samples"):  # fmt: skip
            at_least(self, key, 1)
        at_least(self, "beta", 0)
        at_least(self, "lora_r", 0)
        at_least(self, "kl_loss_coef", 0)
        at_least(self, "value_coef", 0)
        positive(self, "clip_range")  # a negative one pins the ratio: clamp(1.2, 0.8) = 0.8
        if self.clip_range_value is not None:
            positive(self, "clip_range_value")
        for key in ("baseline_momentum", "gae_lambda"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"{key} must be in [0, 1], got {getattr(self, key)}")


def without_kl_estimator(layer: dict[str, Any]) -> dict[str, Any]:
    """``layer`` without the removed key ``kl_estimator``: ``k1`` (its default, and what the
    reward always uses now) is dropped, so old configs and run directories load; ``k2``/``k3``
    are an error saying why (a k2 or k3 penalty in the reward biased the gradient)."""
    estimator = layer.get("kl_estimator", "k1")
    if estimator != "k1":
        raise ConfigError(
            f"kl_estimator={estimator} was removed: the reward's KL penalty is always k1 (k2/k3 in"
            " the reward bias the policy gradient); kl_loss_coef adds a k3 KL term to the loss"
        )
    return {k: v for k, v in layer.items() if k != "kl_estimator"}


ALGO_DEFAULTS: dict[str, dict] = {
    "reinforce": {},
    "rloo": {},
    "ppo": {"normalize_advantage": True, "learning_rate": 1e-4},  # see docs/rlhf.md, "Why 1e-4"
    # One step per batch of 8 prompts x 16 (groups of 4 leave std-GRPO's objective 11-40% below
    # J*; of 16, within 1%: docs/rlhf.md, "GRPO and Dr. GRPO").
    "grpo": {
        "ppo_epochs": 1,
        "minibatch_size": 128,
        "samples_per_prompt": 16,
        "prompts_per_batch": 8,
    },
}


@dataclass
class Batch:
    responses: Responses
    scores: torch.Tensor
    """(B,) reward of each response (after the missing-EOS penalty)."""
    log_probs: torch.Tensor
    """(B, T) log pi_old(a_t|s_t), detached."""
    ref_log_probs: torch.Tensor
    entropy: torch.Tensor
    values: torch.Tensor | None


class Trainer:
    """Holds the policy, the frozen reference, the optimizer (and value head for PPO)."""

    def __init__(self, algo: str, policy, tokenizer, reward, config: RLHFConfig):
        if algo not in ALGOS:
            raise ValueError(f"unknown RLHF algorithm {algo!r}; expected one of {ALGOS}")
        self.algo, self.config, self.tokenizer, self.reward = algo, config, tokenizer, reward
        self.device = device.resolve(config.device, auto="accelerator")
        policy = policy.to(self.device)
        if config.lora_r:
            self.policy = with_lora(policy, config.lora_r).eval()
            self.reference = AdaptersOff(self.policy)
        else:
            self.policy = policy.eval()
            self.reference = copy.deepcopy(policy).eval().requires_grad_(False)
        if config.gradient_checkpointing:
            with_checkpointing(self.policy)
        self.value_head = None
        if algo == "ppo":
            self.value_head = ValueHead(hidden_size(policy)).to(self.device)
        params = [p for p in self.policy.parameters() if p.requires_grad]
        if self.value_head is not None:
            params += list(self.value_head.parameters())
        self.params = params
        self.optimizer = torch.optim.Adam(params, lr=config.learning_rate, eps=1e-5)
        self.baseline: float | None = None

    def precision(self):
        """bf16 autocast where ``bf16`` asks and the device supports it."""
        return device.bf16_autocast(self.device, self.config.bf16)

    # --- rollout -------------------------------------------------------------------------

    def collect(self, prompts: list[str]) -> Batch:
        """k samples per prompt (grouped), their scores and the rollout-time log-probs."""
        k = self.config.samples_per_prompt
        repeated = [p for p in prompts for _ in range(k)]
        with self.precision():
            responses = generate(self.policy, self.tokenizer, repeated, self.config.max_new_tokens)
            return self.score(responses)

    @torch.no_grad()
    def score(self, responses: Responses) -> Batch:
        """The batch of ``responses``: scores (less the missing-EOS penalty), log pi_old,
        log pi_ref, entropies and (PPO) values."""
        if self.value_head is not None:
            log_probs, entropy, hidden = forward(self.policy, responses, hidden=True)
            values = self.value_head(hidden)
        else:
            (log_probs, entropy), values = forward(self.policy, responses), None
        ref_log_probs, _ = forward(self.reference, responses)
        scores = torch.as_tensor(
            self.reward(responses), dtype=log_probs.dtype, device=log_probs.device
        )
        scores = scores - self.config.missing_eos_penalty * (~responses.ended).to(scores.dtype)
        return Batch(responses, scores, log_probs, ref_log_probs, entropy, values)

    # --- Psi_t ---------------------------------------------------------------------------

    def rewards(self, batch: Batch) -> torch.Tensor:
        """(B, T) rewards r_t = -beta k1_t (+ the score on the last token), with the KL's k1
        estimate k1_t = log pi_old(a_t|s_t) - log pi_ref(a_t|s_t).

        Always k1: Psi_t weights grad log pi and is held fixed, which drops the reward's own
        dependence on theta. For k1 that term is E[grad log pi] = 0, so the expected gradient is
        exactly -beta grad KL(pi_theta || pi_ref) of whole responses; for k3 it would be
        beta E_ref[grad log pi] != 0 at every state (tested by enumeration).
        """
        kl = batch.log_probs - batch.ref_log_probs
        return advantages.token_rewards(batch.scores, kl, batch.responses.mask, self.config.beta)

    def psi(self, batch: Batch, rewards: torch.Tensor) -> torch.Tensor:
        """(B, T) Psi_t before any normalisation: G_t - b (REINFORCE), G_t - b_i (RLOO) or
        GAE(lambda) (PPO); see the module docstring."""
        mask = batch.responses.mask
        if self.algo == "ppo":
            return advantages.gae(rewards, batch.values, mask, self.config.gae_lambda)
        g = advantages.reward_to_go(rewards, mask)
        g0 = g[:, 0]
        if self.algo == "rloo":
            baseline = advantages.leave_one_out_baseline(g0, self.config.samples_per_prompt)
            return g - baseline[:, None]
        if self.algo == "grpo":
            scale = self.config.loss_type == "grpo"
            baseline, std = advantages.group_baseline(g0, self.config.samples_per_prompt, scale)
            return (g - baseline[:, None]) / std[:, None]
        # REINFORCE: b is 0 before any batch has been seen (a sample-independent baseline keeps
        # the first gradient unbiased; the batch's own mean would shrink it by 1 - 1/B).
        mean, m = float(g0.mean()), self.config.baseline_momentum
        psi = g - (0.0 if self.baseline is None else self.baseline)
        self.baseline = mean if self.baseline is None else m * self.baseline + (1 - m) * mean
        return psi

    def advantage_estimates(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(Psi_t, normalised over the batch's tokens if ``normalize_advantage``; PPO's value
        targets V + A from the un-normalised GAE, i.e. the lambda-returns, else None)."""
        mask = batch.responses.mask
        raw = self.psi(batch, self.rewards(batch))
        psi = raw
        if self.config.normalize_advantage:  # over the batch's response tokens
            psi = torch.zeros_like(raw)
            psi[mask] = returns.normalize(raw[mask])
        return psi, None if batch.values is None else raw + batch.values

    # --- update --------------------------------------------------------------------------

    def loss(
        self, batch: Batch, psi: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one gradient step on ``batch`` (PPO: a minibatch of it), and its terms
        (detached):

            L = L_pi + value_coef L_V (PPO) + kl_loss_coef L_KL (if > 0),

        L_pi = ``losses.policy_gradient_loss`` (REINFORCE, RLOO; per response with
        ``aggregation: response``) or
        ``losses.clipped_surrogate_loss`` (PPO) of Psi_t, L_V = ``losses.value_loss`` towards
        ``targets``, L_KL = ``kl_loss`` (all means over the batch's response tokens; L_KL is
        aggregated as L_pi is for GRPO and for ``aggregation: response``).
        """
        c, m = self.config, batch.responses.mask
        with self.precision():  # the LM's forward pass (log-probs come out float32)
            if self.value_head is None:
                (log_probs, _), hidden = forward(self.policy, batch.responses), None
            else:
                log_probs, _, hidden = forward(self.policy, batch.responses, hidden=True)
        new, old = log_probs[m], batch.log_probs[m]
        how, tokens = None, None  # the policy loss's aggregation where it is not a token mean
        if self.algo == "grpo":
            dr = c.loss_type == "dr_grpo"
            how, tokens = ("constant", c.max_new_tokens) if dr else ("sequence", None)
            surrogate = losses.clipped_surrogate(log_probs, batch.log_probs, psi, c.clip_range)
            loss = policy_loss = -advantages.aggregate(surrogate, m, how, tokens)
            terms = {"policy_loss": policy_loss}
        elif self.value_head is None and c.aggregation == "response":
            how = "response"
            per_token = log_probs * psi.detach()  # losses.policy_gradient_loss's terms
            loss = policy_loss = -advantages.aggregate(per_token, m, how)
            terms = {"policy_loss": policy_loss}
        elif self.value_head is None:
            loss = policy_loss = losses.policy_gradient_loss(new, psi[m])
            terms = {"policy_loss": policy_loss}
        else:
            policy_loss = losses.clipped_surrogate_loss(new, old, psi[m], c.clip_range)
            values = self.value_head(hidden.detach() if c.value_detach else hidden)
            v_loss = losses.value_loss(values[m], targets[m], batch.values[m], c.clip_range_value)
            loss = policy_loss + c.value_coef * v_loss
            terms = {"policy_loss": policy_loss, "value_loss": v_loss}
        if self.algo in ("ppo", "grpo"):  # the clipped surrogate's diagnostics
            log_ratio = (new - old).detach()
            terms["approx_kl"] = losses.approx_kl(log_ratio)
            terms["clip_fraction"] = losses.clip_fraction(log_ratio, c.clip_range)
        if c.kl_loss_coef > 0 and how is not None:
            # aggregated as the policy loss is, so kl_loss_coef weighs it the same against it
            k3 = losses.kl_estimate(log_probs - batch.ref_log_probs, "k3")
            terms["kl_loss"] = kl = advantages.aggregate(k3, m, how, tokens)
            loss = loss + c.kl_loss_coef * kl
        elif c.kl_loss_coef > 0:
            terms["kl_loss"] = kl = kl_loss(new, batch.ref_log_probs[m])
            loss = loss + c.kl_loss_coef * kl
        return loss, {k: v.detach() for k, v in terms.items()}

    def step(self, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimizer step on ``loss`` (``optim.gradient_step``: a non-finite loss or gradient
        stops the run before it touches the parameters); the terms as floats."""
        gradient_step(self.params, self.optimizer, loss, self.config.max_grad_norm, terms)
        return {k: float(v) for k, v in terms.items()}

    def update(self, batch: Batch) -> dict[str, float]:
        mask = batch.responses.mask
        psi, targets = self.advantage_estimates(batch)
        if self.algo not in ("ppo", "grpo"):
            terms = self.step(*self.loss(batch, psi))
            stats = {"loss": terms.pop("policy_loss"), **terms}
        else:
            stats = self._ppo(batch, psi, targets)
        log_ratio = batch.log_probs - batch.ref_log_probs
        kl = masked_sum(log_ratio, mask)
        texts = batch.responses.texts
        return {
            "reward": float(batch.scores.mean()),
            "kl": float(kl.mean()),
            "kl_k3": float(masked_sum(losses.kl_estimate(log_ratio, "k3"), mask).mean()),
            "objective": float((batch.scores - self.config.beta * kl).mean()),
            "length": float(batch.responses.lengths.float().mean()),
            "entropy": float(masked_mean(batch.entropy, mask)),
            "no_eos": float((~batch.responses.ended).float().mean()),
            "distinct": len(set(texts)) / len(texts),
            **stats,
        }

    def _ppo(
        self, batch: Batch, psi: torch.Tensor, targets: torch.Tensor | None
    ) -> dict[str, float]:
        """``ppo_epochs`` passes over shuffled minibatches of ``minibatch_size`` responses (in
        control PPO's order, ``ppo.minibatch_orders``), one step on ``loss`` each; the mean of
        each term over the steps."""
        c = self.config
        B = len(batch.scores)
        steps = []
        for order in minibatch_orders(B, c.minibatch_size, c.ppo_epochs):
            order = torch.arange(B) if order is None else order
            order = order.to(self.device)
            for start in range(0, B, c.minibatch_size):
                rows = order[start : start + c.minibatch_size]
                minibatch = _batch_rows(batch, rows)
                rows_targets = None if targets is None else targets[rows]
                steps.append(self.step(*self.loss(minibatch, psi[rows], rows_targets)))
        mask = batch.responses.mask
        mean = {k: float(np.mean([t[k] for t in steps])) for k in steps[0]}
        out = {"loss": mean.pop("policy_loss"), **mean}
        if targets is not None:
            out["explained_variance"] = losses.explained_variance(batch.values[mask], targets[mask])
        return out

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]
        if self.value_head is not None:
            self.value_head.load_state_dict(state["value_head"])

    def state_dict(self) -> dict:
        state = {
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baseline": self.baseline,
        }
        if self.value_head is not None:
            state["value_head"] = self.value_head.state_dict()
        return state


def with_lora(policy: torch.nn.Module, r: int) -> torch.nn.Module:
    """``policy`` with LoRA adapters of rank ``r`` (alpha = 2r, no dropout) on PEFT's default
    modules for its model type; only the adapters train."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise PgradError("lora_r needs PEFT: pip install -e '.[rlhf]'") from None
    return get_peft_model(policy, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0))


class AdaptersOff(torch.nn.Module):
    """The LoRA policy's base model, run with the adapters disabled: the reference pi_ref,
    sharing every base weight with the policy (no second copy)."""

    def __init__(self, policy: torch.nn.Module):
        super().__init__()
        self.policy = [policy]  # a list: not a submodule, so not in this module's state

    def forward(self, **inputs):
        with self.policy[0].disable_adapter():
            return self.policy[0](**inputs)


def with_checkpointing(policy: torch.nn.Module) -> None:
    """Activation checkpointing in ``policy``'s transformer blocks, with dropout still off.

    transformers checkpoints a block only while the block is in training mode, and RL runs the
    policy in ``eval()`` (no dropout); so only the blocks themselves are flagged as training,
    not their submodules, whose dropout stays off. Generation takes no gradient, so it is not
    checkpointed and keeps its KV cache."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
    enable = getattr(base, "activation_checkpointing_enable", None)
    if enable is not None:
        enable({"use_reentrant": False})
    else:  # transformers before activation_checkpointing_enable
        base.gradient_checkpointing_enable({"use_reentrant": False})
    blocks = [m for m in base.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not blocks:
        raise PgradError(f"{type(base).__name__} has no checkpointable blocks")
    for block in blocks:
        block.training = True
    policy.pgrad_checkpointing = True  # ``sequences.run`` then asks for no KV cache


def merged(policy: torch.nn.Module) -> torch.nn.Module:
    """A plain model to save: LoRA adapters merged into the base weights (in place), or
    ``policy`` itself without them."""
    return policy.merge_and_unload() if hasattr(policy, "merge_and_unload") else policy


def kl_loss(log_probs: torch.Tensor, ref_log_probs: torch.Tensor) -> torch.Tensor:
    """GRPO's KL loss term: the k3 estimate of log pi_theta - log pi_ref, differentiated,
    averaged over tokens a_t sampled from pi_old,

        L_KL = mean_t[ rho_t - 1 - log rho_t ],   rho_t = pi_ref(a_t|s_t) / pi_theta(a_t|s_t).

    Its value at theta = theta_old estimates KL(pi_theta || pi_ref) per token (unbiased). Its
    gradient is (1 - rho_t) grad log pi_theta(a_t|s_t), whose expectation over a_t ~ pi_old at
    theta = theta_old is sum_a (pi_theta - pi_ref)(a) grad log pi_theta(a) =
    grad KL(pi_ref(.|s_t) || pi_theta(.|s_t)): descending L_KL descends
    sum_t E_{s_t ~ pi_old}[KL(pi_ref || pi_theta)(s_t)], the reverse KL, with the states held
    fixed (unlike the penalty in the reward, it ignores how theta changes the states visited).
    Later PPO epochs reuse the pi_old samples without importance weights (as GRPO does).
    """
    return losses.kl_estimate(log_probs - ref_log_probs, "k3").mean()


def _batch_rows(batch: Batch, rows: torch.Tensor) -> Batch:
    """The responses ``rows`` of ``batch`` (a PPO minibatch)."""
    return Batch(
        _rows(batch.responses, rows),
        batch.scores[rows],
        batch.log_probs[rows],
        batch.ref_log_probs[rows],
        batch.entropy[rows],
        None if batch.values is None else batch.values[rows],
    )


def _rows(r: Responses, rows: torch.Tensor) -> Responses:
    index = rows.tolist()
    return Responses(
        prompts=[r.prompts[i] for i in index],
        texts=[r.texts[i] for i in index],
        input_ids=r.input_ids[rows],
        attention_mask=r.attention_mask[rows],
        prompt_length=r.prompt_length,
        mask=r.mask[rows],
        ended=r.ended[rows],
    )


@torch.no_grad()
def evaluate(
    policy,
    reference,
    tokenizer,
    reward,
    prompts: list[str],
    samples: int,
    max_new_tokens: int,
    task_score=None,
) -> dict[str, float]:
    """Mean reward, KL(pi || pi_ref) per response (k1 sum), length, EOS rate and diversity
    (distinct responses among ``samples`` per prompt, as a fraction) on fixed prompts."""
    repeated = [p for p in prompts for _ in range(samples)]
    responses = generate(policy, tokenizer, repeated, max_new_tokens)
    log_probs, _ = forward(policy, responses)
    ref, _ = forward(reference, responses)
    mask = responses.mask
    texts = responses.texts
    groups = [texts[i : i + samples] for i in range(0, len(texts), samples)]
    out = {
        "reward": float(np.mean(reward(responses))),
        "kl": float(masked_sum(log_probs - ref, mask).mean()),
        "length": float(responses.lengths.float().mean()),
        "no_eos": float((~responses.ended).float().mean()),
        "diversity": float(np.mean([len(set(g)) / samples for g in groups])),
    }
    if task_score is not None:
        out["task_score"] = float(
            np.mean([task_score(p, t) for p, t in zip(repeated, texts, strict=True)])
        )
    return out
