"""PPO-clip (Schulman et al., 2017): several epochs of minibatch steps on each rollout.

Advantages are GAE(gamma, lambda) with value targets R_t = A_t + V_old(s_t); each minibatch step
minimises

    -mean[ min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t) ]
    + value_coef * mean[ (V(s_t) - R_t)^2 ]      (optionally clipped around V_old)
    - entropy_coef * mean[ H(pi(.|s_t)) ],        rho_t = pi(a_t|s_t) / pi_old(a_t|s_t),

with advantages normalised per minibatch. With ``target_kl``, the epochs stop early once the
approximate KL(pi_old || pi) of a minibatch exceeds 1.5 * target_kl (as Stable-Baselines3 does).
Diagnostics: approx KL (k3 estimator) and clip fraction over all the update's minibatch samples,
explained variance, entropy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from pgrad.algos.common import (
    OnPolicy,
    OnPolicyConfig,
    episode_metrics,
    optimizer_step,
    set_learning_rate,
)
from pgrad.backprop import Coefficients
from pgrad.config import ConfigError
from pgrad.losses import approx_kl, explained_variance
from pgrad.returns import gae, normalize
from pgrad.rollout import Batch

METRICS = ["policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "grad_norm"]


@dataclass
class PPOConfig(OnPolicyConfig):
    n_steps: int = 256
    learning_rate: float = 3e-4
    gae_lambda: float = 0.95
    batch_size: int = 256
    """Minibatch size."""
    n_epochs: int = 10
    clip_range: float = 0.2
    clip_range_vf: float | None = None
    """Clip V around its old value by this much (None: no value clipping)."""
    target_kl: float | None = None
    max_grad_norm: float | None = 0.5

    def check(self) -> None:
        super().check()
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.n_epochs < 1:
            raise ConfigError(f"n_epochs must be >= 1, got {self.n_epochs}")
        if not self.clip_range > 0:
            raise ConfigError(f"clip_range must be > 0, got {self.clip_range}")
        if self.clip_range_vf is not None and not self.clip_range_vf > 0:
            raise ConfigError(f"clip_range_vf must be > 0 or null, got {self.clip_range_vf}")
        if self.target_kl is not None and not self.target_kl > 0:
            raise ConfigError(f"target_kl must be > 0 or null, got {self.target_kl}")


def _minibatches(
    obs: torch.Tensor, actions: torch.Tensor, rows: torch.Tensor, config: PPOConfig
) -> Iterator[tuple[torch.Tensor, ...]]:
    """``n_epochs`` of shuffled minibatches: (obs, actions, old log-probs, advantages (normalised
    per minibatch if asked), targets, old values), the last four stacked in ``rows``.

    Each epoch gathers the whole batch in one shuffled order and slices it, rather than
    gathering every minibatch; with one minibatch per epoch there is nothing to shuffle."""
    n, size = len(obs), config.batch_size
    if size >= n:
        whole = (obs, actions, *_normalized(rows, n, config))
        for _ in range(config.n_epochs):
            yield whole
        return
    for _ in range(config.n_epochs):
        perm = torch.randperm(n)
        epoch = obs[perm], actions[perm], _normalized(rows[:, perm], size, config)
        for start in range(0, n, size):
            part = slice(start, start + size)
            yield (epoch[0][part], epoch[1][part], *(row[part] for row in epoch[2]))


def _normalized(rows: torch.Tensor, size: int, config: PPOConfig) -> list[torch.Tensor]:
    """The four rows, with the advantages normalised over each run of ``size`` columns (the
    minibatches; the last may be shorter) if the config asks for it."""
    old_log_probs, advantages, targets, old_values = rows.unbind(0)
    if config.normalize_advantage:
        n, full = len(advantages), len(advantages) // size * size
        parts = [normalize(advantages[:full].view(-1, size), dim=1).view(-1)]
        if full < n:
            parts.append(normalize(advantages[full:]))
        advantages = torch.cat(parts) if len(parts) > 1 else parts[0]
    return [old_log_probs, advantages, targets, old_values]


class PPO(OnPolicy):
    config: PPOConfig

    def update(self, batch: Batch) -> dict[str, float]:
        """``n_epochs`` of shuffled minibatch steps on ``batch``; their metrics."""
        cfg = self.config
        lr = set_learning_rate(self.optimizer, cfg, self.steps)
        advantages = gae(
            batch.rewards, batch.values, batch.next_values, batch.terminated, batch.truncated,
            cfg.gamma, cfg.gae_lambda,
        )  # fmt: skip
        targets = advantages + batch.values
        obs, actions, old_log_probs, advantages, targets, old_values = batch.valid(
            batch.obs, batch.actions, batch.log_probs, advantages, targets, batch.values
        )
        coefs = Coefficients(cfg.value_coef, cfg.entropy_coef, cfg.clip_range, cfg.clip_range_vf)
        # One gather per minibatch for the per-transition floats.
        rows = torch.stack([old_log_probs, advantages, targets, old_values])

        losses: list[torch.Tensor] = []  # per step: policy, value, entropy, grad norm
        log_ratios: list[torch.Tensor] = []  # per step: log(pi / pi_old) on its minibatch
        stopped_early = False
        for minibatch in _minibatches(obs, actions, rows, cfg):
            mb_obs, mb_actions, mb_old_log_probs, adv, mb_targets, mb_old_values = minibatch
            total, parts, log_probs = self.minibatch_loss(
                mb_obs, mb_actions, adv, mb_targets, coefs, mb_old_log_probs, mb_old_values
            )
            log_ratio = log_probs - mb_old_log_probs
            if cfg.target_kl is not None and approx_kl(log_ratio) > 1.5 * cfg.target_kl:
                stopped_early = True
                break
            grad_norm = self.minibatch_gradient(total, parts)
            optimizer_step(self.optimizer)
            with torch.no_grad():
                losses.append(torch.stack([*(parts[k] for k in METRICS[:3]), grad_norm]))
            log_ratios.append(log_ratio)
        metrics = dict.fromkeys(METRICS, float("nan"))
        if losses:
            means = torch.stack(losses).mean(0).tolist()
            metrics.update(
                zip(["policy_loss", "value_loss", "entropy", "grad_norm"], means, strict=True)
            )
            log_ratio = torch.cat(log_ratios)
            metrics["approx_kl"] = approx_kl(log_ratio).item()
            clipped = (log_ratio.exp() - 1.0).abs() > cfg.clip_range
            metrics["clip_fraction"] = clipped.float().mean().item()
        self.steps += batch.steps
        return {
            "steps": batch.steps,
            **episode_metrics(batch),
            **metrics,
            "explained_variance": explained_variance(old_values, targets),
            "learning_rate": lr,
            "epochs_stopped_early": float(stopped_early),
        }
