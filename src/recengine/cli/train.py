"""``recengine train`` and ``similar``: make a model directory, then ask it for neighbours
(``predict`` is in :mod:`recengine.cli.predict`).

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

from recengine.cli.common import (
    JsonOpt,
    ModelDir,
    check_output_path,
    err_console,
    out_console,
    parse_sets,
    print_json,
)
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

    from recengine.data.interactions import IdMap


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("similar")(similar)


def train(
    model: Annotated[
        str,
        typer.Argument(
            metavar="MODEL",
            help="model name: global-mean, user-mean, bias, popularity, mf, deep-mf, neumf, object2vec",
        ),
    ],
    data: Annotated[
        str,
        typer.Option(
            help="data set name in the data home, or a path: a ratings file, or for object2vec "
            "SageMaker's JSON Lines pairs (in0, in1, label)"
        ),
    ],
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
    """Fit MODEL on every rating (or JSON Lines pair) of DATA and save it as a model directory at OUT."""
    from rich.markup import escape

    from recengine import artifacts
    from recengine.data.pairs import is_pairs_file
    from recengine.errors import ConfigError
    from recengine.models.registry import create
    from recengine.training.checkpoint import checkpoint_path, clear_checkpoint, held

    m = create(model, parse_sets(set_))  # bad names and values fail before the data is read
    check_output_path(out, "--out", kind="dir", replaced_whole=True)
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
    with held(ckpt):  # one training at a time checkpoints here
        has_checkpoint = checkpoint_path(ckpt).is_file()
        if not resume and has_checkpoint:
            err_console.print(
                f"[yellow]a checkpoint exists in {escape(str(ckpt))}; starting over (--resume continues it)"
            )
        if resume and not has_checkpoint:
            err_console.print(
                f"no checkpoint in {escape(str(ckpt))}; training from the start", soft_wrap=True
            )
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
                    f"{data} holds Object2Vec pairs (in0, in1, label); {', '.join(given)} apply to "
                    "ratings files"
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
                from recengine.serving.store import feedback_interactions, feedback_namespace, merge_feedback

                space = feedback_namespace(ds.name, inter.scale)  # the server's, for models of this data
                fb = feedback_interactions(include_feedback, namespace=space)
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
        from recengine.explore.embeddings import embedding_models

        raise CapabilityError(
            f"{e}; similar needs a model with item embeddings ({', '.join(embedding_models())})"
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
