"""Rollout workers as Ray actors: synchronous sampling (A2C, PPO) and asynchronous gradients (A3C).

Each worker is an actor owning ``n_envs`` envs, a copy of the actor-critic and a ``Rollout``.

- ``RayRollout`` (``backend: ray`` for A2C and PPO): every round the learner puts its weights in
  the object store once; every worker loads them, collects ``n_steps`` and returns its ``Batch``;
  the learner concatenates the batches along the env axis and runs the algorithm's own
  ``update``. With the same data, the update is the single-process one.
- ``RayA3C`` (``backend: ray`` for A3C): every worker computes A2C's loss gradient on its own
  rollout with the weights it was last sent; the learner applies gradients in the order they
  arrive, one optimizer step each, and sends the new weights back to that worker only. A
  gradient computed at weight version v and applied at version u has ``policy_lag = u - v``.

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

from pgrad.algos import a2c
from pgrad.algos.common import (
    FlatParameters,
    OnPolicyConfig,
    build_actor_critic,
    episode_stats,
    make_optimizer,
    set_learning_rate,
)
from pgrad.envs import make_vec_env, spaces, vec_env_id
from pgrad.errors import NonFiniteError, PgradError
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
    """A Ray actor's state: envs, a model whose weights the learner sends, a rollout."""

    def __init__(self, config: OnPolicyConfig, env_id: str, seed: int):
        torch.set_num_threads(1)
        torch.manual_seed(seed)
        self.config = config
        self.envs = make_vec_env(env_id, config.n_envs, config.vectorization, gamma=config.gamma)
        self.model = build_actor_critic(config, *spaces(self.envs))
        self.flat = FlatParameters(self.model)
        self.rollout = Rollout(self.envs, config.n_steps, seed)

    def pid(self) -> int:
        return os.getpid()

    def collect(self, weights: torch.Tensor) -> Batch:
        """A rollout with the learner's ``weights`` (a flat parameter vector)."""
        with torch.no_grad():
            self.flat.param.copy_(weights)
        return self.rollout.collect(self.model)

    def gradient(self, weights: torch.Tensor, version: int) -> dict[str, Any]:
        """A2C's loss gradient (clipped) on a rollout collected with ``weights``."""
        batch = self.collect(weights)
        out: dict[str, Any] = {
            "version": version,
            "steps": batch.steps,
            "returns": batch.episode_returns,
            "lengths": batch.episode_lengths,
        }
        if batch.steps == 0:
            return out
        try:
            out["metrics"] = a2c.gradient(self.model, self.flat, self.config, batch)
        except NonFiniteError as e:
            return {**out, "nonfinite": str(e)}
        out["grad"] = self.flat.param.grad.clone()
        return out


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
    """The worker actors, replaced one by one when they die."""

    def __init__(self, config: OnPolicyConfig, env_id: str, seed: int | None):
        self.started_ray = init_ray(config.ray_address)
        self.config, self.env_id = config, env_id
        self.seed = 0 if seed is None else seed
        self.actor_cls = ray.remote(num_cpus=1, max_restarts=0)(RolloutWorker)
        self.replaced = 0
        self.actors = [self._new(rank) for rank in range(config.workers)]

    def _new(self, rank: int) -> Any:
        # A replacement gets a seed of its own: it must not replay its predecessor's episodes.
        seed = self.seed + 1000 * (rank + 1) + 100_000 * self.replaced
        return self.actor_cls.remote(self.config, self.env_id, seed)

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
        self.workers = _Workers(config, env_id, seed)

    def collect(self, model: torch.nn.Module) -> Batch:
        weights = _weights(model)
        if weights.numel() > INLINE_PARAMETERS:  # one copy in the object store for all workers
            weights = ray.put(weights)
        futures = [actor.collect.remote(weights) for actor in self.workers.actors]
        batches = []
        for rank, future in enumerate(futures):
            while True:
                try:
                    batches.append(ray.get(future))
                    break
                except RayActorError:
                    future = self.workers.replace(rank).collect.remote(weights)
                except RayTaskError as e:
                    raise PgradError(f"ray worker {rank} failed: {e}") from None
        return merge(batches)

    def metrics(self) -> dict[str, float]:
        return {"workers_replaced": float(self.workers.replaced)}

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict, envs: gym.vector.VectorEnv, env_restored: bool) -> None:
        """The workers' envs live on other machines: a resumed run starts fresh episodes."""

    def close(self) -> None:
        self.workers.close()


class RayA3C:
    """A3C with Ray actors computing gradients and this process applying them as they arrive."""

    def __init__(self, config: a2c.A2CConfig, envs: gym.vector.VectorEnv, seed: int | None):
        self.config, self.seed = config, seed
        self.env_id = vec_env_id(envs)
        self.model = build_actor_critic(config, *spaces(envs))
        self.flat = FlatParameters(self.model)
        lr, eps = config.learning_rate, config.adam_eps
        self.optimizer = make_optimizer(config.optimizer, [self.flat.param], lr, eps)
        self.steps = self.version = 0
        self.workers: _Workers | None = None
        self.pending: dict[Any, int] = {}

    def _submit(self, rank: int, weights: Any) -> None:
        assert self.workers is not None
        future = self.workers.actors[rank].gradient.remote(weights, self.version)
        self.pending[future] = rank

    def iterate(self) -> dict[str, float]:
        """Apply the next gradient to arrive; its rollout's metrics."""
        if self.workers is None:
            self.workers = _Workers(self.config, self.env_id, self.seed)
            weights = _weights(self.model)  # small: sent inline with each call
            for rank in range(self.config.workers):
                self._submit(rank, weights)
        while True:
            [future], _ = ray.wait(list(self.pending), num_returns=1)
            rank = self.pending.pop(future)
            try:
                result = ray.get(future)
                break
            except RayActorError:
                self.workers.replace(rank)
                self._submit(rank, _weights(self.model))
            except RayTaskError as e:
                self.close()
                raise PgradError(f"ray worker {rank} failed: {e}") from None
        if "nonfinite" in result:
            self.close()
            raise NonFiniteError(f"{result['nonfinite']} (ray worker {rank})")
        lr = set_learning_rate(self.optimizer, self.config, self.steps)
        row = {
            "steps": result["steps"],
            **episode_stats(result["returns"], result["lengths"]),
            **dict.fromkeys(a2c.LOSS_METRICS, float("nan")),
            "policy_lag": float(self.version - result["version"]),
            "learning_rate": lr,
            "workers_replaced": float(self.workers.replaced),
        }
        if "grad" in result:
            self.flat.zero_grad()
            self.flat.param.grad.copy_(result["grad"])
            self.optimizer.step()
            self.version += 1
            row.update(result["metrics"])
        self.steps += result["steps"]
        self._submit(rank, _weights(self.model))
        return row

    def close(self) -> None:
        if self.workers is not None:
            self.workers.close()
        self.workers, self.pending = None, {}

    def state(self) -> dict:
        return {"steps": self.steps, "version": self.version}

    def load_state(self, state: dict, envs: gym.vector.VectorEnv, env_restored: bool) -> None:
        """Continues from the saved weights and optimizer, in fresh episodes (asynchronous
        updates are not reproducible anyway)."""
        self.steps, self.version = state["steps"], state["version"]
