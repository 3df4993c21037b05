"""The ``run`` fixture of the command-line tests: ``recengine ARGS`` in this process."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.cli.runner import Result, in_process


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    return in_process(capsys, monkeypatch)
