"""Shared fixtures: the real MovieLens files from ../shared/data (never copied into the repository)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    env = os.environ.get("RECENGINE_TEST_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def mlsmall_dir() -> Path:
    """The real ml-latest-small directory (GroupLens files)."""
    d = shared_data_dir() / "ml-latest-small"
    if not (d / "ratings.csv").exists():
        pytest.skip(f"ml-latest-small not found at {d}")
    return d


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """The real ml-100k directory, built once by ../shared/data/get-ml-100k into .data/ (gitignored)."""
    dest = REPO / ".data" / "ml-100k"
    if (dest / "u.data").exists() and (dest / "ua.test").exists():
        return dest
    script = shared_data_dir() / "get-ml-100k"
    if not script.exists():
        pytest.skip(f"no ml-100k and no builder at {script}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ml-100k.", dir=dest.parent))
    try:
        subprocess.run([sys.executable, str(script), str(tmp / "out")], check=True, capture_output=True)
        try:
            os.rename(tmp / "out", dest)
        except OSError:
            if not (dest / "u.data").exists():  # someone else won the race only if the files are there
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
