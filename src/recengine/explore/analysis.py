"""One exploration of a model, as JSON-ready data: map, clusters, k-selection, neighbours, measures.

:func:`analyse` does the work once; the CLI writes its result as PNGs, an HTML report and
``explore.json``, and the web views (:mod:`recengine.explore.web`) return parts of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from recengine.errors import ConfigError

from . import metrics
from .clusters import DEFAULT_KS, METHODS, Method, cluster_table, fit_clusters, k_selection
from .embeddings import ExploreData, genre_matrix, main_genres
from .neighbours import item_neighbours, most_rated, resolve_items, user_neighbours
from .tsne import Backend, default_max_items, subsample, tsne_2d


@dataclass
class ExploreOptions:
    """What to compute; every field has a default that suits a MovieLens-sized catalog."""

    k: int = 12
    methods: Sequence[Method] = METHODS
    titles: Sequence[str] | None = None  # neighbour tables for these (default: the most rated)
    users: Sequence[str] | None = None  # user neighbour tables for these (default: the most active)
    n_titles: int = 10
    n_users: int = 5
    neighbours: int = 10
    min_ratings: int = 10  # neighbour candidates and measured items need this many training ratings
    max_items: int | None = None  # map at most this many items (None: 50,000 with openTSNE, else 10,000)
    label_titles: int = 15  # most-rated titles named on the map
    ks: Sequence[int] = DEFAULT_KS
    k_selection: bool = True
    seed: int = 0
    backend: Backend = "auto"
    tsne_iterations: int = 750
    permutations: int = 20
    threads: int = 1  # native threads for clustering and linear algebra (see analyse)
    tsne_jobs: int | None = None  # t-SNE threads (None: 1 below 10,000 items, every core above)

    def check(self, n_items: int) -> None:
        if self.k < 2 or self.k > n_items:
            raise ConfigError(f"--k must be between 2 and the number of items ({n_items}), got {self.k}")
        for m in self.methods:
            if m not in METHODS:
                raise ConfigError(f"unknown clustering method {m!r}; choose from {', '.join(METHODS)}")
        if not self.methods:
            raise ConfigError("give at least one clustering method")
        if self.max_items is not None and self.max_items < 1:
            raise ConfigError(f"--max-items must be at least 1, got {self.max_items}")


def map_points(
    data: ExploreData,
    *,
    max_items: int | None = None,
    seed: int = 0,
    keep: Sequence[int] = (),
    labels: dict[str, npt.NDArray[np.int64]] | None = None,
    label_titles: int = 15,
    backend: Backend = "auto",
    iterations: int = 750,
    n_jobs: int | None = None,
) -> dict[str, Any]:
    """The t-SNE map as columns (item, title, x, y in [0, 1], colour genre, clusters, ratings)."""
    cap = max_items or default_max_items(backend)
    idx = subsample(data.counts, cap, seed, keep=list(keep))
    xy, info = tsne_2d(data.vectors[idx], seed=seed, backend=backend, iterations=iterations, n_jobs=n_jobs)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    xy = (xy - lo) / np.where(hi > lo, hi - lo, 1.0)
    main, palette = main_genres(data.genres)
    legend = [*palette, "other", "no genre"]
    pos = {g: i for i, g in enumerate(legend)}
    named = most_rated(data.counts[idx], label_titles)
    mean = data.mean_rating[idx]
    return {
        "n_items": data.n_items,
        "n_points": len(idx),
        "subsampled": len(idx) < data.n_items,
        "max_items": cap,
        "tsne": info,
        "genres": legend,
        "points": {
            "index": idx.tolist(),
            "item": [data.item_record(int(i))["item"] for i in idx],
            "title": [data.label(int(i)) for i in idx],
            "genres": ["|".join(data.genres[int(i)]) for i in idx],
            "x": np.round(xy[:, 0], 4).tolist(),
            "y": np.round(xy[:, 1], 4).tolist(),
            "genre": [pos[main[int(i)]] for i in idx],
            "ratings": data.counts[idx].tolist(),
            "mean_rating": [round(float(m), 2) if np.isfinite(m) else None for m in mean],
            "clusters": {m: lab[idx].tolist() for m, lab in (labels or {}).items()},
        },
        "labelled": named.tolist(),  # positions in the point arrays
    }


def analyse(data: ExploreData, options: ExploreOptions | None = None) -> dict[str, Any]:
    """Everything the report shows, JSON-ready.

    Clustering, silhouettes and neighbour search run with ``options.threads`` native threads (one by
    default): on these sizes a single thread is fast, and on a busy shared machine OpenMP's waiting
    threads made K-Means a hundred times slower than one thread.
    """
    from threadpoolctl import threadpool_limits

    o = options or ExploreOptions()
    o.check(data.n_items)
    with threadpool_limits(o.threads):
        out, labels, asked = _tables(data, o)
    out["map"] = map_points(
        data,
        max_items=o.max_items,
        seed=o.seed,
        keep=asked,
        labels=labels,
        label_titles=o.label_titles,
        backend=o.backend,
        iterations=o.tsne_iterations,
        n_jobs=o.tsne_jobs,
    )
    return out


def _tables(
    data: ExploreData, o: ExploreOptions
) -> tuple[dict[str, Any], dict[str, npt.NDArray[np.int64]], list[int]]:
    unit = data.unit()
    G, vocab = genre_matrix(data.genres)
    mask = data.counts >= o.min_ratings
    labels: dict[str, npt.NDArray[np.int64]] = {m: fit_clusters(unit, o.k, m, seed=o.seed) for m in o.methods}
    clusters = {m: cluster_table(data, lab, G, vocab) for m, lab in labels.items()}
    asked = resolve_items(data, o.titles) if o.titles else []
    out: dict[str, Any] = {
        "model": data.model_name,
        "data": data.data_name,
        "n_items": data.n_items,
        "n_users": None if data.user_ids is None else len(data.user_ids),
        "dimensions": int(data.vectors.shape[1]),
        "explicit": data.explicit,
        "has_genres": bool(G.shape[1]),
        "options": asdict(o),
        "k": o.k,
        "clusters": clusters,
        "k_selection": k_selection(unit, o.ks, methods=o.methods, seed=o.seed) if o.k_selection else None,
        "neighbours": item_neighbours(
            data, o.titles, n_items=o.n_titles, k=o.neighbours, min_ratings=o.min_ratings
        ),
        "user_neighbours": (
            user_neighbours(data, o.users, n_users=o.n_users, k=o.neighbours) if data.has_users else None
        ),
        "measures": measures(
            data, labels, G, unit=unit, mask=mask, k=o.neighbours, seed=o.seed, permutations=o.permutations
        )
        if G.shape[1]
        else None,
    }
    return out, labels, asked


def measures(
    data: ExploreData,
    labels: dict[str, npt.NDArray[np.int64]],
    G: npt.NDArray[np.bool_],
    *,
    unit: npt.NDArray[np.float32] | None = None,
    mask: npt.ArrayLike | None = None,
    k: int = 10,
    seed: int = 0,
    permutations: int = 20,
) -> dict[str, Any]:
    """Cluster purity per method and neighbour genre share, each beside chance (see metrics)."""
    u = data.unit() if unit is None else unit
    return {
        "purity": {
            m: metrics.purity_vs_random(lab, G, mask, permutations=permutations, seed=seed)
            for m, lab in labels.items()
        },
        "neighbour_genre_share": metrics.neighbours_vs_random(u, G, k, mask),
    }
