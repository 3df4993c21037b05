"""The exploration views as JSON-ready dicts, for the web page of a served model.

The ``*_view`` functions compute one view of :class:`ExploreData` (``from_model(model, item_metadata)``
or ``load(model_dir)``); each returns plain dicts and lists of str/int/float/None/bool, safe for
``json.dumps(..., allow_nan=False)``. The ``explore.json`` that ``recengine explore`` writes holds the
same data precomputed.

A server keeps one :class:`ExploreViews` per model version instead: the map runs t-SNE (seconds for a
few thousand items, minutes near 50,000), so it is computed once, on the first request, over at most
:data:`MAP_MAX_POINTS` items, and kept, in memory and in the cache home (:func:`map_file`), where
the server's other workers and its restarts find it; clusters and the k-selection curves are kept
too. Ward trees and k-selection curves use a seeded sample of at most :data:`WEB_SAMPLE` items so that
no request of a large catalog needs an n × n distance matrix.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt

from recengine.errors import ConfigError

from .analysis import map_points
from .clusters import DEFAULT_KS, METHODS, Method, cluster_table, fit_clusters, k_selection
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
    "ExploreViews",
    "clusters_view",
    "from_model",
    "k_selection_view",
    "load",
    "map_file",
    "map_view",
    "neighbours_view",
    "prune_maps",
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


# ----- a served model's views, computed once and kept --------------------------------------------
MAP_MAX_POINTS = 3_000  # t-SNE of this many points takes a few seconds on one core
MAP_ITERATIONS = 500
#: Part of a kept map's file name: raise it when what the map holds or how it is computed changes.
MAP_FORMAT = 1
#: Kept maps in the cache home beyond this many (the least recently used first) go when one is written.
KEPT_MAPS = 16
#: Every name :func:`map_file` gives, of any model version, settings, format or library version.
_MAP_NAME = re.compile(r"[^\W_]+-seed-?\d+-points\d+-iter\d+-v\d+-[0-9A-Za-z.+!]+\.json")
#: The partial file of a map being written (``.<map name>.<pid>.tmp``); one this old was left by a
#: process killed mid-write (a whole map is written in well under a second).
_MAP_TMP = re.compile(r"\.(?P<map>.+)\.\d+\.tmp")
STALE_TMP_SECONDS = 3_600
WEB_SAMPLE = 3_000  # items in a Ward tree or the k-selection curves (a 3,000² matrix is 36 MB)
MAX_CLUSTERS = 40
MAX_NEIGHBOURS = 100
CACHED_CLUSTERINGS = 16


class ExploreViews:
    """The exploration views of one model version, each computed on first use and kept.

    Thread-safe: concurrent first requests for the map wait for one t-SNE instead of running several.
    Everything is seeded, so the same model gives the same answers after a restart.
    """

    def __init__(
        self,
        data: ExploreData,
        *,
        seed: int = 0,
        max_points: int = MAP_MAX_POINTS,
        map_file: Path | None = None,
    ) -> None:
        _import_estimators()
        self.data = data
        self.seed = seed
        self.max_points = max_points
        self.map_file = map_file
        self._unit = data.unit()
        self._genres = genre_matrix(data.genres)
        sample = np.arange(data.n_items, dtype=np.int64)
        if data.n_items > WEB_SAMPLE:
            rng = np.random.default_rng(seed)
            sample = np.sort(rng.choice(data.n_items, WEB_SAMPLE, replace=False))
        self._sample = sample
        self._map: dict[str, Any] | None = None
        self._map_lock = threading.Lock()
        self._labels: OrderedDict[tuple[str, int], tuple[npt.NDArray[np.int64], list[Any]]] = OrderedDict()
        self._labels_lock = threading.Lock()
        self._selection: dict[str, dict[str, Any]] = {}
        self._selection_lock = threading.Lock()

    # The map ------------------------------------------------------------------------------------
    def map(self, *, k: int = 12, method: Method = "kmeans") -> dict[str, Any]:
        """The t-SNE map, each point with its main genre (the colour legend is ``genres``) and its
        cluster among ``k`` by ``method``; ``sample`` says which items are drawn when not all are."""
        base = self._tsne()
        labels, _ = self.labels(k, method)
        clusters = labels[base["index"]].tolist()
        points = [{**p, "cluster": c} for p, c in zip(base["points"], clusters, strict=True)]
        return {key: v for key, v in base.items() if key not in ("index", "points")} | {
            "method": method,
            "k": k,
            "points": points,
        }

    def _tsne(self) -> dict[str, Any]:
        with self._map_lock:
            if self._map is None:
                self._map = self._read_map()
            if self._map is None:
                self._map = self._compute_map()
                self._write_map(self._map)
            return self._map

    def _read_map(self) -> dict[str, Any] | None:
        """The map another process (a server worker, an earlier run) computed for this model version
        and these settings; None when there is none or it does not read."""
        if self.map_file is None:
            return None
        try:
            m = json.loads(self.map_file.read_text(encoding="utf-8"))
            index = np.asarray(m["index"], dtype=np.int64)
            if len(index) != len(m["points"]) or (len(index) and int(index.max()) >= self.data.n_items):
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        with contextlib.suppress(OSError):
            os.utime(self.map_file)  # used now: the last of the kept maps to be pruned
        return {**m, "index": index}

    def _write_map(self, m: dict[str, Any]) -> None:
        """Keep the map where the other workers look (written whole, then renamed into place); a
        cache that cannot be written costs only the next process its own t-SNE."""
        if self.map_file is None:
            return
        tmp = self.map_file.with_name(f".{self.map_file.name}.{os.getpid()}.tmp")
        try:
            self.map_file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({**m, "index": m["index"].tolist()}), encoding="utf-8")
            os.replace(tmp, self.map_file)
        except OSError:
            with contextlib.suppress(OSError):  # under a file, even the unlink fails (NotADirectoryError)
                tmp.unlink(missing_ok=True)
            return
        prune_maps(self.map_file.parent)

    @_one_thread
    def _compute_map(self) -> dict[str, Any]:
        d = self.data
        m = map_points(d, max_items=self.max_points, seed=self.seed, iterations=MAP_ITERATIONS, n_jobs=1)
        p = m["points"]
        legend = m["genres"]
        points = [
            {
                "item": p["item"][j],
                "title": p["title"][j],
                "genres": d.genres[int(i)],
                "genre": legend[p["genre"][j]],
                "x": p["x"][j],
                "y": p["y"][j],
                "ratings": p["ratings"][j],
                "mean_rating": p["mean_rating"][j],
            }
            for j, i in enumerate(p["index"])
        ]
        sample = (
            "all items"
            if not m["subsampled"]
            else f"{m['n_points']} of {m['n_items']} items: the most rated half, then a sample seeded "
            f"with {self.seed} and weighted by rating count"
        )
        return jsonable(
            {
                "n_items": m["n_items"],
                "n_points": m["n_points"],
                "max_points": self.max_points,
                "subsampled": m["subsampled"],
                "sample": sample,
                "genres": legend,
                "labelled": m["labelled"],
                "tsne": m["tsne"],
                "points": points,
            }
        ) | {"index": np.asarray(p["index"], dtype=np.int64)}

    # Clusters -----------------------------------------------------------------------------------
    def labels(self, k: int, method: Method = "kmeans") -> tuple[npt.NDArray[np.int64], list[Any]]:
        """Cluster of every item and the per-cluster table, for ``k`` clusters by ``method``."""
        if method not in METHODS:
            raise ConfigError(f"unknown clustering method {method!r}; choose one of {', '.join(METHODS)}")
        if not 2 <= k <= min(MAX_CLUSTERS, self.data.n_items):
            top = min(MAX_CLUSTERS, self.data.n_items)
            raise ConfigError(f"k must be between 2 and {top} for this model, got {k}")
        key = (method, k)
        with self._labels_lock:
            hit = self._labels.get(key)
            if hit is not None:
                self._labels.move_to_end(key)
                return hit
            labels = fit_clusters(self._unit, k, method, seed=self.seed, max_agglomerative=WEB_SAMPLE)
            G, vocab = self._genres
            table = jsonable(cluster_table(self.data, labels, G, vocab))
            self._labels[key] = (labels, table)
            while len(self._labels) > CACHED_CLUSTERINGS:
                self._labels.popitem(last=False)
            return labels, table

    def clusters(self, *, k: int = 12, method: Method = "kmeans") -> dict[str, Any]:
        """Per cluster: size, over-represented genres with their lift, most-rated titles, mean rating."""
        _, table = self.labels(k, method)
        return {"method": method, "k": k, "n_items": self.data.n_items, "clusters": table}

    def k_selection(self, method: Method = "kmeans") -> dict[str, Any]:
        """Inertia and silhouette for k in :data:`DEFAULT_KS`, over at most :data:`WEB_SAMPLE` items."""
        if method not in METHODS:
            raise ConfigError(f"unknown clustering method {method!r}; choose one of {', '.join(METHODS)}")
        with self._selection_lock:
            if method not in self._selection:
                res = jsonable(
                    k_selection(self._unit[self._sample], DEFAULT_KS, methods=(method,), seed=self.seed)
                )
                self._selection[method] = {
                    "method": method,
                    "ks": res["ks"],
                    "n": res["n"],
                    "n_items": self.data.n_items,
                    **res[method],
                }
            return self._selection[method]

    # Neighbours ---------------------------------------------------------------------------------
    @_one_thread
    def neighbours(
        self, items: Sequence[str] | None = None, *, n: int = 10, k: int = 10, min_ratings: int = 10
    ) -> dict[str, Any]:
        """Nearest items of ``items`` (ids or titles as typed) or of the ``n`` most rated."""
        _check_queries(items, "item")
        table = item_neighbours(self.data, items or None, n_items=n, k=k, min_ratings=min_ratings)
        return jsonable({"k": k, "min_ratings": min_ratings, "neighbours": table})

    @_one_thread
    def user_neighbours(
        self, users: Sequence[str] | None = None, *, n: int = 5, k: int = 10
    ) -> dict[str, Any]:
        """Nearest users by user vectors; CapabilityError for a model without them."""
        _check_queries(users, "user")
        return jsonable({"k": k, "neighbours": user_neighbours(self.data, users or None, n_users=n, k=k)})


def _import_estimators() -> None:
    """Import scikit-learn (and openTSNE, which imports it) now, in the one thread that builds the
    views: a server's first map and clusters requests run at once in two threads, and a package that
    two threads import for the first time together can be seen half initialised (ImportError)."""
    import sklearn.cluster
    import sklearn.decomposition
    import sklearn.manifold
    import sklearn.metrics  # noqa: F401

    with contextlib.suppress(ImportError):
        import openTSNE  # noqa: F401


def _check_queries(queries: Sequence[str] | None, what: str) -> None:
    """A blank id would match every title; refuse it by name instead."""
    for q in queries or ():
        if not str(q).strip():
            raise ConfigError(
                f"an empty {what} was given; give {'an id or a title' if what == 'item' else 'an id'}"
            )


def map_file(version: str, *, seed: int = 0, max_points: int = MAP_MAX_POINTS) -> Path:
    """Where the map of model ``version`` (its manifest's digest) with these settings is kept, so that
    the workers of one server, and its restarts, run one t-SNE between them."""
    from recengine import __version__
    from recengine.data.home import cache_home

    safe = "".join(c for c in version if c.isalnum()) or "unknown"
    name = f"{safe}-seed{seed}-points{max_points}-iter{MAP_ITERATIONS}-v{MAP_FORMAT}-{__version__}.json"
    return cache_home() / "explore" / name


def prune_maps(directory: Path, keep: int = KEPT_MAPS) -> None:
    """Remove the kept maps in ``directory`` beyond the ``keep`` most recently used (written or read):
    each model version and setting leaves one, and old ones are never asked for again. Only files
    named exactly as :func:`map_file` names them are touched, and the partial files of map writes
    killed more than ``STALE_TMP_SECONDS`` ago."""
    maps: list[tuple[float, Path]] = []
    stale: list[Path] = []
    now = time.time()
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if not entry.is_file(follow_symlinks=False):
                    continue
                mtime = entry.stat(follow_symlinks=False).st_mtime
                if _MAP_NAME.fullmatch(entry.name):
                    maps.append((mtime, Path(entry.path)))
                elif _is_map_tmp(entry.name) and now - mtime > STALE_TMP_SECONDS:
                    stale.append(Path(entry.path))
    except OSError:
        return
    maps.sort(key=lambda m: m[0], reverse=True)
    for path in [*(p for _, p in maps[keep:]), *stale]:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def _is_map_tmp(name: str) -> bool:
    tmp = _MAP_TMP.fullmatch(name)
    return tmp is not None and _MAP_NAME.fullmatch(tmp["map"]) is not None
