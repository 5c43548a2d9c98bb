"""The server's runs: one worker process each (multiprocessing, spawn), at most ``max_runs`` at
once, and at most ``max_runs`` estimator measurements at once besides; their events kept and
fanned out to every page that watches them.

Threads and the event loop: a reader thread per child blocks on its pipe and hands each event to
the event loop (``call_soon_threadsafe``); everything else here runs on the loop, so a run's
state needs no lock. Every child is joined once it ends, so none is left a zombie.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing as mp
import shutil
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from pgrad import runs
from pgrad.errors import PgradError
from pgrad.playground import measure, worker
from pgrad.playground.choices import RPS
from pgrad.playground.worker import RunSpec

STOP_GRACE_S = 20.0
"""How long a stopped worker may take to finish its update and checkpoint before it is killed."""
LIVE = ("starting", "running", "paused")
END = {"type": "end"}


class Busy(PgradError):
    """No room: every allowed worker is running."""


@dataclass(eq=False)
class Run:
    """One run: its worker, its events so far, the queues of the pages watching it."""

    id: str
    spec: RunSpec
    path: Path
    process: BaseProcess
    conn: Connection
    state: str = "starting"
    message: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    frame: dict[str, Any] | None = None
    ended: threading.Event = field(default_factory=threading.Event)
    """Set once the worker has been joined (only its pump thread joins it)."""
    watchers: set[asyncio.Queue] = field(default_factory=set)
    measuring: BaseProcess | None = None
    measured: threading.Event = field(default_factory=threading.Event)

    @property
    def live(self) -> bool:
        return self.state in LIVE

    def publish(self, event: dict[str, Any]) -> None:
        """Keep ``event`` (the latest frame only) and pass it to every watcher (on the loop)."""
        kind = event.get("type")
        if kind == "frame":
            self.frame = event
        elif kind == "end":
            if self.live:
                code = self.process.exitcode
                self.state, self.message = "error", f"the worker ended (exit code {code})"
                self.history.append({"type": "status", "state": "error", "message": self.message})
        else:
            if kind == "status":
                self.state, self.message = event["state"], event.get("message")
            elif kind == "measure":
                self.measuring = None
            self.history.append(event)
        for queue in self.watchers:
            queue.put_nowait(event)

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "algo": self.spec.algo, "env": self.spec.env_key,
                "label": self.spec.label, "state": self.state, "message": self.message,
                "pid": self.process.pid, "steps": self.spec.steps}  # fmt: skip


class Manager:
    """Starts, watches, stops and cleans up the runs of one server."""

    def __init__(self, root: Path, max_runs: int, loop: asyncio.AbstractEventLoop):
        self.root, self.max_runs, self.loop = root, max_runs, loop
        self.runs: dict[str, Run] = {}
        # Numbered on from the runs already under root (a restarted server reuses its root).
        numbers = [int(p.name[:3]) for p in root.glob("[0-9][0-9][0-9]-*")]
        self.counter = itertools.count(max(numbers, default=0) + 1)
        self.context = mp.get_context("spawn")
        self.closing = False

    def live(self) -> int:
        return sum(run.live for run in self.runs.values())

    def measuring(self) -> int:
        return sum(run.measuring is not None for run in self.runs.values())

    def start(self, spec: RunSpec) -> Run:
        """A new worker for ``spec`` (already checked), if there is room."""
        if self.closing:
            raise Busy("the server is shutting down")
        if self.live() >= self.max_runs:
            raise Busy(
                f"{self.max_runs} runs are already training (the server's --max-runs): stop one "
                "or wait for one to finish"
            )
        run_id = f"{next(self.counter):03d}-{spec.algo}-{spec.env_key}"
        path = self.root / run_id
        parent, child = self.context.Pipe()
        process = self.context.Process(target=worker.main, args=(child, spec, str(path)),
                                       name=f"pgrad-playground-{run_id}", daemon=True)  # fmt: skip
        process.start()
        child.close()
        run = Run(run_id, spec, path, process, parent)
        self.runs[run_id] = run
        self._pump(run, run.process, run.conn, run.ended)
        return run

    def _pump(
        self, run: Run, process: BaseProcess, conn: Connection, ended: threading.Event
    ) -> None:
        """A thread that forwards ``conn``'s events to ``run``, joins ``process`` at EOF (the only
        thread that does), then sets ``ended``."""

        def forward() -> None:
            answered = False
            while True:
                try:
                    event = conn.recv()
                except (EOFError, OSError):
                    break
                answered = True
                self.loop.call_soon_threadsafe(run.publish, event)
            process.join()
            conn.close()
            ended.set()
            if process is run.process:
                self.loop.call_soon_threadsafe(run.publish, END)
            elif not answered:  # the measuring process died without an answer
                error = {"type": "measure", "error": f"measuring ended ({process.exitcode})"}
                self.loop.call_soon_threadsafe(run.publish, error)

        threading.Thread(target=forward, daemon=True, name=f"pump-{process.name}").start()

    def command(self, run: Run, command: str) -> None:
        """``pause`` or ``resume`` a live run."""
        if run.live:
            self._send(run, command)
            run.state = "paused" if command == "pause" else "running"
            run.publish({"type": "status", "state": run.state})

    def stop(self, run: Run) -> None:
        """Ask the worker to stop; a reaper kills it if it has not ended within the grace."""
        if not run.ended.is_set():
            self._send(run, "stop")
            threading.Thread(target=_reap, args=(run.process, run.ended), daemon=True).start()
        if run.measuring is not None and not run.measured.is_set():
            run.measuring.terminate()

    def measure(self, run: Run) -> None:
        """Measure the gradient estimators at ``run``'s latest checkpoint, in the background."""
        if run.spec.env_key == RPS:
            raise PgradError("the estimator lab measures policies of Gymnasium envs")
        if run.measuring is not None:
            raise PgradError("already measuring this run")
        if self.measuring() >= self.max_runs:
            raise Busy(
                f"{self.max_runs} runs are already being measured (the server's --max-runs): "
                "wait for one to finish"
            )
        found = runs.checkpoints(run.path) if run.path.is_dir() else []
        if not found:
            raise PgradError("no checkpoint yet (one is written every 5,000 steps): wait a little")
        copy = self.root / ".measure" / run.id
        shutil.rmtree(copy, ignore_errors=True)
        (copy / "checkpoints").mkdir(parents=True)
        shutil.copy2(run.path / "config.yaml", copy / "config.yaml")
        shutil.copy2(found[-1], copy / "checkpoints" / found[-1].name)
        parent, child = self.context.Pipe()
        args = (child, run.spec.env_id, str(copy), run.spec.seed)
        process = self.context.Process(target=measure.main, args=args, daemon=True)
        process.start()
        child.close()
        run.measuring, run.measured = process, threading.Event()
        run.publish({"type": "measuring", "checkpoint": found[-1].name})
        self._pump(run, process, parent, run.measured)

    def begin_shutdown(self) -> None:
        """Stop every run and end every page's stream (the server is going down)."""
        self.closing = True
        for run in self.runs.values():
            self.stop(run)
            for queue in run.watchers:
                queue.put_nowait(END)

    def shutdown(self) -> None:
        """Stop every child and wait for all of them (the last thing the server does)."""
        self.begin_shutdown()
        for run in self.runs.values():
            _reap(run.process, run.ended)
            if run.measuring is not None:
                _reap(run.measuring, run.measured, grace=0.0)

    def _send(self, run: Run, command: str) -> None:
        with contextlib.suppress(OSError):  # already gone: the pump publishes its end
            run.conn.send(command)


def _reap(process: BaseProcess, ended: threading.Event, grace: float = STOP_GRACE_S) -> None:
    """Wait up to ``grace`` seconds for ``process`` to end (``ended``: its pump joined it), then
    SIGTERM it, then SIGKILL it."""
    if not ended.wait(grace):
        process.terminate()
    if not ended.wait(5.0):
        process.kill()
    ended.wait()
