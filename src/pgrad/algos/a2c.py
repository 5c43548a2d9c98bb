"""A2C: synchronous advantage actor-critic (Mnih et al., 2016, without the asynchrony).

``n_envs`` envs step together for ``n_steps``; then ONE gradient step on all the transitions:

    loss = -mean_t[ log pi(a_t|s_t) A_t ] + value_coef * mean_t[ (V(s_t) - R_t)^2 ]
           - entropy_coef * mean_t[ H(pi(.|s_t)) ],

with R_t the n-step return that bootstraps from V at the end of the rollout
(``advantage="nstep"``, the original A2C), or R_t = A_t + V(s_t) with A_t = GAE(gamma, lambda)
(``advantage="gae"``), and A_t = R_t - V(s_t). Because each step's n-step return runs to the end
of the rollout, ``nstep`` equals ``gae`` with lambda = 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from pgrad.algos.on_policy import Loss, OnPolicy
from pgrad.config import OnPolicyConfig
from pgrad.fast import ActorCriticTerms
from pgrad.losses import (
    actor_critic_loss,
    entropy_bonus,
    explained_variance,
    policy_gradient_loss,
    value_loss,
)
from pgrad.optim import set_learning_rate
from pgrad.policies import ActorCritic
from pgrad.returns import gae, normalize, nstep_returns
from pgrad.rollout import Batch, episode_metrics

LOSS_METRICS = ["policy_loss", "value_loss", "entropy", "explained_variance", "grad_norm"]


@dataclass
class A2CConfig(OnPolicyConfig):
    learning_rate: float = 7e-4
    normalize_advantage: bool = False
    entropy_coef: float = 0.01
    max_grad_norm: float | None = 0.5
    advantage: Literal["nstep", "gae"] = "nstep"
    """``nstep``: R_t runs to the end of the rollout and bootstraps there; ``gae``: GAE(lambda)."""


def advantages_and_targets(batch: Batch, config: A2CConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(A_t, R_t) for every step of ``batch``, with R_t the critic's regression target."""
    if config.advantage == "nstep":
        targets = nstep_returns(
            batch.rewards, batch.next_values, batch.terminated, batch.truncated, config.gamma,
            n=batch.rewards.shape[0],
        )  # fmt: skip
        return targets - batch.values, targets
    advantages = gae(
        batch.rewards, batch.values, batch.next_values, batch.terminated, batch.truncated,
        config.gamma, config.gae_lambda,
    )  # fmt: skip
    return advantages, advantages + batch.values


def a2c_loss(
    model: ActorCritic,
    config: A2CConfig,
    obs: torch.Tensor,
    actions: torch.Tensor,
    advantages: torch.Tensor,
    targets: torch.Tensor,
) -> Loss:
    """The A2C loss on a set of transitions (advantages already normalised if asked)."""
    dist, values = model(obs)
    log_probs = dist.log_prob(actions)
    policy_loss = policy_gradient_loss(log_probs, advantages)
    critic_loss = value_loss(values, targets)
    entropy = entropy_bonus(dist.entropy())
    total = actor_critic_loss(
        policy_loss, critic_loss, entropy, config.value_coef, config.entropy_coef
    )
    parts = {"policy_loss": policy_loss, "value_loss": critic_loss, "entropy": entropy}
    return total, parts, log_probs.detach()


class A2C(OnPolicy):
    """Collect ``n_steps`` from every env, take one batched gradient step, repeat."""

    config: A2CConfig

    def terms(self) -> ActorCriticTerms:
        return ActorCriticTerms("vanilla", self.config.value_coef, self.config.entropy_coef)

    def gradient_on(self, batch: Batch) -> dict[str, float]:
        """A2C's clipped loss gradient on ``batch`` (with at least one valid step), left in
        ``flat.param.grad`` for an optimizer to apply (here, or A3C's learner); its metrics."""
        advantages, targets = advantages_and_targets(batch, self.config)
        obs, actions, advantages, targets, values = batch.valid(
            batch.obs, batch.actions, advantages, targets, batch.values
        )
        if self.config.normalize_advantage:
            advantages = normalize(advantages)
        total, parts, _ = self.loss(a2c_loss, obs, actions, advantages, targets)
        grad_norm = self.gradient(total, parts)
        return {
            **{k: v.item() for k, v in parts.items()},
            "explained_variance": explained_variance(values, targets),
            "grad_norm": grad_norm.item(),
        }

    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step on ``batch``; its metrics."""
        lr = set_learning_rate(self.optimizer, self.config, self.steps)
        metrics = {"steps": batch.steps, **episode_metrics(batch), "learning_rate": lr}
        metrics.update(dict.fromkeys(LOSS_METRICS, float("nan")))
        if batch.steps == 0:  # every env was on its ignored autoreset step (n_steps = 1)
            return metrics
        metrics.update(self.gradient_on(batch))
        self.step()
        self.steps += batch.steps
        return metrics
