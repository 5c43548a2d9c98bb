"""``serve``: run the playground under uvicorn until Ctrl-C or SIGTERM, then end every worker.

Everything that can fail on the command line is checked before anything is written or printed:
the host is not empty, ``--root`` is not a file, and the address can be bound (the sockets bound
here are the ones uvicorn then serves on, so nothing can take the port in between).

uvicorn waits for open connections before it shuts the app down, and the page's event streams
never close by themselves; so the first thing a shutdown signal does is ask every worker to stop
and end every stream. The app's shutdown then waits for the workers (killing any that hang).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from types import FrameType

import uvicorn

from pgrad.errors import PgradError
from pgrad.playground.app import create_app
from pgrad.playground.guard import LOCAL, host_names


class Server(uvicorn.Server):
    """uvicorn's server, with the playground's runs stopped first on a shutdown signal."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        manager = getattr(self.config.app.state, "manager", None)
        if manager is not None:
            manager.loop.call_soon_threadsafe(manager.begin_shutdown)
        super().handle_exit(sig, frame)


def serve(host: str, port: int, root: Path, max_runs: int) -> None:
    """Serve the playground on ``host:port``; run directories go under ``root``."""
    if not host.strip():
        raise PgradError(f"--host {host!r} is empty: give an address to bind, e.g. 127.0.0.1")
    root = root.resolve()
    if root.exists() and not root.is_dir():
        raise PgradError(f"--root {root} is a file: expected a directory for the runs")
    sockets = bind(host, port)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        for sock in sockets:
            sock.close()
        raise PgradError(f"--root {root} cannot be created: {e.strerror}") from None
    if host not in LOCAL:
        print(
            f"warning: --host {host} lets other machines reach the playground, which has no "
            "login: anyone who can connect can start runs on this machine",
            file=sys.stderr,
        )
    app = create_app(root, max_runs, host_names(host, port))
    config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                            timeout_graceful_shutdown=10)  # fmt: skip
    shown = f"[{host}]" if ":" in host else host
    print(f"pgrad playground: http://{shown}:{port}/  (runs in {root}; Ctrl-C stops)", flush=True)
    Server(config).run(sockets=sockets)


def bind(host: str, port: int) -> list[socket.socket]:
    """A socket bound to each address ``host`` resolves to (as uvicorn would bind), or a
    ``PgradError`` naming the host and port."""
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as e:
        raise PgradError(f"cannot listen on {where} (--host, --port): {e.strerror}") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(found):
            sockets.append(sock := socket.socket(family, kind, proto))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as e:
        for sock in sockets:
            sock.close()
        raise PgradError(f"cannot listen on {where} (--host, --port): {e.strerror}") from None
    return sockets
