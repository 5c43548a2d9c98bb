"""The playground's HTTP API (FastAPI) and its page.

| route | what |
|---|---|
| ``GET /`` , ``/static/...`` | the page and its script and style, from the package |
| ``GET /api/choices`` | envs, algorithms, knobs and their defaults |
| ``POST /api/runs`` | start a run: 201, 422 with pgrad's message, or 429 when full |
| ``GET /api/runs`` | every run of this server and its state |
| ``GET /api/runs/{id}/events`` | server-sent events: rows, frames, warnings, status |
| ``POST /api/runs/{id}/{pause,resume,stop,measure}`` | control a run (measure: 429 when full) |
| ``GET /api/runs/{id}/download`` | the run directory as a zip |

Run ids are made by the server and only looked up, never joined into a path. Every request
passes ``guard.Guard`` first (its Host, its Origin, its body's size).
"""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from pgrad.errors import PgradError
from pgrad.playground import choices
from pgrad.playground.form import FormError, RunRequest, check, defaults
from pgrad.playground.guard import Guard
from pgrad.playground.sessions import END, Busy, Manager, Run

STATIC = Path(str(resources.files("pgrad.playground") / "static"))
PING_S = 2.0
"""Seconds between keep-alive comments on an idle stream (how a closed tab is noticed)."""


def create_app(root: Path, max_runs: int, hosts: set[str] | None) -> FastAPI:
    """The app; its runs go under ``root``, at most ``max_runs`` training (and as many measuring)
    at once; it answers only requests whose Host header is one of ``hosts`` (None: any)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.manager = Manager(root, max_runs, asyncio.get_running_loop())
        yield
        app.state.manager.shutdown()

    app = FastAPI(title="pgrad playground", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)  # fmt: skip
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(Guard, hosts=hosts)
    app.add_exception_handler(RequestValidationError, _invalid)
    table = {a: {e: defaults(a, e) for e in choices.ENVS} for a in choices.ALGOS}

    def manager() -> Manager:
        return app.state.manager

    def lookup(run_id: str) -> Run:
        run = manager().runs.get(run_id)
        if run is None:
            raise HTTPException(404, f"no run {run_id!r}")
        return run

    @app.get("/")
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/choices")
    async def menu() -> dict[str, Any]:
        return {**choices.menu(), "defaults": table, "max_runs": max_runs}

    @app.post("/api/runs", status_code=201)
    async def start(request: RunRequest) -> Any:
        try:
            run = manager().start(check(request))
        except FormError as e:
            return JSONResponse({"detail": str(e), "field": e.field}, status_code=422)
        except Busy as e:
            return JSONResponse({"detail": str(e)}, status_code=429)
        return run.describe()

    @app.get("/api/runs")
    async def listing() -> dict[str, Any]:
        runs = [run.describe() for run in manager().runs.values()]
        return {"runs": runs, "live": manager().live(), "max_runs": max_runs}

    @app.post("/api/runs/{run_id}/{action}")
    async def control(run_id: str, action: Literal["pause", "resume", "stop", "measure"]) -> Any:
        run = lookup(run_id)
        if action == "stop":
            manager().stop(run)
        elif action == "measure":
            try:
                manager().measure(run)
            except Busy as e:
                return JSONResponse({"detail": str(e)}, status_code=429)
            except PgradError as e:
                return JSONResponse({"detail": str(e)}, status_code=409)
        else:
            manager().command(run, action)
        return run.describe()

    @app.get("/api/runs/{run_id}/events")
    async def events(run_id: str) -> StreamingResponse:
        run = lookup(run_id)
        return StreamingResponse(_stream(manager(), run), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})  # fmt: skip

    @app.get("/api/runs/{run_id}/download")
    async def download(run_id: str) -> Response:
        run = lookup(run_id)
        if run.live:
            raise HTTPException(409, "the run is still training: stop it or let it finish first")
        if not (run.path / "config.yaml").is_file():
            raise HTTPException(409, "this run wrote no run directory")
        disposition = f'attachment; filename="{run.id}.zip"'
        return Response(_zip(run), media_type="application/zip",
                        headers={"Content-Disposition": disposition})  # fmt: skip

    return app


async def _stream(manager: Manager, run: Run) -> AsyncIterator[str]:
    """The run's events so far, then live ones, as server-sent events. When the last page
    watching a live run goes away (its tab closed), the run is stopped."""
    queue: asyncio.Queue = asyncio.Queue()
    for event in [*run.history, *([run.frame] if run.frame else [])]:
        queue.put_nowait(event)
    if run.ended.is_set():
        queue.put_nowait(END)
    run.watchers.add(queue)
    try:
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), PING_S)
            except TimeoutError:
                yield ": ping\n\n"
                continue
            yield f"data: {json.dumps(event)}\n\n"
            # An ended run's stream stays open for a measurement still under way.
            if event["type"] == "end" and run.measuring is None:
                return
            if event["type"] == "measure" and run.ended.is_set():
                return
    finally:
        run.watchers.discard(queue)
        if not run.watchers and run.live:
            manager.stop(run)


def _zip(run: Run) -> bytes:
    """The run directory, zipped under a folder of its name."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(run.path.rglob("*")):
            if path.is_file():
                archive.write(path, f"{run.id}/{path.relative_to(run.path)}")
    return buffer.getvalue()


async def _invalid(request: Request, error: Exception) -> JSONResponse:
    """A request the model refuses, as one line naming the field (unknown fields included)."""
    assert isinstance(error, RequestValidationError)
    first = error.errors()[0]
    where = [str(part) for part in first.get("loc", ()) if part != "body"]
    field = where[-1] if where else None
    if first.get("type") == "extra_forbidden":
        message = (f"unknown field {field!r}: the playground takes only env, algo, steps, seed "
                   "and the knobs")  # fmt: skip
    else:
        message = f"{field or 'request'}: {first.get('msg')}"
    return JSONResponse({"detail": message, "field": field}, status_code=422)
