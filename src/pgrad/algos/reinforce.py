"""REINFORCE (Williams, 1992), with or without a learned state-value baseline.

Each update collects whole episodes from a vector of envs and ascends

    grad J ~= mean_t[ grad log pi_theta(a_t|s_t) * Psi_t ],

with Psi_t = G_t, the Monte Carlo reward-to-go (``baseline=False``), or Psi_t = G_t - V_phi(s_t)
(``baseline=True``), the critic V_phi being fitted by regression to G_t in the same step:

    loss = -mean_t[ log pi(a_t|s_t) Psi_t ] + value_coef * mean_t[ (V_phi(s_t) - G_t)^2 ]
           - entropy_coef * mean_t[ H(pi(.|s_t)) ].

A baseline that does not depend on a_t leaves the gradient unbiased (E[grad log pi(a|s)] = 0)
and, close to V^pi, cuts its variance. Episodes cut by a time limit bootstrap G_t from
V_phi(final observation) when there is a critic, and from 0 when there is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import numpy as np
import torch

from pgrad.config import Config, ConfigError
from pgrad.envs import spaces
from pgrad.losses import entropy_bonus, policy_gradient_loss, value_loss
from pgrad.policies import ActorCritic, Policy, make_policy
from pgrad.returns import discounted_returns, normalize
from pgrad.rollout import collect_episodes


@dataclass
class ReinforceConfig(Config):
    episodes_per_env: int = 1
    """Whole episodes each env contributes to one update (episodes per update = this * n_envs)."""
    baseline: bool = False
    """Subtract a learned V(s_t) from G_t."""
    value_coef: float = 0.5
    """Weight of the critic's regression loss (with ``baseline``)."""
    value_epochs: int = 1
    """Full-batch critic steps per update (with ``baseline``): the first is taken jointly with the
    policy step, the rest on the value loss alone (Spinning Up's ``train_v_iters``). Returns are
    large (hundreds) and Adam moves each weight by about ``learning_rate`` per step, so a critic
    fitted with one step per update lags far behind G_t."""
    shared: bool = False
    """Critic on the policy's own body (with ``baseline``)."""
    std: Literal["parameter", "state"] = "parameter"
    """Gaussian policies: state-independent or state-dependent standard deviation."""
    squash: Literal["tanh"] | None = None
    """Gaussian policies: squash actions into the Box bounds with tanh."""
    log_std_init: float = 0.0

    def check(self) -> None:
        super().check()
        if self.episodes_per_env < 1:
            raise ConfigError(f"episodes_per_env must be >= 1, got {self.episodes_per_env}")
        if self.value_coef < 0:
            raise ConfigError(f"value_coef must be >= 0, got {self.value_coef}")
        if self.value_epochs < 1:
            raise ConfigError(f"value_epochs must be >= 1, got {self.value_epochs}")


def build_model(
    config: ReinforceConfig, observation_space: gym.Space, action_space: gym.Space
) -> Policy | ActorCritic:
    body = {"hidden_sizes": config.hidden_sizes, "activation": config.activation}
    policy = make_policy(
        observation_space,
        action_space,
        std=config.std,
        squash=config.squash,
        log_std_init=config.log_std_init,
        **body,
    )
    if not config.baseline:
        return policy
    return ActorCritic(policy, observation_space, shared=config.shared, **body)


class Reinforce:
    """Collect ``n_envs * episodes_per_env`` episodes, take one gradient step, repeat."""

    def __init__(self, config: ReinforceConfig, envs: gym.vector.VectorEnv):
        self.config, self.envs = config, envs
        self.model = build_model(config, *spaces(envs))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate)

    def iterate(self, seed: int | None = None) -> dict[str, float]:
        """One update; returns its metrics, including ``steps`` (transitions trained on)."""
        cfg = self.config
        batch = collect_episodes(self.envs, self.model, cfg.episodes_per_env, seed=seed)
        returns = discounted_returns(
            batch.rewards,
            batch.terminated,
            batch.truncated,
            cfg.gamma,
            batch.next_values if cfg.baseline else None,
        )
        mask = batch.mask
        obs, actions, returns = batch.obs[mask], batch.actions[mask], returns[mask]

        dist, values = self.model(obs)
        advantages = returns - batch.values[mask] if cfg.baseline else returns
        if cfg.normalize_advantage:
            advantages = normalize(advantages)
        policy_loss = policy_gradient_loss(dist.log_prob(actions), advantages)
        entropy = entropy_bonus(dist.entropy())
        loss = policy_loss - cfg.entropy_coef * entropy
        critic_loss = torch.zeros(())
        if values is not None:
            critic_loss = value_loss(values, returns)
            loss = loss + cfg.value_coef * critic_loss

        grad_norm = self._step(loss)
        if values is not None:
            for _ in range(cfg.value_epochs - 1):
                # Actor gradients are None after zero_grad, so Adam leaves the actor alone.
                self._step(cfg.value_coef * value_loss(self.model.value(obs), returns))

        return {
            "steps": batch.steps,
            "episodes": len(batch.episode_returns),
            "episode_return": float(np.mean(batch.episode_returns)),
            "episode_length": float(np.mean(batch.episode_lengths)),
            "policy_loss": policy_loss.item(),
            "value_loss": critic_loss.item(),
            "entropy": entropy.item(),
            "grad_norm": grad_norm.item(),
        }

    def _step(self, loss: torch.Tensor) -> torch.Tensor:
        """One optimizer step on ``loss``, clipping the global gradient norm; returns that norm."""
        self.optimizer.zero_grad()
        loss.backward()
        max_norm = self.config.max_grad_norm or float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        self.optimizer.step()
        return grad_norm
