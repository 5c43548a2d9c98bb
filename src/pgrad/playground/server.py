"""``serve``: run the playground under uvicorn until Ctrl-C or SIGTERM, then end every worker.

uvicorn waits for open connections before it shuts the app down, and the page's event streams
never close by themselves; so the first thing a shutdown signal does is ask every worker to stop
and end every stream. The app's shutdown then waits for the workers (killing any that hang).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import FrameType

import uvicorn

from pgrad.playground.app import create_app

LOCAL = ("127.0.0.1", "localhost", "::1")


class Server(uvicorn.Server):
    """uvicorn's server, with the playground's runs stopped first on a shutdown signal."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        manager = getattr(self.config.app.state, "manager", None)
        if manager is not None:
            manager.loop.call_soon_threadsafe(manager.begin_shutdown)
        super().handle_exit(sig, frame)


def serve(host: str, port: int, root: Path, max_runs: int) -> None:
    """Serve the playground on ``host:port``; run directories go under ``root``."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    if host not in LOCAL:
        print(
            f"warning: --host {host} lets other machines reach the playground, which has no "
            "login: anyone who can connect can start runs on this machine",
            file=sys.stderr,
        )
    app = create_app(root, max_runs)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                            timeout_graceful_shutdown=10)  # fmt: skip
    shown = f"[{host}]" if ":" in host else host
    print(f"pgrad playground: http://{shown}:{port}/  (runs in {root}; Ctrl-C stops)", flush=True)
    Server(config).run()
