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

import gymnasium as gym
import torch

from pgrad import policies
from pgrad.algos.on_policy import place
from pgrad.config import PolicyConfig, at_least
from pgrad.envs import spaces
from pgrad.losses import entropy_bonus, policy_gradient_loss, value_loss
from pgrad.optim import gradient_step, make_optimizer
from pgrad.policies import ActorCritic, Policy
from pgrad.returns import discounted_returns, normalize
from pgrad.rollout import collect_episodes, episode_metrics


@dataclass
class ReinforceConfig(PolicyConfig):
    episodes_per_env: int = 1
    """Whole episodes each env contributes to one update (episodes per update = this * n_envs)."""
    baseline: bool = False
    """Subtract a learned V(s_t) from G_t."""
    value_epochs: int = 1
    """Full-batch critic steps per update (with ``baseline``): the first is taken jointly with the
    policy step, the rest on the value loss alone (Spinning Up's ``train_v_iters``). Returns are
    large (hundreds) and Adam moves each weight by about ``learning_rate`` per step, so a critic
    fitted with one step per update lags far behind G_t."""

    def check(self) -> None:
        super().check()
        at_least(self, "episodes_per_env", 1)
        at_least(self, "value_epochs", 1)


def build_model(
    config: ReinforceConfig, observation_space: gym.Space, action_space: gym.Space
) -> Policy | ActorCritic:
    return policies.build_model(config, observation_space, action_space, critic=config.baseline)


class Reinforce:
    """Collect ``n_envs * episodes_per_env`` episodes, take one gradient step, repeat."""

    def __init__(
        self, config: ReinforceConfig, envs: gym.vector.VectorEnv, seed: int | None = None
    ):
        self.config, self.envs, self.seed = config, envs, seed
        self.device, self.model, self.acting = place(build_model(config, *spaces(envs)), config)
        self.optimizer = make_optimizer(
            "adam", self.model.parameters(), config.learning_rate, eps=1e-8
        )

    def close(self) -> None:
        """Nothing to release: the envs belong to the caller."""

    def state(self) -> dict:
        """What ``resume`` needs beyond the model and optimizer (each update resets the envs)."""
        return {"seed": self.seed}

    def load_state(self, state: dict, envs: gym.vector.VectorEnv, env_restored: bool) -> None:
        self.seed, self.envs = state["seed"], envs

    def iterate(self) -> dict[str, float]:
        """One update; returns its metrics, including ``steps`` (transitions trained on)."""
        cfg = self.config
        batch = collect_episodes(
            self.envs, self.acting(), cfg.episodes_per_env, seed=self.seed, fast=cfg.fast
        ).to(self.device)
        self.seed = None  # seed the first reset only; later resets continue the env's RNG
        returns = discounted_returns(
            batch.rewards,
            batch.terminated,
            batch.truncated,
            cfg.gamma,
            batch.next_values if cfg.baseline else None,
        )
        obs, actions, returns, old_values = batch.valid(
            batch.obs, batch.actions, returns, batch.values
        )

        dist, values = self.model(obs)
        advantages = returns - old_values if cfg.baseline else returns
        if cfg.normalize_advantage:
            advantages = normalize(advantages)
        policy_loss = policy_gradient_loss(dist.log_prob(actions), advantages)
        entropy = entropy_bonus(dist.entropy())
        loss = policy_loss - cfg.entropy_coef * entropy
        critic_loss = torch.zeros((), device=self.device)
        if values is not None:
            critic_loss = value_loss(values, returns)
            loss = loss + cfg.value_coef * critic_loss

        parts = {"policy_loss": policy_loss, "value_loss": critic_loss, "entropy": entropy}
        grad_norm = gradient_step(self.model, self.optimizer, loss, cfg.max_grad_norm, parts)
        if values is not None:
            for _ in range(cfg.value_epochs - 1):
                # Actor gradients are None after zero_grad, so Adam leaves the actor alone.
                critic_step = cfg.value_coef * value_loss(self.model.value(obs), returns)
                gradient_step(self.model, self.optimizer, critic_step, cfg.max_grad_norm)

        return {
            "steps": batch.steps,
            **episode_metrics(batch),
            "policy_loss": policy_loss.item(),
            "value_loss": critic_loss.item(),
            "entropy": entropy.item(),
            "grad_norm": grad_norm.item(),
        }
