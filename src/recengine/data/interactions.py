"""Interactions: who rated what, held as dense int32 ids plus the IdMaps that translate them.

Everything downstream (splits, models, metrics) works on dense internal ids; external ids (the ones
in the user's files) appear only at the edges and always go through an :class:`IdMap`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recengine.errors import DataError, UnknownIdError

IntArray = npt.NDArray[np.int32]
Missing = Literal["error", "ignore"]
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_DIGITS = re.compile(r"[+-]?[0-9]+")


def parse_int_id(text: str) -> int | None:
    """``text`` as a 64-bit integer id, or None. ASCII digits only: Python's ``int`` also reads
    ``"1_0"`` and full-width ``"１０"`` as 10, which would make one id another."""
    t = text.strip()
    if not _DIGITS.fullmatch(t):
        return None
    n = int(t)
    return n if INT64_MIN <= n <= INT64_MAX else None


class IdMap:
    """External ids ↔ dense internal ids (position in ``external``), vectorized both ways.

    Lookups use a sorted view and ``searchsorted``, so mapping 20M ids costs one sort, not 20M dict
    look-ups. ``missing="error"`` raises :class:`UnknownIdError` naming the first unknown ids;
    ``missing="ignore"`` returns -1 for them (RecTools' strict / return-missing modes).
    """

    def __init__(self, external: npt.ArrayLike, name: str = "id") -> None:
        ext = np.asarray(external)
        if ext.ndim != 1:
            raise ValueError("IdMap needs a 1-D array of external ids")
        if ext.dtype.kind == "O":
            ext = ext.astype(str)
        if ext.dtype.kind in "iu":
            ext = ext.astype(np.int64)
        self.external = ext
        self.name = name
        self._sorter = np.argsort(ext, kind="stable")
        self._sorted = ext[self._sorter]
        if len(ext) > 1 and bool(np.any(self._sorted[1:] == self._sorted[:-1])):
            dup = self._sorted[1:][self._sorted[1:] == self._sorted[:-1]][0]
            raise ValueError(f"IdMap for {name}: external id {dup.item()!r} appears twice")

    def __len__(self) -> int:
        return len(self.external)

    def __repr__(self) -> str:
        return f"IdMap({self.name}, n={len(self)}, dtype={self.external.dtype})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, IdMap)
            and self.external.dtype.kind == other.external.dtype.kind
            and np.array_equal(self.external, other.external)
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def is_numeric(self) -> bool:
        return self.external.dtype.kind in "iu"

    def _coerce(self, ids: npt.ArrayLike) -> np.ndarray:
        """Bring query ids to the map's dtype: ``"42"`` finds 42 in a numeric map, 42 finds ``"42"``."""
        q = np.atleast_1d(np.asarray(ids))
        if q.dtype.kind == "O":
            q = q.astype(str)
        if self.is_numeric:
            if q.dtype.kind in "iu":
                return q.astype(np.int64)
            if q.dtype.kind == "f":
                if not bool(np.all(np.isfinite(q))) or not bool(np.all(q == np.round(q))):
                    bad = q[~np.isfinite(q) | (q != np.round(q))][0]
                    raise UnknownIdError(f"unknown {self.name} {bad.item()!r}: ids of this map are integers")
                return q.astype(np.int64)
            out = np.empty(len(q), dtype=np.int64)
            for i, v in enumerate(q.astype(str).tolist()):  # str, not numpy's str_ (its repr shows)
                n = parse_int_id(v)
                if n is None:
                    plain = _DIGITS.fullmatch(v.strip()) is not None  # digits, beyond int64
                    why = "out of the integer id range" if plain else "ids of this map are integers"
                    raise UnknownIdError(f"unknown {self.name} {v!r}: {why}")
                out[i] = n
            return out
        return q.astype(str)

    def to_internal(self, ids: npt.ArrayLike, missing: Missing = "error") -> IntArray:
        """Internal ids for external ``ids``; unknown ones raise or become -1 (see class doc)."""
        q = self._coerce(ids)
        if len(self) == 0:
            pos = np.zeros(len(q), dtype=np.int64)
            found = np.zeros(len(q), dtype=bool)
        else:
            pos = np.searchsorted(self._sorted, q)
            pos_c = np.minimum(pos, len(self) - 1)
            found = self._sorted[pos_c] == q
            pos = pos_c
        out = np.where(found, self._sorter[pos] if len(self) else -1, -1).astype(np.int32)
        if missing == "error" and not bool(found.all()):
            unknown = q[~found]
            shown = ", ".join(repr(x.item()) for x in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise UnknownIdError(f"unknown {self.name}: {shown}{more}")
        return out

    def to_external(self, internal: npt.ArrayLike) -> np.ndarray:
        idx = np.asarray(internal)
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise UnknownIdError(f"internal {self.name} id out of range 0..{len(self) - 1}")
        return self.external[idx]

    def contains(self, ids: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        try:
            return self.to_internal(ids, missing="ignore") >= 0
        except UnknownIdError:  # some id cannot be one of this map (text in a numeric map): one by one
            q = np.atleast_1d(np.asarray(ids))
            return np.asarray([self._contains_one(v) for v in q], dtype=bool)

    def _contains_one(self, value: np.generic) -> bool:
        try:
            return bool(self.to_internal([value], missing="ignore")[0] >= 0)
        except UnknownIdError:
            return False

    def extended(self, new_external: npt.ArrayLike) -> IdMap:
        """A map with ``new_external`` ids appended after the known ones (known ids keep their numbers)."""
        new = self._coerce(new_external)
        known = self.contains(new)
        fresh = np.unique(new[~known]) if len(new) else new
        # No cast to the old dtype: a string map of '<U5' would cut a longer new id to five characters.
        return IdMap(np.concatenate([self.external, fresh]), self.name)

    def to_list(self) -> list[int] | list[str]:
        """JSON-friendly list of the external ids in internal order (for saving inside an artifact)."""
        return [int(x) for x in self.external] if self.is_numeric else [str(x) for x in self.external]

    @classmethod
    def from_list(cls, values: list[int] | list[str], name: str = "id") -> IdMap:
        arr = (
            np.asarray(values, dtype=np.int64)
            if values and isinstance(values[0], int)
            else np.asarray(values, dtype=str)
        )
        return cls(arr, name)


@dataclass(frozen=True)
class RatingScale:
    """The declared range of ratings; ``step`` (e.g. 0.5 or 1) is checked when given."""

    low: float
    high: float
    step: float | None = None

    def __post_init__(self) -> None:
        if not (np.isfinite(self.low) and np.isfinite(self.high)) or self.low >= self.high:
            raise ValueError(f"rating scale needs low < high, got {self.low}..{self.high}")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"rating scale step must be positive, got {self.step}")

    def __str__(self) -> str:
        step = f" step {self.step:g}" if self.step else ""
        return f"{self.low:g}–{self.high:g}{step}"

    @property
    def is_binary(self) -> bool:
        """0 to 1: labels (or probabilities of them), not ratings."""
        return self.low == 0.0 and self.high == 1.0

    def bad_rows(self, ratings: npt.NDArray[np.floating]) -> npt.NDArray[np.bool_]:
        """Rows that are NaN, outside [low, high], or off the step grid."""
        r = np.asarray(ratings, dtype=np.float64)
        bad = ~np.isfinite(r) | (r < self.low - 1e-9) | (r > self.high + 1e-9)
        if self.step:
            k = (r - self.low) / self.step
            bad |= np.abs(k - np.round(k)) > 1e-6
        return bad

    @staticmethod
    def infer(ratings: npt.NDArray[np.floating]) -> RatingScale:
        """Scale from observed ratings: min..max, step 0.5 or 1 where every rating sits on that grid."""
        r = np.asarray(ratings, dtype=np.float64)
        if len(r) == 0:
            raise ValueError("cannot infer a rating scale from no ratings")
        lo, hi = float(r.min()), float(r.max())
        if lo == hi:
            hi = lo + 1.0
        step = None
        for s in (1.0, 0.5):
            if bool(np.all(np.abs(r / s - np.round(r / s)) < 1e-6)):
                step = s
                break
        return RatingScale(lo, hi, step)

    def clip(self, x: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        return np.clip(np.asarray(x, dtype=np.float64), self.low, self.high)


@dataclass
class LoadReport:
    """What loading did to the rows, so that nothing is dropped silently."""

    rows_read: int = 0
    duplicates_removed: int = 0
    duplicate_policy: str = "keep the latest by timestamp (file order breaks ties and stands in without one)"

    def as_dict(self) -> dict[str, object]:
        return {
            "rows_read": self.rows_read,
            "duplicates_removed": self.duplicates_removed,
            "duplicate_policy": self.duplicate_policy,
        }


@dataclass
class Interactions:
    """User–item events with dense int32 ids. ``rating`` is None for implicit data.

    Subsets made by :meth:`subset` share the IdMaps of the whole data set, so train and test rows of
    a split live in one id space and the user × item CSR matrices have the same shape.
    """

    user: IntArray
    item: IntArray
    rating: npt.NDArray[np.float32] | None
    timestamp: npt.NDArray[np.int64] | None
    users: IdMap
    items: IdMap
    scale: RatingScale | None = None
    report: LoadReport = field(default_factory=LoadReport)

    def __post_init__(self) -> None:
        n = len(self.user)
        if (
            len(self.item) != n
            or (self.rating is not None and len(self.rating) != n)
            or (self.timestamp is not None and len(self.timestamp) != n)
        ):
            raise ValueError("Interactions arrays must have the same length")

    def __len__(self) -> int:
        return len(self.user)

    def __repr__(self) -> str:
        kind = "explicit" if self.rating is not None else "implicit"
        return (
            f"Interactions({len(self)} {kind} rows, {self.n_users} users, {self.n_items} items"
            + (f", scale {self.scale}" if self.scale else "")
            + ")"
        )

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def is_explicit(self) -> bool:
        return self.rating is not None

    def values(self) -> npt.NDArray[np.float32]:
        """Ratings, or ones for implicit data."""
        return self.rating if self.rating is not None else np.ones(len(self), dtype=np.float32)

    def csr(self, values: Literal["rating", "ones"] = "rating") -> sp.csr_matrix:
        """User × item matrix (the one orientation used everywhere, in fit and in recommend)."""
        data = self.values() if values == "rating" else np.ones(len(self), dtype=np.float32)
        m = sp.csr_matrix(
            (data, (self.user, self.item)), shape=(self.n_users, self.n_items), dtype=np.float32
        )
        m.sort_indices()
        return m

    def subset(self, rows: npt.NDArray[np.bool_] | npt.NDArray[np.integer]) -> Interactions:
        """Rows by mask or index, same id maps and scale."""
        return Interactions(
            user=self.user[rows],
            item=self.item[rows],
            rating=None if self.rating is None else self.rating[rows],
            timestamp=None if self.timestamp is None else self.timestamp[rows],
            users=self.users,
            items=self.items,
            scale=self.scale,
        )

    def with_ratings(self, rating: npt.NDArray[np.float32], scale: RatingScale | None) -> Interactions:
        """Same rows with other values (e.g. binary labels derived from ratings)."""
        return Interactions(
            self.user, self.item, rating.astype(np.float32), self.timestamp, self.users, self.items, scale
        )

    def user_counts(self) -> npt.NDArray[np.int64]:
        return np.bincount(self.user, minlength=self.n_users)

    def item_counts(self) -> npt.NDArray[np.int64]:
        return np.bincount(self.item, minlength=self.n_items)

    def info(self) -> dict[str, object]:
        """Counts, rating scale and sparsity, as ``recengine data info`` prints them."""
        n_active_users = int(np.count_nonzero(self.user_counts()))
        n_active_items = int(np.count_nonzero(self.item_counts()))
        cells = max(1, n_active_users * n_active_items)
        out: dict[str, object] = {
            "ratings": len(self),
            "users": n_active_users,
            "items": n_active_items,
            "explicit": self.is_explicit,
            "density": len(self) / cells,
            "sparsity": 1.0 - len(self) / cells,
        }
        if self.rating is not None and len(self):
            out["rating_scale"] = {
                "low": self.scale.low if self.scale else float(self.rating.min()),
                "high": self.scale.high if self.scale else float(self.rating.max()),
                "step": self.scale.step if self.scale else None,
            }
            out["rating_mean"] = float(self.rating.mean(dtype=np.float64))
        if self.timestamp is not None and len(self):
            out["first_timestamp"] = int(self.timestamp.min())
            out["last_timestamp"] = int(self.timestamp.max())
        out.update(self.report.as_dict())
        return out

    @classmethod
    def from_arrays(
        cls,
        users: npt.ArrayLike,
        items: npt.ArrayLike,
        ratings: npt.ArrayLike | None = None,
        timestamps: npt.ArrayLike | None = None,
        *,
        scale: RatingScale | Literal["infer"] | None = "infer",
        source: str | Path | None = None,
        first_line: int = 1,
        user_map: IdMap | None = None,
        item_map: IdMap | None = None,
    ) -> Interactions:
        """Validate and index raw columns; duplicates (user, item) keep the latest by timestamp.

        ``source`` and ``first_line`` (the file line of row 0) let errors name the offending line.
        Given ``user_map``/``item_map`` are used as they are (ids outside them are an error);
        otherwise internal ids follow the sorted external ids, so the numbering is reproducible.
        """
        u_ext = np.asarray(users)
        i_ext = np.asarray(items)
        n = len(u_ext)
        if n == 0:
            raise DataError("no ratings: the data holds no rows", source)
        if len(i_ext) != n:
            raise ValueError("users and items must have the same length")
        rating = None if ratings is None else np.asarray(ratings, dtype=np.float32)
        ts = None if timestamps is None else np.asarray(timestamps, dtype=np.int64)
        scale_obj: RatingScale | None = None
        if rating is not None:
            nan = ~np.isfinite(rating)
            if bool(nan.any()):
                row = int(np.argmax(nan))
                raise DataError(
                    f"rating is missing or not a number ({float(rating[row])!r})", source, first_line + row
                )
            scale_obj = RatingScale.infer(rating) if scale == "infer" else scale
            if scale_obj is not None:
                bad = scale_obj.bad_rows(rating)
                if bool(bad.any()):
                    row = int(np.argmax(bad))
                    raise DataError(
                        f"rating {float(rating[row]):g} is outside the declared scale {scale_obj} "
                        f"({int(bad.sum())} such rows)",
                        source,
                        first_line + row,
                    )
        if user_map is not None:
            umap, u = user_map, user_map.to_internal(u_ext)
        else:
            umap, u = _index(u_ext, "user")
        if item_map is not None:
            imap, i = item_map, item_map.to_internal(i_ext)
        else:
            imap, i = _index(i_ext, "item")
        report = LoadReport(rows_read=n)
        keep = _latest_per_pair(u, i, ts, len(imap))
        if keep is not None:
            report.duplicates_removed = n - len(keep)
            u, i = u[keep], i[keep]
            rating = None if rating is None else rating[keep]
            ts = None if ts is None else ts[keep]
        return cls(u, i, rating, ts, umap, imap, scale_obj, report)


def _index(values: np.ndarray, name: str) -> tuple[IdMap, IntArray]:
    """An IdMap over the sorted distinct values and each row's internal id.

    Non-negative integer ids of moderate range (MovieLens: up to ~300K) use a presence table,
    O(n) instead of sorting 20M values; anything else goes through np.unique.
    """
    if values.dtype.kind == "O":
        values = values.astype(str)
    if values.dtype.kind in "iu" and len(values):
        lo, hi = int(values.min()), int(values.max())
        if lo >= 0 and hi < max(1 << 22, 4 * len(values)):
            present = np.zeros(hi + 1, dtype=bool)
            present[values] = True
            lut = np.cumsum(present, dtype=np.int64) - 1
            return IdMap(np.flatnonzero(present), name), lut[values].astype(np.int32)
    uniq, inverse = np.unique(values, return_inverse=True)
    return IdMap(uniq, name), inverse.astype(np.int32).reshape(-1)


def _latest_per_pair(
    u: IntArray, i: IntArray, ts: npt.NDArray[np.int64] | None, n_items: int
) -> npt.NDArray[np.int64] | None:
    """Row indices to keep when (user, item) pairs repeat, in original order; None when none repeat."""
    key = u.astype(np.int64) * max(n_items, 1) + i
    if bool(np.all(key[1:] > key[:-1])):  # MovieLens files are sorted by user, then item
        return None
    sorted_key = np.sort(key)
    if not bool(np.any(sorted_key[1:] == sorted_key[:-1])):
        return None
    del sorted_key
    # Only the rows of repeated keys need the (key, timestamp, file position) sort; a full 3-key
    # lexsort of 20M rows took ~13 s, this takes ~3 s.
    order = np.argsort(key, kind="stable")
    k = key[order]
    same = k[1:] == k[:-1]
    in_group = np.zeros(len(k), dtype=bool)
    in_group[1:] = same
    in_group[:-1] |= same
    del k, same
    pos = np.flatnonzero(in_group)
    rows = order[pos]
    del order, in_group
    gk = key[rows]
    sub = np.lexsort((rows, ts[rows] if ts is not None else rows, gk))
    rows, gk = rows[sub], gk[sub]
    # The last row of each key group (latest timestamp, then latest in the file) is the keeper.
    last = np.ones(len(gk), dtype=bool)
    last[:-1] = gk[1:] != gk[:-1]
    keep = np.ones(len(key), dtype=bool)
    keep[rows[~last]] = False
    return np.flatnonzero(keep)
