"""A3C's workers as processes on this machine, Hogwild-style (Recht et al., 2011).

Theta lives in one flat shared-memory tensor, and so do the optimizer's moments and step count;
each worker process applies its own gradients to them with the learner's optimizer, without
locks, so every worker's step moves the same Adam state. The learner process only reads the
workers' reports.

The PyTorch traps this transport avoids, each caught by a test (``tests/test_a3c.py``):

- ``.grad`` is process-local, and ``zero_grad()`` sets it to None, so a shared parameter's
  ``.grad`` is pointed at the worker's gradient before every step (``a3c.push_gradients``).
- The optimizer state is created eagerly and moved to shared memory before the workers start
  (``share_optimizer_state``); lazily created state would be private to each process.
- Workers are started with an explicit ``spawn`` context, from the module-level ``worker``.
- Each worker runs one torch thread: N workers x the default thread count oversubscribes the CPU.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import time
import traceback
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from pgrad.distributed import worker_seed
from pgrad.errors import NonFiniteError, PgradError

REPORT_EVERY_S = 0.25
"""A worker sends its accumulated metrics this often (and once more when it stops)."""


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


class _Shared:
    """What the workers share with the learner process: counters and a stop flag."""

    def __init__(self, ctx: Any, steps: int):
        self.steps = ctx.Value("q", steps)
        self.version = ctx.Value("q", 0)
        self.stop = ctx.Event()
        self.queue = ctx.Queue()


class Pending:
    """A worker's figures since its last report: steps, updates, episodes, metric sums."""

    def __init__(self):
        self.steps, self.updates = 0, 0
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self.sums: dict[str, float] = {}

    def add(self, gradient: Any, values: dict[str, float] | None) -> None:
        """A worker's ``Gradient``; ``values``: its update's metrics, if it was applied."""
        self.returns.extend(gradient.returns.tolist())
        self.lengths.extend(gradient.lengths.tolist())
        if values is None:
            return
        self.steps += gradient.steps
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


def worker(rank: int, make: Any, args: tuple, learner: Any, shared: _Shared, parent: int) -> None:
    """One worker process (module level, so that ``spawn`` can pickle it): ``make(*args)``
    builds the worker (``a3c.Worker``), whose gradients ``learner`` applies here."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the learner's to handle
    torch.set_num_threads(1)
    shared.queue.put(("started", rank, torch.get_num_threads()))
    try:
        _work(rank, make(*args), learner, shared, parent)
    except NonFiniteError as e:
        shared.queue.put(("nonfinite", rank, str(e)))
    except BaseException as e:  # report anything to the learner, which fails the run
        frame = traceback.extract_tb(e.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"
        shared.queue.put(("error", rank, f"{type(e).__name__}: {e} (at {where})"))


def _work(rank: int, work: Any, learner: Any, shared: _Shared, parent: int) -> None:
    pending = Pending()
    last_report = time.monotonic()
    while not shared.stop.is_set() and shared.steps.value < learner.config.steps:
        if os.getppid() != parent:  # the learner died without stopping us
            return
        gradient = work.gradient(learner.theta, shared.version.value)
        with shared.steps.get_lock():
            done = shared.steps.value  # the schedule's clock: steps before this rollout's
            shared.steps.value += gradient.steps
        if gradient.nonfinite is not None:
            raise NonFiniteError(gradient.nonfinite)
        values = None
        if gradient.grad is not None:
            lr = learner.apply(gradient.grad, done)
            with shared.version.get_lock():
                lag = shared.version.value - gradient.version
                shared.version.value += 1
            values = {**gradient.metrics, "policy_lag": float(lag), "learning_rate": lr}
        pending.add(gradient, values)
        if time.monotonic() - last_report > REPORT_EVERY_S:
            shared.queue.put(("metrics", rank, pending.flush()))
            last_report = time.monotonic()
    shared.queue.put(("metrics", rank, pending.flush()))
    work.close()


class Hogwild:
    """A3C's transport on local processes (``backend: local``)."""

    shared_memory = True

    def __init__(self, make: Any):
        self.make = make
        self.context = mp.get_context("spawn")
        self.processes: list[Any] = []
        self.worker_threads: list[int] = []
        self.shared: _Shared | None = None

    def start(self, config: Any, env_id: str, learner: Any, steps: int) -> None:
        share_optimizer_state(learner.optimizer)  # again after a resume's load_state_dict
        self.shared = _Shared(self.context, steps)
        self.worker_threads = []
        for rank in range(config.workers):
            args = (config, env_id, worker_seed(config.seed, rank, start=steps))
            process = self.context.Process(
                target=worker,
                args=(rank, self.make, args, learner, self.shared, os.getpid()),
                daemon=True,
                name=f"pgrad-a3c-{rank}",
            )
            process.start()
            self.processes.append(process)

    def next(self) -> dict[str, Any]:
        """Wait for the next worker report."""
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
                return payload
            elif kind == "nonfinite":
                self.close()
                raise NonFiniteError(f"{payload} (a3c worker {rank})")
            else:
                self.close()
                raise PgradError(f"a3c worker {rank} failed: {payload}")

    def metrics(self) -> dict[str, float]:
        return {}

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
