"""Workers as Ray actors: synchronous sampling (A2C, PPO) and asynchronous gradients (A3C).

Each worker is an actor owning ``n_envs`` envs and a copy of the actor-critic.

- ``RayRollout`` (``backend: ray`` for A2C and PPO), a collector: every round the learner puts its
  weights in the object store once; every worker (``RolloutWorker``) loads them, collects
  ``n_steps`` and returns its ``Batch``; the learner concatenates the batches along the env axis
  and runs the algorithm's own ``update``. With the same data, the update is the single-process
  one.
- ``RayGradients`` (``backend: ray`` for A3C), a transport: every worker (``a3c.Worker``)
  computes A2C's loss gradient on its own rollout with the weights it was last sent; the learner
  applies gradients in the order they arrive, one optimizer step each, and sends the new weights
  back to that worker only. A gradient computed at weight version v and applied at version u has
  ``policy_lag = u - v``.

A worker that dies (its node lost, the actor killed) is replaced by a fresh actor with a new seed,
in fresh episodes, and training goes on; ``workers_replaced`` counts them in the metrics.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from pgrad.config import OnPolicyConfig
from pgrad.distributed import worker_seed
from pgrad.distributed.hogwild import Pending
from pgrad.envs import make_vec_env, spaces
from pgrad.errors import NonFiniteError, PgradError
from pgrad.fast import FlatParameters
from pgrad.policies import build_actor_critic
from pgrad.rollout import Batch, Rollout

try:
    import ray
    from ray.exceptions import RayActorError, RayTaskError
except ImportError:  # pgrad[ray] not installed: a clear error when a Ray run is asked for
    ray = None


def init_ray(address: str | None) -> bool:
    """Connect to the Ray cluster at ``address``, or start a local Ray instance; True if this
    call started it (and so should shut it down)."""
    if ray is None:
        raise PgradError("backend ray needs Ray: pip install 'pgrad[ray]'")
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address and address != "auto" and "://" not in address:
        _check_reachable(address)  # ray.init would retry an unreachable address for minutes
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, log_to_driver=False)
    except ConnectionError as e:
        raise PgradError(f"cannot join the Ray cluster at {address!r}: {e}") from None
    return True


INLINE_PARAMETERS = 250_000
"""Weights up to this many parameters travel inside each call; bigger ones via the object store."""


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise PgradError(f"ray address {address!r} is not HOST:PORT (e.g. 10.0.0.1:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise PgradError(f"cannot reach the Ray cluster at {address!r}: {e}") from None


class RolloutWorker:
    """A worker of ``RayRollout``: envs, a model whose weights the learner sends, a rollout."""

    def __init__(self, config: OnPolicyConfig, env_id: str, seed: int):
        torch.manual_seed(seed)
        self.envs = make_vec_env(env_id, config.n_envs, config.vectorization, gamma=config.gamma)
        self.model = build_actor_critic(config, *spaces(self.envs))
        self.flat = FlatParameters(self.model)
        self.rollout = Rollout(self.envs, config.n_steps, seed, config.fast)

    def collect(self, weights: torch.Tensor) -> Batch:
        """A rollout with the learner's ``weights`` (a flat parameter vector)."""
        with torch.no_grad():
            self.flat.param.copy_(weights)
        return self.rollout.collect(self.model)


class Host:
    """What a Ray actor runs: the object ``make(*args)``, on one torch thread."""

    def __init__(self, make: Any, *args: Any):
        torch.set_num_threads(1)
        self.obj = make(*args)

    def pid(self) -> int:
        return os.getpid()

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.obj, method)(*args)


def merge(batches: list[Batch]) -> Batch:
    """Batches of the same length from different workers as one, envs side by side."""
    if len(batches) == 1:
        return batches[0]
    arrays = ("episode_returns", "episode_lengths")
    tensors = [f.name for f in dataclasses.fields(Batch) if f.name not in arrays]
    return Batch(
        **{k: torch.cat([getattr(b, k) for b in batches], dim=1) for k in tensors},
        **{k: np.concatenate([getattr(b, k) for b in batches]) for k in arrays},
    )


class _Workers:
    """``config.workers`` actors hosting ``make(config, env_id, seed)``, replaced one by one
    when they die."""

    def __init__(
        self, make: Any, config: OnPolicyConfig, env_id: str, seed: int | None, start: int = 0
    ):
        self.started_ray = init_ray(config.ray_address)
        self.make, self.config, self.env_id = make, config, env_id
        self.seed, self.start = 0 if seed is None else seed, start
        self.seeds: list[int] = []  # each actor's seed, in the order they were started
        self.actor_cls = ray.remote(num_cpus=1, max_restarts=0)(Host)
        self.replaced = 0
        self.actors = [self._new(rank) for rank in range(config.workers)]

    def _new(self, rank: int) -> Any:
        # A replacement gets a seed of its own: it must not replay its predecessor's episodes.
        seed = worker_seed(self.seed, rank, self.start, self.replaced)
        self.seeds.append(seed)
        return self.actor_cls.remote(self.make, self.config, self.env_id, seed)

    def restart(self, start: int) -> None:
        """New actors in place of all, seeded as ``start`` steps (or rounds) into the run."""
        for actor in self.actors:
            ray.kill(actor)
        self.start, self.replaced = start, 0
        self.actors = [self._new(rank) for rank in range(self.config.workers)]

    def replace(self, rank: int) -> Any:
        self.replaced += 1
        self.actors[rank] = self._new(rank)
        return self.actors[rank]

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self.started_ray:
            ray.shutdown()


def _weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach()


class RayRollout:
    """``Rollout``'s interface on ``workers`` Ray actors: one synchronous round per ``collect``."""

    def __init__(self, config: OnPolicyConfig, env_id: str, seed: int | None):
        self.workers = _Workers(RolloutWorker, config, env_id, seed)
        self.rounds = 0

    def collect(self, model: torch.nn.Module) -> Batch:
        self.rounds += 1
        weights = _weights(model)
        if weights.numel() > INLINE_PARAMETERS:  # one copy in the object store for all workers
            weights = ray.put(weights)
        futures = [actor.call.remote("collect", weights) for actor in self.workers.actors]
        batches = []
        for rank, future in enumerate(futures):
            while True:
                try:
                    batches.append(ray.get(future))
                    break
                except RayActorError:
                    future = self.workers.replace(rank).call.remote("collect", weights)
                except RayTaskError as e:
                    raise PgradError(f"ray worker {rank} failed: {e}") from None
        return merge(batches)

    def metrics(self) -> dict[str, float]:
        return {"workers_replaced": float(self.workers.replaced)}

    def state(self) -> dict:
        return {"rounds": self.rounds}

    def load_state(self, state: dict, envs: gym.vector.VectorEnv, env_restored: bool) -> None:
        """The workers' envs live on other machines: a resumed run starts fresh episodes, on
        workers seeded by the rounds done (not yet stepped: restarting them is cheap)."""
        self.rounds = state.get("rounds", 0)
        if self.rounds:
            self.workers.restart(start=self.rounds)

    def close(self) -> None:
        self.workers.close()


class RayGradients:
    """A3C's transport on Ray actors: workers' gradients applied here as they arrive."""

    shared_memory = False

    def __init__(self, make: Any):
        self.make = make
        self.workers: _Workers | None = None
        self.pending: dict[Any, int] = {}

    def start(self, config: Any, env_id: str, learner: Any, steps: int) -> None:
        self.learner, self.steps, self.version = learner, steps, 0
        self.workers = _Workers(self.make, config, env_id, config.seed, start=steps)
        weights = learner.theta.detach()  # small: sent inline with each call
        for rank in range(config.workers):
            self._submit(rank, weights)

    def _submit(self, rank: int, weights: torch.Tensor) -> None:
        assert self.workers is not None
        future = self.workers.actors[rank].call.remote("gradient", weights, self.version)
        self.pending[future] = rank

    def next(self) -> dict[str, Any]:
        """Apply the next gradient to arrive; its report."""
        assert self.workers is not None
        while True:
            [future], _ = ray.wait(list(self.pending), num_returns=1)
            rank = self.pending.pop(future)
            try:
                gradient = ray.get(future)
                break
            except RayActorError:
                self.workers.replace(rank)
                self._submit(rank, self.learner.theta.detach())
            except RayTaskError as e:
                self.close()
                raise PgradError(f"ray worker {rank} failed: {e}") from None
        if gradient.nonfinite is not None:
            self.close()
            raise NonFiniteError(f"{gradient.nonfinite} (ray worker {rank})")
        values = None
        if gradient.grad is not None:
            lr = self.learner.apply(gradient.grad, self.steps)
            lag = float(self.version - gradient.version)
            self.version += 1
            values = {**gradient.metrics, "policy_lag": lag, "learning_rate": lr}
        self.steps += gradient.steps
        self._submit(rank, self.learner.theta.detach())
        report = Pending()  # one gradient per report
        report.add(gradient, values)
        return report.flush()

    def metrics(self) -> dict[str, float]:
        return {"workers_replaced": float(self.workers.replaced if self.workers else 0)}

    def close(self) -> None:
        if self.workers is not None:
            self.workers.close()
        self.workers, self.pending = None, {}
