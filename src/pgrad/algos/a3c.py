"""A3C: asynchronous advantage actor-critic (Mnih et al., 2016), Hogwild-style on one machine.

``workers`` processes each own ``n_envs`` envs and a local copy of the actor-critic. Each,
independently and without waiting for the others, repeats:

    copy the global weights theta into its local model;
    collect n_steps from its envs;
    compute A2C's loss on them (n-step returns or GAE: the same ``returns`` and ``losses``);
    backpropagate locally, clip, and apply the local gradient to the global theta with the
    shared optimizer.

The global parameters live in one flat shared-memory tensor, and so do the optimizer's moments and
step count, so every worker's step moves the same Adam state. By the time a worker's gradient is
applied, other workers may already have changed theta: ``policy_lag`` counts those updates.

The PyTorch traps this module avoids, each caught by a test (``tests/test_a3c.py``):

- ``.grad`` is process-local, and ``zero_grad()`` sets it to None, so the classic trick of
  aliasing the shared parameter's ``.grad`` to the local gradient once goes stale: it is pointed
  at the local gradient before every step (``push_gradients``).
- The optimizer state is created eagerly and moved to shared memory before the workers start
  (``share_optimizer_state``); lazily created state would be private to each process.
- Workers are started with an explicit ``spawn`` context, from the module-level ``worker``.
- Each worker runs one torch thread: N workers x the default thread count oversubscribes the CPU.

``backend: ray`` runs the asynchronous-gradient variant on Ray actors instead
(``pgrad.distributed.ray_backend.RayA3C``).
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
import torch.multiprocessing as mp

from pgrad.algos import a2c
from pgrad.algos.common import (
    FlatParameters,
    build_actor_critic,
    episode_stats,
    make_optimizer,
    set_learning_rate,
)
from pgrad.config import ConfigError
from pgrad.envs import make_vec_env, spaces, vec_env_id
from pgrad.errors import NonFiniteError, PgradError
from pgrad.rollout import Rollout

REPORT_EVERY_S = 0.25
"""A worker sends its accumulated metrics this often (and once more when it stops)."""
SUMS = ["policy_loss", "value_loss", "entropy", "explained_variance", "grad_norm", "policy_lag"]


@dataclass
class A3CConfig(a2c.A2CConfig):
    workers: int = 2
    n_envs: int = 1
    """Envs per worker."""

    def check(self) -> None:
        super().check()
        if self.normalize_obs or self.normalize_reward:
            raise ConfigError(
                "a3c does not support normalize_obs/normalize_reward (each worker would keep its "
                "own statistics); set them to false"
            )


def share_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Create the optimizer's per-parameter state now (as its first ``step`` would) and move
    every state tensor to shared memory, so all workers update one set of moments and steps."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.get_default_dtype())
                if isinstance(optimizer, torch.optim.Adam):
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                elif isinstance(optimizer, torch.optim.RMSprop):
                    state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                else:
                    raise TypeError(f"cannot share the state of {type(optimizer).__name__}")
            for value in state.values():
                if torch.is_tensor(value):
                    value.share_memory_()


def push_gradients(local: torch.Tensor, shared: torch.nn.Parameter) -> None:
    """Make the local gradient the shared parameter's gradient for the next optimizer step.

    Done before *every* step: ``.grad`` is an attribute of this process's tensor object, and the
    local gradient may be a new tensor after ``zero_grad(set_to_none=True)``.
    """
    shared.grad = local.grad


class _Shared:
    """What the workers share with the learner process: counters and a stop flag."""

    def __init__(self, ctx: Any, steps: int):
        self.steps = ctx.Value("q", steps)
        self.version = ctx.Value("q", 0)
        self.stop = ctx.Event()
        self.queue = ctx.Queue()


def worker(
    rank: int,
    config: A3CConfig,
    env_id: str,
    optimizer: torch.optim.Optimizer,
    shared: _Shared,
    parent: int,
) -> None:
    """One A3C worker process (module level, so that ``spawn`` can pickle it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the learner's to handle
    torch.set_num_threads(1)
    shared.queue.put(("started", rank, torch.get_num_threads()))
    try:
        _work(rank, config, env_id, optimizer, shared, parent)
    except NonFiniteError as e:
        shared.queue.put(("nonfinite", rank, str(e)))
    except BaseException as e:  # report anything to the learner, which fails the run
        frame = traceback.extract_tb(e.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"
        shared.queue.put(("error", rank, f"{type(e).__name__}: {e} (at {where})"))


def _work(
    rank: int,
    cfg: A3CConfig,
    env_id: str,
    optimizer: torch.optim.Optimizer,
    shared: _Shared,
    parent: int,
) -> None:
    seed = cfg.seed + 1000 * (rank + 1)
    torch.manual_seed(seed)
    envs = make_vec_env(env_id, cfg.n_envs, cfg.vectorization, gamma=cfg.gamma)
    model = build_actor_critic(cfg, *spaces(envs))
    local = FlatParameters(model)
    theta = optimizer.param_groups[0]["params"][0]  # the global flat parameter vector
    rollout = Rollout(envs, cfg.n_steps, seed)
    pending = _Pending()
    last_report = time.monotonic()
    while not shared.stop.is_set() and shared.steps.value < cfg.steps:
        if os.getppid() != parent:  # the learner died without stopping us
            return
        with torch.no_grad():
            local.param.copy_(theta)
        version = shared.version.value
        batch = rollout.collect(model)
        with shared.steps.get_lock():
            shared.steps.value += batch.steps
        pending.add_episodes(batch)
        if batch.steps:
            metrics = a2c.gradient(model, local, cfg, batch)
            lr = set_learning_rate(optimizer, cfg, shared.steps.value)
            push_gradients(local.param, theta)
            optimizer.step()
            with shared.version.get_lock():
                lag = shared.version.value - version
                shared.version.value += 1
            pending.add_update(
                batch.steps, {**metrics, "policy_lag": float(lag), "learning_rate": lr}
            )
        if time.monotonic() - last_report > REPORT_EVERY_S:
            shared.queue.put(("metrics", rank, pending.flush()))
            last_report = time.monotonic()
    shared.queue.put(("metrics", rank, pending.flush()))
    envs.close()


class _Pending:
    """A worker's metrics since its last report."""

    def __init__(self):
        self.steps, self.updates = 0, 0
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self.sums: dict[str, float] = {}

    def add_episodes(self, batch: Any) -> None:
        self.returns.extend(batch.episode_returns.tolist())
        self.lengths.extend(batch.episode_lengths.tolist())

    def add_update(self, steps: int, values: dict[str, float]) -> None:
        self.steps += steps
        self.updates += 1
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def flush(self) -> dict[str, Any]:
        out = {
            "steps": self.steps,
            "updates": self.updates,
            "returns": self.returns,
            "lengths": self.lengths,
            "sums": self.sums,
        }
        self.__init__()
        return out


def report_metrics(report: dict[str, Any]) -> dict[str, float]:
    """A worker's report as a metrics row: episode figures and per-update means."""
    updates = report["updates"]
    row = {"steps": report["steps"], **episode_stats(report["returns"], report["lengths"])}
    for k in [*SUMS, "learning_rate"]:
        row[k] = report["sums"][k] / updates if updates else float("nan")
    return row


class A3C:
    """The learner's side of A3C: owns the global model and optimizer in shared memory, starts
    the workers on the first ``iterate`` and turns their reports into metrics rows."""

    def __init__(self, config: A3CConfig, envs: gym.vector.VectorEnv, seed: int | None = None):
        self.config = config
        self.env_id = vec_env_id(envs)
        self.model = build_actor_critic(config, *spaces(envs))
        self.flat = FlatParameters(self.model)
        self.flat.param.data.share_memory_()
        # Adam's unfused implementation, with the state share_optimizer_state creates for it.
        self.optimizer = make_optimizer(
            config.optimizer, [self.flat.param], config.learning_rate, config.adam_eps, fused=False
        )
        self.context = mp.get_context("spawn")
        self.steps = 0
        self.processes: list[Any] = []
        self.worker_threads: list[int] = []
        self.shared: _Shared | None = None

    def _start(self) -> None:
        share_optimizer_state(self.optimizer)  # again after a resume's load_state_dict
        self.shared = _Shared(self.context, self.steps)
        self.worker_threads = []
        for rank in range(self.config.workers):
            process = self.context.Process(
                target=worker,
                args=(rank, self.config, self.env_id, self.optimizer, self.shared, os.getpid()),
                daemon=True,
                name=f"pgrad-a3c-{rank}",
            )
            process.start()
            self.processes.append(process)

    def iterate(self) -> dict[str, float]:
        """Wait for the next worker report; its metrics (``steps``: the steps it covers)."""
        if self.shared is None:
            self._start()
        assert self.shared is not None
        while True:
            try:
                kind, rank, payload = self.shared.queue.get(timeout=1.0)
            except queue.Empty:
                self._check_workers()
                continue
            if kind == "started":
                self.worker_threads.append(payload)
            elif kind == "metrics":
                self.steps += payload["steps"]
                return report_metrics(payload)
            elif kind == "nonfinite":
                self.close()
                raise NonFiniteError(f"{payload} (a3c worker {rank})")
            else:
                self.close()
                raise PgradError(f"a3c worker {rank} failed: {payload}")

    def _check_workers(self) -> None:
        for rank, process in enumerate(self.processes):
            if process.exitcode not in (None, 0):
                self.close()
                raise PgradError(f"a3c worker {rank} died (exit code {process.exitcode})")
        if self.processes and all(p.exitcode is not None for p in self.processes):
            self.close()
            raise PgradError("every a3c worker stopped before the step budget was spent")

    def close(self) -> None:
        """Stop the workers: ask, wait a little while draining their reports, then kill."""
        if self.shared is None:
            return
        self.shared.stop.set()
        deadline = time.monotonic() + 10.0
        while any(p.is_alive() for p in self.processes) and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):  # a worker blocked on a full queue
                self.shared.queue.get(timeout=0.05)  # cannot exit until it is read
        for process in self.processes:
            if process.is_alive():
                process.kill()
            process.join(timeout=5.0)
        self.shared.queue.close()
        self.shared.queue.cancel_join_thread()
        self.processes, self.shared = [], None

    def state(self) -> dict:
        return {"steps": self.steps}

    def load_state(self, state: dict, envs: gym.vector.VectorEnv, env_restored: bool) -> None:
        """Asynchronous updates are not reproducible: a resumed A3C run continues from the saved
        weights, optimizer state and step count, in fresh episodes."""
        self.steps = state["steps"]


def make(config: A3CConfig, envs: gym.vector.VectorEnv, seed: int | None = None) -> Any:
    """A3C on local processes, or on Ray actors with ``backend: ray``."""
    if config.backend == "ray":
        from pgrad.distributed.ray_backend import RayA3C

        return RayA3C(config, envs, seed)
    return A3C(config, envs, seed)
