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
from functools import partial
from typing import Literal

import torch

from pgrad.algos.common import (
    FlatParameters,
    OnPolicy,
    OnPolicyConfig,
    actor_critic_loss,
    episode_metrics,
    optimizer_step,
    set_learning_rate,
)
from pgrad.backprop import ActorCriticBackprop, Coefficients
from pgrad.losses import explained_variance
from pgrad.policies import ActorCritic
from pgrad.returns import gae, normalize, nstep_returns
from pgrad.rollout import Batch

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


def coefficients(config: A2CConfig) -> Coefficients:
    return Coefficients(value_coef=config.value_coef, entropy_coef=config.entropy_coef)


def loss(
    model: ActorCritic,
    config: A2CConfig,
    obs: torch.Tensor,
    actions: torch.Tensor,
    advantages: torch.Tensor,
    targets: torch.Tensor,
    backprop: ActorCriticBackprop | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The A2C loss of ``model`` on a set of transitions, and its parts: by autograd, or with
    ``backprop`` (for ``model``) by hand, its gradient then left in the flat buffer."""
    if config.normalize_advantage:
        advantages = normalize(advantages)
    objective = backprop or partial(actor_critic_loss, model)
    total, parts, _ = objective(obs, actions, advantages, targets, coefficients(config))
    return total, parts


def gradient(
    model: ActorCritic,
    flat: FlatParameters,
    config: A2CConfig,
    batch: Batch,
    backprop: ActorCriticBackprop | None = None,
) -> dict[str, float]:
    """A2C's clipped loss gradient on ``batch`` (with at least one valid step), left in
    ``flat.param.grad`` for an optimizer to apply (here, or in A3C's shared model); its metrics.
    ``backprop`` (for ``model`` and ``flat``): computed by hand instead of by autograd."""
    advantages, targets = advantages_and_targets(batch, config)
    obs, actions, advantages, targets, values = batch.valid(
        batch.obs, batch.actions, advantages, targets, batch.values
    )
    total, parts = loss(model, config, obs, actions, advantages, targets, backprop)
    grad_norm = flat.gradient(total, config.max_grad_norm, parts, computed=backprop is not None)
    return {
        **{k: v.item() for k, v in parts.items()},
        "explained_variance": explained_variance(values, targets),
        "grad_norm": grad_norm.item(),
    }


class A2C(OnPolicy):
    """Collect ``n_steps`` from every env, take one batched gradient step, repeat."""

    config: A2CConfig

    def loss(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        advantages: torch.Tensor,
        targets: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The A2C loss on a set of transitions, and its parts."""
        return loss(self.model, self.config, obs, actions, advantages, targets)

    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step on ``batch``; its metrics."""
        cfg = self.config
        lr = set_learning_rate(self.optimizer, cfg, self.steps)
        metrics = {"steps": batch.steps, **episode_metrics(batch), "learning_rate": lr}
        metrics.update(dict.fromkeys(LOSS_METRICS, float("nan")))
        if batch.steps == 0:  # every env was on its ignored autoreset step (n_steps = 1)
            return metrics
        metrics.update(gradient(self.model, self.flat, cfg, batch, self.backprop))
        optimizer_step(self.optimizer)
        self.steps += batch.steps
        return metrics
