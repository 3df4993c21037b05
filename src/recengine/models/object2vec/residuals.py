"""Session residuals: how the user's ratings entered around the query's time went against the model.

MovieLens users rated a page of movies at a time, and the ratings of one sitting share a level beyond
the user's usual one. The joint session bias (``session_gap``) is fitted in-sample beside a
128-dimensional user vector that absorbs most of that level, so it gains little. This second stage
reads the level from the model's own misses instead: for a query at time ``t``, the shrunk mean
residual (label minus the model's prediction) of the user's training rows within each window of
``t`` (``windows``, seconds either side), weighed beside the model's output by a small regression
fitted on rows the networks never trained on (each member's early-stopping rows): logistic over
``logit(p)`` for a probability, linear over the rating otherwise.

A model of rating classes (P(rating > 3) from a softmax over the stars) reads a second kind of
residual beside the label's: the rating minus the expected rating, which tells a 3 from a 1 where
the label does not, each kind with its own feature per window.

One more feature, with ``similar``: within that window, the residuals weighed by how alike each
row's movie is to the query's (the cosine of their co-occurrence vectors, clipped at 0, squared),
so a sitting spent disliking horror films reads more on the next horror film than on a comedy.

A query without a time, or with none of the user's training rows within the widest window, keeps
the model's output (and such rows are not among those the weights are fitted on).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import expit

from recengine.errors import DataError

_MIN, _MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
#: Each window's mean residual is shrunk toward 0 as if it held this many more rows at 0: a window of
#: one rating says less than one of ten (1, 3 and 10 were alike on the members' rows of ua.base).
SHRINK = 3.0
#: A probability enters the logistic stage as its logit, clipped this far from 0 and 1.
_EPS = 1e-6
#: Co-occurrence vectors: this many right singular vectors of the binary user × item matrix (who
#: rated what); rows are weighed by their cosine to the query's item to this power, clipped at 0, and
#: the weighted mean is shrunk by this much weight at 0. Chosen by log loss on an inner split of
#: ua.base among 16 and 32 dimensions, powers 1 and 2.
SIMILAR_DIM = 32
SIMILAR_POWER = 2
SIMILAR_SHRINK = 1.5
#: Pairs of (query, row in its window) scored per step: bounds the memory of one step.
_PAIR_CHUNK = 1 << 18

Kind = Literal["logistic", "linear"]


@dataclass(frozen=True)
class ResidualTable:
    """The training rows' residuals summed per (user, second), sorted by (user, time); ``total`` has
    one column per kind of residual (the label's; with rating classes also the expected rating's)."""

    user: npt.NDArray[np.int64]
    time: npt.NDArray[np.int64]
    total: npt.NDArray[np.float64]  # (entries, kinds)
    count: npt.NDArray[np.int64]

    @classmethod
    def build(cls, users: npt.ArrayLike, times: npt.ArrayLike, residuals: npt.ArrayLike) -> ResidualTable:
        u = np.asarray(users, dtype=np.int64)
        t = np.asarray(times, dtype=np.int64)
        r = _columns(residuals, np.float64)
        if not len(u) == len(t) == len(r):
            raise ValueError("users, times and residuals differ in length")
        order = np.lexsort((t, u))
        su, st = u[order], t[order]
        new = np.ones(len(order), dtype=bool)
        new[1:] = (su[1:] != su[:-1]) | (st[1:] != st[:-1])
        starts = np.flatnonzero(new)
        total = np.add.reduceat(r[order], starts, axis=0) if len(starts) else np.zeros((0, r.shape[1]))
        count = np.diff(np.r_[starts, len(order)]).astype(np.int64)
        return cls(su[starts], st[starts], total.astype(np.float64), count)

    def features(
        self, users: npt.ArrayLike, times: npt.ArrayLike, windows: tuple[int, ...], past: bool = False
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """(n, kinds × len(windows)), kind by kind: per query and window, the residuals of the user's
        rows whose times lie within ``window`` seconds of the query's (with ``past``, only those at or
        before it), summed over (count + SHRINK); and whether any row lies within the widest window."""
        u = np.asarray(users, dtype=np.int64)
        t = np.asarray(times, dtype=np.int64)
        kinds = self.total.shape[1]
        out = np.zeros((len(u), kinds, len(windows)), dtype=np.float64)
        near = np.zeros(len(u), dtype=bool)
        if len(self.user) == 0 or len(u) == 0:
            return out.reshape(len(u), kinds * len(windows)), near
        distinct, keys, cum_total, cum_count = self._index
        for k, w in enumerate(windows):
            lo, hi = _bounds(distinct, keys, u, t, w, past)
            n = cum_count[hi] - cum_count[lo]
            out[:, :, k] = (cum_total[hi] - cum_total[lo]) / (n + SHRINK)[:, None]
            near |= n > 0
        return out.reshape(len(u), kinds * len(windows)), near

    @cached_property
    def _index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The distinct times, each entry's key (user, rank of its time: fits int64 whatever the
        times are) and the running sums, built once per table."""
        distinct, keys = _time_keys(self.user, self.time)
        cum_total = np.vstack([np.zeros((1, self.total.shape[1])), np.cumsum(self.total, axis=0)])
        return distinct, keys, cum_total, np.r_[0, np.cumsum(self.count)]

    def arrays(self) -> dict[str, np.ndarray]:
        return {"user": self.user, "time": self.time, "total": self.total, "count": self.count}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ResidualTable:
        missing = [k for k in ("user", "time", "total", "count") if k not in arrays]
        if missing:
            raise DataError(f"the stored session residuals lack their {', '.join(missing)} array")
        user, time, count = (np.asarray(arrays[k], dtype=np.int64) for k in ("user", "time", "count"))
        total = _columns(arrays["total"], np.float64)  # one column, 1-D, as saved before the kinds
        if not len(user) == len(time) == len(total) == len(count):
            raise DataError("the stored session residuals' arrays differ in length")
        return cls(user, time, total, count)


def _columns(values: npt.ArrayLike, dtype: type[np.floating]) -> np.ndarray:
    """Residuals as (rows, kinds): a 1-D array is one kind."""
    a = np.asarray(values, dtype=dtype)
    return a[:, None] if a.ndim == 1 else a


def _time_keys(user: npt.NDArray[np.int64], time: npt.NDArray[np.int64]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct times and each entry's key (user, rank of its time), which fits int64 whatever the
    times are and sorts as (user, time) does."""
    distinct = np.unique(time)
    if len(user) and int(user.max()) >= _MAX // (len(distinct) + 1):
        raise DataError(f"user id {int(user.max())} is too large for the session residuals' index")
    return distinct, user * (len(distinct) + 1) + np.searchsorted(distinct, time)


def _bounds(
    distinct: np.ndarray,
    keys: np.ndarray,
    u: npt.NDArray[np.int64],
    t: npt.NDArray[np.int64],
    w: int,
    past: bool,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """[lo, hi) of the entries of user ``u`` within ``w`` seconds of ``t`` (only up to ``t`` with
    ``past``), for keys sorted as :func:`_time_keys` makes them."""
    width = len(distinct) + 1
    if len(u) and u.max() >= _MAX // width:
        raise DataError(f"user id {int(u.max())} is too large for the session residuals' index")
    lo_t = np.where(t < _MIN + w, _MIN, t - w)  # t ± w, saturating at int64's ends
    hi_t = t if past else np.where(t > _MAX - w, _MAX, t + w)
    lo = np.searchsorted(keys, u * width + np.searchsorted(distinct, lo_t, "left"), "left")
    hi = np.searchsorted(keys, u * width + np.searchsorted(distinct, hi_t, "right"), "left")
    return lo, hi


def cooccurrence_vectors(
    users: npt.ArrayLike, items: npt.ArrayLike, n_users: int, n_items: int, dim: int = SIMILAR_DIM
) -> npt.NDArray[np.float32]:
    """Unit vectors of the items from who rated what (the top right singular vectors of the binary
    user × item matrix; ARPACK from a fixed start, so the same data gives the same vectors). At most
    a quarter of the smaller side: near full rank every movie would be alike only to itself. Items
    nobody rated get 0, alike to nothing."""
    import scipy.sparse as sp

    u = np.asarray(users, dtype=np.int64)
    i = np.asarray(items, dtype=np.int64)
    m = sp.csr_matrix((np.ones(len(u)), (u, i)), shape=(n_users, n_items))
    m.data[:] = 1.0  # a pair rated twice is still one
    k = min(dim, min(m.shape) // 4)
    if k < 1 or m.nnz == 0:
        return np.zeros((n_items, 0), dtype=np.float32)
    if n_items <= 2 * dim:  # ARPACK wants k well below the size; a small side is cheap dense
        vt = np.linalg.eigh((m.T @ m).toarray())[1][:, ::-1][:, :k].T
    elif n_users <= 2 * dim:  # V = Mᵀ U / s from the users' side
        value, vec = np.linalg.eigh((m @ m.T).toarray())
        value, vec = value[::-1][:k], vec[:, ::-1][:, :k]
        vt = (m.T @ vec / np.sqrt(np.maximum(value, 1e-12))).T
    else:
        from scipy.sparse.linalg import svds

        v0 = np.full(min(m.shape), 1.0 / np.sqrt(min(m.shape)))
        vt = svds(m, k=k, v0=v0, tol=0, maxiter=100_000)[2]
    vec = vt.T
    norm = np.linalg.norm(vec, axis=1, keepdims=True)
    return np.divide(vec, norm, out=np.zeros_like(vec), where=norm > 0).astype(np.float32)


@dataclass(frozen=True)
class SimilarTable:
    """The training rows' residuals one by one with their items, sorted by (user, time), and the
    items' co-occurrence vectors: the similarity-weighted window feature."""

    user: npt.NDArray[np.int64]
    time: npt.NDArray[np.int64]
    item: npt.NDArray[np.int32]
    residual: npt.NDArray[np.float32]  # (rows, kinds)
    vectors: npt.NDArray[np.float32]

    @classmethod
    def build(
        cls,
        users: npt.ArrayLike,
        times: npt.ArrayLike,
        items: npt.ArrayLike,
        residuals: npt.ArrayLike,
        vectors: npt.NDArray[np.float32],
    ) -> SimilarTable:
        u = np.asarray(users, dtype=np.int64)
        t = np.asarray(times, dtype=np.int64)
        i = np.asarray(items, dtype=np.int64)
        r = _columns(residuals, np.float64)
        if not len(u) == len(t) == len(i) == len(r):
            raise ValueError("users, times, items and residuals differ in length")
        if len(i) and (i.min() < 0 or i.max() >= len(vectors)):
            raise ValueError("an item has no co-occurrence vector")
        order = np.lexsort((t, u))
        return cls(u[order], t[order], i[order].astype(np.int32), r[order].astype(np.float32), vectors)

    def feature(
        self,
        users: npt.ArrayLike,
        items: npt.ArrayLike,
        times: npt.ArrayLike,
        window: int,
        past: bool = False,
    ) -> npt.NDArray[np.float64]:
        """(n, kinds): per query, the residuals of the user's rows within ``window`` seconds of its
        time, each weighed by max(0, cos(row's item, query's item)) ** SIMILAR_POWER, summed over (the
        weights + SIMILAR_SHRINK). An item without a vector (unknown to training) is alike to
        nothing: 0."""
        u = np.asarray(users, dtype=np.int64)
        q_items = np.asarray(items, dtype=np.int64)
        t = np.asarray(times, dtype=np.int64)
        out = np.zeros((len(u), self.residual.shape[1]), dtype=np.float64)
        if len(self.user) == 0 or len(u) == 0 or self.vectors.shape[1] == 0:
            return out
        distinct, keys = self._index
        lo, hi = _bounds(distinct, keys, u, t, window, past)
        known = (q_items >= 0) & (q_items < len(self.vectors))
        queries = np.flatnonzero((hi > lo) & known)
        counts = (hi - lo)[queries]
        ends = np.cumsum(counts)
        start = 0
        while start < len(queries):
            before = int(ends[start - 1]) if start else 0
            stop = max(start + 1, int(np.searchsorted(ends, before + _PAIR_CHUNK, "right")))
            qs, n = queries[start:stop], counts[start:stop]
            which = np.repeat(np.arange(len(qs)), n)
            rows = np.repeat(lo[qs], n) + np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
            sim = np.einsum(
                "ij,ij->i", self.vectors[self.item[rows]], self.vectors[q_items[qs]][which]
            ).astype(np.float64)
            weight = np.maximum(sim, 0.0) ** SIMILAR_POWER
            mass = np.bincount(which, weight, len(qs)) + SIMILAR_SHRINK
            for c in range(out.shape[1]):
                out[qs, c] = np.bincount(which, weight * self.residual[rows, c], len(qs)) / mass
            start = stop
        return out

    @cached_property
    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        return _time_keys(self.user, self.time)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "user": self.user,
            "time": self.time,
            "item": self.item,
            "residual": self.residual,
            "vectors": self.vectors,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> SimilarTable:
        names = ("user", "time", "item", "residual", "vectors")
        missing = [k for k in names if k not in arrays]
        if missing:
            raise DataError(f"the stored similar session residuals lack their {', '.join(missing)} array")
        user, time = (np.asarray(arrays[k], dtype=np.int64) for k in ("user", "time"))
        item = np.asarray(arrays["item"], dtype=np.int32)
        residual = _columns(arrays["residual"], np.float32)
        vectors = np.asarray(arrays["vectors"], dtype=np.float32)
        if not len(user) == len(time) == len(item) == len(residual):
            raise DataError("the stored similar session residuals' arrays differ in length")
        if vectors.ndim != 2 or (len(item) and (item.min() < 0 or item.max() >= len(vectors))):
            raise DataError("the stored similar session residuals name items without a vector")
        return cls(user, time, item, residual, vectors)


@dataclass(frozen=True)
class Correction:
    """``output = link(weights · [base, features] + intercept)``; ``base`` is ``logit(p)`` for the
    logistic kind and the predicted value for the linear one."""

    kind: Kind
    windows: tuple[int, ...]
    weights: tuple[float, ...]
    intercept: float
    past: bool = False  # the windows reach only back in time from the query
    similar: int | None = None  # the similarity-weighted window, its features after the windows'
    kinds: int = 1  # residual kinds, each with its own feature per window

    @classmethod
    def fit(
        cls,
        kind: Kind,
        windows: tuple[int, ...],
        base: npt.NDArray[np.float64],
        features: npt.NDArray[np.float64],
        target: npt.NDArray[np.float64],
        past: bool = False,
        similar: int | None = None,
        kinds: int = 1,
    ) -> Correction:
        """Fit on held-out rows: their model outputs, window features and labels (or ratings)."""
        from sklearn.linear_model import LinearRegression, LogisticRegression

        x = _design(kind, base, features)
        if kind == "logistic":
            y = target > 0.5
            if y.all() or not y.any():
                raise DataError("the held-out rows all have one label: nothing to weigh the residuals by")
            lr = LogisticRegression(C=1e4, max_iter=10_000).fit(x, y)
            coef, b = lr.coef_[0], float(lr.intercept_[0])
        else:
            lin = LinearRegression().fit(x, target)
            coef, b = lin.coef_, float(lin.intercept_)
        return cls(kind, tuple(windows), tuple(float(c) for c in coef), b, past, similar, kinds)

    def apply(
        self, base: npt.NDArray[np.float64], features: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        z = _design(self.kind, base, features) @ np.asarray(self.weights) + self.intercept
        return expit(z) if self.kind == "logistic" else z

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "windows": list(self.windows),
            "weights": list(self.weights),
            "intercept": self.intercept,
            "past": self.past,
            "similar": self.similar,
            "kinds": self.kinds,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Correction:
        try:
            kind = str(d["kind"])
            windows = tuple(int(w) for w in d["windows"])  # type: ignore[attr-defined]
            weights = tuple(float(w) for w in d["weights"])  # type: ignore[attr-defined]
            intercept = float(d["intercept"])  # type: ignore[arg-type]
            past = d.get("past", False)
            similar = None if d.get("similar") is None else int(d["similar"])  # type: ignore[call-overload]
            kinds = int(d.get("kinds", 1))  # type: ignore[call-overload]
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"the stored session residual weights are malformed ({e})") from None
        if (
            kind not in ("logistic", "linear")
            or kinds < 1
            or (similar is not None and not 0 <= similar <= max(windows, default=-1))
            or len(weights) != 1 + kinds * (len(windows) + (similar is not None))
            or not isinstance(past, bool)
        ):
            raise DataError("the stored session residual weights do not fit their windows")
        return cls(kind, windows, weights, intercept, past, similar, kinds)  # type: ignore[arg-type]


def _design(kind: Kind, base: npt.NDArray[np.float64], features: npt.NDArray[np.float64]) -> np.ndarray:
    if kind == "logistic":
        p = np.clip(base, _EPS, 1 - _EPS)
        base = np.log(p / (1 - p))
    return np.column_stack([base, features])
