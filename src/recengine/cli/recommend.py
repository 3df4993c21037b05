"""``recengine recommend``: top-K items for a user, with titles where the data set has them."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from recengine.cli.common import err_console, out_console, parse_sets, print_json


def register(app: typer.Typer) -> None:
    app.command("recommend")(recommend)


def recommend(
    user: Annotated[list[str], typer.Option(help="external user id (repeatable)")],
    data: Annotated[str, typer.Option(help="data set name in the data home, or its directory")] = "ml-100k",
    model: Annotated[str, typer.Option(help="model name, fitted on all of the data")] = "bias",
    k: Annotated[int, typer.Option("-k", "--k", help="how many items", min=1, max=10_000)] = 10,
    include_seen: Annotated[bool, typer.Option("--include-seen", help="also recommend rated items")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="model parameter key=value")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")] = False,
) -> None:
    """Fit MODEL on every rating of DATA and list the top-K items for each --user."""
    from recengine.data.load import load_dataset
    from recengine.models.registry import create

    ds = load_dataset(data)
    with err_console.status(f"fitting {model} on {ds.name}"):
        m = create(model, parse_sets(set_)).fit(ds.interactions)
    ids, scores = m.recommend(np.asarray(user), k, exclude_seen=not include_seen)
    titles: dict[Any, str] = {}
    if ds.items is not None and "title" in ds.items.columns:
        titles = dict(zip(ds.items["item"].to_list(), ds.items["title"].to_list(), strict=True))
    out: list[dict[str, Any]] = []
    for u, row_ids, row_scores in zip(user, ids, scores, strict=True):
        recs = [
            {"item": i.item(), "title": titles.get(i.item()), "score": float(s)}
            for i, s in zip(row_ids, row_scores, strict=True)
            if np.isfinite(s)
        ]
        out.append({"user": u, "recommendations": recs})
    if json_out:
        print_json({"model": model, "data": ds.name, "k": k, "users": out})
        return
    for entry in out:
        table = Table(title=f"top {k} for user {entry['user']} ({model} on {ds.name})")
        table.add_column("#", justify="right")
        table.add_column("item", justify="right")
        table.add_column("title")
        table.add_column("score", justify="right")
        for n, r in enumerate(entry["recommendations"], 1):
            table.add_row(str(n), str(r["item"]), r["title"] or "", f"{r['score']:.3f}")
        out_console.print(table)
