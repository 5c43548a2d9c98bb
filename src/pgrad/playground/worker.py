"""One playground run, in a process of its own: ``pgrad.train`` with a callback that streams
each metrics row, the watchdog's warnings and the policy to the server, and obeys pause/stop.

The run directory is an ordinary one (``pgrad eval``/``report`` read it). The process ends with
the run, on ``stop`` (the callback returns False: a final checkpoint, summary
``interrupted: "callback"``), or at once when the server is gone (``lifeline``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from pgrad.errors import PgradError
from pgrad.playground.choices import RPS
from pgrad.playground.lifeline import Channel, Control

SUMMARY_KEYS = ("mean_return", "std_return", "episodes", "steps", "wall_time_s", "interrupted")


@dataclass(frozen=True)
class RunSpec:
    """A checked run: what ``form.check`` made of the browser's request."""

    algo: str
    env_key: str
    env_id: str
    steps: int
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict)
    label: str = ""


def main(conn: Connection, spec: RunSpec, run_dir: str) -> None:
    """The worker process: run ``spec`` into ``run_dir``, reporting over ``conn``."""
    channel, control = Channel(conn), Control(conn)
    control.start()
    channel.send({"type": "status", "state": "running", "pid": os.getpid()})
    try:
        if spec.env_key == RPS:
            from pgrad.playground.rps import play

            lr = float(spec.overrides.get("learning_rate", 0.1))
            play(spec.steps, lr, spec.seed, channel, control)
        else:
            train_and_watch(spec, run_dir, channel, control)
    except PgradError as e:
        channel.send({"type": "status", "state": "error", "message": str(e)})
    except Exception as e:  # shown on the page rather than lost in the server's terminal
        channel.send({"type": "status", "state": "error", "message": f"{type(e).__name__}: {e}"})


def train_and_watch(spec: RunSpec, run_dir: str, channel: Channel, control: Control) -> None:
    from pgrad.playground.viewer import Viewer
    from pgrad.train import train
    from pgrad.watchdog import Watchdog

    viewer = Viewer(spec.env_id, channel, control, spec.seed)
    viewer.start()
    watchdog = Watchdog(spec.steps)  # train's own watchdog logs to the run; this one, live

    def callback(step: int, row: dict[str, float], model: Any) -> bool:
        channel.send({"type": "row", "step": step, **row})
        for message in watchdog.update(step, row):
            channel.send({"type": "warning", "step": step, "message": message})
        viewer.show(model)
        control.wait_while_paused()
        return not control.stopped.is_set()

    try:
        run = train(spec.algo, spec.env_id, steps=spec.steps, seed=spec.seed, run_dir=run_dir,
                    callback=callback, **spec.overrides)  # fmt: skip
    finally:
        viewer.stop()
    summary = {k: v for k, v in run.summary.items() if k in SUMMARY_KEYS}
    state = "stopped" if "interrupted" in summary else "finished"
    channel.send({"type": "status", "state": state, "summary": summary})
