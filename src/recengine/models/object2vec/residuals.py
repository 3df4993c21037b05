"""Session residuals: how the user's ratings entered around the query's time went against the model.

MovieLens users rated a page of movies at a time, and the ratings of one sitting share a level beyond
the user's usual one. The joint session bias (``session_gap``) is fitted in-sample beside a
128-dimensional user vector that absorbs most of that level, so it gains little. This second stage
reads the level from the model's own misses instead: for a query at time ``t``, the shrunk mean
residual (label minus the model's prediction) of the user's training rows within each window of
``t`` (``windows``, seconds either side), weighed beside the model's output by a small regression
fitted on rows the networks never trained on (each member's early-stopping rows): logistic over
``logit(p)`` for a probability, linear over the rating otherwise.

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

Kind = Literal["logistic", "linear"]


@dataclass(frozen=True)
class ResidualTable:
    """The training rows' residuals summed per (user, second), sorted by (user, time)."""

    user: npt.NDArray[np.int64]
    time: npt.NDArray[np.int64]
    total: npt.NDArray[np.float64]
    count: npt.NDArray[np.int64]

    @classmethod
    def build(cls, users: npt.ArrayLike, times: npt.ArrayLike, residuals: npt.ArrayLike) -> ResidualTable:
        u = np.asarray(users, dtype=np.int64)
        t = np.asarray(times, dtype=np.int64)
        r = np.asarray(residuals, dtype=np.float64)
        if not len(u) == len(t) == len(r):
            raise ValueError("users, times and residuals differ in length")
        order = np.lexsort((t, u))
        su, st = u[order], t[order]
        new = np.ones(len(order), dtype=bool)
        new[1:] = (su[1:] != su[:-1]) | (st[1:] != st[:-1])
        starts = np.flatnonzero(new)
        total = np.add.reduceat(r[order], starts) if len(starts) else np.zeros(0)
        count = np.diff(np.r_[starts, len(order)]).astype(np.int64)
        return cls(su[starts], st[starts], total.astype(np.float64), count)

    def features(
        self, users: npt.ArrayLike, times: npt.ArrayLike, windows: tuple[int, ...], past: bool = False
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """(n, len(windows)): per query and window, the residuals of the user's rows whose times lie
        within ``window`` seconds of the query's (with ``past``, only those at or before it), summed
        over (count + SHRINK); and whether any row lies within the widest window."""
        u = np.asarray(users, dtype=np.int64)
        t = np.asarray(times, dtype=np.int64)
        out = np.zeros((len(u), len(windows)), dtype=np.float64)
        near = np.zeros(len(u), dtype=bool)
        if len(self.user) == 0 or len(u) == 0:
            return out, near
        distinct, keys, cum_total, cum_count = self._index
        width = len(distinct) + 1
        if u.max() >= _MAX // width:
            raise DataError(f"user id {int(u.max())} is too large for the session residuals' index")
        for k, w in enumerate(windows):
            lo_t = np.where(t < _MIN + w, _MIN, t - w)  # t ± w, saturating at int64's ends
            hi_t = t if past else np.where(t > _MAX - w, _MAX, t + w)
            lo = np.searchsorted(keys, u * width + np.searchsorted(distinct, lo_t, "left"), "left")
            hi = np.searchsorted(keys, u * width + np.searchsorted(distinct, hi_t, "right"), "left")
            n = cum_count[hi] - cum_count[lo]
            out[:, k] = (cum_total[hi] - cum_total[lo]) / (n + SHRINK)
            near |= n > 0
        return out, near

    @cached_property
    def _index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The distinct times, each entry's key (user, rank of its time: fits int64 whatever the
        times are) and the running sums, built once per table."""
        distinct = np.unique(self.time)
        if int(self.user.max()) >= _MAX // (len(distinct) + 1):
            raise DataError(f"user id {int(self.user.max())} is too large for the session residuals' index")
        keys = self.user * (len(distinct) + 1) + np.searchsorted(distinct, self.time)
        return distinct, keys, np.r_[0.0, np.cumsum(self.total)], np.r_[0, np.cumsum(self.count)]

    def arrays(self) -> dict[str, np.ndarray]:
        return {"user": self.user, "time": self.time, "total": self.total, "count": self.count}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ResidualTable:
        missing = [k for k in ("user", "time", "total", "count") if k not in arrays]
        if missing:
            raise DataError(f"the stored session residuals lack their {', '.join(missing)} array")
        user, time, count = (np.asarray(arrays[k], dtype=np.int64) for k in ("user", "time", "count"))
        total = np.asarray(arrays["total"], dtype=np.float64)
        if not len(user) == len(time) == len(total) == len(count):
            raise DataError("the stored session residuals' arrays differ in length")
        return cls(user, time, total, count)


@dataclass(frozen=True)
class Correction:
    """``output = link(weights · [base, features] + intercept)``; ``base`` is ``logit(p)`` for the
    logistic kind and the predicted value for the linear one."""

    kind: Kind
    windows: tuple[int, ...]
    weights: tuple[float, ...]
    intercept: float
    past: bool = False  # the windows reach only back in time from the query

    @classmethod
    def fit(
        cls,
        kind: Kind,
        windows: tuple[int, ...],
        base: npt.NDArray[np.float64],
        features: npt.NDArray[np.float64],
        target: npt.NDArray[np.float64],
        past: bool = False,
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
        return cls(kind, tuple(windows), tuple(float(c) for c in coef), b, past)

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
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Correction:
        try:
            kind = str(d["kind"])
            windows = tuple(int(w) for w in d["windows"])  # type: ignore[attr-defined]
            weights = tuple(float(w) for w in d["weights"])  # type: ignore[attr-defined]
            intercept = float(d["intercept"])  # type: ignore[arg-type]
            past = d.get("past", False)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"the stored session residual weights are malformed ({e})") from None
        if (
            kind not in ("logistic", "linear")
            or len(weights) != len(windows) + 1
            or not isinstance(past, bool)
        ):
            raise DataError("the stored session residual weights do not fit their windows")
        return cls(kind, windows, weights, intercept, past)  # type: ignore[arg-type]


def _design(kind: Kind, base: npt.NDArray[np.float64], features: npt.NDArray[np.float64]) -> np.ndarray:
    if kind == "logistic":
        p = np.clip(base, _EPS, 1 - _EPS)
        base = np.log(p / (1 - p))
    return np.column_stack([base, features])
