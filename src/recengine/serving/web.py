"""The web page: three static files served by the API's own app, so a person can use the recommender;
and the exploration routes its map and cluster table call (``/v1/models/{name}/explore/...``).

The page is plain HTML, CSS and JavaScript (no build step, nothing fetched from another host); it calls
the REST API v1 from the browser. Its files are read once when the app is built and served from a
fixed list, so no request path ever reaches the file system. They are public even when the server
has an API key (they hold no data); the page asks for the key when the API answers 401.

The exploration views are computed from the served model on first use and kept per model version
(:class:`recengine.explore.web.ExploreViews`); a reload to a new version starts afresh.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from recengine.errors import CapabilityError, UnknownIdError
from recengine.explore import web as explore
from recengine.explore.embeddings import ExploreData, embedding_models, has_embeddings
from recengine.serving.http_errors import documented
from recengine.serving.models import ServedModel
from recengine.serving.schemas import (
    ClusterMethod,
    ExploreClusters,
    ExploreMap,
    ItemNeighbours,
    KSelection,
    UserNeighbours,
)

FILES: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
#: Paths the API key guard lets through (the page and its assets, nothing else).
PUBLIC_PATHS = frozenset({"/", *(f"/static/{name}" for name in FILES if name != "index.html")})
#: Everything from this server only: a page that loads nothing else cannot leak a user's ratings.
_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",  # revalidate, so a new version of the page is seen after an upgrade
}


def _read(name: str) -> bytes:
    return resources.files("recengine.serving").joinpath("static", name).read_bytes()


def router() -> APIRouter:
    """``GET /`` (the page) and ``GET /static/{name}`` (its script and style), kept out of the
    OpenAPI document: they are not part of the API."""
    files = {name: _read(name) for name in FILES}
    r = APIRouter(include_in_schema=False)

    @r.get("/")
    def page() -> Response:
        return Response(files["index.html"], media_type=FILES["index.html"], headers=_HEADERS)

    @r.get("/static/{name}")
    def asset(name: str) -> Response:
        if name not in files or name == "index.html":
            raise UnknownIdError(f"no such file: /static/{name}")
        return Response(files[name], media_type=FILES[name], headers=_HEADERS)

    return r


# ----- exploration routes --------------------------------------------------------------------------
CACHED_MODELS = 8  # model versions whose views are kept (a reload adds one)
NamePath = Annotated[str, PathParam(max_length=200, description="served model name")]
ClusterK = Annotated[
    int, Query(ge=2, le=explore.MAX_CLUSTERS, description="number of clusters (at most the number of items)")
]
MethodQuery = Annotated[ClusterMethod, Query(description="K-Means or agglomerative (Ward) clustering")]
Neighbours = Annotated[int, Query(ge=1, le=explore.MAX_NEIGHBOURS, description="neighbours per query")]
Queries = Annotated[int, Query(ge=1, le=50, description="how many to list when none is asked for")]
AskedIds = Annotated[list[str] | None, Query(max_length=50)]


class ExploreCache:
    """One :class:`ExploreViews` per (model name, version), the least recently used dropped first."""

    def __init__(self, size: int = CACHED_MODELS) -> None:
        self.size = size
        self._views: OrderedDict[tuple[str, str], explore.ExploreViews] = OrderedDict()
        self._lock = threading.Lock()

    def views(self, sm: ServedModel) -> explore.ExploreViews:
        key = (sm.name, sm.version)
        with self._lock:
            hit = self._views.get(key)
            if hit is not None:
                self._views.move_to_end(key)
                return hit
            views = explore.ExploreViews(explore_data(sm), map_file=explore.map_file(sm.version))
            self._views[key] = views
            while len(self._views) > self.size:
                self._views.popitem(last=False)
            return views


def explore_data(sm: ServedModel) -> ExploreData:
    """A served model's vectors beside the titles and genres its catalog shows (not re-read from disk,
    so the map names what the server serves); CapabilityError, cheaply, for a model without vectors."""
    import polars as pl

    if not has_embeddings(type(sm.model)):
        raise CapabilityError(
            f"{sm.model.name} has no item embeddings to explore; models that have them: "
            f"{', '.join(embedding_models())}"
        )
    c = sm.catalog
    meta = pl.DataFrame(
        {"item": [str(x) for x in sm.model.items.external.tolist()], "title": c.titles, "year": c.years},
        strict=False,
    ).with_columns(pl.Series("genres", c.genres, dtype=pl.List(pl.String)))
    return explore.from_model(sm.model, meta, data_name=sm.dataset)


def explore_router(served: Callable[[Request, str | None], ServedModel]) -> APIRouter:
    """The exploration routes of a served model: t-SNE map, clusters, k selection and neighbours.
    ``served`` looks the model up the way every v1 route does (it records it for the response headers)."""
    cache = ExploreCache()
    r = APIRouter(prefix="/v1/models/{name}/explore", tags=["explore"])
    errors = documented(401, 404, 422)

    @r.get("/map", response_model=ExploreMap, responses=errors)
    def explore_map(
        request: Request, name: NamePath, k: ClusterK = 12, method: MethodQuery = "kmeans"
    ) -> ExploreMap:
        """A 2-D t-SNE map of the item embeddings: each point's title, main genre, cluster and rating
        count. Computed on the first request for a model version (seconds) and kept; a catalog over
        ``max_points`` items is sampled (the most rated first), as ``sample`` says."""
        sm = served(request, name)
        return ExploreMap(model=sm.ref, **cache.views(sm).map(k=k, method=method))

    @r.get("/clusters", response_model=ExploreClusters, responses=errors)
    def explore_clusters(
        request: Request, name: NamePath, k: ClusterK = 12, method: MethodQuery = "kmeans"
    ) -> ExploreClusters:
        """Clusters of the item embeddings: per cluster its size, the genres over-represented in it
        (lift against the catalog), its most-rated titles and its mean rating."""
        sm = served(request, name)
        return ExploreClusters(model=sm.ref, **cache.views(sm).clusters(k=k, method=method))

    @r.get("/k-selection", response_model=KSelection, responses=errors)
    def explore_k_selection(request: Request, name: NamePath, method: MethodQuery = "kmeans") -> KSelection:
        """Inertia and silhouette for a range of k, with the k each suggests, to choose ``k``."""
        sm = served(request, name)
        return KSelection(model=sm.ref, **cache.views(sm).k_selection(method))

    @r.get("/neighbours", response_model=ItemNeighbours, responses=errors)
    def explore_neighbours(
        request: Request,
        name: NamePath,
        item: AskedIds = None,
        k: Neighbours = 10,
        n: Queries = 10,
        min_ratings: Annotated[int, Query(ge=0, le=1_000_000)] = 10,
    ) -> ItemNeighbours:
        """Nearest items by cosine of item embeddings, for each ``item`` (an id or a title; repeat it)
        or for the ``n`` most-rated items; neighbours need ``min_ratings`` training ratings."""
        sm = served(request, name)
        return ItemNeighbours(
            model=sm.ref, **cache.views(sm).neighbours(item, n=n, k=k, min_ratings=min_ratings)
        )

    @r.get("/user-neighbours", response_model=UserNeighbours, responses=errors)
    def explore_user_neighbours(
        request: Request, name: NamePath, user: AskedIds = None, k: Neighbours = 10, n: Queries = 5
    ) -> UserNeighbours:
        """Nearest users by cosine of user embeddings, for each ``user`` (repeat it) or the ``n`` most
        active, with how many items each pair both rated; 422 for a model without user embeddings."""
        sm = served(request, name)
        return UserNeighbours(model=sm.ref, **cache.views(sm).user_neighbours(user, n=n, k=k))

    return r
