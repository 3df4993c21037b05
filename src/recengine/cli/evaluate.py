"""``recengine evaluate``: train a model on a protocol's training part and report its metrics."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
