"""``recengine train``, ``predict`` and ``similar``: make a model directory, then use it.

Thin: the work is in :mod:`recengine.artifacts`, the models and the training loop; here are only
the arguments, the id lookups at the file edge and the printing.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from recengine.cli.common import check_output_path, err_console, out_console, parse_sets, print_json
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
    import numpy as np
    import polars as pl

    from recengine.data.interactions import IdMap

ModelDir = Annotated[
    Path, typer.Argument(metavar="MODEL_DIR", help="a model directory written by `recengine train`")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("predict")(predict)
    app.command("similar")(similar)


def train(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="model name: bias, mf, deep-mf, neumf, ...")],
    data: Annotated[str, typer.Option(help="data set name in the data home, or a path")],
    out: Annotated[
        Path, typer.Option(help="the model directory to write: new, empty or a model directory to replace")
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="model parameter key=value (repeatable)", show_default=False),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="continue from the last checkpoint (without one: says so and starts from the start)",
        ),
    ] = False,
    checkpoint_dir: Annotated[
        Path | None, typer.Option(help="where epochs are checkpointed (default: OUT.checkpoints)")
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="progress bar on stderr (default: on a terminal)"),
    ] = None,
    include_feedback: Annotated[
        str | None,
        typer.Option(
            "--include-feedback",
            metavar="STORE",
            help="also train on ratings stored by `recengine serve` (SQLite file, sqlite://PATH or postgresql://...)",
        ),
    ] = None,
    sep: SepOpt = None,
    no_header: NoHeaderOpt = False,
    user_col: UserColOpt = None,
    item_col: ItemColOpt = None,
    rating_col: RatingColOpt = None,
    timestamp_col: TimestampColOpt = None,
    scale: ScaleOpt = None,
    implicit: ImplicitOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Fit MODEL on every rating of DATA and save it as a model directory at OUT."""
    from rich.markup import escape

    from recengine import artifacts
    from recengine.data.pairs import is_pairs_file
    from recengine.errors import ConfigError
    from recengine.models.registry import create
    from recengine.training.checkpoint import checkpoint_path, clear_checkpoint

    m = create(model, parse_sets(set_))  # bad names and values fail before the data is read
    check_output_path(out, "--out", kind="dir")
    artifacts.check_writable(out)
    default_ckpt = Path(os.path.abspath(out) + ".checkpoints")
    ckpt = checkpoint_dir if checkpoint_dir is not None else default_ckpt
    check_output_path(
        ckpt, "--checkpoint-dir" if checkpoint_dir is not None else "the checkpoint dir", kind="dir"
    )
    if Path(os.path.abspath(ckpt)).is_relative_to(os.path.abspath(out)):
        raise ConfigError(
            f"--checkpoint-dir {ckpt} is inside --out {out}, which is replaced as a whole when saved; "
            "give a directory outside it"
        )
    if include_feedback is not None:
        _check_store(include_feedback)
    has_checkpoint = checkpoint_path(ckpt).is_file()
    if not resume and has_checkpoint:
        err_console.print(
            f"[yellow]a checkpoint exists in {escape(str(ckpt))}; starting over (--resume continues it)"
        )
    if resume and not has_checkpoint:
        err_console.print(f"no checkpoint in {escape(str(ckpt))}; training from the start", soft_wrap=True)
    show = sys.stderr.isatty() if progress is None else progress
    reading = {"sep": sep, "user_col": user_col, "item_col": item_col, "rating_col": rating_col}
    reading.update(timestamp_col=timestamp_col, scale=scale)
    n_feedback = 0
    ds = None
    if is_pairs_file(data):
        # SageMaker's training input: in0/in1 token lists and a label per line, read by the model
        given = [f"--{k.replace('_', '-')}" for k, v in reading.items() if v is not None]
        given += [o for o, on in (("--no-header", no_header), ("--implicit", implicit)) if on]
        given += ["--include-feedback"] if include_feedback is not None else []
        if given:
            raise ConfigError(
                f"{data} holds Object2Vec pairs (in0, in1, label); {', '.join(given)} apply to ratings files"
            )
        from recengine.models.object2vec import Object2Vec

        if not isinstance(m, Object2Vec):
            raise ConfigError(
                f"{data} holds Object2Vec pairs (in0, in1, label); only object2vec trains on them"
            )
        data_name = Path(data).name
        if show:
            err_console.print(f"training {model} on the pairs of {data_name}")
        t0 = time.perf_counter()
        m.fit_pairs(Path(data), checkpoint_dir=ckpt, resume=resume, progress=show)
        n_rows = int(m.history.get("object2vec", {}).get("rows", 0))
    else:
        ds = read_data(data, no_header=no_header, implicit=implicit, **reading)
        data_name = ds.name
        inter = ds.interactions
        if include_feedback is not None:
            from recengine.serving.store import feedback_interactions, merge_feedback

            fb = feedback_interactions(include_feedback, namespace=ds.name)  # the server's namespace
            inter = merge_feedback(inter, fb)  # feedback wins over training ratings; new ids appended
            n_feedback = len(fb)
        if show:
            err_console.print(f"training {model} on {ds.name} ({len(inter):,} ratings)")
        t0 = time.perf_counter()
        m.use_dataset(ds).fit(inter, checkpoint_dir=ckpt, resume=resume, progress=show)
        n_rows = len(inter)
    seconds = time.perf_counter() - t0
    fit_info = {
        "seconds": seconds,
        "ratings": n_rows,
        "users": len(m.users),
        "items": len(m.items),
        "resumed": resume and has_checkpoint,
        "feedback_ratings": n_feedback,
    }
    artifacts.save(m, out, dataset=ds, fit_info=fit_info)
    clear_checkpoint(ckpt)
    summary = artifacts.info(out)
    result = {
        "model": model,
        "data": data_name,
        "out": str(out),
        "params": m.get_params(),
        "fit_seconds": seconds,
        "fit_info": fit_info,
        "training": summary.get("training"),
        "files": summary.get("files"),
    }
    if json_out:
        print_json(result)
        return
    line = (
        f"saved {model} to {out} ({summary.get('bytes', 0) / 1e6:.2f} MB) after {seconds:.1f} s of training"
    )
    training = summary.get("training") or {}
    if training.get("best_epoch"):
        line += f"; best epoch {training['best_epoch']} of {training['epochs']}"
    out_console.print(line)


def predict(
    model_dir: ModelDir,
    input_: Annotated[
        Path,
        typer.Option(
            "--input",
            help="CSV with columns user,item (TSV by .tsv), or SageMaker JSON Lines instances (in0, in1)",
        ),
    ],
    output: Annotated[
        Path, typer.Option(help="CSV to write: user,item,prediction (JSON Lines answers for JSON Lines)")
    ],
    unknown: Annotated[
        str, typer.Option(help="rows with ids the model does not know: error | skip (CSV only)")
    ] = "error",
    json_out: JsonOpt = False,
) -> None:
    """Predict a rating for every (user, item) row of --input and write them to --output. JSON Lines
    instances are answered as the server's /invocations answers them (SageMaker's batch transform)."""
    import numpy as np
    import polars as pl

    from recengine import artifacts
    from recengine.data.pairs import is_pairs_file
    from recengine.errors import CapabilityError, ConfigError, DataError

    if unknown not in ("error", "skip"):
        raise ConfigError(f"--unknown must be error or skip, got {unknown!r}")
    check_output_path(output, "--output", kind="file")
    if is_pairs_file(input_):
        if unknown != "error":
            raise ConfigError(
                "--unknown skip applies to CSV input; JSON Lines answers keep a line per instance"
            )
        _transform(model_dir, input_, output, json_out)
        return
    m = artifacts.load(model_dir)
    if not m.capabilities.rating:
        raise CapabilityError(f"{m.name} ranks items but does not predict ratings; use recommend")
    pairs = _read_pairs(input_)
    users_s = pairs["user"].str.strip_chars().fill_null("")
    items_s = pairs["item"].str.strip_chars().fill_null("")
    u, i = _lookup(m.users, users_s), _lookup(m.items, items_s)
    bad = (u < 0) | (i < 0)
    if bool(bad.any()) and unknown == "error":
        rows = np.flatnonzero(bad)
        r = int(rows[0])
        what = [f"user {users_s[r]!r}"] if u[r] < 0 else []
        what += [f"item {items_s[r]!r}"] if i[r] < 0 else []
        lines = ", ".join(str(int(x) + 2) for x in rows[:5]) + (", ..." if len(rows) > 5 else "")
        raise DataError(
            f"the model does not know {' nor '.join(what)}; {len(rows)} row(s) with unknown ids "
            f"(lines {lines}); --unknown skip leaves them out",
            input_,
            r + 2,
        )
    ok = ~bad
    preds = m.predict_internal(u[ok], i[ok]) if bool(ok.any()) else np.zeros(0)
    df = pl.DataFrame({"user": users_s.filter(ok), "item": items_s.filter(ok), "prediction": preds})
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    try:
        df.write_csv(tmp)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    result: dict[str, Any] = {
        "model_dir": str(model_dir),
        "model": m.name,
        "input": str(input_),
        "output": str(output),
        "rows": len(pairs),
        "predicted": int(ok.sum()),
        "skipped": int(bad.sum()),
        "mean_prediction": float(preds.mean()) if len(preds) else None,
    }
    if json_out:
        print_json(result)
        return
    skipped = f" (skipped {result['skipped']} rows with unknown ids)" if result["skipped"] else ""
    out_console.print(f"wrote {result['predicted']} predictions to {output}{skipped}")


def similar(
    model_dir: ModelDir,
    item: Annotated[list[str], typer.Option(help="external item id (repeatable)")],
    k: Annotated[int, typer.Option("-k", "--k", help="how many neighbours", min=1, max=10_000)] = 10,
    json_out: JsonOpt = False,
) -> None:
    """The K items nearest each --item by the cosine of the model's item embeddings."""
    import numpy as np

    from recengine import artifacts
    from recengine.errors import CapabilityError

    m = artifacts.load(model_dir)
    try:
        ids, scores = m.similar_items(np.asarray(item), k)
    except CapabilityError as e:
        raise CapabilityError(
            f"{e}; similar needs a model with item embeddings (mf, deep-mf, neumf)"
        ) from None
    titles = artifacts.item_titles(model_dir)
    out: list[dict[str, Any]] = [
        {"item": q, "title": titles.get(_key(m.items, q)), "similar": _rows(row_ids, row_scores, titles)}
        for q, row_ids, row_scores in zip(item, ids, scores, strict=True)
    ]
    if json_out:
        print_json({"model": m.name, "model_dir": str(model_dir), "k": k, "items": out})
        return
    for entry in out:
        name = f" ({entry['title']})" if entry["title"] else ""
        table = Table(title=f"{k} items nearest {entry['item']}{name}")
        table.add_column("#", justify="right")
        table.add_column("item", justify="right")
        table.add_column("title")
        table.add_column("cosine", justify="right")
        for n, r in enumerate(entry["similar"], 1):
            table.add_row(str(n), str(r["item"]), r["title"] or "", f"{r['score']:.3f}")
        out_console.print(table)


def _check_store(store: str) -> None:
    """Refuse a feedback store file that is not there: SQLite would create an empty one and the model
    would train on no feedback at all without a word. Server URLs (postgresql://) are left to the store."""
    from recengine.errors import ConfigError

    text = store.removeprefix("sqlite://")
    if "://" in text or text in ("", ":memory:"):
        return
    path = Path(text).expanduser()
    if not path.exists():
        raise ConfigError(f"no such feedback store: {store}")
    if not path.is_file():
        raise ConfigError(f"feedback store {store} is not a file")


# ----- helpers shared with ``recommend MODEL_DIR`` -----------------------------------------------
def _rows(ids: np.ndarray, scores: np.ndarray, titles: dict[Any, str]) -> list[dict[str, Any]]:
    import numpy as np

    return [
        {"item": i.item(), "title": titles.get(i.item()), "score": float(s)}
        for i, s in zip(ids, scores, strict=True)
        if np.isfinite(s)
    ]


def _key(idmap: IdMap, raw: str) -> Any:
    """The title-table key of an id typed on the command line ("42" → 42 in a numeric map)."""
    if idmap.is_numeric:
        try:
            return int(raw)
        except ValueError:
            return raw
    return raw


def _read_pairs(path: Path) -> pl.DataFrame:
    """The user and item columns of a CSV (TSV by .tsv), as text; the training reader's column
    names (userId, movieId, ...) are taken too, and a line that does not parse is named."""
    import csv

    import polars as pl

    from recengine.data.generic import ALIASES
    from recengine.data.movielens import TableSpec, find_bad_line
    from recengine.errors import DataError

    if not path.is_file():
        raise DataError("no such file" if not path.exists() else "is not a file", path)
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        df = pl.read_csv(path, separator=sep, infer_schema_length=0)  # every column as text: ids stay exact
    except pl.exceptions.NoDataError:
        raise DataError("empty file: expected a header line with columns user,item", path) from None
    except (pl.exceptions.PolarsError, OSError) as e:
        with path.open("rb") as f:
            first = f.readline().decode("utf-8", "replace").lstrip("\ufeff").rstrip("\r\n")
        header = next(csv.reader([first], delimiter=sep), [])
        spec = TableSpec(tuple((c, "str") for c in header), sep, quoted=True, optional=frozenset(header))
        found = find_bad_line(path, spec, 2) if header else None
        if found is not None:
            raise DataError(found[1], path, found[0]) from None
        raise DataError(f"cannot read as CSV ({str(e).strip().splitlines()[0]})", path) from None
    lower = {c.lower(): c for c in reversed(df.columns)}
    names = {role: next((lower[a] for a in ALIASES[role] if a in lower), "") for role in ("user", "item")}
    missing = [role for role, name in names.items() if not name]
    if missing:
        raise DataError(
            f"needs columns user,item; missing {', '.join(missing)} (header: {', '.join(df.columns)})",
            path,
            1,
        )
    return df.select(pl.col(names["user"]).alias("user"), pl.col(names["item"]).alias("item"))


def _transform(model_dir: Path, input_: Path, output: Path, json_out: bool) -> None:
    """JSON Lines instances through the SageMaker handlers, one answer line each."""
    from recengine.serving.models import load_served
    from recengine.serving.sagemaker import transform_file

    sm = load_served(Path(model_dir).name, model_dir, warm_up=False)
    output.parent.mkdir(parents=True, exist_ok=True)
    n = transform_file(sm, input_, output)
    if json_out:
        print_json(
            {
                "model_dir": str(model_dir),
                "model": sm.model.name,
                "input": str(input_),
                "output": str(output),
                "rows": n,
                "predicted": n,
                "skipped": 0,
            }
        )
        return
    out_console.print(f"wrote {n} answers to {output}")


def _lookup(idmap: IdMap, values: pl.Series) -> np.ndarray:
    """Internal ids of text ids, -1 for unknown ones (and for text where the map holds integers)."""
    import numpy as np
    import polars as pl

    out = np.full(len(values), -1, dtype=np.int32)
    if idmap.is_numeric:
        ints = values.cast(pl.Int64, strict=False)
        ok = ints.is_not_null().to_numpy()
        if bool(ok.any()):
            out[ok] = idmap.to_internal(ints.drop_nulls().to_numpy(), missing="ignore")
        return out
    return idmap.to_internal(values.to_numpy().astype(str), missing="ignore")
