"""Token sequences of the two sides: ids plus switchable side tokens, as padded integer tables.

Each user (side 0) and item (side 1) is a row of token ids: its own id token first, then its side
tokens (users: age bucket, gender, occupation; items: genres, title words, release-year bucket).
Id tokens come first so that truncation to ``max_seq_len`` never drops them. Token 0 pads, token 1
stands for "unknown": the id slot of an entity without training rows holds it, and so does a
content token the vocabulary has never seen, which is why a movie nobody rated still gets an
embedding from its genres, title and year. Side tokens are named strings (``genre:Action``) kept
in a vocabulary that is saved with the model, so new content maps to the same ids at inference.

Sequences longer than ``max_seq_len`` are truncated, and every truncated row is counted (the count
goes into the training history and into a warning), never silently.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import polars as pl

from recengine.data.interactions import IdMap, Interactions
from recengine.errors import ConfigError, DataError

PAD, UNK = 0, 1
N_RESERVED = 2
ITEM_KINDS = ("genres", "title", "year")
USER_KINDS = ("age", "gender", "occupation")
#: MovieLens-1M's age groups, used for any numeric age.
AGE_EDGES = (18, 25, 35, 45, 50, 56)
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    {
        "a",
        "an",
        "and",
        "the",
        "of",
        "in",
        "on",
        "to",
        "for",
        "at",
        "by",
        "with",
        "from",
        "de",
        "la",
        "le",
        "el",
    }
)


@dataclass
class TokenTable:
    """One side's token rows (row r = internal id r), padded with PAD, plus the side vocabulary.

    Token ids: 0 pad, 1 unknown, ``2 + r`` the id token of entity r, then the side tokens named in
    ``side_vocab`` (id ``side_offset + k`` for ``side_vocab[k]``). In pairs mode (trained from
    JSON Lines) there are no id or side tokens: a raw token t of the file is id ``t + 2``.
    """

    tokens: npt.NDArray[np.int64]
    side_vocab: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    truncated: int = 0

    @property
    def n_entities(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def side_offset(self) -> int:
        return N_RESERVED + self.n_entities

    @property
    def vocab_size(self) -> int:
        return self.side_offset + len(self.side_vocab)

    def lookup(self, names: Sequence[str]) -> tuple[list[int], list[str]]:
        """Ids of known side-token names, and the names that are not in the vocabulary."""
        index = {name: self.side_offset + k for k, name in enumerate(self.side_vocab)}
        known = [index[n] for n in names if n in index]
        unknown = [n for n in names if n not in index]
        return known, unknown


# ----- content → token names ---------------------------------------------------------------------
def title_words(title: str | None) -> list[str]:
    """Lower-case words of a title, without a trailing "(1995)" and without a few stop words."""
    if not title:
        return []
    text = re.sub(r"\(\d{4}\)\s*$", "", title.lower())
    return [w for w in _WORD.findall(text) if len(w) > 1 and w not in _STOP]


def year_token(year: int | float | None, width: int) -> list[str]:
    if year is None or (isinstance(year, float) and not np.isfinite(year)):
        return []
    y = int(year)
    return [f"year:{y // width * width}"]


def age_token(age: int | float | None) -> list[str]:
    if age is None or (isinstance(age, float) and not np.isfinite(age)):
        return []
    k = int(np.searchsorted(np.asarray(AGE_EDGES), float(age), side="right"))
    return [f"age:{k}"]


def item_content_names(
    kinds: Sequence[str],
    genres: Sequence[str] | None,
    title: str | None,
    year: int | float | None,
    year_bucket: int,
    words: set[str] | None = None,
) -> list[str]:
    """The side-token names of one item's content, in table order (genres, title words, year)."""
    out: list[str] = []
    for kind in kinds:
        if kind == "genres":
            out += [f"genre:{g}" for g in (genres or []) if g]
        elif kind == "title":
            out += [f"word:{w}" for w in title_words(title) if words is None or w in words]
        elif kind == "year":
            out += year_token(year, year_bucket)
    return list(dict.fromkeys(out))  # a repeated word counts once


def user_content_names(
    kinds: Sequence[str], age: int | float | None, gender: str | None, occupation: str | None
) -> list[str]:
    out: list[str] = []
    for kind in kinds:
        if kind == "age":
            out += age_token(age)
        elif kind == "gender" and gender:
            out.append(f"gender:{str(gender).strip().upper()}")
        elif kind == "occupation" and occupation:
            out.append(f"occupation:{str(occupation).strip().lower()}")
    return out


# ----- tables -------------------------------------------------------------------------------------
def resolve_kinds(
    asked: str | Sequence[str], available: Sequence[str], side: str, allowed: Sequence[str]
) -> list[str]:
    """``"auto"`` → every kind the given features can supply; an explicit list must be supplied."""
    if asked == "auto":
        return [k for k in allowed if k in available]
    kinds = list(asked)
    missing = [k for k in kinds if k not in available]
    if missing:
        raise ConfigError(
            f"object2vec: {side} side tokens {missing} were asked for, but no such {side} features were "
            f"given; call use_dataset(ds) or set_{side}_features(...) before fit, or leave them out"
        )
    return kinds


def rows_to_table(rows: list[list[int]], max_len: int, side: str) -> tuple[npt.NDArray[np.int64], int]:
    width = max(1, min(max_len, max((len(r) for r in rows), default=1)))
    out = np.full((len(rows), width), PAD, dtype=np.int64)
    truncated = 0
    for k, r in enumerate(rows):
        if len(r) > max_len:
            truncated += 1
            r = r[:max_len]
        out[k, : len(r)] = r
    if truncated:
        warnings.warn(
            f"object2vec: {truncated} {side} token sequences were longer than max_seq_len={max_len} "
            "and were truncated (id tokens are first and always kept)",
            stacklevel=3,
        )
    return out, truncated


def build_table(
    ids: IdMap,
    content: dict[object, list[str]] | None,
    kinds: list[str],
    max_len: int,
    trained: npt.NDArray[np.bool_],
    side: str,
    min_count: dict[str, int] | None = None,
) -> TokenTable:
    """Rows [id token, side tokens...] for every id of ``ids``; ids without training rows
    (``trained`` False) get UNK in the id slot, so that they are embedded from content alone.

    The vocabulary holds only side tokens of entities with training rows (a token no training row
    reaches would keep its random start); ``min_count`` keeps a token of a given prefix
    (``{"word:": 2}``) only when at least that many of them carry it: a word of one title says
    nothing the id token does not.
    """
    names_per_row: list[list[str]] = []
    for ext in ids.external.tolist():
        names_per_row.append(list(content.get(ext, [])) if content is not None and kinds else [])
    counts = Counter(n for names, t in zip(names_per_row, trained, strict=True) if t for n in names)
    floor = min_count or {}

    def keep(name: str) -> bool:
        return all(not name.startswith(p) or counts[name] >= c for p, c in floor.items())

    vocab = sorted(n for n in counts if keep(n))
    n = len(ids)
    index = {name: N_RESERVED + n + k for k, name in enumerate(vocab)}
    rows: list[list[int]] = []
    for r, names in enumerate(names_per_row):
        head = N_RESERVED + r if bool(trained[r]) else UNK
        rows.append([head] + [index[x] for x in names if x in index])
    table, truncated = rows_to_table(rows, max_len, side)
    return TokenTable(table, vocab, list(kinds), truncated)


def item_content(frame: pl.DataFrame, kinds: list[str], year_bucket: int) -> dict[object, list[str]]:
    """External item id → side-token names, from a frame with item and (any of) genres, title, year."""
    cols = set(frame.columns)
    out: dict[object, list[str]] = {}
    for row in frame.iter_rows(named=True):
        out[_key(row["item"])] = item_content_names(
            kinds,
            row.get("genres") if "genres" in cols else None,
            row.get("title") if "title" in cols else None,
            row.get("year") if "year" in cols else None,
            year_bucket,
        )
    return out


def user_content(frame: pl.DataFrame, kinds: list[str]) -> dict[object, list[str]]:
    cols = set(frame.columns)
    out: dict[object, list[str]] = {}
    for row in frame.iter_rows(named=True):
        out[_key(row["user"])] = user_content_names(
            kinds,
            row.get("age") if "age" in cols else None,
            row.get("gender") if "gender" in cols else None,
            row.get("occupation") if "occupation" in cols else None,
        )
    return out


def available_item_kinds(frame: pl.DataFrame | None) -> list[str]:
    if frame is None:
        return []
    cols = {"genres": "genres", "title": "title", "year": "year"}
    return [k for k, c in cols.items() if c in frame.columns and frame[c].null_count() < frame.height]


def available_user_kinds(frame: pl.DataFrame | None) -> list[str]:
    if frame is None:
        return []
    return [k for k in USER_KINDS if k in frame.columns and frame[k].null_count() < frame.height]


def _key(value: object) -> object:
    """External ids as the IdMap's ``tolist()`` gives them (int for numeric maps, else str)."""
    if isinstance(value, int | np.integer):
        return int(value)
    return str(value)


def align_keys(content: dict[object, list[str]], ids: IdMap) -> dict[object, list[str]]:
    """Re-key ``content`` to the id map's external type ("42" → 42 for numeric ids)."""
    if ids.is_numeric:
        out: dict[object, list[str]] = {}
        for k, v in content.items():
            try:
                out[int(str(k))] = v
            except ValueError:
                continue
        return out
    return {str(k): v for k, v in content.items()}


# ----- raw token sequences (pairs mode and inference) -------------------------------------------
def ragged_to_padded(
    seqs: Sequence[Sequence[int]] | npt.NDArray[np.integer], side: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Token lists → a zero-padded (n, width) array and the lengths (a 2-D array is taken whole, a
    1-D one as one token per row). Tokens are integers: a float, text or bool is refused, not cut."""
    if isinstance(seqs, np.ndarray):
        if seqs.dtype.kind not in "iu" and not (seqs.size == 0 and seqs.dtype.kind == "f"):
            raise DataError(f"{side}: tokens are integers, got an array of {seqs.dtype}")
        if seqs.ndim == 1:
            seqs = seqs[:, None]
        if seqs.ndim == 2:
            if len(seqs) and seqs.shape[1] == 0:
                raise DataError(f"{side} of row 0 is an empty token sequence")
            big = seqs.dtype.kind == "u" and len(seqs) and int(seqs.max()) > np.iinfo(np.int64).max
            if big:
                raise DataError(f"{side}: token {int(seqs.max())} is out of range")
            return seqs.astype(np.int64, copy=False), np.full(len(seqs), seqs.shape[1], dtype=np.int64)
    rows = []
    for k, s in enumerate(seqs):
        row = [s] if isinstance(s, int | np.integer) else list(s)
        for t in row:
            if isinstance(t, bool | np.bool_) or not isinstance(t, int | np.integer):
                raise DataError(f"{side} of row {k} holds {t!r}: tokens are integers")
            if not -(2**63) <= int(t) < 2**63:
                raise DataError(f"{side} of row {k} holds token {int(t)}, out of range")
        rows.append([int(t) for t in row])
    lengths = np.asarray([len(r) for r in rows], dtype=np.int64)
    if len(rows) and int(lengths.min()) == 0:
        raise DataError(f"{side} of row {int(np.argmin(lengths))} is an empty token sequence")
    out = np.zeros((len(rows), int(lengths.max()) if len(rows) else 1), dtype=np.int64)
    for k, r in enumerate(rows):
        out[k, : len(r)] = r
    return out, lengths


def pad_sequences(
    arr: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.integer],
    max_len: int,
    vocab_size: int,
    side: str,
) -> tuple[npt.NDArray[np.int64], int]:
    """Raw padded tokens → internal ids (``raw + 2``, PAD beyond each length), truncated to ``max_len``
    with a count and a warning. A raw token outside ``0 .. vocab_size - 1`` is a DataError naming the
    row, side and token."""
    lengths = np.asarray(lengths, dtype=np.int64)
    width = max(1, min(max_len, int(lengths.max()) if len(lengths) else 1))
    raw = np.zeros((len(arr), width), dtype=np.int64)
    raw[:, : min(width, arr.shape[1])] = arr[:, :width]
    real = np.arange(width)[None, :] < lengths[:, None]
    bad = real & ((raw < 0) | (raw >= vocab_size))
    if bool(bad.any()):
        row, col = (int(x) for x in np.argwhere(bad)[0])
        raise DataError(
            f"{side} of row {row} holds token {int(raw[row, col])}, outside the vocabulary "
            f"0..{vocab_size - 1} ({side.replace('in', 'enc')}_vocab_size={vocab_size})"
        )
    truncated = int(np.count_nonzero(lengths > max_len))
    if truncated:
        warnings.warn(
            f"object2vec: {truncated} {side} token sequences were longer than max_seq_len={max_len} "
            "and were truncated",
            stacklevel=3,
        )
    return np.where(real, raw + N_RESERVED, PAD), truncated


def user_histories(
    train: Interactions, max_len: int | None = None, seed: int = 0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The items each user rated in ``train``, as CSR offsets (n_users + 1) and item ids (internal);
    a user with more than ``max_len`` keeps a seeded sample of that many."""
    return _csr_rows(train.user, train.item, train.n_users, max_len, seed, "user")


def item_histories(
    train: Interactions, max_len: int | None = None, seed: int = 0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The users who rated each item in ``train``, as CSR offsets (n_items + 1) and user ids; an item
    with more than ``max_len`` raters keeps a seeded sample of that many."""
    return _csr_rows(train.item, train.user, train.n_items, max_len, seed, "item")


def _csr_rows(
    rows: npt.NDArray[np.integer],
    members: npt.NDArray[np.integer],
    n_rows: int,
    max_len: int | None = None,
    seed: int = 0,
    side: str = "",
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The members of each row, in the order of the input within a row, as CSR offsets and ids.

    Rows longer than ``max_len`` keep a uniform sample of ``max_len`` members drawn from ``seed``
    (still in input order), so one pooled row costs at most ``max_len`` lookups; they are counted
    in a warning, as truncated token sequences are."""
    order = np.argsort(rows, kind="stable")
    counts = np.bincount(rows, minlength=n_rows)
    ids = members[order].astype(np.int64)
    if max_len is not None and (long := counts > max_len).any():
        row_of = np.repeat(np.arange(n_rows), counts)
        key = np.random.default_rng(seed).random(len(ids))
        by_key = np.lexsort((key, row_of))  # within each row, members in their random order
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.empty(len(ids), dtype=np.int64)
        rank[by_key] = np.arange(len(ids)) - starts[row_of[by_key]]
        ids = ids[rank < max_len]
        counts = np.minimum(counts, max_len)
        warnings.warn(
            f"object2vec: {int(long.sum())} {side} histories were longer than history_max_len={max_len} "
            "and keep a seeded sample of that many",
            stacklevel=3,
        )
    offsets = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets, ids
