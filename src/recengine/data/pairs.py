"""SageMaker Object2Vec pairs in JSON Lines: ``{"in0": [ints], "in1": [ints], "label": number}``.

The format the seed's Object2Vec notebook trains on; ``label`` is left out of inference input.
Reading is one polars parse, with a Python re-scan only to name the first bad line; writing goes
to a temporary file renamed into place, in chunks, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import polars as pl

from recengine.data.interactions import Interactions
from recengine.errors import DataError

Tokens = npt.ArrayLike | Sequence[Sequence[int]]
_SCHEMA: dict[str, pl.DataType] = {"in0": pl.List(pl.Int64), "in1": pl.List(pl.Int64), "label": pl.Float64()}
_CHUNK = 500_000
_LABEL_MAX = float(np.finfo(np.float32).max)  # labels are kept as float32


@dataclass
class Pairs:
    """Token lists as zero-padded (n, width) int64 arrays plus their true lengths; labels or None."""

    in0: npt.NDArray[np.int64]
    in0_len: npt.NDArray[np.int32]
    in1: npt.NDArray[np.int64]
    in1_len: npt.NDArray[np.int32]
    labels: npt.NDArray[np.float32] | None = None
    source: Path | None = None  # the JSON Lines file read, so later errors can name a pair's line

    def __post_init__(self) -> None:
        n = len(self.in0)
        if not (len(self.in0_len) == len(self.in1) == len(self.in1_len) == n) or (
            self.labels is not None and len(self.labels) != n
        ):
            raise ValueError("Pairs arrays must have the same length")

    def __len__(self) -> int:
        return len(self.in0)

    def error(self, k: int, message: str) -> DataError:
        """A DataError about pair ``k`` (0-based): its file and line for pairs read from a file, its
        1-based number for pairs made in memory."""
        if self.source is None:
            return DataError(f"pair {k + 1}: {message}")
        from recengine.data.generic import jsonl_line

        return DataError(message, self.source, jsonl_line(self.source, k))

    def tokens(self, side: int) -> list[list[int]]:
        """The ragged token lists of ``in0`` (side 0) or ``in1`` (side 1)."""
        arr, lengths = (self.in0, self.in0_len) if side == 0 else (self.in1, self.in1_len)
        return [row[:k].tolist() for row, k in zip(arr, lengths, strict=True)]

    def write(self, path: str | Path) -> None:
        write_pairs(path, self.tokens(0), self.tokens(1), self.labels)


def is_pairs_file(path: str | Path) -> bool:
    """Whether ``path`` is a JSON Lines file whose first record has Object2Vec's ``in0`` or ``in1``
    (so that a command given it reads pairs, not ratings); anything else is left to the other readers,
    whose errors name what is wrong."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() not in (".jsonl", ".ndjson", ".json"):
        return False
    try:
        with path.open("rb") as fh:
            for raw in fh:
                if raw.strip():
                    break
            else:
                return False
    except OSError:
        return False
    try:
        first = json.loads(raw)
    except ValueError:  # a broken first record that names Object2Vec's fields: the pairs reader says what
        line = raw.lstrip(b"\xef\xbb\xbf \t")
        return line.startswith(b"{") and (b'"in0"' in line or b'"in1"' in line)
    return isinstance(first, dict) and ("in0" in first or "in1" in first)


def read_pairs(path: str | Path) -> Pairs:
    """Read an Object2Vec JSON Lines file; a bad line is a DataError naming its number and field."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", path)
    if path.stat().st_size == 0:
        raise DataError("the file is empty", path, 1)
    try:
        df = pl.read_ndjson(path, schema=_SCHEMA)
    except (pl.exceptions.PolarsError, ValueError):
        return _read_slow(path)
    if df.height == 0 or not _valid(df):
        return _read_slow(path)
    labels = None
    if df["label"].null_count() < df.height:
        labels = df["label"].cast(pl.Float32).to_numpy().copy()
    in0, len0 = _padded(df["in0"])
    in1, len1 = _padded(df["in1"])
    return Pairs(in0, len0, in1, len1, labels, source=path)


def _valid(df: pl.DataFrame) -> bool:
    """Everything the fast parse may let through that the format forbids."""
    for side in ("in0", "in1"):
        s = df[side]
        if s.null_count() or _smallest(s.list.len()) < 1:
            return False
        flat = s.explode()
        if flat.null_count() or _smallest(flat) < 0:
            return False
    nulls = df["label"].null_count()
    if 0 < nulls < df.height:
        return False
    return nulls > 0 or bool((df["label"].abs() <= _LABEL_MAX).all())  # also false for NaN


def _smallest(s: pl.Series) -> float:
    v = s.min()
    return float(v) if isinstance(v, int | float) else 0.0


def _padded(s: pl.Series) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    lengths = s.list.len().cast(pl.Int32).to_numpy()
    width = int(lengths.max()) if len(lengths) else 0
    out = np.zeros((len(lengths), width), dtype=np.int64)
    out[np.arange(width)[None, :] < lengths[:, None]] = s.explode().to_numpy()
    return out, lengths.copy()


def _read_slow(path: Path) -> Pairs:
    """Line-by-line parse that names the first bad line and field (runs only after the fast one failed)."""
    rows0: list[list[int]] = []
    rows1: list[list[int]] = []
    labels: list[float | None] = []
    first_labeled: int | None = None
    first_unlabeled: int | None = None
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.rstrip(b"\r\n"))  # the column of an error stays on this line
            except json.JSONDecodeError as e:
                raise DataError(f"not valid JSON ({e.msg} at column {e.colno})", path, lineno) from None
            except UnicodeDecodeError as e:
                raise DataError(f"not valid UTF-8 (byte 0x{raw[e.start]:02x})", path, lineno) from None
            if not isinstance(obj, dict):
                raise DataError(f"expected a JSON object, found {type(obj).__name__}", path, lineno)
            rows0.append(_token_list(obj, "in0", path, lineno))
            rows1.append(_token_list(obj, "in1", path, lineno))
            label = obj.get("label")
            if label is None:
                first_unlabeled = first_unlabeled or lineno
            else:
                if not _is_label(label):
                    raise DataError(
                        f"field 'label' must be a finite number (within ±{_LABEL_MAX:.4g}), found "
                        f"{_short(label)}",
                        path,
                        lineno,
                    )
                first_labeled = first_labeled or lineno
            if first_labeled and first_unlabeled:
                line = max(first_labeled, first_unlabeled)
                raise DataError(
                    "field 'label' is missing on some lines and present on others "
                    f"(line {first_labeled} has one, line {first_unlabeled} has none)",
                    path,
                    line,
                )
            labels.append(label)
    if not rows0:
        raise DataError("the file holds no pairs", path)
    in0, len0 = _pad_lists(rows0)
    in1, len1 = _pad_lists(rows1)
    lab = np.asarray(labels, dtype=np.float32) if first_labeled else None
    return Pairs(in0, len0, in1, len1, lab, source=path)


def _is_label(v: object) -> bool:
    """A number that stays finite as the float32 labels are kept in (a 400-digit integer does not)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    try:
        return math.isfinite(float(v)) and abs(float(v)) <= _LABEL_MAX
    except OverflowError:
        return False


def _token_list(obj: dict[str, Any], field: str, path: Path, lineno: int) -> list[int]:
    if field not in obj:
        raise DataError(f"field {field!r} is missing", path, lineno)
    v = obj[field]
    if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        raise DataError(f"field {field!r} must be a list of integers, found {_short(v)}", path, lineno)
    if not v:
        raise DataError(f"field {field!r} must be a list of integers, found an empty list", path, lineno)
    if min(v) < 0 or max(v) >= 2**63:
        raise DataError(
            f"field {field!r} must hold non-negative 64-bit integers, found {_short(v)}", path, lineno
        )
    return v


def _short(v: object) -> str:
    text = json.dumps(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _pad_lists(rows: Sequence[Sequence[int]]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int32, count=len(rows))
    width = int(lengths.max()) if len(rows) else 0
    out = np.zeros((len(rows), width), dtype=np.int64)
    for k, r in enumerate(rows):
        out[k, : len(r)] = r
    return out, lengths


def _normalise(tokens: Tokens, field: str) -> npt.NDArray[np.int64] | list[list[int]]:
    """1-D ints → one token per row; 2-D array → each row whole; a sequence of sequences → ragged."""
    if isinstance(tokens, np.ndarray) or (
        isinstance(tokens, Sequence) and len(tokens) and not isinstance(tokens[0], Sequence | np.ndarray)
    ):
        arr = np.asarray(tokens)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or (arr.size and arr.dtype.kind not in "iu"):
            raise ValueError(f"{field} must be integers, 1-D (one token per row) or 2-D")
        if arr.size and int(arr.min()) < 0:
            raise ValueError(f"{field} holds negative token ids")
        if arr.shape[1] == 0:
            raise ValueError(f"{field} rows must not be empty")
        return arr.astype(np.int64, copy=False)
    rows = [list(r) for r in cast(Sequence[Sequence[int]], tokens)]
    for k, r in enumerate(rows):
        bad = [x for x in r if isinstance(x, bool | np.bool_) or not isinstance(x, int | np.integer)]
        if bad:  # 1.5 or True or "7" would be written as another token
            raise ValueError(f"{field} row {k} holds {bad[0]!r}; tokens must be integers")
    rows = [[int(x) for x in r] for r in rows]
    if any(not r or min(r) < 0 for r in rows):
        raise ValueError(f"{field} rows must be non-empty lists of non-negative integers")
    return rows


def _chunk(side: npt.NDArray[np.int64] | list[list[int]], name: str, start: int, stop: int) -> pl.Series:
    if isinstance(side, np.ndarray):
        return pl.Series(name, side[start:stop]).cast(pl.List(pl.Int64))
    return pl.Series(name, side[start:stop], dtype=pl.List(pl.Int64))


def write_pairs(path: str | Path, in0: Tokens, in1: Tokens, labels: npt.ArrayLike | None = None) -> Path:
    """Write pairs as JSON Lines, atomically (temporary file in the same directory, then rename).

    Rows are converted and written in chunks, so a 20M-row file never exists twice in memory.
    """
    path = Path(path)
    s0, s1 = _normalise(in0, "in0"), _normalise(in1, "in1")
    n = len(s0)
    if len(s1) != n:
        raise ValueError(f"in0 has {n} rows, in1 has {len(s1)}")
    if n == 0:
        # read_pairs refuses a file without pairs; writing one would only move the error there.
        raise ValueError(f"no pairs to write to {path}")
    lab = None
    if labels is not None:
        lab = np.asarray(labels, dtype=np.float32)
        if lab.shape != (n,):
            raise ValueError(f"labels must be 1-D with {n} values, got shape {lab.shape}")
        if not bool(np.all(np.isfinite(lab))):
            raise ValueError("labels must be finite numbers")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            for start in range(0, n, _CHUNK):
                stop = min(n, start + _CHUNK)
                cols = [_chunk(s0, "in0", start, stop), _chunk(s1, "in1", start, stop)]
                if lab is not None:
                    cols.append(pl.Series("label", lab[start:stop]))
                pl.DataFrame(cols).write_ndjson(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def interactions_to_pairs(inter: Interactions, labels: npt.ArrayLike | None = None) -> Pairs:
    """One pair per row: in0 = [internal user id], in1 = [internal item id].

    ``labels`` default to the ratings (None for implicit data); pass e.g. binary labels instead.
    """
    n = len(inter)
    if labels is not None:
        lab: npt.NDArray[np.float32] | None = np.asarray(labels, dtype=np.float32).copy()
        if lab is not None and lab.shape != (n,):
            raise ValueError(f"labels must be 1-D with {n} values, got shape {lab.shape}")
    else:
        lab = None if inter.rating is None else inter.rating.astype(np.float32, copy=True)
    ones = np.ones(n, dtype=np.int32)
    return Pairs(
        inter.user.astype(np.int64)[:, None], ones, inter.item.astype(np.int64)[:, None], ones.copy(), lab
    )
