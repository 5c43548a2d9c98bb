"""The algorithms pgrad can train, by name: their config, their model, their update loop."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import gymnasium as gym
from torch import nn

from pgrad.algos import a2c, a3c, actor_critic, ppo, reinforce, sac
from pgrad.config import Config
from pgrad.errors import PgradError
from pgrad.policies import build_actor_critic


class Algorithm(Protocol):
    config: Config
    model: nn.Module
    optimizer: Any

    def iterate(self) -> dict[str, float]: ...

    def state(self) -> dict: ...

    def load_state(self, state: dict, envs: Any, env_restored: bool) -> None: ...

    def close(self) -> None:
        """Release what the algorithm started (worker processes, Ray actors)."""


@dataclass(frozen=True)
class AlgoSpec:
    name: str
    summary: str
    config_cls: type[Config]
    make: Callable[..., Algorithm]
    """(config, envs, seed[, workers]) -> the algorithm; ``workers``: what ``distributes`` says."""
    build_model: Callable[[Any, gym.Space, gym.Space], nn.Module]
    preset: dict[str, Any] = field(default_factory=dict)
    """Config values that define this variant (e.g. ``baseline: true``)."""
    distributes: Literal["rollouts", "gradients"] | None = None
    """What the algorithm can hand to workers elsewhere (``pgrad.launch`` plugs in a transport):
    ``rollouts``, a collector of batches (A2C, PPO); ``gradients``, workers that compute
    gradients on their own rollouts (A3C, with its ``worker`` class)."""
    worker: type | None = None


ALGOS: dict[str, AlgoSpec] = {
    spec.name: spec
    for spec in [
        AlgoSpec(
            "reinforce",
            "REINFORCE: Monte Carlo reward-to-go, whole episodes per update",
            reinforce.ReinforceConfig,
            reinforce.Reinforce,
            reinforce.build_model,
        ),
        AlgoSpec(
            "reinforce_baseline",
            "REINFORCE with a learned state-value baseline: Psi_t = G_t - V(s_t)",
            reinforce.ReinforceConfig,
            reinforce.Reinforce,
            reinforce.build_model,
            {"baseline": True},
        ),
        AlgoSpec(
            "actor_critic",
            "online one-step actor-critic: Psi_t = TD error, an update after every env step",
            actor_critic.ActorCriticConfig,
            actor_critic.OneStepActorCritic,
            build_actor_critic,
            distributes="rollouts",
        ),
        AlgoSpec(
            "a2c",
            "A2C: n-step returns or GAE on synchronous vector envs, one batched update per rollout",
            a2c.A2CConfig,
            a2c.A2C,
            build_actor_critic,
            distributes="rollouts",
        ),
        AlgoSpec(
            "a3c",
            "A3C: asynchronous workers push n-step actor-critic gradients into a shared model",
            a3c.A3CConfig,
            a3c.A3C,
            build_actor_critic,
            distributes="gradients",
            worker=a3c.Worker,
        ),
        AlgoSpec(
            "ppo",
            "PPO-clip: GAE, several epochs of shuffled minibatches on each rollout",
            ppo.PPOConfig,
            ppo.PPO,
            build_actor_critic,
            distributes="rollouts",
        ),
        AlgoSpec(
            "sac",
            "soft actor-critic: off-policy, twin soft Q critics, automatic entropy temperature",
            sac.SACConfig,
            sac.SAC,
            sac.build_model,
        ),
    ]
}


def get(name: str) -> AlgoSpec:
    """The algorithm called ``name``, or a one-line error listing the known ones."""
    if name in ALGOS:
        return ALGOS[name]
    close = difflib.get_close_matches(name, list(ALGOS), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise PgradError(f"unknown algorithm {name!r}; {hint}expected one of {', '.join(ALGOS)}")
