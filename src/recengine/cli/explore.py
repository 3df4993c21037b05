"""``recengine explore MODEL_DIR --out DIR``: maps, clusters and neighbours of a model's embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from recengine.cli.common import check_output_path, err_console, out_console, print_json


def register(app: typer.Typer) -> None:
    app.command("explore")(explore)


def explore(
    model_dir: Annotated[
        Path, typer.Argument(metavar="MODEL_DIR", help="a model directory from `recengine train`")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="directory for the PNGs, report.html and explore.json: new, empty or an earlier report",
        ),
    ],
    k: Annotated[int, typer.Option("--k", help="number of clusters", min=2)] = 12,
    method: Annotated[
        Literal["kmeans", "agglomerative", "both"],
        typer.Option(help="clustering: kmeans | agglomerative | both"),
    ] = "both",
    titles: Annotated[
        list[str] | None,
        typer.Option(
            "--titles",
            metavar="TITLE",
            help="title or item id for a neighbour table (repeatable) [default: most rated]",
        ),
    ] = None,
    users: Annotated[
        list[str] | None,
        typer.Option(
            "--users",
            metavar="USER",
            help="user id for a similar-users table (repeatable) [default: most active]",
        ),
    ] = None,
    neighbours: Annotated[int, typer.Option(help="neighbours per table", min=1, max=1000)] = 10,
    min_ratings: Annotated[
        int, typer.Option(help="ratings an item needs to be offered as a neighbour and to be measured", min=0)
    ] = 10,
    max_items: Annotated[
        int | None,
        typer.Option(
            help="map at most this many items (seeded subsample beyond) [default: 50000 with openTSNE, "
            "10000 with scikit-learn]",
            min=1,
        ),
    ] = None,
    tsne: Annotated[
        Literal["auto", "opentsne", "sklearn"],
        typer.Option(help="t-SNE implementation: auto | opentsne | sklearn"),
    ] = "auto",
    no_k_selection: Annotated[
        bool, typer.Option("--no-k-selection", help="skip the inertia/silhouette curves over k")
    ] = False,
    seed: Annotated[
        int, typer.Option(help="seeds t-SNE, clusters, subsamples and the random baselines", min=0)
    ] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")] = False,
) -> None:
    """Map MODEL_DIR's item embeddings with t-SNE, cluster them, list nearest neighbours, measure them
    against genres, and write PNGs plus a self-contained report.html into --out."""
    from recengine.explore import ExploreOptions
    from recengine.explore import explore as run

    check_output_path(out, "--out", kind="dir")  # explore refuses a directory of other files itself

    options = ExploreOptions(
        k=k,
        methods=("kmeans", "agglomerative") if method == "both" else (method,),
        titles=titles or None,
        users=users or None,
        neighbours=neighbours,
        min_ratings=min_ratings,
        max_items=max_items,
        k_selection=not no_k_selection,
        seed=seed,
        backend=tsne,
    )
    if json_out:
        summary = run(model_dir, out, options)
    else:
        with err_console.status(f"exploring {model_dir}"):
            summary = run(model_dir, out, options)
    if json_out:
        print_json(summary)
        return
    _print(summary)


def _print(s: dict[str, Any]) -> None:
    where = f"{s['model']} on {s['data']}" if s.get("data") else s["model"]
    m = s["map"]
    sub = f"{m['n_points']:,} of {s['n_items']:,} items" if m["subsampled"] else f"{m['n_points']:,} items"
    out_console.print(
        f"[bold]{where}[/]: {s['n_items']:,} items, {s['dimensions']}-d vectors; "
        f"t-SNE ({m['tsne']['backend']}) of {sub} in {m['tsne'].get('seconds', 0):.1f} s"
    )
    meas = s.get("measures")
    if meas:
        t = Table(title="do the vectors know genres? (model vs random)")
        for col in ("measure", "model", "random", "ratio"):
            t.add_column(col, justify="left" if col == "measure" else "right")
        for meth, r in meas["purity"].items():
            t.add_row(
                f"cluster purity ({meth})", f"{r['observed']:.3f}", f"{r['random']:.3f}", f"{r['ratio']:.2f}×"
            )
        nb = meas["neighbour_genre_share"]
        t.add_row(
            f"neighbours sharing a genre (k={nb['k']})",
            f"{nb['observed']:.3f}",
            f"{nb['random']:.3f}",
            f"{nb['ratio']:.2f}×",
        )
        out_console.print(t)
    for meth, rows in s["clusters"].items():
        t = Table(title=f"{meth} clusters (k={s['k']})")
        for col in ("#", "items", "over-represented genres", "mean rating", "most rated"):
            t.add_column(col, justify="right" if col in ("#", "items", "mean rating") else "left")
        for c in rows:
            mean = "–" if c["mean_rating"] is None else f"{c['mean_rating']:.2f}"
            t.add_row(str(c["cluster"]), str(c["size"]), c["name"], mean, "; ".join(c["top_titles"]))
        out_console.print(t)
    for meth, sug in s["k_suggestions"].items():
        out_console.print(
            f"choosing k ({meth}): elbow at {sug['elbow_k']}, best silhouette at {sug['best_silhouette_k']}"
        )
    for e in s["neighbours"][:5]:
        out_console.print(f"[bold]{e['query']}[/] → " + "; ".join(e["nearest"][:5]))
    out_console.print("written: " + ", ".join(s["files"].values()))
