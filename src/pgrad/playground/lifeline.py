"""What ties a child process to the server: a locked event channel, and a control thread that
obeys pause/resume/stop and ends the process when the server is gone.

The server may die without cleaning up (SIGKILL). Its end of the pipe then closes, so the
child's ``recv`` meets EOF; the thread also watches ``os.getppid()`` in case the pipe is held
open elsewhere. Either way the child exits at once: a playground run nobody watches is over.
"""

from __future__ import annotations

import math
import os
import threading
from multiprocessing.connection import Connection
from typing import Any

POLL_S = 0.5


def plain(value: Any) -> Any:
    """``value`` with NaN and infinities as None (JSON has no NaN), numbers as Python floats."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if getattr(value, "ndim", 0) > 0:  # a NumPy array
        return plain(value.tolist())
    if isinstance(value, float) or (hasattr(value, "item") and not isinstance(value, int)):
        number = float(value)
        return number if math.isfinite(number) else None
    return value


class Channel:
    """Events to the server, from any thread of the child."""

    def __init__(self, conn: Connection):
        self.conn, self.lock = conn, threading.Lock()

    def send(self, event: dict[str, Any]) -> None:
        with self.lock:
            try:
                self.conn.send(plain(event))
            except (BrokenPipeError, ConnectionResetError, EOFError):
                os._exit(0)  # the server is gone


class Control(threading.Thread):
    """Reads the server's commands (``pause``, ``resume``, ``stop``); exits the process when the
    server goes away."""

    def __init__(self, conn: Connection):
        super().__init__(daemon=True, name="pgrad-playground-control")
        self.conn, self.parent = conn, os.getppid()
        self.stopped = threading.Event()
        self.running = threading.Event()
        self.running.set()

    def run(self) -> None:
        while True:
            try:
                ready = self.conn.poll(POLL_S)
                command = self.conn.recv() if ready else None
            except (EOFError, OSError):
                os._exit(0)
            if os.getppid() != self.parent:
                os._exit(0)
            if command == "pause":
                self.running.clear()
            elif command == "resume":
                self.running.set()
            elif command == "stop":
                self.stopped.set()
                self.running.set()

    @property
    def paused(self) -> bool:
        return not self.running.is_set()

    def wait_while_paused(self) -> None:
        """Block while paused (a stop ends the pause)."""
        self.running.wait()
