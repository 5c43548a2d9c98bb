"""Policy-gradient fine-tuning of a language model: REINFORCE, RLOO and PPO with a per-token
KL penalty to the frozen reference (SFT) model.

One iteration: sample k responses for each of a batch of prompts from pi_theta; score them;
rewards r_t = -beta kl_t (+ the score on the last token; ``advantages.token_rewards``); then

- ``reinforce``: Psi_t = G_t - b, b a running mean of past batches' G_0 (EMA, so it does not
  depend on the current samples); one gradient step on ``losses.policy_gradient_loss``.
- ``rloo``: Psi_t = G_t - b_i, b_i the mean G_0 of the prompt's other k - 1 samples; one step.
- ``ppo``: a value head on the policy's last hidden state, Psi_t = GAE(lambda) over tokens,
  ``losses.clipped_surrogate_loss`` + ``losses.value_loss`` (clipped) for several epochs of
  minibatches.

Losses average over response tokens (``mask``); the policy runs in ``eval()`` mode throughout,
so dropout is off in sampling, in the old log-probs and in the gradient passes alike.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from pgrad import losses, returns
from pgrad.errors import PgradError
from pgrad.rlhf import advantages
from pgrad.rlhf.model import ValueHead, hidden_size
from pgrad.rlhf.sequences import Responses, forward, generate, masked_mean, masked_sum

ALGOS = ("reinforce", "rloo", "ppo")


@dataclass
class RLHFConfig:
    """Settings of ``pgrad rlhf train`` (names as in TRL where they exist)."""

    iterations: int = 150
    """Batches sampled (and, for REINFORCE/RLOO, gradient steps)."""
    prompts_per_batch: int = 32
    samples_per_prompt: int = 4
    """k responses per prompt (RLOO's group; >= 2 for rloo)."""
    max_new_tokens: int = 6
    learning_rate: float = 1e-3
    beta: float = 0.05
    """Weight of the per-token KL penalty beta (log pi_theta - log pi_ref)."""
    kl_estimator: Literal["k1", "k2", "k3"] = "k1"
    missing_eos_penalty: float = 1.0
    """Subtracted from the score of a response that never emits EOS."""
    normalize_advantage: bool = False
    """Standardise Psi_t over the batch's tokens (PPO's default turns it on)."""
    baseline_momentum: float = 0.9
    """REINFORCE's running-mean baseline: b <- m b + (1 - m) mean G_0."""
    max_grad_norm: float | None = 1.0
    ppo_epochs: int = 4
    minibatch_size: int = 32
    """PPO: responses per minibatch."""
    clip_range: float = 0.2
    clip_range_value: float | None = 0.2
    value_coef: float = 0.1
    gae_lambda: float = 0.95
    value_detach: bool = False
    """PPO: train the value head on detached hidden states (no value gradient into the LM)."""
    eval_prompts: int = 64
    eval_samples: int = 8
    """Responses per eval prompt (diversity = distinct responses / this)."""
    eval_every: int = 25
    log_every: int = 5
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    seed: int = 0

    def check(self) -> None:
        from pgrad.config import ConfigError, at_least, positive

        for key in ("iterations", "prompts_per_batch", "samples_per_prompt", "max_new_tokens",
                    "ppo_epochs", "minibatch_size", "eval_prompts", "eval_samples", "log_every",
                    "checkpoint_every", "keep_checkpoints"):  # fmt: skip
            at_least(self, key, 1)
        at_least(self, "beta", 0)
        at_least(self, "eval_every", 0)
        positive(self, "learning_rate")
        for key in ("baseline_momentum", "gae_lambda"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"{key} must be in [0, 1], got {getattr(self, key)}")


ALGO_DEFAULTS: dict[str, dict] = {
    "reinforce": {},
    "rloo": {},
    "ppo": {"normalize_advantage": True, "learning_rate": 5e-4},
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
        self.policy = policy.eval()
        self.reference = copy.deepcopy(policy).eval().requires_grad_(False)
        self.value_head = ValueHead(hidden_size(policy)) if algo == "ppo" else None
        params = list(self.policy.parameters())
        if self.value_head is not None:
            params += list(self.value_head.parameters())
        self.params = params
        self.optimizer = torch.optim.Adam(params, lr=config.learning_rate, eps=1e-5)
        self.baseline: float | None = None

    # --- rollout -------------------------------------------------------------------------

    @torch.no_grad()
    def collect(self, prompts: list[str]) -> Batch:
        """k samples per prompt (grouped), their scores and the rollout-time log-probs."""
        k = self.config.samples_per_prompt
        repeated = [p for p in prompts for _ in range(k)]
        responses = generate(self.policy, self.tokenizer, repeated, self.config.max_new_tokens)
        scores = torch.as_tensor(self.reward(responses), dtype=torch.float32)
        scores = scores - self.config.missing_eos_penalty * (~responses.ended).float()
        if self.value_head is not None:
            log_probs, entropy, hidden = forward(self.policy, responses, hidden=True)
            values = self.value_head(hidden)
        else:
            (log_probs, entropy), values = forward(self.policy, responses), None
        ref_log_probs, _ = forward(self.reference, responses)
        return Batch(responses, scores, log_probs, ref_log_probs, entropy, values)

    # --- Psi_t ---------------------------------------------------------------------------

    def rewards(self, batch: Batch, log_ratio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-token rewards, per-token KL estimates) of the batch, from
        log_ratio = log pi_old - log pi_ref."""
        kl = losses.kl_estimate(log_ratio, self.config.kl_estimator)
        mask = batch.responses.mask
        return advantages.token_rewards(batch.scores, kl, mask, self.config.beta), kl

    def psi(self, batch: Batch, rewards: torch.Tensor) -> torch.Tensor:
        """(B, T) Psi_t before any normalisation: G_t - b (REINFORCE), G_t - b_i (RLOO) or
        GAE(lambda) (PPO); see the module docstring."""
        mask = batch.responses.mask
        if self.algo == "ppo":
            psi = advantages.gae(rewards, batch.values, mask, self.config.gae_lambda)
        else:
            g = advantages.reward_to_go(rewards, mask)
            g0 = g[:, 0]
            if self.algo == "rloo":
                baseline = advantages.leave_one_out_baseline(g0, self.config.samples_per_prompt)
                psi = g - baseline[:, None]
            else:
                if self.baseline is None:  # the first batch: no past yet
                    self.baseline = float(g0.mean())
                psi = g - self.baseline
                m = self.config.baseline_momentum
                self.baseline = m * self.baseline + (1 - m) * float(g0.mean())
        return psi

    # --- update --------------------------------------------------------------------------

    def _step(self, loss: torch.Tensor) -> None:
        """One optimizer step; a non-finite loss or gradient stops the run before it touches
        the parameters (the last checkpoint stays the last good state)."""
        if not torch.isfinite(loss):
            raise PgradError(f"non-finite {self.algo} loss ({loss.item()}), update skipped")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(
            self.params, self.config.max_grad_norm or float("inf")
        )
        if not torch.isfinite(norm):
            raise PgradError(f"non-finite gradient norm in the {self.algo} update, update skipped")
        self.optimizer.step()

    def update(self, batch: Batch) -> dict[str, float]:
        mask = batch.responses.mask
        log_ratio = batch.log_probs - batch.ref_log_probs
        rewards, kl = self.rewards(batch, log_ratio)
        raw = self.psi(batch, rewards)
        psi = raw
        if self.config.normalize_advantage:  # over the batch's response tokens
            psi = torch.zeros_like(raw)
            psi[mask] = returns.normalize(raw[mask])
        if self.algo != "ppo":
            log_probs, _ = forward(self.policy, batch.responses)
            loss = losses.policy_gradient_loss(log_probs[mask], psi[mask])
            self._step(loss)
            stats = {"loss": loss.item()}
        else:
            # Value targets V + A from the un-normalised GAE (lambda-returns).
            stats = self._ppo(batch, psi, raw + batch.values)
        texts = batch.responses.texts
        return {
            "reward": float(batch.scores.mean()),
            "kl": float(masked_sum(log_ratio, mask).mean()),
            "kl_k3": float(masked_sum(losses.kl_estimate(log_ratio, "k3"), mask).mean()),
            "objective": float((batch.scores - self.config.beta * masked_sum(kl, mask)).mean()),
            "length": float(batch.responses.lengths.float().mean()),
            "entropy": float(masked_mean(batch.entropy, mask)),
            "no_eos": float((~batch.responses.ended).float().mean()),
            "distinct": len(set(texts)) / len(texts),
            **stats,
        }

    def _ppo(self, batch: Batch, psi: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        c = self.config
        mask = batch.responses.mask
        B = len(mask)
        pg, vf, clipped, kls = [], [], [], []
        for _ in range(c.ppo_epochs):
            order = torch.randperm(B)
            for start in range(0, B, c.minibatch_size):
                rows = order[start : start + c.minibatch_size]
                part = _rows(batch.responses, rows)
                m = part.mask
                log_probs, _, hidden = forward(self.policy, part, hidden=True)
                values = self.value_head(hidden.detach() if c.value_detach else hidden)
                old = batch.log_probs[rows][m]
                policy_loss = losses.clipped_surrogate_loss(
                    log_probs[m], old, psi[rows][m], c.clip_range
                )
                v_loss = losses.value_loss(
                    values[m], targets[rows][m], batch.values[rows][m], c.clip_range_value
                )
                self._step(policy_loss + c.value_coef * v_loss)
                with torch.no_grad():
                    log_ratio = log_probs[m] - old
                    pg.append(float(policy_loss))
                    vf.append(float(v_loss))
                    kls.append(float(losses.approx_kl(log_ratio)))
                    clipped.append(
                        float(((log_ratio.exp() - 1).abs() > c.clip_range).float().mean())
                    )
        v, t = batch.values[mask], targets[mask]
        return {
            "loss": float(np.mean(pg)),
            "value_loss": float(np.mean(vf)),
            "approx_kl": float(np.mean(kls)),
            "clip_fraction": float(np.mean(clipped)),
            "explained_variance": losses.explained_variance(v, t),
        }

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
