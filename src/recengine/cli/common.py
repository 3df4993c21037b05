"""Small pieces every command shares: ``--set`` parsing, output path checks, JSON output, the stderr
console."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console

from recengine.errors import ConfigError
from recengine.paths import existing_ancestor

err_console = Console(stderr=True)
out_console = Console()

ModelDir = Annotated[
    Path, typer.Argument(metavar="MODEL_DIR", help="a model directory written by `recengine train`")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``key=value`` pairs; values are read as JSON where they parse (numbers, true, null, lists)."""
    out: dict[str, Any] = {}
    for raw in items or []:
        key, sep, value = raw.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {raw!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def check_output_path(
    path: Path, what: str, *, kind: Literal["file", "dir"], replaced_whole: bool = False
) -> None:
    """Refuse, before any work is done, an output ``path`` that could not be created.

    Why: otherwise mkdir or rename fails with a traceback, often only after minutes of training.
    The first existing ancestor must be a writable directory; ``path`` itself, when it exists, must
    be a directory where ``kind`` is "dir" and must not be one where ``kind`` is "file". ``what``
    names the argument in the message ("--out"). A directory ``replaced_whole`` (a model directory:
    written beside itself, then renamed into place) needs its parent writable too.
    """
    path = Path(path)
    if replaced_whole and path.is_dir():
        parent = Path(os.path.abspath(path)).parent
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(
                f"{what} {path}: cannot write in {parent}, where it is replaced (permission denied)"
            )
    where = f"{what} {path}"
    if path.exists():
        if kind == "dir" and not path.is_dir():
            raise ConfigError(f"{where}: is a file, not a directory")
        if kind == "file" and path.is_dir():
            raise ConfigError(f"{where}: is a directory; give a file name")
    ancestor = path if kind == "dir" and path.is_dir() else existing_ancestor(path.parent)
    if not ancestor.is_dir():
        raise ConfigError(f"{where}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"{where}: cannot write in {ancestor} (permission denied)")


def _clean(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    if hasattr(o, "item") and callable(o.item):  # numpy scalars
        return _clean(o.item())
    return o


def print_json(obj: Any) -> None:
    """Exactly one JSON object on stdout (NaN/inf become null, so any parser reads it)."""
    sys.stdout.write(json.dumps(_clean(obj), indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)
