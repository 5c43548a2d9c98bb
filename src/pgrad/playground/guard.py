"""What requests the playground lets in: an ASGI middleware in front of every route.

- The ``Host`` header must name the address the server is bound to, with its port (the loopback
  names when bound to loopback): a page on another site that re-points its own domain at
  127.0.0.1 (DNS rebinding) sends its own host name, and is refused with 403. A server bound to
  every interface (``--host 0.0.0.0`` or ``::``, which its user chose to open to the network)
  cannot know the names it is reached by, and takes any.
- A state-changing request (POST, PUT, PATCH, DELETE) that carries an ``Origin`` must come from
  the server's own origin: another site cannot start or stop runs from a visitor's browser (403).
- A request body is at most ``MAX_BODY`` bytes: a larger declared ``Content-Length`` is answered
  with 413 before any of it is read, and a chunked body is cut off once it passes the limit.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOCAL = ("127.0.0.1", "localhost", "::1")
"""The loopback names: a server bound to one of them answers to all three."""
WILDCARD = ("0.0.0.0", "::")
"""Every interface: a server bound so takes any Host."""
MAX_BODY = 64 * 1024
"""Bytes a request body may have (a run's form is a few hundred)."""
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


def host_names(host: str, port: int) -> set[str] | None:
    """The ``Host`` header values a server bound to ``host:port`` answers to (lower case); None
    (any) for a wildcard bind."""
    if host in WILDCARD:
        return None
    hosts = LOCAL if host.lower() in LOCAL else (host.lower(),)
    shown = [f"[{h}]" if ":" in h else h for h in hosts]
    return {f"{h}:{port}" for h in shown} | (set(shown) if port == 80 else set())


class Guard:
    """Refuses requests for another host, cross-site state changes and oversized bodies."""

    def __init__(self, app: ASGIApp, hosts: set[str] | None, max_body: int = MAX_BODY):
        self.app, self.hosts, self.max_body = app, hosts, max_body
        self.origins = None if hosts is None else {f"http://{h}" for h in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host, origin = headers.get("host", ""), headers.get("origin")
        length = headers.get("content-length", "0")
        if self.hosts is not None and host.lower() not in self.hosts:
            refusal = JSONResponse({"detail": f"refused: wrong Host header {host!r}"}, 403)
        elif scope["method"] in UNSAFE and origin and not self._same_site(origin, host):
            refusal = JSONResponse({"detail": f"refused: cross-site request from {origin}"}, 403)
        elif not length.isdigit() or int(length) > self.max_body:
            refusal = JSONResponse({"detail": self._too_large}, 413)
        else:
            await self.app(scope, self._capped(receive), send)
            return
        await refusal(scope, receive, send)

    def _same_site(self, origin: str, host: str) -> bool:
        """``origin`` is this server's own: one of its names, or (a wildcard bind) the host the
        request was sent to."""
        allowed = self.origins if self.origins is not None else {f"http://{host.lower()}"}
        return origin.lower() in allowed

    @property
    def _too_large(self) -> str:
        return f"the request body must be at most {self.max_body:,} bytes"

    def _capped(self, receive: Receive) -> Receive:
        """``receive``, raising 413 once the body read so far passes the limit."""
        seen = 0

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise HTTPException(413, self._too_large)
            return message

        return capped
