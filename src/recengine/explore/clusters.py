"""K-Means and agglomerative (Ward) clusters of item vectors, a report to choose k, and what each
cluster is: its size, the genres over-represented in it, its most-rated titles, its mean rating.

Vectors are clustered as unit vectors, the cosine geometry the neighbour tables and the map use.
Ward's method needs the n × n distances, so above :data:`AGGLOMERATIVE_MAX` items the tree is built
on a seeded uniform sample and every other item joins the cluster with the nearest centroid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from recengine.errors import ConfigError

from .embeddings import ExploreData

Method = Literal["kmeans", "agglomerative"]
METHODS: tuple[Method, ...] = ("kmeans", "agglomerative")
AGGLOMERATIVE_MAX = 10_000
SELECTION_MAX = 20_000  # items used for the k-selection curves
SILHOUETTE_SAMPLE = 3_000
DEFAULT_KS = (2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30)


def _ward_tree(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    from scipy.cluster.hierarchy import linkage

    return linkage(np.asarray(x, dtype=np.float64), method="ward")


def _cut(tree: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.int64]:
    from scipy.cluster.hierarchy import fcluster

    return fcluster(tree, k, criterion="maxclust").astype(np.int64) - 1


def _nearest_centroid(
    x: npt.NDArray[np.float32], centroids: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    d = (x**2).sum(1)[:, None] - 2 * x @ centroids.T + (centroids**2).sum(1)[None, :]
    return np.asarray(d.argmin(axis=1), dtype=np.int64)


def _by_size(labels: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Renumber clusters 0..k-1 from the largest down, so numbers read the same from run to run."""
    ids, counts = np.unique(labels, return_counts=True)
    order = ids[np.lexsort((ids, -counts))]
    new = np.empty(labels.max() + 1, dtype=np.int64)
    new[order] = np.arange(len(order))
    return new[labels]


def fit_clusters(
    x: npt.NDArray[np.float32],
    k: int,
    method: Method = "kmeans",
    *,
    seed: int = 0,
    max_agglomerative: int = AGGLOMERATIVE_MAX,
) -> npt.NDArray[np.int64]:
    """Cluster labels 0..k-1 (0 the largest) of the rows of ``x``, fitted with one native thread
    (on a busy machine OpenMP's waiting threads made K-Means a hundred times slower)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _fit_clusters(x, k, method, seed, max_agglomerative)


def _fit_clusters(
    x: npt.NDArray[np.float32], k: int, method: Method, seed: int, max_agglomerative: int
) -> npt.NDArray[np.int64]:
    n = len(x)
    if not 1 <= k <= n:
        raise ConfigError(f"k must be between 1 and the number of items ({n}), got {k}")
    if method == "kmeans":
        from sklearn.cluster import KMeans

        labels = KMeans(k, n_init=4, random_state=seed).fit_predict(x).astype(np.int64)
    elif method == "agglomerative":
        if n <= max_agglomerative:
            labels = _cut(_ward_tree(x), k)
        else:
            sample = np.sort(np.random.default_rng(seed).choice(n, max_agglomerative, replace=False))
            sub = _cut(_ward_tree(x[sample]), k)
            centroids = np.stack([x[sample][sub == c].mean(axis=0) for c in range(sub.max() + 1)])
            labels = _nearest_centroid(x, centroids.astype(np.float64))
            labels[sample] = sub
    else:
        raise ConfigError(f"unknown clustering method {method!r}; choose one of {', '.join(METHODS)}")
    return _by_size(labels)


def within_ss(x: npt.NDArray[np.float32], labels: npt.NDArray[np.int64]) -> float:
    """Sum of squared distances to the cluster means (K-Means' inertia, for any labelling)."""
    total = 0.0
    for c in np.unique(labels):
        m = x[labels == c]
        total += float(((m - m.mean(axis=0)) ** 2).sum())
    return total


def k_selection(
    x: npt.NDArray[np.float32],
    ks: Sequence[int] = DEFAULT_KS,
    *,
    methods: Sequence[Method] = METHODS,
    seed: int = 0,
) -> dict[str, Any]:
    """Inertia (within-cluster sum of squares) and silhouette for each k and method, with the k each
    criterion suggests: the elbow of the inertia curve and the best silhouette. Over at most
    :data:`SELECTION_MAX` items (a seeded sample beyond); silhouette on a sample of 3,000."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _k_selection(x, ks, methods, seed)


def _k_selection(
    x: npt.NDArray[np.float32], ks: Sequence[int], methods: Sequence[Method], seed: int
) -> dict[str, Any]:
    from sklearn.metrics import silhouette_score

    n = len(x)
    ks = sorted({int(k) for k in ks if 2 <= int(k) < n})
    if not ks:
        raise ConfigError(f"no k in the range to try is between 2 and the number of items ({n})")
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, SELECTION_MAX, replace=False)) if n > SELECTION_MAX else np.arange(n)
    xs = x[sample]
    out: dict[str, Any] = {"ks": ks, "n": len(xs)}
    for method in methods:
        part, tree = xs, None
        if method == "agglomerative":
            if len(xs) > AGGLOMERATIVE_MAX:
                part = xs[np.sort(rng.choice(len(xs), AGGLOMERATIVE_MAX, replace=False))]
            tree = _ward_tree(part)
        inertia, sil = [], []
        for k in ks:
            if tree is not None:
                labels = _cut(tree, k)
                inertia.append(within_ss(part, labels))
            else:
                from sklearn.cluster import KMeans

                km = KMeans(k, n_init=2, random_state=seed).fit(part)
                labels = km.labels_
                inertia.append(float(km.inertia_))
            if len(np.unique(labels)) > 1:
                size = min(SILHOUETTE_SAMPLE, len(part))
                sil.append(float(silhouette_score(part, labels, sample_size=size, random_state=seed)))
            else:
                sil.append(float("nan"))
        out[method] = {
            "inertia": inertia,
            "silhouette": sil,
            "elbow_k": elbow(ks, inertia),
            "best_silhouette_k": ks[int(np.nanargmax(sil))] if np.isfinite(sil).any() else None,
        }
    return out


def elbow(ks: Sequence[int], values: Sequence[float]) -> int:
    """The k farthest below the straight line from the first to the last point of a falling curve,
    both axes scaled to [0, 1] (the "kneedle" rule)."""
    k = np.asarray(ks, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if len(k) < 3 or v[0] == v[-1]:
        return int(k[0])
    kx = (k - k[0]) / (k[-1] - k[0])
    vy = (v - v[-1]) / (v[0] - v[-1])
    return int(k[np.argmax((1 - kx) - vy)])


# ----- what a cluster is -----------------------------------------------------------------------
def genre_counts(labels: npt.NDArray[np.int64], G: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Cluster × genre: members of each cluster carrying each genre."""
    out = np.zeros((int(labels.max()) + 1, G.shape[1]), dtype=np.int64)
    np.add.at(out, labels, G.astype(np.int64))
    return out


def genre_lift(labels: npt.NDArray[np.int64], G: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """Lift of each genre in each cluster: its share among the cluster's items over its share of the
    whole catalog (all items clustered). 2 means twice as common in the cluster as overall."""
    sizes = np.bincount(labels, minlength=int(labels.max()) + 1).astype(np.float64)
    within = genre_counts(labels, G) / np.maximum(sizes, 1)[:, None]
    overall = G.sum(axis=0) / max(len(labels), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(overall > 0, within / overall, np.nan)


def genre_z(labels: npt.NDArray[np.int64], G: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """How many standard deviations each cluster's genre count lies above what a random draw of the
    same size from the catalog would give (binomial approximation)."""
    sizes = np.bincount(labels, minlength=int(labels.max()) + 1).astype(np.float64)[:, None]
    p = G.sum(axis=0)[None, :] / max(len(labels), 1)
    expected = sizes * p
    sd = np.sqrt(np.maximum(sizes * p * (1 - p), 1e-12))
    return (genre_counts(labels, G) - expected) / sd


def cluster_table(
    data: ExploreData,
    labels: npt.NDArray[np.int64],
    G: npt.NDArray[np.bool_],
    vocab: list[str],
    *,
    top_genres: int = 3,
    top_titles: int = 5,
    min_members: int = 3,
    min_z: float = 2.0,
) -> list[dict[str, Any]]:
    """One JSON-ready row per cluster: size and share, over-represented genres, most-rated titles, mean
    training rating (over all its ratings).

    A genre is over-represented when its lift is above 1, at least ``min_members`` members carry it and
    its count is ``min_z`` standard deviations above chance (:func:`genre_z`); they are listed by that
    z-score, so two Film-Noir titles in a small cluster do not outrank forty westerns.
    """
    lift = genre_lift(labels, G)
    z = genre_z(labels, G)
    gcount = genre_counts(labels, G)
    sums = np.nan_to_num(data.mean_rating * data.counts)
    rows = []
    for c in range(int(labels.max()) + 1):
        members = np.flatnonzero(labels == c)
        size = len(members)
        n_ratings = int(data.counts[members].sum())
        mean = float(sums[members].sum() / n_ratings) if data.explicit and n_ratings else None
        over = [
            g
            for g in np.argsort(-z[c], kind="stable")
            if lift[c, g] > 1 and gcount[c, g] >= min_members and z[c, g] >= min_z
        ][:top_genres]
        genres = [
            {
                "genre": vocab[g],
                "lift": round(float(lift[c, g]), 3),
                "share": round(float(gcount[c, g] / max(size, 1)), 4),
                "catalog_share": round(float(G[:, g].mean()), 4),
                "count": int(gcount[c, g]),
                "z": round(float(z[c, g]), 2),
            }
            for g in over
        ]
        top = members[np.lexsort((members, -data.counts[members]))][:top_titles]
        rows.append(
            {
                "cluster": c,
                "size": size,
                "share": round(size / len(labels), 4),
                "name": " · ".join(x["genre"] for x in genres[:2]) or "mixed",
                "genres": genres,
                "most_rated": [data.item_record(int(i)) for i in top],
                "ratings": n_ratings,
                "mean_rating": None if mean is None else round(mean, 3),
            }
        )
    return rows
