"""``recengine predict``: a model directory's predictions for a file of (user, item) rows, or its
answers to SageMaker JSON Lines instances (the batch transform), written whole or not at all.

Thin: the ids are looked up at the file edge; the answers come from the model and the SageMaker
handlers of the server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from recengine.cli.common import JsonOpt, ModelDir, check_output_path, err_console, out_console, print_json

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from recengine.data.interactions import IdMap


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)


def predict(
    model_dir: ModelDir,
    input_: Annotated[
        Path,
        typer.Option(
            "--input",
            help="CSV with columns user,item[,timestamp] (TSV by .tsv; the time, unix seconds or a "
            "date/time, is what a model with sessions reads), or SageMaker JSON Lines instances (in0, in1)",
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
    times = _times(pairs, ok, input_) if m.reads_time else None
    if m.reads_time and times is None:
        err_console.print(
            f"note: {m.name} reads each query's time, and {input_} has no timestamp column: every pair is "
            "predicted as without one"
        )
    at = None if times is None else times[ok]
    preds = m.predict_internal(u[ok], i[ok], at) if bool(ok.any()) else np.zeros(0)
    cols = {"user": users_s.filter(ok), "item": items_s.filter(ok)}
    if "timestamp" in pairs.columns:  # the rows stay told apart when one pair is asked at several times
        cols["timestamp"] = pairs["timestamp"].filter(ok)
    df = pl.DataFrame({**cols, "prediction": preds})
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
    cols = [pl.col(names["user"]).alias("user"), pl.col(names["item"]).alias("item")]
    time = next((lower[a] for a in ALIASES["timestamp"] if a in lower), None)
    if time is not None:
        cols.append(pl.col(time).alias("timestamp"))
    return df.select(cols)


def _times(pairs: pl.DataFrame, rows: np.ndarray, path: Path) -> np.ndarray | None:
    """The query times of the timestamp column, read as training reads times (unix seconds, whole
    floats, dates); None without the column. An empty cell is a query without a time, and only the
    ``rows`` predicted are read (a bad time is named by its line)."""
    import numpy as np
    import polars as pl

    from recengine.data.generic import parse_timestamps
    from recengine.models.base import NO_TIME

    if "timestamp" not in pairs.columns:
        return None
    text = pairs["timestamp"].str.strip_chars().fill_null("").to_numpy()
    given = (text != "") & rows
    if not bool(given.any()):
        return np.full(len(text), NO_TIME, dtype=np.int64)
    # Rows not read hold a copy of one that is, so the column keeps one kind of time and its lines.
    read = parse_timestamps(pl.Series(np.where(given, text, text[np.argmax(given)])), path, 2)
    return np.where(given, read, NO_TIME)


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
