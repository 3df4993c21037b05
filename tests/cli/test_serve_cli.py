"""``recengine invoke`` and ``recengine serve`` as a user runs them: real processes, stdout, stderr,
exit status. (The server's HTTP behaviour is tested in tests/serving, test_live starts it this way.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recengine.data.load import load_dataset
from tests.serving.fixtures import build_models


def run(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recengine", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def dirs(ml100k_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_models(
        tmp_path_factory.mktemp("cli-models"), load_dataset(str(ml100k_dir)), ("bias", "binary")
    )


def seed_event(kind: str, pairs: list[tuple[int, int]]) -> str:
    body = json.dumps({"instances": [{"in0": [str(u)], "in1": [str(m)]} for u, m in pairs]})
    return json.dumps({"data": body, "type": kind})


def test_invoke_rating_event_from_a_file(dirs: dict[str, Path], tmp_path: Path) -> None:
    ev = tmp_path / "event.json"
    ev.write_text(seed_event("rating", [(196, 242)]))
    p = run("invoke", "--event", str(ev), "--rating-model", str(dirs["bias"]))
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("The User will likely rate this movie to ") and p.stdout.count("\n") == 1


def test_invoke_recommendation_event_from_stdin(dirs: dict[str, Path]) -> None:
    p = run(
        "invoke",
        "--event",
        "-",
        "--json",
        stdin=seed_event("recommendation", [(1, 50), (405, 1582)]),
        env={"RECENGINE_RATING_MODEL": str(dirs["bias"]), "RECENGINE_REC_MODEL": str(dirs["binary"])},
    )
    assert p.returncode == 0, p.stderr
    answers = json.loads(p.stdout)
    assert len(answers) == 2
    assert set(answers) <= {"We recommend the user this movie.", "We DO NOT recommend the user this movie."}


@pytest.mark.parametrize(
    ("args", "stdin", "fragment"),
    [
        (["--event", "missing.json"], None, "no such file"),
        (["--event", "-"], "{not json", "not valid JSON"),
        (["--event", "-"], '{"data": "{}", "type": "guess"}', "type must be"),
        (["--event", "-", "--endpoint", "foo"], "{}", "not an http(s) URL"),
        (["--event", "-", "--endpoint", "http://[::1"], "{}", "not a URL"),
    ],
)
def test_invoke_errors_are_one_line(
    dirs: dict[str, Path], args: list[str], stdin: str | None, fragment: str
) -> None:
    p = run("invoke", *args, "--rating-model", str(dirs["bias"]), stdin=stdin)
    assert p.returncode == 2 and p.stderr.startswith("error: ") and fragment in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


def test_serve_refuses_a_corrupt_model_at_start(dirs: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(dirs["bias"], bad)
    with (bad / "users.json").open("a") as f:
        f.write(" ")
    p = run("serve", str(bad), "--port", "0", "--store", str(tmp_path / "s.db"))
    assert p.returncode == 2 and "users.json" in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_serve_refuses_a_busy_port_a_bad_host_and_log_level_at_start(
    dirs: dict[str, Path], tmp_path: Path
) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        for args, fragment in (
            (["--port", port], f"cannot listen on 127.0.0.1:{port}"),
            (["--host", "999.1.1.1", "--port", "0"], "--host 999.1.1.1: cannot resolve"),
            (["--log-level", "nosuch", "--port", "0"], "choose one of critical"),
        ):
            p = run("serve", str(dirs["bias"]), *args, "--store", str(tmp_path / "s.db"))
            assert p.returncode == 2 and fragment in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_serve_help_lists_its_options() -> None:
    p = run("serve", "--help")
    assert p.returncode == 0
    for opt in ("--host", "--port", "--store", "--api-key", "--default"):
        assert opt in p.stdout
