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

from pgrad.algos.on_policy import Loss, OnPolicy
from pgrad.config import ConfigError, OnPolicyConfig, at_least, positive
from pgrad.fast import ActorCriticTerms
from pgrad.losses import (
    actor_critic_loss,
    approx_kl,
    clip_fraction,
    clipped_surrogate_loss,
    entropy_bonus,
    explained_variance,
    value_loss,
)
from pgrad.optim import set_learning_rate
from pgrad.policies import ActorCritic
from pgrad.returns import gae, normalize
from pgrad.rollout import Batch, episode_metrics

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
        at_least(self, "batch_size", 1)
        at_least(self, "n_epochs", 1)
        positive(self, "clip_range")
        for key in ("clip_range_vf", "target_kl"):
            if getattr(self, key) is not None and not getattr(self, key) > 0:
                raise ConfigError(f"{key} must be > 0 or null, got {getattr(self, key)}")


def ppo_loss(
    model: ActorCritic,
    config: PPOConfig,
    obs: torch.Tensor,
    actions: torch.Tensor,
    advantages: torch.Tensor,
    targets: torch.Tensor,
    old_log_probs: torch.Tensor,
    old_values: torch.Tensor,
) -> Loss:
    """PPO's loss on a minibatch: the clipped surrogate of rho_t = exp(log pi - log pi_old), the
    (clipped) value loss and the entropy bonus."""
    dist, values = model(obs)
    log_probs = dist.log_prob(actions)
    policy_loss = clipped_surrogate_loss(log_probs, old_log_probs, advantages, config.clip_range)
    critic_loss = value_loss(values, targets, old_values, config.clip_range_vf)
    entropy = entropy_bonus(dist.entropy())
    total = actor_critic_loss(
        policy_loss, critic_loss, entropy, config.value_coef, config.entropy_coef
    )
    parts = {"policy_loss": policy_loss, "value_loss": critic_loss, "entropy": entropy}
    return total, parts, log_probs.detach()


def minibatch_orders(n: int, size: int, epochs: int) -> Iterator[torch.Tensor | None]:
    """Each epoch's order over ``n`` samples cut into minibatches of ``size``: a fresh random
    permutation, or None (as they are) when one minibatch holds them all."""
    for _ in range(epochs):
        yield None if size >= n else torch.randperm(n)


def minibatches(
    obs: torch.Tensor, actions: torch.Tensor, rows: torch.Tensor, config: PPOConfig
) -> Iterator[tuple[torch.Tensor, ...]]:
    """``n_epochs`` of shuffled minibatches: (obs, actions, advantages (normalised per
    minibatch if asked), targets, old log-probs, old values), the last four from ``rows``
    (old log-probs, advantages, targets, old values, stacked).

    Each epoch gathers the whole batch in one shuffled order and slices it, rather than
    gathering every minibatch; with one minibatch per epoch there is nothing to shuffle."""
    n, size = len(obs), config.batch_size
    if n == 0:  # every env was on its ignored autoreset step (n_steps = 1): nothing to fit
        return
    whole = None
    for perm in minibatch_orders(n, size, config.n_epochs):
        if perm is None:
            whole = whole or (obs, actions, *_normalized(rows, n, config))
            yield whole
            continue
        epoch = obs[perm], actions[perm], _normalized(rows[:, perm], size, config)
        for start in range(0, n, size):
            part = slice(start, start + size)
            yield (epoch[0][part], epoch[1][part], *(row[part] for row in epoch[2]))


def _normalized(rows: torch.Tensor, size: int, config: PPOConfig) -> list[torch.Tensor]:
    """(advantages, targets, old log-probs, old values), the advantages normalised over each
    run of ``size`` columns (the minibatches; the last may be shorter) if the config asks.

    A minibatch of one sample keeps its advantage as it is, as in Stable-Baselines3: normalised,
    it would be 0, and that sample would teach the policy nothing."""
    old_log_probs, advantages, targets, old_values = rows.unbind(0)
    if config.normalize_advantage:
        full = len(advantages) // size * size
        head, tail = advantages[:full], advantages[full:]
        parts = [head if size == 1 else normalize(head.view(-1, size), dim=1).view(-1)]
        if len(tail):
            parts.append(normalize(tail) if len(tail) > 1 else tail)
        advantages = torch.cat(parts) if len(parts) > 1 else parts[0]
    return [advantages, targets, old_log_probs, old_values]


class PPO(OnPolicy):
    config: PPOConfig

    def terms(self) -> ActorCriticTerms:
        c = self.config
        return ActorCriticTerms("clipped", c.value_coef, c.entropy_coef, c.clip_range,
                                c.clip_range_vf)  # fmt: skip

    def update(self, batch: Batch) -> dict[str, float]:
        """``n_epochs`` of shuffled minibatch steps on ``batch``; their metrics."""
        cfg = self.config
        lr = set_learning_rate(self.optimizer, cfg, self.steps)
        # 1. GAE(gamma, lambda) advantages, and lambda-returns as the critic's targets
        advantages = gae(
            batch.rewards, batch.values, batch.next_values, batch.terminated, batch.truncated,
            cfg.gamma, cfg.gae_lambda,
        )  # fmt: skip
        targets = advantages + batch.values
        obs, actions, old_log_probs, advantages, targets, old_values = batch.valid(
            batch.obs, batch.actions, batch.log_probs, advantages, targets, batch.values
        )
        rows = torch.stack([old_log_probs, advantages, targets, old_values])  # one gather each

        losses: list[torch.Tensor] = []  # per step: policy, value, entropy, grad norm
        log_ratios: list[torch.Tensor] = []  # per step: log(pi / pi_old) on its minibatch
        stopped_early = False
        for minibatch in minibatches(obs, actions, rows, cfg):
            # 2. the loss: ratio, clipped surrogate, (clipped) value loss, entropy (ppo_loss)
            total, parts, log_probs = self.loss(ppo_loss, *minibatch)
            # 3. stop the epochs once the policy has moved too far from pi_old
            log_ratio = log_probs - minibatch[4]
            if cfg.target_kl is not None and approx_kl(log_ratio) > 1.5 * cfg.target_kl:
                stopped_early = True
                break
            # 4. the clipped gradient, and the optimizer's step
            grad_norm = self.gradient(total, parts)
            self.step()
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
            metrics["clip_fraction"] = clip_fraction(log_ratio, cfg.clip_range).item()
        self.steps += batch.steps
        return {
            "steps": batch.steps,
            **episode_metrics(batch),
            **metrics,
            "explained_variance": explained_variance(old_values, targets),
            "learning_rate": lr,
            "epochs_stopped_early": float(stopped_early),
        }
