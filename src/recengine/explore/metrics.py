"""Did the vectors learn anything about genres? Two measures, each beside what chance gives.

Genres are never shown to the models explored here, so agreement with them is evidence of learning:

- **Cluster purity**: for each cluster, the share of its members that carry its most common genre
  (an item may carry several), averaged over items. Chance is the same clusters with their members
  shuffled (same sizes; seeded; mean and spread over several permutations).
- **Neighbour genre share**: the share of (item, k nearest neighbour) pairs that have a genre in
  common. Chance is the same share over all pairs of distinct items (the expectation of random
  pairs, computed exactly, not sampled).

Items without any genre are left out of both, and ``mask`` can restrict them further (e.g. to items
with enough ratings for their vectors to mean something).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .neighbours import top_k_cosine

BoolMatrix = npt.NDArray[np.bool_]


def _rows(G: BoolMatrix, mask: npt.ArrayLike | None) -> npt.NDArray[np.int64]:
    keep = G.any(axis=1)
    if mask is not None:
        keep &= np.asarray(mask, dtype=bool)
    return np.flatnonzero(keep)


def purity(labels: npt.ArrayLike, G: BoolMatrix, mask: npt.ArrayLike | None = None) -> float:
    """Multi-label purity: sum over clusters of max over genres of (members with that genre), over n."""
    rows = _rows(G, mask)
    if len(rows) == 0:
        return float("nan")
    lab = np.asarray(labels)[rows]
    _, inv = np.unique(lab, return_inverse=True)
    counts = np.zeros((inv.max() + 1, G.shape[1]), dtype=np.int64)
    np.add.at(counts, inv, G[rows].astype(np.int64))
    return float(counts.max(axis=1).sum() / len(rows))


def purity_vs_random(
    labels: npt.ArrayLike,
    G: BoolMatrix,
    mask: npt.ArrayLike | None = None,
    *,
    permutations: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """Purity of ``labels`` beside the same cluster sizes with members shuffled ``permutations`` times."""
    rows = _rows(G, mask)
    lab = np.asarray(labels)[rows]
    sub = G[rows]
    observed = purity(lab, sub)
    rng = np.random.default_rng(seed)
    rand = np.array([purity(rng.permutation(lab), sub) for _ in range(permutations)])
    return _beside(observed, rand, n=len(rows), permutations=permutations)


def neighbour_genre_share(
    unit: npt.NDArray[np.float32],
    G: BoolMatrix,
    k: int = 10,
    mask: npt.ArrayLike | None = None,
) -> float:
    """Share of (item, neighbour) pairs with a genre in common, over the ``k`` nearest neighbours by
    cosine of each item; items and neighbours both drawn from the rows kept (genre, ``mask``)."""
    rows = _rows(G, mask)
    if len(rows) < 2:
        return float("nan")
    idx, _ = top_k_cosine(unit, rows, k, rows)
    ok = idx >= 0
    shared: npt.NDArray[np.bool_] = np.any(G[rows][:, None, :] & G[np.maximum(idx, 0)], axis=2)
    return float(shared[ok].mean())


def random_pair_genre_share(G: BoolMatrix, mask: npt.ArrayLike | None = None, block: int = 1024) -> float:
    """Expected :func:`neighbour_genre_share` of random neighbours: for each item, the share of the
    other kept items it shares a genre with, averaged over items (exact, in blocks)."""
    rows = _rows(G, mask)
    n = len(rows)
    if n < 2:
        return float("nan")
    g = G[rows].astype(np.float32)
    total = 0.0
    for s in range(0, n, block):
        common = (g[s : s + block] @ g.T) > 0
        total += float(((common.sum(axis=1) - 1) / (n - 1)).sum())  # every kept item shares with itself
    return total / n


def neighbours_vs_random(
    unit: npt.NDArray[np.float32], G: BoolMatrix, k: int = 10, mask: npt.ArrayLike | None = None
) -> dict[str, Any]:
    """:func:`neighbour_genre_share` beside :func:`random_pair_genre_share` over the same items."""
    observed = neighbour_genre_share(unit, G, k, mask)
    chance = random_pair_genre_share(G, mask)
    out = _beside(observed, np.array([chance]), n=len(_rows(G, mask)))
    out.pop("random_std")
    out["k"] = k
    return out


def _beside(observed: float, rand: npt.NDArray[np.float64], **extra: Any) -> dict[str, Any]:
    mean = float(rand.mean()) if len(rand) else float("nan")
    std = float(rand.std()) if len(rand) > 1 else 0.0
    return {
        "observed": observed,
        "random": mean,
        "random_std": std,
        "ratio": observed / mean if mean > 0 else float("nan"),
        "difference": observed - mean,
        "z": (observed - mean) / std if std > 0 else None,
        **extra,
    }
