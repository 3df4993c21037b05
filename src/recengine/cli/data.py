"""``recengine data ...``: fetch, import and describe data sets.

Thin: parses, calls :mod:`recengine.data.fetch` and :func:`recengine.data.load.load_dataset`, prints.
Machine-readable output (``--json``, the fetched path) goes to stdout; progress and notes to stderr.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from recengine.cli.common import print_json

app = typer.Typer(help="Fetch, import and describe data sets.", no_args_is_help=True)


def _home_line() -> str:
    """Where the data home is and why, so users know which variable to set."""
    from recengine.data.home import data_home

    if os.environ.get("RECENGINE_DATA"):
        why = "from $RECENGINE_DATA"
    elif os.environ.get("XDG_DATA_HOME"):
        why = "from $XDG_DATA_HOME; set $RECENGINE_DATA to move it"
    else:
        why = "default; set $RECENGINE_DATA to move it"
    return f"data home: {data_home()} ({why})"


@app.command("fetch")
def fetch_cmd(
    name: Annotated[str, typer.Argument(help="Data set name, e.g. ml-100k (see `recengine data list`).")],
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="A URL (http, https, file), local zip or local directory to use instead of GroupLens.",
        ),
    ] = None,
    checksum: Annotated[
        str | None,
        typer.Option(
            help="Expected checksum of the archive (md5:HEX or sha256:HEX); overrides the pinned one."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Fetch again even if the data set is present.")
    ] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a download bar.")] = True,
) -> None:
    """Download (or import) a MovieLens data set into the data home, verified; prints its directory."""
    from rich.console import Console

    from recengine.data.fetch import archive, fetch, is_complete
    from recengine.data.home import dataset_dir

    archive(name)  # an unknown name fails here, before anything is printed
    err = Console(stderr=True)
    err.print(_home_line(), highlight=False)
    already = not force and is_complete(dataset_dir(name))
    path = fetch(name, source=source, checksum=checksum, force=force, progress=progress)
    if already:
        err.print(f"{name} is already present (use --force to fetch it again)", highlight=False)
    elif source is not None and Path(source).expanduser().is_dir():
        err.print(
            f"{name} imported from {source} (every file read; a directory has no checksum)", highlight=False
        )
    else:
        err.print(f"{name} fetched and verified", highlight=False)
    typer.echo(str(path))


@app.command("list")
def list_cmd(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
) -> None:
    """The known data sets, whether each is in the data home, and where."""
    from rich.console import Console
    from rich.table import Table

    from recengine.data.fetch import ARCHIVES, status
    from recengine.data.home import data_home

    rows = [status(n) for n in ARCHIVES]
    if as_json:
        print_json({"data_home": str(data_home()), "datasets": rows})
        return
    out = Console()
    out.print(_home_line(), highlight=False)
    table = Table("name", "state", "path")
    shown = {"complete": "[green]present[/]", "incomplete": "[yellow]incomplete[/]", "absent": "absent"}
    for r in rows:
        state = shown[r["state"]]
        table.add_row(r["name"], state, r["path"])
    out.print(table)


def _fmt(key: str, value: Any) -> str:
    if key == "rating_scale" and isinstance(value, dict):
        step = f" step {value['step']:g}" if value.get("step") else ""
        return f"{value['low']:g}–{value['high']:g}{step}"
    if key in ("sparsity", "density") and isinstance(value, float):
        return f"{value:.4%}"
    if key.endswith("timestamp") and isinstance(value, int) and not isinstance(value, bool):
        try:
            return f"{datetime.fromtimestamp(value, UTC):%Y-%m-%d %H:%M} UTC ({value})"
        except (OverflowError, OSError, ValueError):  # not Unix seconds after all
            return str(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@app.command("info")
def info_cmd(
    name_or_path: Annotated[
        str, typer.Argument(help="A data set name in the data home, or a directory/file.")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
) -> None:
    """Counts, rating scale, sparsity and duplicates removed for a data set."""
    from rich.console import Console
    from rich.table import Table

    from recengine.data.home import data_home
    from recengine.data.load import load_dataset

    info = load_dataset(name_or_path).info()
    if as_json:
        print_json({**info, "data_home": str(data_home())})
        return
    out = Console()
    out.print(_home_line(), highlight=False)
    table = Table("", "", show_header=False)
    for key, value in info.items():
        table.add_row(key.replace("_", " "), _fmt(key, value))
    out.print(table)
