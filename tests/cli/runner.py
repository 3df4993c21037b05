"""Running ``recengine`` in the test process, and the check every refusal shares."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def in_process(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """``recengine ARGS`` through the console entry point, in this process."""
    from recengine.cli import main

    def call(*args: str) -> Result:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["recengine", *args])
        code = 0
        try:
            main()
        except SystemExit as e:
            code = int(e.code or 0)
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return call


def failed(p: Result | subprocess.CompletedProcess[str], *needles: str) -> None:
    """One ``error:`` line, exit status 2, no traceback, and each needle in the message."""
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr and p.stderr.startswith("error: "), p.stderr
    for n in needles:
        assert n in p.stderr, p.stderr
