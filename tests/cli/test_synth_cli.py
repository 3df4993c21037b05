"""``recengine synth`` refuses, before it draws anything, what would overwrite a user's files or could
never finish: one ``error:`` line and exit status 2, the user's files as they were."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

from tests.cli.runner import failed


def test_refuses_a_directory_of_the_users_files(tmp_path, run):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "ratings.csv").write_text("user,item,rating\n1,2,5\n")
    (d / "movies.csv").write_text("my movies\n")
    failed(
        run("synth", str(d), "--preset", "tiny"),
        "holds other files (movies.csv, ratings.csv)",
        "new or empty",
    )
    assert (d / "ratings.csv").read_text() == "user,item,rating\n1,2,5\n"
    assert (d / "movies.csv").read_text() == "my movies\n"
    assert sorted(p.name for p in d.iterdir()) == ["movies.csv", "ratings.csv"]


def test_rewrites_its_own_earlier_output_but_not_beside_other_files(tmp_path, run):
    d = tmp_path / "synth"
    assert run("synth", str(d), "--preset", "tiny").returncode == 0
    (d / ".ratings.csv.0123456789abcdef0123456789abcdef.tmp").write_text("left by a killed run")
    p = run("synth", str(d), "--preset", "tiny", "--seed", "3")
    assert p.returncode == 0, p.stderr
    assert "seed: 3" in (d / "README.txt").read_text()
    (d / "notes.txt").write_text("keep")
    failed(run("synth", str(d), "--preset", "tiny"), f"{d} holds other files (notes.txt)")
    assert (d / "notes.txt").read_text() == "keep" and "seed: 3" in (d / "README.txt").read_text()


def test_a_file_or_a_path_under_a_file_is_one_clear_error(tmp_path, run):
    f = tmp_path / "good.csv"
    f.write_text("user,item,rating\n")
    failed(run("synth", str(f), "--preset", "tiny"), f"OUT_DIR {f}: is a file, not a directory")
    failed(run("synth", str(f / "sub"), "--preset", "tiny"), f"{f} is a file, not a directory")
    assert f.read_text() == "user,item,rating\n"


def test_impossible_and_huge_requests_are_refused_before_writing(tmp_path, run, monkeypatch):
    out = tmp_path / "out"
    huge = ("--ratings", "1000000000000", "--users", "10000000", "--items", "1000000")
    failed(run("synth", str(out), *huge), "1,000,000,000,000 ratings", "at most 1,000,000,000")
    failed(run("synth", str(out), "--ratings", "1000", "--users", "10", "--items", "10"), "need 10 to 100")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: SimpleNamespace(total=10**9, used=10**9, free=1000))
    failed(run("synth", str(out), "--preset", "tiny"), "need about", "GB free")
    assert not out.exists()


def test_negative_seed_is_a_usage_error(tmp_path, run):
    p = run("synth", str(tmp_path / "s"), "--preset", "tiny", "--seed", "-1")
    assert p.returncode == 2 and "--seed" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "s").exists()
