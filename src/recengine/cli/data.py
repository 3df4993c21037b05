"""``recengine data ...``: fetch, import and describe data sets."""

from __future__ import annotations

import typer

app = typer.Typer(help="Fetch, import and describe data sets.", no_args_is_help=True)
