"""The training loop's bookkeeping, shared by control runs (``train``) and RLHF runs
(``rlhf.pipeline``): what the budget has reached, when to evaluate, log and checkpoint, the
rows since the last log and how they merge, and stopping cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import math
import signal
import threading
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from pgrad.config import RunConfig

if TYPE_CHECKING:
    from pgrad.logging import MetricsLogger


class Watches(Protocol):
    """A watchdog (``watchdog.Watchdog``, ``rlhf.watchdog.RLHFWatchdog``): the new warnings a
    logged row raises."""

    def update(self, step: int, row: dict[str, float]) -> list[str]: ...


def due(when: int, step: int, every: int) -> int:
    """The first multiple of ``every`` after ``step``, counting on from ``when``."""
    while when <= step:
        when += every
    return when


class Loop:
    """The loop's counters and unlogged rows (saved in checkpoints). ``step`` counts what the
    budget counts: env steps, or RLHF iterations."""

    def __init__(self, cfg: RunConfig, watchdog: Watches, step: int = 0):
        self.step = self.iteration = step
        self.next_eval = due(cfg.eval_every, step, cfg.eval_every) if cfg.eval_every else 0
        self.next_checkpoint = due(cfg.checkpoint_every, step, cfg.checkpoint_every)
        self.next_log = due(cfg.log_every, step, cfg.log_every)
        self.pending: list[dict[str, float]] = []
        self.watchdog = watchdog
        self.warnings: list[str] = []
        self.train_time = 0.0
        self.retries = 0
        """``nan_retries`` used so far."""
        self.learning_rate: float | None = None
        """The learning rate the retries lowered it to (None: the config's): a resumed run
        keeps it."""

    def advance(self, steps: int, metrics: dict[str, float]) -> None:
        """One update done: ``steps`` more of the budget, and its metrics row."""
        self.step += steps
        self.iteration += 1
        self.pending.append(metrics)

    def evaluation_due(self, cfg: RunConfig) -> bool:
        if not cfg.eval_every or self.step < self.next_eval:
            return False
        self.next_eval = due(self.next_eval, self.step, cfg.eval_every)
        return True

    def log_due(self, cfg: RunConfig, total: int, evaluated: bool) -> bool:
        """A row is due every ``log_every``, at the end, and after an evaluation."""
        if self.step < self.next_log and self.step < total and not evaluated:
            return False
        self.next_log = due(self.next_log, self.step, cfg.log_every)
        return True

    def checkpoint_due(self, cfg: RunConfig) -> bool:
        if self.step < self.next_checkpoint:
            return False
        self.next_checkpoint = due(self.next_checkpoint, self.step, cfg.checkpoint_every)
        return True

    def take(self) -> dict[str, float]:
        """The pending rows merged into one (``average``), and none pending."""
        row, self.pending = average(self.pending), []
        return row

    def log(self, logger: MetricsLogger, row: dict[str, float]) -> None:
        """Write ``row`` at ``step``, and warn of what the watchdog finds in it."""
        logger.write(self.step, row)
        for message in self.watchdog.update(self.step, row):
            self.warnings.append(message)
            logger.warn(message, self.step)


def average(rows: list[dict[str, float]]) -> dict[str, float]:
    """Updates since the last row, merged: episodes summed, episode figures weighted by episodes,
    everything else averaged over the updates that have it (NaN skipped)."""
    out: dict[str, float] = {}
    if "episodes" in rows[0]:
        out["episodes"] = episodes = sum(r["episodes"] for r in rows)
    for key in dict.fromkeys(k for r in rows for k in r):
        if key == "episodes":
            continue
        if key.startswith("episode_") and "episodes" in out:
            weighted = [(r[key], r["episodes"]) for r in rows if r["episodes"]]
            out[key] = sum(v * n for v, n in weighted) / episodes if episodes else float("nan")
        else:
            finite = [r[key] for r in rows if key in r and not math.isnan(r[key])]
            out[key] = float(np.mean(finite)) if finite else float("nan")
    return out


class StopSignals:
    """SIGINT/SIGTERM ask the training loop to stop after the current update (it then saves a
    final checkpoint and returns); a second signal interrupts at once."""

    def __init__(self):
        self.signal: int | None = None
        self.previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
