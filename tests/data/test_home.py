"""Where data sets and kept results live: the environment decides, in a fixed order."""

from __future__ import annotations

from pathlib import Path

import pytest

from recengine.data.home import cache_home, data_home


def test_homes_follow_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RECENGINE_DATA", "RECENGINE_CACHE", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_home() == tmp_path / ".local" / "share" / "recengine"
    assert cache_home() == tmp_path / ".cache" / "recengine"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xd"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xc"))
    assert data_home() == tmp_path / "xd" / "recengine" and cache_home() == tmp_path / "xc" / "recengine"
    monkeypatch.setenv("RECENGINE_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("RECENGINE_CACHE", str(tmp_path / "c"))
    assert data_home() == tmp_path / "d" and cache_home() == tmp_path / "c"
