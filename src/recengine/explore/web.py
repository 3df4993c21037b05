"""The exploration views as JSON-ready dicts, for the web page of a served model.

A route builds :class:`ExploreData` once per loaded model (``from_model(model, item_metadata)`` or
``load(model_dir)``) and calls these; each returns plain dicts and lists of str/int/float/None/bool,
safe for ``json.dumps(..., allow_nan=False)``. The map runs t-SNE (seconds for a few thousand items,
minutes near 50,000), so a server should compute it once, off the request thread, and cache it; the
``explore.json`` that ``recengine explore`` writes holds the same data precomputed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from .analysis import map_points
from .clusters import DEFAULT_KS, Method, cluster_table, fit_clusters, k_selection
from .embeddings import ExploreData, from_model, genre_matrix, load
from .neighbours import item_neighbours, resolve_items, user_neighbours
from .run import jsonable

P = ParamSpec("P")
R = TypeVar("R")


def _one_thread(fn: Callable[P, R]) -> Callable[P, R]:
    """Run with one native thread: small work, and a busy server must not spin OpenMP pools."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return fn(*args, **kwargs)

    return wrapper


__all__ = [
    "clusters_view",
    "from_model",
    "k_selection_view",
    "load",
    "map_view",
    "neighbours_view",
    "user_neighbours_view",
]


@_one_thread
def clusters_view(
    data: ExploreData, *, k: int = 12, method: Method = "kmeans", seed: int = 0
) -> dict[str, Any]:
    """``{"method", "k", "labels": [cluster per internal item], "items": [external ids], "clusters":
    [{cluster, size, share, name, genres: [{genre, lift, share, catalog_share, count, z}], most_rated:
    [item records], ratings, mean_rating}]}``."""
    labels = fit_clusters(data.unit(), k, method, seed=seed)
    G, vocab = genre_matrix(data.genres)
    return jsonable(
        {
            "method": method,
            "k": k,
            "items": [data.item_record(i)["item"] for i in range(data.n_items)],
            "labels": labels.tolist(),
            "clusters": cluster_table(data, labels, G, vocab),
        }
    )


@_one_thread
def map_view(
    data: ExploreData,
    *,
    max_items: int = 5_000,
    k: int = 12,
    method: Method = "kmeans",
    seed: int = 0,
    titles: Sequence[str] = (),
) -> dict[str, Any]:
    """The t-SNE map of at most ``max_items`` items (seeded subsample beyond, ``titles`` always kept),
    coloured by main genre and by ``method`` clusters: ``{"n_items", "n_points", "subsampled",
    "genres": legend, "points": {index, item, title, genres, x, y (0..1), genre (legend index),
    ratings, mean_rating, clusters: {method: [...]}}, "labelled": [point positions], "tsne": {...},
    "clusters": [cluster rows as in clusters_view]}``."""
    labels = fit_clusters(data.unit(), k, method, seed=seed)
    keep = resolve_items(data, titles) if titles else []
    out = map_points(data, max_items=max_items, seed=seed, keep=keep, labels={method: labels})
    G, vocab = genre_matrix(data.genres)
    out["clusters"] = cluster_table(data, labels, G, vocab)
    return jsonable(out)


@_one_thread
def neighbours_view(
    data: ExploreData,
    *,
    titles: Sequence[str] | None = None,
    n: int = 10,
    k: int = 10,
    min_ratings: int = 10,
) -> dict[str, Any]:
    """Nearest items by cosine for ``titles`` (ids or titles as typed) or the ``n`` most rated:
    ``{"k", "neighbours": [{"query": item record, "neighbours": [item record + similarity]}]}``.
    Unknown titles raise UnknownIdError (a 404 for a route)."""
    return jsonable(
        {"k": k, "neighbours": item_neighbours(data, titles, n_items=n, k=k, min_ratings=min_ratings)}
    )


@_one_thread
def user_neighbours_view(
    data: ExploreData, *, users: Sequence[str] | None = None, n: int = 5, k: int = 10
) -> dict[str, Any]:
    """Nearest users by cosine of user vectors: ``{"k", "neighbours": [{"query": {user, ratings},
    "neighbours": [{user, similarity, ratings, shared_items}]}]}``; CapabilityError without user vectors."""
    return jsonable({"k": k, "neighbours": user_neighbours(data, users, n_users=n, k=k)})


@_one_thread
def k_selection_view(
    data: ExploreData,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    methods: Sequence[Method] = ("kmeans",),
    seed: int = 0,
) -> dict[str, Any]:
    """Inertia and silhouette per k: ``{"ks", "n", method: {inertia, silhouette, elbow_k,
    best_silhouette_k}}``."""
    return jsonable(k_selection(data.unit(), ks, methods=methods, seed=seed))
