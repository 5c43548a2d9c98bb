"""The frame A2C and PPO share: an actor-critic with flat parameters and an optimizer, a
collector of fixed-length rollouts, and the gradient of the algorithm's own loss.

Each algorithm writes its loss in torch (``a2c.a2c_loss``, ``ppo.ppo_loss``) and names its terms
(``terms``); ``loss`` evaluates it, by the fast path's hand-written twin where the model allows
(``pgrad.fast.loss_gradient``, which leaves the gradient in the flat buffer), else by the torch
function, and ``gradient`` finishes the job (autograd if needed, clipping, NaN checks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import gymnasium as gym
import torch
from torch import nn

from pgrad import device, fast
from pgrad.config import ConfigError, OnPolicyConfig, PolicyConfig
from pgrad.device import ActingCopy
from pgrad.envs import spaces
from pgrad.fast import ActorCriticTerms, FlatParameters
from pgrad.optim import make_optimizer
from pgrad.policies import ActorCritic, Policy, build_actor_critic
from pgrad.rollout import Batch, Rollout

Loss = tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]
"""(L, its parts, log pi(a_t|s_t) detached)."""


class Collector(Protocol):
    """Where batches come from: ``rollout.Rollout`` in this process, or workers elsewhere
    (``pgrad.distributed``'s ``RayRollout``)."""

    def collect(self, model: Policy | ActorCritic) -> Batch: ...

    def metrics(self) -> dict[str, float]: ...

    def state(self) -> dict: ...

    def load_state(self, state: dict, envs: gym.vector.VectorEnv, env_restored: bool) -> None: ...

    def close(self) -> None: ...


def place(model: nn.Module, config: PolicyConfig) -> tuple[torch.device, nn.Module, ActingCopy]:
    """Where ``model`` learns (``config.device``; ``auto`` by ``device.preferred``), the model
    moved there, and what collects with it: a CPU copy where the learner is elsewhere and the
    fast path can act for it (``device.ActingCopy``), else the model itself."""
    where = device.resolve(config.device, device.preferred(model))
    cpu_acts = config.fast and fast.unsupported(model, "acting") is None  # asked on the CPU
    model = model.to(where)
    return where, model, ActingCopy(model, on_cpu=cpu_acts)


class OnPolicy:
    """Collect a batch, ``update`` on it (each algorithm's own), repeat."""

    config: OnPolicyConfig

    def __init__(
        self,
        config: OnPolicyConfig,
        envs: gym.vector.VectorEnv,
        seed: int | None = None,
        collector: Collector | None = None,
    ):
        self.config = config
        self.device, self.model, self.acting = place(build_actor_critic(config, *spaces(envs)),
                                                     config)  # fmt: skip
        lr, eps = config.learning_rate, config.adam_eps
        self.flat = FlatParameters(self.model)
        self.optimizer = make_optimizer(config.optimizer, [self.flat.param], lr, eps)
        self.fast_loss = fast.loss_gradient(self.model, self.flat, self.terms(), config.fast)
        if collector is None:
            if config.backend == "ray":
                raise ConfigError(
                    "backend ray collects on Ray workers: build the algorithm with "
                    "pgrad.launch.algorithm (pgrad.train does)"
                )
            if config.workers > 1:
                raise ConfigError(
                    f"workers: {config.workers} needs backend: ray (a local {type(self).__name__}"
                    " collects in one process; use n_envs for more envs)"
                )
            collector = Rollout(envs, config.n_steps, seed, config.fast)
        self.rollout = collector
        self.steps = 0

    def terms(self) -> ActorCriticTerms:
        """The terms of the algorithm's loss, for its fast twin."""
        raise NotImplementedError

    def update(self, batch: Batch) -> dict[str, float]:
        raise NotImplementedError

    def iterate(self) -> dict[str, float]:
        """Collect with the policy (its CPU copy if the learner is elsewhere), then ``update``
        on the learner's device."""
        metrics = self.update(self.rollout.collect(self.acting()).to(self.device))
        return {**metrics, **self.rollout.metrics()}

    def loss(self, torch_loss: Callable[..., Loss], *minibatch: torch.Tensor) -> Loss:
        """``torch_loss(model, config, *minibatch)``, or its fast twin's value, which leaves
        dL/dtheta in the flat buffer already."""
        if self.fast_loss is not None:
            return self.fast_loss(*minibatch)
        return torch_loss(self.model, self.config, *minibatch)

    def gradient(self, total: torch.Tensor, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """dL/dtheta of ``loss``'s L in the flat buffer, clipped; its norm before clipping. A
        non-finite loss or gradient raises ``NonFiniteError`` before any parameter changes."""
        computed = self.fast_loss is not None
        return self.flat.gradient(total, self.config.max_grad_norm, parts, computed)

    def step(self) -> None:
        """Apply the gradient in the flat buffer."""
        fast.step(self.optimizer, self.config.fast)

    def close(self) -> None:
        self.rollout.close()

    def state(self) -> dict:
        """What ``resume`` needs beyond the model and optimizer."""
        return {"steps": self.steps, "rollout": self.rollout.state()}

    def load_state(self, state: dict, envs: gym.vector.VectorEnv, env_restored: bool) -> None:
        """Continue in ``envs``: the saved env (``env_restored``) picks up the saved episodes;
        a fresh one starts new episodes."""
        self.steps = state["steps"]
        self.rollout.load_state(state["rollout"], envs, env_restored)
