"""Small pieces every command shares: ``--set`` parsing, JSON output, the stderr console."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from rich.console import Console

from recengine.errors import ConfigError

err_console = Console(stderr=True)
out_console = Console()


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
