"""``recengine data fetch | list | info``: clean stdout, notes on stderr, exit status 2 on errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recengine.cli import app
from recengine.data.fetch import MARKER
from tests.data.test_fetch import FILES, NAME, make_zip

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("RECENGINE_DATA", str(h))
    return h


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, str]:
    data = make_zip(FILES)
    z = tmp_path / "ml-latest-small.zip"
    z.write_bytes(data)
    return z, "sha256:" + hashlib.sha256(data).hexdigest()


def recengine(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """The installed ``recengine`` command in a child process, with its own data home."""
    exe = Path(sys.executable).with_name("recengine")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "recengine"]
    env = dict(os.environ, RECENGINE_DATA=str(home), NO_COLOR="1")
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=120)


def test_fetch_from_local_zip(home: Path, archive: tuple[Path, str]) -> None:
    z, checksum = archive
    r = runner.invoke(app, ["data", "fetch", NAME, "--from", str(z), "--checksum", checksum])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(home / NAME)  # stdout: just the path, for scripts
    assert "data home:" in r.stderr and str(home) in r.stderr
    assert (home / NAME / "ratings.csv").read_text() == FILES["ratings.csv"]
    assert (home / NAME / MARKER).is_file()

    again = runner.invoke(app, ["data", "fetch", NAME, "--from", str(z), "--checksum", checksum])
    assert again.exit_code == 0
    assert "already present" in again.stderr


def test_fetch_from_local_directory(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name, text in FILES.items():
        (src / name).write_text(text)
    r = runner.invoke(app, ["data", "fetch", NAME, "--from", str(src)])
    assert r.exit_code == 0, r.output
    assert (home / NAME / "movies.csv").read_text() == FILES["movies.csv"]


def test_list_json(home: Path, archive: tuple[Path, str]) -> None:
    z, checksum = archive
    assert (
        runner.invoke(app, ["data", "fetch", NAME, "--from", str(z), "--checksum", checksum]).exit_code == 0
    )
    r = runner.invoke(app, ["data", "list", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["data_home"] == str(home)
    by_name = {d["name"]: d for d in out["datasets"]}
    assert by_name[NAME]["state"] == "complete"
    assert by_name[NAME]["path"] == str(home / NAME)
    assert by_name["ml-1m"]["state"] == "absent"
    assert set(by_name) >= {"ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-latest-small", "ml-latest"}


def test_list_table(home: Path) -> None:
    r = runner.invoke(app, ["data", "list"])
    assert r.exit_code == 0, r.output
    assert "data home" in r.stdout and "RECENGINE_DATA" in r.stdout
    assert "ml-100k" in r.stdout


def test_info_json_in_a_real_process(home: Path, archive: tuple[Path, str]) -> None:
    z, checksum = archive
    fetched = recengine("data", "fetch", NAME, "--from", str(z), "--checksum", checksum, home=home)
    assert fetched.returncode == 0, fetched.stderr
    r = recengine("data", "info", NAME, "--json", home=home)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)  # stdout holds exactly one JSON object, nothing else
    assert info["ratings"] == 7  # 8 rows, (3, 6) twice: the later one is kept
    assert info["rows_read"] == 8
    assert info["duplicates_removed"] == 1
    assert info["users"] == 3
    assert info["items"] == 4
    assert info["rating_scale"]["low"] == 0.5
    assert info["rating_scale"]["high"] == 5.0
    assert info["sparsity"] == pytest.approx(1 - 7 / 12)
    assert info["data_home"] == str(home)


def test_info_table(home: Path, archive: tuple[Path, str]) -> None:
    z, checksum = archive
    assert (
        runner.invoke(app, ["data", "fetch", NAME, "--from", str(z), "--checksum", checksum]).exit_code == 0
    )
    r = runner.invoke(app, ["data", "info", NAME])
    assert r.exit_code == 0, r.output
    assert "data home" in r.stdout
    assert "sparsity" in r.stdout and "41.6667%" in r.stdout
    assert "duplicates removed" in r.stdout


def test_unknown_name_is_one_line_and_status_2(home: Path) -> None:
    r = recengine("data", "fetch", "ml-5k", home=home)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: unknown data set 'ml-5k'")
    assert "ml-100k" in lines[0]
    assert not home.exists()


def test_checksum_mismatch_exits_2_and_leaves_home(home: Path, archive: tuple[Path, str]) -> None:
    z, _ = archive
    r = recengine("data", "fetch", NAME, "--from", str(z), "--checksum", "md5:" + "0" * 32, home=home)
    assert r.returncode == 2
    assert "checksum mismatch" in r.stderr and "expected md5:" + "0" * 32 in r.stderr
    assert "Traceback" not in r.stderr
    assert not home.exists()
