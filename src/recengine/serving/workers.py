"""Serving from several worker processes: one Python process answers at most about a thousand small
requests a second (the interpreter holds one core), so ``recengine serve --workers N`` runs N copies
of the app behind one socket, under uvicorn's process supervisor.

Each worker builds its app from the settings the parent puts in :data:`ENV` (JSON), loading and
verifying the models itself; the parent verifies them first, so a bad directory stops the server at
start with its error instead of a crash loop. SIGHUP to the parent replaces the workers one at a
time, each new one serving before its old one leaves (uvicorn's rolling restart), so a reload drops
no request; a worker that cannot load its models never starts, and the old ones keep serving.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from recengine.serving.models import ModelRegistry

ENV = "RECENGINE_SERVE_CONFIG"
HEALTHCHECK_SECONDS = 120
DRAIN_SECONDS = 0.5


def settings(
    models: Sequence[str],
    *,
    default: str | None,
    store_url: str | None,
    api_key: str | None,
    max_body_bytes: int,
    workers: int,
) -> dict[str, Any]:
    """What a worker needs to build the app, as JSON-safe values. Store paths are made absolute, so
    that every worker opens the same file whatever directory it starts in."""
    store = store_url
    if store and "://" not in store:
        store = str(Path(store).resolve())
    return {
        "models": list(models),
        "default": default,
        "store_url": store,
        "api_key": api_key,
        "max_body_bytes": max_body_bytes,
        "workers": workers,
    }


def verify(models: Sequence[str], default: str | None) -> list[str]:
    """Load every model once in the parent (then drop them): the same checks a worker makes, so a
    refused directory is reported once, at start. Returns the served names."""
    return ModelRegistry(models, default).names()


def supervisor_options() -> dict[str, Any]:
    """How long a new worker may take to load its models before the supervisor gives up on it
    (uvicorn's default of 5 s is less than loading torch and an ml-20m model on a busy machine, and
    a SIGHUP restart would then be abandoned)."""
    return {"timeout_worker_healthcheck": HEALTHCHECK_SECONDS}


def _drain_before_shutdown() -> None:
    """Make a retiring worker stop accepting, then wait :data:`DRAIN_SECONDS` before it closes idle
    connections.

    uvicorn's graceful shutdown closes every connection that has no request in progress, including
    one it accepted a moment earlier whose request bytes have not been read yet: under steady load
    that dropped about one request per reload (seen by tests/serving/test_workers.py). Waiting first
    lets those requests arrive and be answered; the other workers take new connections meanwhile.
    Patched on uvicorn's Server class inside worker processes only (called from the app factory)."""
    from uvicorn.server import Server

    if getattr(Server.shutdown, "_drains", False):
        return
    original = Server.shutdown

    async def shutdown(self: Server, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        await asyncio.sleep(DRAIN_SECONDS)
        await original(self, sockets)

    shutdown._drains = True  # type: ignore[attr-defined]
    Server.shutdown = shutdown  # type: ignore[method-assign]


def app_from_env() -> FastAPI:
    """The app of one worker process (uvicorn's ``factory``), from the parent's settings in ENV."""
    from recengine.serving.app import create_app

    _drain_before_shutdown()

    raw = os.environ.get(ENV)
    if not raw:
        raise RuntimeError(f"{ENV} is not set: start workers with `recengine serve --workers N`")
    cfg = json.loads(raw)
    return create_app(
        cfg["models"],
        default=cfg["default"],
        store_url=cfg["store_url"],
        api_key=cfg["api_key"],
        max_body_bytes=cfg["max_body_bytes"],
        workers=cfg["workers"],
        tune_process=True,
    )


def restart_workers() -> None:
    """Ask the supervisor (this worker's parent) for a rolling restart of every worker."""
    os.kill(os.getppid(), signal.SIGHUP)
