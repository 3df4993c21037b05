"""Shared fixtures: the real MovieLens files from ../shared/data (never copied into the repository)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Maps computed by the tests (and the servers they start) are kept in a temporary cache home."""
    before = os.environ.get("RECENGINE_CACHE")
    os.environ["RECENGINE_CACHE"] = str(tmp_path_factory.mktemp("cache-home"))
    yield
    if before is None:
        os.environ.pop("RECENGINE_CACHE", None)
    else:
        os.environ["RECENGINE_CACHE"] = before


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


CHROMIUM = Path(os.environ.get("RECENGINE_CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (never ``playwright install``: it downloads a browser).

    scripts/test.sh installs the ``chromium`` package when it is missing and it runs as root; the
    browser tests are skipped only where that is impossible (not root, or no apt-get), and fail
    where it should have worked, so CI cannot quietly stop running them."""
    if not CHROMIUM.exists():
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            why = "not root" if os.geteuid() != 0 else "no apt-get"
            pytest.skip(f"{CHROMIUM} is missing and cannot be installed here ({why}); browser tests need it")
        pytest.fail(f"{CHROMIUM} is missing; scripts/test.sh installs it (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield chromium
        finally:
            chromium.close()
