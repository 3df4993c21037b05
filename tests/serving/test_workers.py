"""``recengine serve --workers 2`` on 127.0.0.1: both workers answer and share the feedback store;
a reload replaces every worker without a failed request; a bad model is refused at start and at
reload, and the old workers keep serving."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.serving.fixtures import free_port, process_server


def _children(pid: int) -> set[int]:
    """Live worker processes of the server ``pid`` (Linux /proc): its children started by
    multiprocessing, less multiprocessing's resource tracker."""
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            worker = b"spawn_main" in cmdline and b"resource_tracker" not in cmdline
            if int(fields[1]) == pid and fields[0] != "Z" and worker:
                out.add(int(entry.name))
    return out


def _version(url: str) -> str:
    """The model version of a fresh connection's answer (fresh: it may land on either worker)."""
    with httpx.Client(base_url=url, timeout=30) as c:
        r = c.get("/v1/users/196/recommendations", params={"k": 3})
        assert r.status_code == 200, r.text
        return r.headers["x-model-version"]


def test_workers_share_the_store_and_reload_without_a_failed_request(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    live = tmp_path / "live"
    shutil.copytree(model_dirs["bias"], live)
    store = tmp_path / "feedback.sqlite3"
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    stop = threading.Event()

    def hammer(url: str) -> None:
        while not stop.is_set():
            try:  # a new connection each time, so that both workers are asked
                with httpx.Client(base_url=url, timeout=30) as c:
                    statuses[c.get("/v1/users/196/recommendations", params={"k": 5}).status_code] += 1
            except httpx.HTTPError as e:
                failures.append(repr(e))

    with process_server(str(live), "--store", str(store), "--workers", "2") as (url, proc):
        deadline = time.monotonic() + 60
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers_before = _children(proc.pid)
        assert len(workers_before) == 2

        # A rating written through one connection is read back through others, whichever worker.
        with httpx.Client(base_url=url) as c:
            r = c.post("/v1/users/newcomer/ratings", json={"ratings": [{"item": 50, "rating": 5}]})
            assert r.status_code == 201, r.text
        for _ in range(6):
            with httpx.Client(base_url=url) as c:
                got = c.get("/v1/users/newcomer/ratings").json()["ratings"]
                assert [(x["item"], x["rating"]) for x in got] == [(50, 5.0)]
                recs = c.get("/v1/users/newcomer/recommendations", params={"k": 5}).json()
                assert recs["folded_in"] and 50 not in [x["item"] for x in recs["items"]]

        v1 = _version(url)
        threads = [threading.Thread(target=hammer, args=(url,)) for _ in range(6)]
        for t in threads:
            t.start()
        try:
            with httpx.Client(base_url=url, timeout=60) as admin:
                # Several processes load the served directories: a new path cannot reach them all.
                r = admin.post("/v1/admin/reload", json={"path": str(model_dirs["bias-v2"])})
                assert r.status_code == 422 and "worker processes" in r.json()["detail"]
                # A new model renamed into place, then a reload: every worker is replaced in turn.
                live.rename(tmp_path / "old")
                shutil.copytree(model_dirs["bias-v2"], live)
                r = admin.post("/v1/admin/reload", json={})
                assert r.status_code == 200, r.text
                v2 = r.json()["model"]["version"]
                assert v2 != v1
            deadline = time.monotonic() + 180  # each old worker leaves once its successor serves
            while _children(proc.pid) & workers_before and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not _children(proc.pid) & workers_before
            assert len(_children(proc.pid)) == 2
            assert all(_version(url) == v2 for _ in range(8))

            # A directory that fails verification: the new worker never starts, the old ones serve.
            (live / "weights.safetensors").write_bytes(b"truncated")
            workers_now = _children(proc.pid)
            proc.send_signal(signal.SIGHUP)
            time.sleep(3)
            assert _children(proc.pid) >= workers_now
            assert all(_version(url) == v2 for _ in range(4))
        finally:
            stop.set()
            for t in threads:
                t.join()
    assert not failures, failures[:3]
    assert set(statuses) == {200}, statuses
    assert sum(statuses.values()) > 20


def test_a_bad_model_stops_the_server_at_start(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(model_dirs["bias"], bad)
    (bad / "weights.safetensors").write_bytes(b"truncated")
    cmd = [sys.executable, "-m", "recengine", "serve", str(bad), "--workers", "2", "--port", str(free_port())]
    cmd += ["--store", str(tmp_path / "s.sqlite3")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert done.returncode != 0
    assert "weights.safetensors" in done.stderr
