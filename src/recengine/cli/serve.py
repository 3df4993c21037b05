"""``recengine serve`` (the HTTP server) and ``recengine invoke`` (the serverless handler, run locally)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from recengine.cli.common import err_console
from recengine.errors import ConfigError


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("invoke")(invoke)


def serve(
    models: Annotated[
        list[str], typer.Argument(help="model directories to serve: DIR or NAME=DIR", show_default=False)
    ],
    host: Annotated[
        str, typer.Option(help="address to listen on (0.0.0.0 for every interface)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (SageMaker containers use 8080)", min=0, max=65535)] = 8080,
    store: Annotated[
        str | None,
        typer.Option(
            help="feedback store: a SQLite file, sqlite://PATH or postgresql://… (default: data home)"
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="require this key in the X-API-Key header (every route but /ping)",
            envvar="RECENGINE_API_KEY",
        ),
    ] = None,
    default: Annotated[
        str | None, typer.Option(help="name of the default model (default: the first)")
    ] = None,
    max_body_bytes: Annotated[int, typer.Option(help="larger request bodies are refused with 413", min=1)] = 8
    * 1024
    * 1024,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    workers: Annotated[
        int,
        typer.Option(
            help="worker processes (one Python process carries about one core; try one per core)",
            min=1,
            max=64,
        ),
    ] = 1,
) -> None:
    """Serve MODEL directories over HTTP: SageMaker's /ping and /invocations, and the REST API under
    /v1 (OpenAPI at /docs). SIGHUP or POST /v1/admin/reload reloads a model without dropping requests
    (with --workers, by replacing the workers one at a time)."""
    import uvicorn
    from uvicorn.config import LOG_LEVELS

    from recengine.serving.app import create_app

    if log_level not in LOG_LEVELS:
        raise typer.BadParameter(f"choose one of {', '.join(LOG_LEVELS)}", param_hint="--log-level")
    _check_listen(host, port)
    if workers > 1:
        _serve_workers(models, host, port, store, api_key, default, max_body_bytes, log_level, workers)
        return
    app = create_app(
        models,
        default=default,
        store_url=store,
        api_key=api_key,
        max_body_bytes=max_body_bytes,
        reload_on_sighup=True,
        tune_process=True,  # one kernel thread per request; loaded models out of the cyclic GC
    )
    err_console.print(f"serving {', '.join(app.state.registry.names())} on http://{host}:{port}")
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def _check_listen(host: str, port: int) -> None:
    """Bind once before loading any model, so that a busy port or an unknown host is one clear error
    at start rather than uvicorn's log line after the models have loaded."""
    import socket

    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise ConfigError(f"--host {host}: cannot resolve it ({e})") from None
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind(addr)
        except OSError as e:
            raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def _serve_workers(
    models: list[str],
    host: str,
    port: int,
    store: str | None,
    api_key: str | None,
    default: str | None,
    max_body_bytes: int,
    log_level: str,
    workers: int,
) -> None:
    """``--workers N``: the models are verified here once, then N processes each build the app."""
    import uvicorn

    from recengine.serving import workers as w
    from recengine.serving.store import open_store

    names = w.verify(models, default)
    open_store(store).close()  # the store's tables exist before workers race to create them
    cfg = w.settings(
        models,
        default=default,
        store_url=store,
        api_key=api_key,
        max_body_bytes=max_body_bytes,
        workers=workers,
    )
    os.environ[w.ENV] = json.dumps(cfg)
    err_console.print(f"serving {', '.join(names)} on http://{host}:{port} with {workers} workers")
    uvicorn.run(
        "recengine.serving.workers:app_from_env",
        factory=True,
        host=host,
        port=port,
        log_level=log_level,
        workers=workers,
        **w.supervisor_options(),
    )


def invoke(
    event: Annotated[str, typer.Option("--event", help="the Lambda event as a JSON file, or - for stdin")],
    rating_model: Annotated[
        Path | None,
        typer.Option(help="model directory answering 'rating' events (default: $RECENGINE_RATING_MODEL)"),
    ] = None,
    rec_model: Annotated[
        Path | None,
        typer.Option(
            help="binary classifier answering 'recommendation' events (default: the rating model, > 3)"
        ),
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(help="call a running `recengine serve` at this URL instead of loading models"),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="print the handler's return value as JSON")
    ] = False,
) -> None:
    """Run the serverless handler on one event, as Lambda would, and print its answer."""
    from recengine.serving import lambda_handler as lh

    if event != "-" and not Path(event).is_file():
        raise ConfigError(f"--event {event}: no such file (give a JSON file, or - for stdin)")
    text = sys.stdin.read() if event == "-" else Path(event).read_text(encoding="utf-8")
    try:
        payload = json.loads(text)
    except ValueError as e:
        raise lh.EventError(f"the event is not valid JSON: {e}") from None
    env = dict(os.environ)
    for key, value in ((lh.ENV_RATING, rating_model), (lh.ENV_REC, rec_model), (lh.ENV_URL, endpoint)):
        if value is not None:
            env[key] = str(value)
    answer = lh.from_env(env)(payload)
    if json_out:
        sys.stdout.write(json.dumps(answer) + "\n")
        return
    for line in [answer] if isinstance(answer, str) else answer:
        sys.stdout.write(line + "\n")
