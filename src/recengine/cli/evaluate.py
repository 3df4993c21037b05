"""``recengine evaluate`` and ``recengine compare``: train on a protocol's training rows, report metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.table import Table

from recengine.cli.common import err_console, fmt, out_console, parse_sets, print_json
from recengine.cli.reading import (
    ImplicitOpt,
    ItemColOpt,
    NoHeaderOpt,
    RatingColOpt,
    ScaleOpt,
    SepOpt,
    TimestampColOpt,
    UserColOpt,
    read_data,
)

if TYPE_CHECKING:
    from recengine.evaluation.protocols import Task

SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="model parameter key=value (repeatable)", show_default=False)
]


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
    app.command("compare")(compare)


def evaluate(
    model: Annotated[
        str,
        typer.Option(
            help="model name: global-mean, user-mean, bias, popularity, mf, deep-mf, neumf, object2vec"
        ),
    ],
    protocol: Annotated[str | None, typer.Option(help="a named protocol of PROTOCOLS.md")] = None,
    data: Annotated[
        str | None,
        typer.Option(help="with --protocol: the data set's directory; alone: your own ratings file"),
    ] = None,
    set_: SetOpt = None,
    split: Annotated[
        str, typer.Option(help="own data: random | kfold | temporal | leave-last-out")
    ] = "random",
    test_size: Annotated[float, typer.Option(help="own data: test share (random, temporal)")] = 0.2,
    seed: Annotated[int, typer.Option(min=0, help="own data: split seed")] = 0,
    folds: Annotated[int, typer.Option(help="own data: number of folds for kfold")] = 5,
    task: Annotated[str | None, typer.Option(help="own data: rating | binary | topn")] = None,
    k: Annotated[int, typer.Option(min=1, help="own data: cut-off for top-N metrics")] = 10,
    sep: SepOpt = None,
    no_header: NoHeaderOpt = False,
    user_col: UserColOpt = None,
    item_col: ItemColOpt = None,
    rating_col: RatingColOpt = None,
    timestamp_col: TimestampColOpt = None,
    scale: ScaleOpt = None,
    implicit: ImplicitOpt = False,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")] = False,
) -> None:
    """Train MODEL on each fold's training rows and report its metrics on the test rows."""
    from recengine.errors import ConfigError
    from recengine.evaluation.runner import evaluate_protocol, evaluate_split

    params = parse_sets(set_)

    def on_fold(n: int, row: dict[str, Any]) -> None:
        shown = {key: v for key, v in row.items() if isinstance(v, float) and not key.endswith("seconds")}
        err_console.print(f"[dim]fold {row['fold']}: " + ", ".join(f"{a}={fmt(b)}" for a, b in shown.items()))

    if protocol is not None:
        result = evaluate_protocol(model, protocol, params, data=data, on_fold=on_fold)
    elif data is not None:
        ds = read_data(
            data,
            sep=sep,
            no_header=no_header,
            user_col=user_col,
            item_col=item_col,
            rating_col=rating_col,
            timestamp_col=timestamp_col,
            scale=scale,
            implicit=implicit,
        )
        if task not in (None, "rating", "binary", "topn"):
            raise ConfigError(f"unknown task {task!r}; choose rating, binary or topn")
        chosen = cast("Task | None", task)
        result = evaluate_split(
            model,
            ds,
            split,
            params,
            task=chosen,
            test_size=test_size,
            seed=seed,
            n_folds=folds,
            k=k,
            on_fold=on_fold,
        )
    else:
        raise ConfigError("give --protocol NAME (a named protocol) or --data PATH (your own data)")
    if json_out:
        print_json(result)
    else:
        _print_result(result)


def _metric_keys(result: dict[str, Any]) -> list[str]:
    skip = {"fold", "n_train", "n_test", "users", "cold_user_rows", "cold_item_rows"}
    first = result["folds"][0]
    return [
        key
        for key, v in first.items()
        if key not in skip and not key.endswith("seconds") and isinstance(v, float)
    ]


def _print_result(result: dict[str, Any]) -> None:
    keys = _metric_keys(result)
    table = Table(title=f"{result['model']} on {result['protocol']}")
    table.add_column("fold")
    for key in keys:
        table.add_column(key, justify="right")
    table.add_column("fit s", justify="right")
    for row in result["folds"]:
        table.add_row(row["fold"], *[fmt(row[key]) for key in keys], f"{row['fit_seconds']:.2f}")
    if len(result["folds"]) > 1:
        table.add_row(  # the metrics' mean over the folds; the fit time is their sum, and says so
            "mean", *[fmt(result[key]) for key in keys], f"{result['fit_seconds']:.2f} (sum)", style="bold"
        )
    out_console.print(table)


def compare(
    models: Annotated[
        str, typer.Option(help="comma-separated model names")
    ] = "global-mean,user-mean,bias,popularity",
    protocols: Annotated[
        str, typer.Option(help="comma-separated protocol names")
    ] = "ml100k-u,ml100k-ua,topn-ml100k",
    data: Annotated[
        str | None, typer.Option(help="the data set's directory, if not the data home's copy")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")] = False,
) -> None:
    """Evaluate several models on several protocols and print one table (models that cannot do a
    protocol's task are listed as such, not skipped silently)."""
    from recengine.errors import CapabilityError
    from recengine.evaluation.protocols import get_spec
    from recengine.evaluation.runner import evaluate_protocol, run_context

    names = [m.strip() for m in models.split(",") if m.strip()]
    protos = [p.strip() for p in protocols.split(",") if p.strip()]
    for option, given in (("--models", names), ("--protocols", protos)):
        if not given:
            raise typer.BadParameter("names nothing to run; give comma-separated names", param_hint=option)
    for p in protos:
        get_spec(p)
    results: list[dict[str, Any]] = []
    with err_console.status("evaluating") as status:
        for p in protos:
            for m in names:
                status.update(f"{m} on {p}")
                try:
                    results.append(evaluate_protocol(m, p, data=data))
                except CapabilityError as e:
                    results.append({"protocol": p, "model": m, "skipped": str(e)})
    if json_out:
        print_json({"results": results, **run_context()})
        return
    for p in protos:
        rows = [r for r in results if r["protocol"] == p]
        done = [r for r in rows if "skipped" not in r]
        if not done:
            continue
        keys = _metric_keys(done[0])
        table = Table(title=f"{p} ({get_spec(p).description})")
        table.add_column("model")
        for key in keys:
            table.add_column(key, justify="right")
        table.add_column("fit s", justify="right")
        for r in rows:
            if "skipped" in r:
                table.add_row(r["model"], *["—"] * len(keys), "—", style="dim")
            else:
                table.add_row(r["model"], *[fmt(r[key]) for key in keys], f"{r['fit_seconds']:.2f}")
        out_console.print(table)
