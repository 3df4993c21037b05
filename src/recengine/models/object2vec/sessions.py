"""Rating sessions: a user's ratings entered close together in time, as a context token of the query.

MovieLens users rated a page of movies at a time, and the ratings of one sitting share a level beyond
the user's usual one (timeSVD++'s day-specific user bias, at the scale of one sitting). A session is
a run of one user's ratings in time order whose consecutive timestamps lie at most ``gap`` seconds
apart; each session found in training gets a bias that is added to the user's (shrunk on its own,
``session_reg``: a session holds two or three ratings, so a whole vector per session overfits). A
query carries its time: it belongs to the user's training session whose span, widened
by ``gap`` on each side, holds that time (the latest such one), and to none otherwise, so a query
outside every trained session is predicted as without sessions.

Session ids are 1..n; 0 stands for "no session" (a padding row whose bias stays zero), which is what
sampled negatives, queries without a time and new users get.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recengine.errors import DataError

_MIN, _MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


@dataclass(frozen=True)
class Sessions:
    """The training sessions, sorted by (user, start): session ``k + 1`` is ``user[k]``'s ratings from
    ``start[k]`` to ``end[k]`` (seconds, inclusive)."""

    gap: int
    user: npt.NDArray[np.int64]
    start: npt.NDArray[np.int64]
    end: npt.NDArray[np.int64]

    @property
    def rows(self) -> int:
        """Rows of the session table: every session and the padding row 0."""
        return len(self.user) + 1

    @classmethod
    def fit(
        cls, users: npt.ArrayLike, timestamps: npt.ArrayLike | None, gap: int
    ) -> tuple[Sessions, npt.NDArray[np.int64]]:
        """The sessions of these training rows and each row's session id (1..n)."""
        if timestamps is None:
            raise DataError(
                "session_gap needs the time of each rating, and these interactions have no timestamps; "
                "leave session_gap out (or give a timestamp column)"
            )
        u = np.asarray(users, dtype=np.int64)
        t = np.asarray(timestamps, dtype=np.int64)
        order = np.lexsort((t, u))
        su, st = u[order], t[order]
        new = np.ones(len(order), dtype=bool)
        # Within a user the times ascend: their difference as unsigned 64-bit is exact, never wraps.
        new[1:] = (su[1:] != su[:-1]) | (st[1:].view(np.uint64) - st[:-1].view(np.uint64) > gap)
        ids = np.empty(len(order), dtype=np.int64)
        ids[order] = np.cumsum(new)  # 1..n in (user, time) order
        starts = np.flatnonzero(new)
        ends = np.r_[starts[1:], len(order)] - 1
        return cls(gap, su[starts], st[starts], st[ends]), ids

    def lookup(self, users: npt.ArrayLike, timestamps: npt.ArrayLike | None) -> npt.NDArray[np.int64]:
        """Session id of each (user, time) query: the user's latest training session starting no later
        than ``time + gap`` whose end lies no earlier than ``time - gap``; 0 where there is none (or no
        time at all)."""
        u = np.asarray(users, dtype=np.int64)
        if timestamps is None or len(self.user) == 0:
            return np.zeros(len(u), dtype=np.int64)
        t = np.asarray(timestamps, dtype=np.int64)
        if t.shape != u.shape:
            raise DataError(f"{len(t)} timestamps were given for {len(u)} queries")
        lo_t, hi_t = int(self.start.min()) - self.gap, int(self.end.max()) + self.gap  # exact (Python)
        near = (t >= max(lo_t, _MIN)) & (t <= min(hi_t, _MAX))  # outside every widened span: none
        span = hi_t - lo_t + 1
        top = int(max(self.user.max(), u.max(initial=0))) + 1
        if lo_t - self.gap < _MIN or hi_t > _MAX or top > (2**62) // span:  # the keys would not fit
            return self._lookup_each(u, t, near)
        # One search over (user, start) keys: the last session starting no later than time + gap.
        keys = self.user * span + (self.start - lo_t)
        at = np.minimum(np.clip(t, lo_t, hi_t) - lo_t + self.gap, span - 1)
        j = np.searchsorted(keys, u * span + at, "right") - 1
        jj = np.maximum(j, 0)
        hit = near & (j >= 0) & (self.user[jj] == u) & (self.end[jj] >= np.clip(t, lo_t, hi_t) - self.gap)
        out = np.zeros(len(u), dtype=np.int64)
        out[hit] = jj[hit] + 1
        return out

    def _lookup_each(
        self, u: npt.NDArray[np.int64], t: npt.NDArray[np.int64], near: npt.NDArray[np.bool_]
    ) -> npt.NDArray[np.int64]:
        """:meth:`lookup` one query at a time in exact integers, for times too near int64's ends or
        spans too wide for one key per session."""
        lo = np.searchsorted(self.user, u, "left")
        hi = np.searchsorted(self.user, u, "right")
        out = np.zeros(len(u), dtype=np.int64)
        starts, ends = self.start.tolist(), self.end.tolist()
        for k in np.flatnonzero(near & (hi > lo)).tolist():
            a, b, tk = int(lo[k]), int(hi[k]), int(t[k])
            j = bisect.bisect_right(starts, tk + self.gap, a, b) - 1
            if j >= a and ends[j] + self.gap >= tk:
                out[k] = j + 1
        return out

    def arrays(self) -> dict[str, npt.NDArray[np.int64]]:
        return {"user": self.user, "start": self.start, "end": self.end}

    @classmethod
    def from_arrays(cls, gap: int, arrays: dict[str, npt.NDArray[np.int64]]) -> Sessions:
        missing = [k for k in ("user", "start", "end") if k not in arrays]
        if missing:
            raise DataError(f"the stored sessions lack their {', '.join(missing)} array")
        user, start, end = (np.asarray(arrays[k], dtype=np.int64) for k in ("user", "start", "end"))
        if not len(user) == len(start) == len(end):
            raise DataError("the stored sessions' user, start and end arrays differ in length")
        return cls(gap, user, start, end)
