"""``recengine recommend``: top-K items for a user, with titles where the data set has them.

Two forms: ``recommend MODEL_DIR --user ID`` loads a model directory written by ``recengine
train`` (titles from its items.parquet); ``recommend --data NAME --model NAME --user ID`` fits the
model on the whole data set first, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from recengine.cli.common import err_console, out_console, parse_sets, print_json


def register(app: typer.Typer) -> None:
    app.command("recommend")(recommend)


def recommend(
    user: Annotated[list[str], typer.Option(help="external user id (repeatable)")],
    model_dir: Annotated[
        Path | None,
        typer.Argument(
            metavar="MODEL_DIR",
            help="a model directory from `recengine train`; without it --model is fitted",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(help="data set name in the data home, or its directory", show_default="ml-100k"),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="model name, fitted on all of the data [default: bias]")
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="how many items", min=1, max=10_000)] = 10,
    include_seen: Annotated[bool, typer.Option("--include-seen", help="also recommend rated items")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="model parameter key=value")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")] = False,
) -> None:
    """Top-K items for each --user, from MODEL_DIR or from --model fitted on every rating of --data."""
    from recengine.errors import ConfigError

    titles: dict[Any, str] = {}
    extra: dict[str, Any] = {}
    if model_dir is not None:
        from recengine import artifacts

        if data is not None or model is not None or set_:
            raise ConfigError("give either MODEL_DIR or --data/--model/--set, not both")
        m = artifacts.load(model_dir)
        titles = artifacts.item_titles(model_dir)
        model_name = m.name
        data_name = (artifacts.info(model_dir).get("data") or {}).get("name")
        extra = {"model_dir": str(model_dir)}
    else:
        from recengine.cli.reading import read_data
        from recengine.models.registry import create

        model_name = model or "bias"
        ds = read_data(data if data is not None else "ml-100k")
        data_name = ds.name
        with err_console.status(f"fitting {model_name} on {ds.name}"):
            m = create(model_name, parse_sets(set_)).use_dataset(ds).fit(ds.interactions)
        if ds.items is not None and "title" in ds.items.columns:
            titles = dict(zip(ds.items["item"].to_list(), ds.items["title"].to_list(), strict=True))
    ids, scores = m.recommend(np.asarray(user), k, exclude_seen=not include_seen)
    out: list[dict[str, Any]] = []
    for u, row_ids, row_scores in zip(user, ids, scores, strict=True):
        recs = [
            {"item": i.item(), "title": titles.get(i.item()), "score": float(s)}
            for i, s in zip(row_ids, row_scores, strict=True)
            if np.isfinite(s)
        ]
        out.append({"user": u, "recommendations": recs})
    if json_out:
        print_json({"model": model_name, "data": data_name, **extra, "k": k, "users": out})
        return
    where = f"{model_name} on {data_name}" if data_name else model_name
    for entry in out:
        table = Table(title=f"top {k} for user {entry['user']} ({where})")
        table.add_column("#", justify="right")
        table.add_column("item", justify="right")
        table.add_column("title")
        table.add_column("score", justify="right")
        for n, r in enumerate(entry["recommendations"], 1):
            table.add_row(str(n), str(r["item"]), r["title"] or "", f"{r['score']:.3f}")
        out_console.print(table)
