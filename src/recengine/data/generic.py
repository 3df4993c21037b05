"""A reader for people's own interaction files: CSV, TSV, Parquet or JSON Lines.

Columns are found by name (common spellings, any case) or given explicitly; ids may be strings;
timestamps may be unix seconds or date/time strings. Errors name the file, the line (the row, in
Parquet) and the column.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from recengine.data.dataset import Dataset
from recengine.data.interactions import Interactions, RatingScale
from recengine.data.movielens import Kind, TableSpec, find_bad_line
from recengine.errors import DataError

Column = str | int | None

FORMATS = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
#: Formats read as lines of text; errors in the others (Parquet) name a row instead of a line.
TEXT_FORMATS = ("csv", "tsv", "jsonl")
#: The longest id a file may hold: the HTTP API takes no longer one, so such a model could not be asked.
MAX_ID_CHARS = 200
ALIASES: dict[str, tuple[str, ...]] = {
    "user": ("user", "userid", "user_id", "uid", "customer_id", "visitorid"),
    "item": ("item", "itemid", "item_id", "movieid", "movie_id", "iid", "product_id"),
    "rating": ("rating", "score", "stars", "value"),
    "timestamp": ("timestamp", "time", "ts", "datetime", "date"),
}


def read_interactions(
    path: str | Path,
    *,
    fmt: str | None = None,
    sep: str | None = None,
    header: bool = True,
    user_col: Column = None,
    item_col: Column = None,
    rating_col: Column = None,
    timestamp_col: Column = None,
    scale: RatingScale | None = None,
    implicit: bool = False,
) -> Dataset:
    """Read one interactions file into a Dataset with layout ``"generic"``.

    ``*_col`` name a column (exact, else case-insensitive) or give its 0-based position; unset, the
    usual spellings are looked for (see :data:`ALIASES`), and a file without header is read as
    user, item[, rating[, timestamp]]. ``scale=None`` infers the scale from the ratings;
    ``implicit=True`` ignores any rating column (every row is a positive event).
    """
    path = Path(path)
    fmt = _format(path, fmt)
    in_lines = fmt in TEXT_FORMATS
    if not path.is_file():
        raise DataError("no such file", path)
    if path.stat().st_size == 0:
        raise DataError("the file is empty", path, 1 if in_lines else None)
    wanted = {"user": user_col, "item": item_col, "rating": rating_col, "timestamp": timestamp_col}
    if fmt in ("csv", "tsv"):
        df, first_line = _read_delimited(path, fmt, sep, header, wanted, implicit)
    elif fmt == "parquet":
        df, first_line = _read_parquet(path, wanted, implicit), 1
    else:
        df, first_line = _read_jsonl(path, wanted, implicit), 1
    if df.height == 0:
        raise DataError("the file holds no data rows", path, first_line if in_lines else None)
    try:
        inter = _to_interactions(df, path, first_line, scale)
    except DataError as e:
        if fmt == "jsonl" and e.line is not None:  # polars skips blank lines: map the row back to its line
            raise DataError(e.reason, path, jsonl_line(path, e.line - first_line)) from None
        if not in_lines and e.line is not None:  # no lines to point at: the same number, called a row
            raise DataError(e.reason, path, e.line, unit="row") from None
        raise
    return Dataset(path.stem, "generic", inter, path=path)


def _format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        f = fmt.lower().lstrip(".")
        f = {"ndjson": "jsonl", "json": "jsonl", "pq": "parquet", "tab": "tsv"}.get(f, f)
        if f not in ("csv", "tsv", "parquet", "jsonl"):
            raise DataError(f"unknown format {fmt!r}; choose csv, tsv, parquet or jsonl", path)
        return f
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        known = ", ".join(FORMATS)
        raise DataError(f"unknown file type {path.suffix or '(none)'!r}; known: {known} (or pass fmt=)", path)
    return found


def _resolve(
    columns: Sequence[str], wanted: dict[str, Column], implicit: bool, header: bool, path: Path
) -> dict[str, str]:
    """Role → column name, from explicit choices, known spellings, or (no header) position."""
    lower = {c.lower(): c for c in reversed(columns)}
    listing = ", ".join(columns)
    if len(columns) == 1 and any(ch in columns[0] for ch in ",;\t|"):
        listing += " (one column: is the separator right?)"
    out: dict[str, str] = {}
    for role in ("user", "item", "rating", "timestamp"):
        choice = wanted[role]
        if role == "rating" and implicit:
            continue
        if isinstance(choice, int) and not isinstance(choice, bool):
            if not 0 <= choice < len(columns):
                raise DataError(
                    f"{role} column {choice} is out of range; the file has {len(columns)} columns: {listing}",
                    path,
                )
            out[role] = columns[choice]
        elif isinstance(choice, str):
            name = choice if choice in columns else lower.get(choice.lower())
            if name is None:
                raise DataError(f"no column {choice!r} for the {role}; the file has columns: {listing}", path)
            out[role] = name
        else:
            found = next((lower[a] for a in ALIASES[role] if a in lower), None)
            position = ("user", "item", "rating", "timestamp").index(role)
            if found is None and not header and position < len(columns):
                found = columns[position]
            if found is not None:
                out[role] = found
            elif role in ("user", "item"):
                raise DataError(
                    f"no {role} column (looked for {', '.join(ALIASES[role])}); the file has columns: "
                    f"{listing}; name it with {role}_col= (--{role}-col on the command line)",
                    path,
                )
            elif role == "rating":
                raise DataError(
                    f"no rating column (looked for {', '.join(ALIASES['rating'])}); the file has columns: "
                    f"{listing}; name it with rating_col= (--rating-col), or read the data as implicit "
                    "(--implicit)",
                    path,
                )
    used = list(out.values())
    if len(set(used)) != len(used):
        twice = next(c for c in used if used.count(c) > 1)
        roles = " and ".join(r for r, c in out.items() if c == twice)
        raise DataError(f"column {twice!r} is given as the {roles}; each role needs its own column", path)
    return out


# --------------------------------------------------------------------------------------------------
# Formats


def _read_delimited(
    path: Path, fmt: str, sep: str | None, header: bool, wanted: dict[str, Column], implicit: bool
) -> tuple[pl.DataFrame, int]:
    with path.open("rb") as f:
        raw_first = f.readline(1 << 20)
    try:
        first = raw_first.decode("utf-8").lstrip("\ufeff").rstrip("\r\n")
    except UnicodeDecodeError:
        raise DataError("not valid UTF-8", path, 1) from None
    if sep is None:
        sep = "\t" if fmt == "tsv" else max((",", "\t", ";", "|"), key=first.count)
    if len(sep) != 1:
        raise DataError(f"the separator must be one character, got {sep!r}", path)
    fields = next(csv.reader([first], delimiter=sep))
    columns = [c.strip() for c in fields] if header else [f"column_{k + 1}" for k in range(len(fields))]
    roles = _resolve(columns, wanted, implicit, header, path)
    twice = [c for c in roles.values() if columns.count(c) > 1]
    if twice:  # which of the two holds the ratings is a guess we do not make
        raise DataError(f"column {twice[0]!r} appears twice in the header", path, 1)
    first_line = 2 if header else 1
    kinds: list[tuple[str, Kind]] = [(c, "str") for c in columns]
    spec = TableSpec(
        tuple(kinds), sep, quoted=True, optional=frozenset(c for c in columns if c not in roles.values())
    )
    index = {c: k for k, c in enumerate(columns)}
    wanted_idx = sorted(index[c] for c in roles.values())
    try:
        df = pl.read_csv(
            path,
            has_header=False,
            skip_rows=first_line - 1,
            separator=sep,
            columns=wanted_idx,
            infer_schema=False,
            encoding="utf8",
        )
    except pl.exceptions.NoDataError:
        raise DataError(
            "the file holds no data rows" + (" after the header" if header else ""), path, first_line
        ) from None
    except (pl.exceptions.PolarsError, ValueError) as e:
        raise _bad_line(path, spec, first_line, e) from None
    by_index = dict(zip(wanted_idx, df.columns, strict=True))  # projected columns come in file order
    df = df.select(pl.col(by_index[index[c]]).alias(role) for role, c in roles.items())
    if df.height and int(df.null_count().sum_horizontal().item()):
        blank = df.select(pl.all_horizontal(pl.all().is_null())).to_series().to_numpy()
        keep = len(blank)
        while keep and blank[keep - 1]:
            keep -= 1
        df = df.head(keep)
        if int(df.null_count().sum_horizontal().item()):
            raise _bad_line(path, spec, first_line, None)
    return df, first_line


def _bad_line(path: Path, spec: TableSpec, first_line: int, cause: Exception | None) -> DataError:
    found = find_bad_line(path, spec, first_line)
    if found is not None:
        return DataError(found[1], path, found[0])
    detail = str(cause).strip().splitlines()[0] if cause else "empty fields"
    return DataError(f"could not be parsed: {detail}", path)


def _read_parquet(path: Path, wanted: dict[str, Column], implicit: bool) -> pl.DataFrame:
    try:
        schema = pl.read_parquet_schema(path)
        roles = _resolve(list(schema), wanted, implicit, True, path)
        df = pl.read_parquet(path, columns=list(roles.values()))
    except (pl.exceptions.PolarsError, OSError) as e:
        raise DataError(f"not a readable Parquet file ({str(e).strip().splitlines()[0]})", path) from None
    return df.rename({v: k for k, v in roles.items()}).select(list(roles))


def _read_jsonl(path: Path, wanted: dict[str, Column], implicit: bool) -> pl.DataFrame:
    try:
        df = pl.read_ndjson(path, infer_schema_length=None)
    except (pl.exceptions.PolarsError, ValueError) as e:
        raise _bad_json(path) or DataError(
            f"could not be parsed: {str(e).strip().splitlines()[0]}", path
        ) from None
    roles = _resolve(df.columns, wanted, implicit, True, path)
    return df.rename({v: k for k, v in roles.items()}).select(list(roles))


def _bad_json(path: Path) -> DataError | None:
    """The first line that is not a JSON object (slow path, after the fast parse failed)."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.rstrip(b"\r\n"))  # the column of an error stays on this line
            except json.JSONDecodeError as e:
                return DataError(f"not valid JSON ({e.msg} at column {e.colno})", path, lineno)
            except UnicodeDecodeError as e:
                return DataError(
                    f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})", path, lineno
                )
            if not isinstance(obj, dict):
                return DataError(f"expected a JSON object, found {type(obj).__name__}", path, lineno)
    return None


def jsonl_line(path: Path, row: int) -> int:
    """Line of data row ``row`` (0-based) in a JSON Lines file whose blank lines hold no rows."""
    seen = -1
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if raw.strip():
                seen += 1
                if seen == row:
                    return lineno
    return row + 1


# --------------------------------------------------------------------------------------------------
# Columns → arrays


def _to_interactions(
    df: pl.DataFrame, path: Path, first_line: int, scale: RatingScale | None
) -> Interactions:
    for role in ("user", "item", "rating", "timestamp"):
        if role in df.columns and df[role].dtype.is_nested():  # JSON lists or objects: no id, no number
            raise DataError(
                f"the {role} column holds {df[role].dtype.base_type()} values, not single {role} "
                "values; name another column",
                path,
                first_line,
            )
    users = _ids(df["user"], path, first_line)
    items = _ids(df["item"], path, first_line)
    rating = _ratings(df["rating"], path, first_line) if "rating" in df.columns else None
    ts = parse_timestamps(df["timestamp"], path, first_line) if "timestamp" in df.columns else None
    return Interactions.from_arrays(
        users,
        items,
        rating,
        ts,
        scale=scale if scale is not None else "infer",
        source=path,
        first_line=first_line,
    )


def _first_true(mask: pl.Series) -> int:
    return int(np.argmax(mask.to_numpy()))


def _ids(s: pl.Series, path: Path, first_line: int) -> np.ndarray:
    """Integer ids stay integers; anything else (or ids with leading zeros) stays a string."""
    name = s.name
    if s.null_count():
        raise DataError(f"{name} id is empty", path, first_line + _first_true(s.is_null()))
    if s.dtype.is_integer():
        return s.cast(pl.Int64).to_numpy()
    if s.dtype.is_float():
        whole = s.cast(pl.Int64, strict=False)
        bad = whole.is_null() | (whole.cast(pl.Float64) != s)
        if bool(bad.any()):
            row = _first_true(bad)
            raise DataError(f"{name} id {s[row]!r} is not a whole number", path, first_line + row)
        return whole.to_numpy()
    text = s.cast(pl.Utf8).str.strip_chars()
    if bool((text == "").any()):
        raise DataError(f"{name} id is empty", path, first_line + _first_true(text == ""))
    long = text.str.len_chars() > MAX_ID_CHARS
    if bool(long.any()):
        row = _first_true(long)
        raise DataError(
            f"{name} id is {len(text[row]):,} characters long; ids of at most {MAX_ID_CHARS} are taken "
            "(as by the HTTP API)",
            path,
            first_line + row,
        )
    as_int = text.cast(pl.Int64, strict=False)
    leading_zero = text.str.starts_with("0") & (text.str.len_chars() > 1)
    if as_int.null_count() == 0 and not bool(leading_zero.any()):
        return as_int.to_numpy()
    return text.to_numpy().astype(str)


def _ratings(s: pl.Series, path: Path, first_line: int) -> npt.NDArray[np.float32]:
    if s.dtype == pl.Utf8:
        text = s.str.strip_chars()
        num = text.cast(pl.Float64, strict=False)
        bad = num.is_null() & text.is_not_null() & (text != "")
        if bool(bad.any()):
            row = _first_true(bad)
            raise DataError(f"rating must be a number, found {s[row]!r}", path, first_line + row)
        s = num
    elif not s.dtype.is_numeric():
        raise DataError(f"rating column holds {s.dtype}, not numbers", path)
    return s.cast(pl.Float32).fill_null(float("nan")).to_numpy()


def parse_timestamps(s: pl.Series, path: Path, first_line: int) -> npt.NDArray[np.int64]:
    """Unix seconds from integers, whole floats, dates, date-times or their strings (naive = UTC)."""
    if s.null_count():
        raise DataError("timestamp is empty", path, first_line + _first_true(s.is_null()))
    if s.dtype == pl.Utf8:
        text = s.str.strip_chars()
        as_int = text.cast(pl.Int64, strict=False)
        if as_int.null_count() == 0:
            return as_int.to_numpy()
        as_float = text.cast(pl.Float64, strict=False)
        if as_float.null_count() == 0:
            s = as_float
        else:
            try:
                parsed = text.str.to_datetime(strict=False, time_unit="us")
            except pl.exceptions.PolarsError:
                parsed = pl.Series([None] * len(text), dtype=pl.Datetime("us"))
            if parsed.null_count():
                number = as_float.is_not_null()
                neither = parsed.is_null() & ~number
                if bool(neither.any()):
                    row = _first_true(neither)
                    raise DataError(
                        f"timestamp {s[row]!r} is neither unix seconds nor a date/time",
                        path,
                        first_line + row,
                    )
                a, b = _first_true(number), _first_true(~number)  # every row is one or the other
                raise DataError(
                    f"the timestamps mix unix seconds ({s[a]!r}, line {first_line + a}) and dates/times "
                    f"({s[b]!r}, line {first_line + b}); give one kind",
                    path,
                    first_line + min(a, b),
                )
            s = parsed
    if s.dtype == pl.Date:
        s = s.cast(pl.Datetime("us"))
    if isinstance(s.dtype, pl.Datetime):
        return s.dt.epoch("s").cast(pl.Int64).to_numpy()
    if s.dtype.is_float():
        if not bool(s.is_finite().all()):
            row = _first_true(~s.is_finite())
            raise DataError(f"timestamp {s[row]!r} is not a number", path, first_line + row)
        beyond = s.abs() >= 2.0**63
        if bool(beyond.any()):
            row = _first_true(beyond)
            raise DataError(f"timestamp {s[row]!r} is beyond any time in seconds", path, first_line + row)
        return s.floor().cast(pl.Int64).to_numpy()
    if s.dtype.is_integer():
        return s.cast(pl.Int64).to_numpy()
    raise DataError(f"timestamp column holds {s.dtype}, not times", path)
