"""Negative sampling for binary training: pairs a user never interacted with, labelled 0.

Negatives are drawn once per fit from a seeded generator (the shared loop trains on fixed arrays),
``rate`` per observed row of the user, uniformly over the catalog or in proportion to the items'
training counts. A draw that hits any item the user has in the training data (a known positive,
or a known row of any label) is redrawn; the few draws still colliding after a handful of vectorized
rounds are settled by choosing among that user's free items directly, so the result holds no
known pair and every user with at least one free item gets exactly ``rate`` negatives per row.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_ROUNDS = 8


def sample_negatives(
    users: npt.NDArray[np.integer],
    items: npt.NDArray[np.integer],
    n_items: int,
    rate: int,
    mode: str = "uniform",
    seed: int = 0,
    positive: npt.NDArray[np.bool_] | None = None,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], int, npt.NDArray[np.int64]]:
    """``rate`` negative items for each positive (user, item) row (every row when ``positive`` is
    None): (users, items, short, rows) where ``short`` counts the negatives that could not be drawn
    because a user has every item of the catalog already, and ``rows`` names the row each negative
    was drawn for (what it shares with it, such as its session). No negative is a pair among the
    rows, positive or not; popularity counts every row."""
    if rate < 1:
        raise ValueError(f"rate must be at least 1, got {rate}")
    if mode not in ("uniform", "popularity"):
        raise ValueError(f"unknown negative sampling mode {mode!r}")
    u = np.asarray(users, dtype=np.int64)
    i = np.asarray(items, dtype=np.int64)
    if positive is not None and len(positive) != len(u):
        raise ValueError(f"positive must have one flag per row ({len(u)}), got {len(positive)}")
    if len(u) == 0:
        empty = np.zeros(0, dtype=np.int32)
        return empty, empty.copy(), 0, np.zeros(0, dtype=np.int64)
    known = np.unique(u * n_items + i)
    n_known = np.bincount(u, minlength=int(u.max()) + 1)  # rows per user (keys may repeat)
    known_per_user = np.bincount(known // n_items, minlength=len(n_known))
    full = known_per_user >= n_items
    source = np.arange(len(u)) if positive is None else np.flatnonzero(np.asarray(positive, dtype=bool))
    out_rows = np.repeat(source, rate)
    out_u = u[out_rows]
    keep = ~full[out_u]
    short = int(np.count_nonzero(~keep))
    out_u, out_rows = out_u[keep], out_rows[keep]
    rng = np.random.default_rng([seed, 0x9E6A])
    if mode == "popularity":
        counts = np.bincount(i, minlength=n_items).astype(np.float64)
        cdf = np.cumsum(counts / counts.sum())

        def draw(k: int) -> npt.NDArray[np.int64]:
            pos = np.searchsorted(cdf, rng.random(k) * cdf[-1], side="right")
            return np.minimum(pos, n_items - 1).astype(np.int64)
    else:

        def draw(k: int) -> npt.NDArray[np.int64]:
            return rng.integers(0, n_items, size=k, dtype=np.int64)

    out_i = draw(len(out_u))
    bad = _collides(known, out_u * n_items + out_i)
    for _ in range(_ROUNDS):
        if not bool(bad.any()):
            break
        idx = np.flatnonzero(bad)
        out_i[idx] = draw(len(idx))
        bad[idx] = _collides(known, out_u[idx] * n_items + out_i[idx])
    for k in np.flatnonzero(bad).tolist():  # rare: users who have most of the catalog
        user = int(out_u[k])
        taken = known[(known >= user * n_items) & (known < (user + 1) * n_items)] - user * n_items
        free = np.setdiff1d(np.arange(n_items), taken)
        out_i[k] = int(free[rng.integers(len(free))])
    return out_u.astype(np.int32), out_i.astype(np.int32), short, out_rows.astype(np.int64)


def _collides(known: npt.NDArray[np.int64], keys: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    pos = np.minimum(np.searchsorted(known, keys), len(known) - 1)
    return known[pos] == keys
