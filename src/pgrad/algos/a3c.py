"""A3C: asynchronous advantage actor-critic (Mnih et al., 2016).

``workers`` workers each own ``n_envs`` envs and a local copy of the actor-critic. Each,
independently and without waiting for the others, repeats:

    copy the global weights theta into its local model;
    collect n_steps from its envs;
    compute A2C's loss gradient on them (``A2C.gradient_on``: the same returns and losses);
    apply it to the global theta with the learner's optimizer (``Learner.apply``).

By the time a worker's gradient is applied, other workers may already have changed theta:
``policy_lag`` counts those updates. This module is the algorithm, ``Worker`` and ``Learner``;
where they run is a transport's business (``pgrad.distributed``): worker processes on this
machine that apply their gradients to theta in shared memory themselves (Hogwild), or Ray actors
whose gradients this process applies as they arrive. ``pgrad.launch`` plugs in the one
``backend`` names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch

from pgrad.algos.a2c import A2C, A2CConfig
from pgrad.config import ConfigError
from pgrad.envs import make_vec_env, spaces, vec_env_id
from pgrad.errors import NonFiniteError
from pgrad.fast import FlatParameters
from pgrad.optim import make_optimizer, set_learning_rate
from pgrad.policies import build_actor_critic
from pgrad.rollout import episode_stats

SUMS = ["policy_loss", "value_loss", "entropy", "explained_variance", "grad_norm", "policy_lag"]


@dataclass
class A3CConfig(A2CConfig):
    workers: int = 2
    n_envs: int = 1
    """Envs per worker."""

    def check(self) -> None:
        super().check()
        if self.device not in ("auto", "cpu"):
            raise ConfigError(
                f"a3c's workers share theta in CPU memory: device must be cpu, got {self.device}"
            )
        if self.normalize_obs or self.normalize_reward:
            raise ConfigError(
                "a3c does not support normalize_obs/normalize_reward (each worker would keep its "
                "own statistics); set them to false"
            )
        if self.nan_retries:
            raise ConfigError(
                f"a3c does not support nan_retries (got {self.nan_retries}): its workers stop "
                "with the first non-finite loss; set it to 0"
            )


@dataclass
class Gradient:
    """What a worker hands the learner: its rollout's episodes and, if the rollout had a valid
    step, A2C's clipped loss gradient at theta of ``version`` (or why it is not finite)."""

    version: int
    steps: int
    returns: np.ndarray
    lengths: np.ndarray
    grad: torch.Tensor | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    nonfinite: str | None = None


class Worker:
    """One worker: its envs and a local A2C, whose loss gradient it computes at given weights."""

    def __init__(self, config: A3CConfig, env_id: str, seed: int):
        torch.manual_seed(seed)
        self.envs = make_vec_env(env_id, config.n_envs, config.vectorization, gamma=config.gamma)
        self.local = A2C(dataclasses.replace(config, workers=1, backend="local"), self.envs, seed)

    def gradient(self, weights: torch.Tensor, version: int) -> Gradient:
        """A rollout with ``weights`` (theta, flat) and A2C's gradient on it."""
        with torch.no_grad():
            self.local.flat.param.copy_(weights)
        batch = self.local.rollout.collect(self.local.model)
        out = Gradient(version, batch.steps, batch.episode_returns, batch.episode_lengths)
        if batch.steps:
            try:
                out.metrics = self.local.gradient_on(batch)
            except NonFiniteError as e:
                out.nonfinite = str(e)
                return out
            out.grad = self.local.flat.param.grad.clone()
        return out

    def close(self) -> None:
        self.envs.close()


def push_gradients(grad: torch.Tensor, shared: torch.nn.Parameter) -> None:
    """Make ``grad`` the shared parameter's gradient for the next optimizer step.

    Done before *every* step: ``.grad`` is an attribute of this process's tensor object, and a
    local gradient may be a new tensor after ``zero_grad(set_to_none=True)``, so the classic
    trick of aliasing the shared ``.grad`` to the local one once goes stale."""
    shared.grad = grad


class Learner:
    """The global theta (one flat tensor) and the optimizer that applies gradients to it."""

    def __init__(self, config: A3CConfig, optimizer: torch.optim.Optimizer):
        self.config, self.optimizer = config, optimizer
        self.theta = optimizer.param_groups[0]["params"][0]

    def apply(self, grad: torch.Tensor, steps: int) -> float:
        """One optimizer step on theta with ``grad``, at the learning rate of ``steps``
        (returned)."""
        lr = set_learning_rate(self.optimizer, self.config, steps)
        push_gradients(grad, self.theta)
        self.optimizer.step()
        return lr


class Transport(Protocol):
    """Runs ``workers`` workers and the learner's steps; ``pgrad.distributed`` has two."""

    shared_memory: bool
    """Theta and the optimizer's state live in shared memory, stepped by the workers."""

    def start(self, config: A3CConfig, env_id: str, learner: Learner, steps: int) -> None:
        """Start the workers (seeded from ``config.seed``), ``steps`` into the budget."""

    def next(self) -> dict[str, Any]:
        """The next report: steps, updates, returns, lengths and the sums of ``SUMS`` and
        ``learning_rate`` over its updates."""
        ...

    def metrics(self) -> dict[str, float]: ...

    def close(self) -> None: ...


def report_metrics(report: dict[str, Any]) -> dict[str, float]:
    """A worker's report as a metrics row: episode figures and per-update means."""
    updates = report["updates"]
    row = {"steps": report["steps"], **episode_stats(report["returns"], report["lengths"])}
    for k in [*SUMS, "learning_rate"]:
        row[k] = report["sums"][k] / updates if updates else float("nan")
    return row


class A3C:
    """The learner's side of A3C: the global model and optimizer, the workers started on the
    first ``iterate`` through ``transport``, and their reports as metrics rows."""

    def __init__(
        self,
        config: A3CConfig,
        envs: gym.vector.VectorEnv,
        seed: int | None = None,
        transport: Transport | None = None,
    ):
        if transport is None:
            raise ConfigError("a3c runs its workers through a transport: train it with pgrad.train")
        self.config, self.transport = config, transport
        self.env_id = vec_env_id(envs)
        self.model = build_actor_critic(config, *spaces(envs))
        self.flat = FlatParameters(self.model)
        if transport.shared_memory:  # Adam's unfused implementation, its state shared too
            self.flat.param.data.share_memory_()
        lr, eps = config.learning_rate, config.adam_eps
        fused = not transport.shared_memory
        self.optimizer = make_optimizer(config.optimizer, [self.flat.param], lr, eps, fused)
        self.steps, self.started = 0, False

    def iterate(self) -> dict[str, float]:
        """Wait for the next worker report; its metrics (``steps``: the steps it covers)."""
        if not self.started:
            learner = Learner(self.config, self.optimizer)
            self.transport.start(self.config, self.env_id, learner, self.steps)
            self.started = True
        report = self.transport.next()
        self.steps += report["steps"]
        return {**report_metrics(report), **self.transport.metrics()}

    def close(self) -> None:
        """Stop the workers."""
        if self.started:
            self.transport.close()
        self.started = False

    def state(self) -> dict:
        return {"steps": self.steps}

    def load_state(self, state: dict, envs: gym.vector.VectorEnv, env_restored: bool) -> None:
        """Asynchronous updates are not reproducible: a resumed A3C run continues from the saved
        weights, optimizer state and step count, in fresh episodes."""
        self.steps = state["steps"]
