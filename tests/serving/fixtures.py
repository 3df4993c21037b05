"""Model directories and servers for the serving tests (plain functions, so tests/cli can use them too)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn

from recengine import artifacts
from recengine.data.dataset import Dataset
from recengine.evaluation.protocols import to_binary
from recengine.models.registry import create


def build_models(root: Path, ds: Dataset, names: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Fitted on all of ml-100k and saved with its metadata: a rating model (``bias``), a second
    version of it (``bias-v2``, for reloads), a binary classifier (``binary``: bias on labels rating
    > 3), a ranking-only model (``pop``) and a small ``mf`` (for embeddings); ``names`` picks some."""
    binary = Dataset(ds.name, ds.layout, to_binary(ds.interactions), items=ds.items)
    recipes: dict[str, tuple[str, dict[str, float], Dataset]] = {
        "bias": ("bias", {}, ds),
        "bias-v2": ("bias", {"reg_user": 5.0}, ds),
        "binary": ("bias", {}, binary),
        "pop": ("popularity", {}, ds),
        "mf": ("mf", {"factors": 8, "epochs": 3}, ds),
    }
    out: dict[str, Path] = {}
    for name in names or tuple(recipes):
        algorithm, params, data = recipes[name]
        model = create(algorithm, params).fit(data.interactions)
        out[name] = artifacts.save(model, root / name, dataset=data)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/ping", timeout=2).status_code == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer /ping in {timeout} s")


@contextlib.contextmanager
def thread_server(app: object) -> Iterator[str]:
    """A real uvicorn server on 127.0.0.1 in a thread of this process; stopped on exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def process_server(
    *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``recengine serve ARGS`` as a child process on a free port; killed on exit if still running."""
    port = free_port()
    cmd = [sys.executable, "-m", "recengine", "serve", *args, "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_ready(url, proc=proc)
        except (RuntimeError, TimeoutError) as e:
            proc.kill()
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"{e}; its stderr:\n{err}") from None
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
