"""The HTTP app: SageMaker's container contract and the REST API v1, over a model registry and a
feedback store. Routes only parse and serialize; the work is in :mod:`recengine.serving.service`
and :mod:`recengine.serving.sagemaker`.

``create_app`` loads (and verifies) every model before it returns, so a bad model directory stops the
server at start instead of failing requests later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from recengine import __version__
from recengine.errors import CapabilityError, RecengineError
from recengine.serving import sagemaker, service, web
from recengine.serving.guard import API_KEY_HEADER, STATE_MODEL, Guard
from recengine.serving.http_errors import documented, install
from recengine.serving.models import ModelRegistry, ServedModel
from recengine.serving.schemas import (
    MAX_K,
    Explanation,
    FeedbackRequest,
    Filters,
    HistoryRequest,
    ItemDetail,
    ModelInfo,
    ModelList,
    Ping,
    Predictions,
    PredictRequest,
    Recommendations,
    ReloadRequest,
    ReloadResult,
    SearchResults,
    SimilarItems,
    UserRatings,
)
from recengine.serving.store import FeedbackStore, open_store

log = logging.getLogger("recengine.serving")
DEFAULT_MAX_BODY = 8 * 1024 * 1024  # 1,000 dense one-hot feature rows of ml-100k fit
ModelQuery = Annotated[
    str | None, Query(max_length=200, description="served model name (default model if omitted)")
]
UserPath = Annotated[str, PathParam(min_length=1, max_length=200, description="external user id")]
ItemPath = Annotated[str, PathParam(min_length=1, max_length=200, description="external item id")]
K = Annotated[int, Query(ge=1, le=MAX_K, description="how many items")]
IdList = Annotated[list[str] | None, Query(max_length=10_000)]

_INVOCATION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "SageMaker formats: Object2Vec in0/in1 instances, or factorization-machine rows",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["instances"],
                    "properties": {"instances": {"type": "array", "items": {"type": "object"}}},
                },
                "example": {"instances": [{"in0": ["196"], "in1": ["242"]}, {"in0": [186]}]},
            },
            "application/jsonlines": {
                "schema": {"type": "string"},
                "example": '{"in0": [196], "in1": [242]}\n',
            },
        },
    },
    "responses": {
        "200": {
            "description": '{"predictions": [{"scores": [...]} | {"embeddings": [...]} | {"score": s}]}',
            "content": {"application/json": {"schema": {"type": "object"}}, "application/jsonlines": {}},
        }
    },
}


def create_app(
    model_dirs: Sequence[str | Path | tuple[str, str | Path]],
    *,
    default: str | None = None,
    store_url: str | Path | None = None,
    store: FeedbackStore | None = None,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    reload_on_sighup: bool = False,
    tune_process: bool = False,
    workers: int = 1,
) -> FastAPI:
    """The app serving ``model_dirs`` (``DIR`` or ``NAME=DIR``; the first is the default unless
    ``default`` names another). Ratings go to ``store`` or the store at ``store_url`` (see
    :func:`recengine.serving.store.open_store`). ``api_key`` guards every route but ``/ping``.
    ``tune_process``: the app owns its process (``recengine serve``); see :func:`tune_process_for_serving`.
    ``workers`` > 1: this is one of several worker processes (:mod:`recengine.serving.workers`)."""
    registry = ModelRegistry(model_dirs, default)
    feedback = store if store is not None else open_store(store_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        if reload_on_sighup:
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, _reload_all, registry))
        try:
            yield
        finally:
            if reload_on_sighup:
                loop.remove_signal_handler(signal.SIGHUP)
            if store is None:
                feedback.close()

    app = FastAPI(
        title="recengine",
        version=__version__,
        description="Recommendations over HTTP: SageMaker's invocation contract and a REST API. "
        f"When the server has an API key, send it in the {API_KEY_HEADER} header (every route but /ping).",
        lifespan=lifespan,
    )
    app.state.registry = registry
    app.state.store = feedback
    install(app)
    public = frozenset({"/ping"}) | web.PUBLIC_PATHS
    app.add_middleware(Guard, max_body_bytes=max_body_bytes, api_key=api_key, public_paths=public)
    app.include_router(web.router())  # the web page at /

    # ----- SageMaker container contract ----------------------------------------------------------
    @app.get("/ping", response_model=Ping, tags=["sagemaker"])
    def ping() -> Ping:
        """Health check (no API key needed): 200 while the server can answer."""
        return Ping(status="ok", models=registry.names())

    async def _invoke(request: Request, sm: ServedModel) -> Response:
        setattr(request.state, STATE_MODEL, sm)
        body = await request.body()
        ctype = request.headers.get("content-type", sagemaker.JSON)
        content, media = await run_in_threadpool(
            sagemaker.invoke, sm, body, ctype, request.headers.get("accept")
        )
        return Response(content, media_type=media)

    inv_errors = documented(400, 401, 404, 406, 413, 415, 422)

    @app.post("/invocations", tags=["sagemaker"], openapi_extra=_INVOCATION_BODY, responses=inv_errors)
    async def invocations(request: Request) -> Response:
        """Predictions from the default model in SageMaker's formats (JSON or JSON Lines)."""
        return await _invoke(request, registry.get(None))

    @app.post(
        "/endpoints/{name}/invocations",
        tags=["sagemaker"],
        openapi_extra=_INVOCATION_BODY,
        responses=inv_errors,
    )
    async def endpoint_invocations(
        request: Request, name: Annotated[str, PathParam(max_length=200)]
    ) -> Response:
        """The same for a model by name (the path SageMaker's runtime API uses)."""
        return await _invoke(request, registry.get(name))

    # ----- REST API v1 ---------------------------------------------------------------------------
    def rec_response(sm: ServedModel, user: Any, k: int, res: service.RecResult) -> Recommendations:
        return Recommendations(
            model=sm.ref,
            user=user,
            k=k,
            folded_in=res.folded_in,
            history_size=res.history_size,
            feedback_size=res.feedback_size,
            items=res.items,  # type: ignore[arg-type]
        )

    def user_recs(sm: ServedModel, user: str, f: Filters) -> Recommendations:
        res = service.recommend_user(
            sm, feedback, user, f.k, exclude_seen=f.exclude_seen, allow=f.allow, block=f.block
        )
        return rec_response(sm, service.public_user(sm, user), f.k, res)

    @app.get(
        "/v1/users/{user}/recommendations",
        response_model=Recommendations,
        tags=["recommend"],
        responses=documented(401, 404, 422),
    )
    async def get_user_recommendations(
        sm: Served,
        user: UserPath,
        k: K = 10,
        exclude_seen: bool = True,
        allow: IdList = None,
        block: IdList = None,
    ) -> Response:
        """Top-K for a user: the model's ranking, or fold-in of training plus stored ratings once the
        user has rated through this API. ``allow`` / ``block`` repeat (``?block=1&block=2``)."""
        filters = Filters.model_validate(
            {"k": k, "exclude_seen": exclude_seen, "allow": allow, "block": block}
        )
        return _json(user_recs(sm, user, filters))

    @app.post(
        "/v1/users/{user}/recommendations",
        response_model=Recommendations,
        tags=["recommend"],
        responses=documented(401, 404, 413, 415, 422),
    )
    async def post_user_recommendations(sm: Served, user: UserPath, filters: Filters) -> Response:
        """The same with the filters in the body (for long allow or block lists)."""
        return _json(user_recs(sm, user, filters))

    @app.post(
        "/v1/recommendations",
        response_model=Recommendations,
        tags=["recommend"],
        responses=documented(401, 404, 413, 415, 422),
    )
    async def anonymous_recommendations(sm: Served, req: HistoryRequest) -> Response:
        """Top-K for an anonymous user from posted ratings (fold-in); nothing is stored."""
        res = service.recommend_history(
            sm,
            [r.item for r in req.ratings],
            [r.rating for r in req.ratings],
            req.k,
            exclude_seen=req.exclude_seen,
            allow=req.allow,
            block=req.block,
        )
        return _json(rec_response(sm, None, req.k, res))

    @app.get(
        "/v1/items/{item}/similar",
        response_model=SimilarItems,
        tags=["items"],
        responses=documented(401, 404, 422),
    )
    async def similar_items(sm: Served, item: ItemPath, k: K = 10) -> Response:
        """The nearest items by cosine similarity of the model's item embeddings."""
        base, items = service.similar(sm, item, k)
        return _json(SimilarItems(model=sm.ref, item=base, k=k, items=items))  # type: ignore[arg-type]

    @app.get(
        "/v1/users/{user}/explain/{item}",
        response_model=Explanation,
        tags=["recommend"],
        responses=documented(401, 404, 422),
    )
    def explain(
        sm: Served, user: UserPath, item: ItemPath, k: Annotated[int, Query(ge=1, le=MAX_K)] = 5
    ) -> Explanation:
        """Why an item is recommended to a user: the user's rated items (training plus stored
        feedback) nearest it by item embeddings, weighted by how they were rated."""
        res = service.explain(sm, feedback, user, item, k)
        return Explanation(model=sm.ref, user=service.public_user(sm, user), **res)

    @app.get("/v1/items/{item}", response_model=ItemDetail, tags=["items"], responses=documented(401, 404))
    def item_detail(sm: Served, item: ItemPath) -> ItemDetail:
        """An item's title, year, genres and number of training ratings."""
        return ItemDetail(model=sm.ref, item=service.item_detail(sm, item))  # type: ignore[arg-type]

    @app.get("/v1/items", response_model=SearchResults, tags=["items"], responses=documented(401, 422))
    def search_items(
        sm: Served,
        q: Annotated[str, Query(min_length=1, max_length=200, description="part of a title")],
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> SearchResults:
        """Items whose title holds ``q`` (case-insensitive), the whole title first, then prefixes."""
        return SearchResults(model=sm.ref, query=q, items=service.search(sm, q, limit))  # type: ignore[arg-type]

    @app.post(
        "/v1/predictions",
        response_model=Predictions,
        tags=["predict"],
        responses=documented(401, 404, 413, 415, 422),
    )
    async def predictions(sm: Served, req: PredictRequest) -> Response:
        """Predicted ratings (probability of class 1 for a binary model) for (user, item) pairs."""
        users, items = [p.user for p in req.pairs], [p.item for p in req.pairs]
        pred = service.predict_pairs(sm, users, items, [p.timestamp for p in req.pairs]).tolist()
        rows = [{"user": u, "item": i, "prediction": p} for u, i, p in zip(users, items, pred, strict=True)]
        return _json(Predictions(model=sm.ref, kind=sm.kind, predictions=rows))  # type: ignore[arg-type]

    @app.post(
        "/v1/users/{user}/ratings",
        response_model=UserRatings,
        status_code=201,
        tags=["feedback"],
        responses=documented(401, 404, 413, 415, 422, 503),
    )
    def post_ratings(sm: Served, user: UserPath, req: FeedbackRequest) -> UserRatings:
        """Store ratings durably (committed before the answer); they change this user's
        recommendations from the next request on. Returns the user's stored ratings."""
        service.add_ratings(
            sm, feedback, user, [r.item for r in req.ratings], [r.rating for r in req.ratings]
        )
        return user_ratings(sm, user)

    @app.get(
        "/v1/users/{user}/ratings",
        response_model=UserRatings,
        tags=["feedback"],
        responses=documented(401, 404, 503),
    )
    def get_ratings(sm: Served, user: UserPath) -> UserRatings:
        """The user's stored ratings (latest per item, oldest first); training ratings are not listed."""
        return user_ratings(sm, user)

    def user_ratings(sm: ServedModel, user: str) -> UserRatings:
        kind = "postgresql" if feedback.url.startswith("postgres") else "sqlite"
        rows = service.stored_ratings(sm, feedback, user)
        return UserRatings(model=sm.ref, user=service.public_user(sm, user), store=kind, ratings=rows)  # type: ignore[arg-type]

    def model_info(sm: ServedModel) -> ModelInfo:
        i = sm.info
        return ModelInfo(
            model=sm.ref,
            algorithm=str(i.get("model")),
            kind=sm.kind,
            dataset=sm.dataset,
            capabilities=sm.model.fitted_capabilities().as_dict(),
            params=i.get("params") or {},
            rating_scale=i.get("input_rating_scale") or i.get("rating_scale"),
            prediction_scale=i.get("rating_scale"),
            n_users=len(sm.model.users),
            n_items=len(sm.model.items),
            metrics=sm.metrics,
            created=i.get("created"),
            path=str(sm.path),
            default=sm.name == registry.default,
        )

    @app.get("/v1/models", response_model=ModelList, tags=["models"], responses=documented(401))
    def list_models() -> ModelList:
        """Every served model and which one is the default."""
        return ModelList(default=registry.default, models=[model_info(sm) for sm in registry.all()])

    @app.get("/v1/models/{name}", response_model=ModelInfo, tags=["models"], responses=documented(401, 404))
    def get_model(request: Request, name: Annotated[str, PathParam(max_length=200)]) -> ModelInfo:
        """Name, version, algorithm, kind, data set, metrics and creation time of one model."""
        return model_info(served(request, name))

    @app.post(
        "/v1/admin/reload",
        response_model=ReloadResult,
        tags=["admin"],
        responses=documented(401, 404, 413, 415, 422),
    )
    def reload(request: Request, req: Annotated[ReloadRequest | None, Body()] = None) -> ReloadResult:
        """Load a model directory (default: the model's current one), verify it and swap it in;
        requests in flight finish on the old model. A directory that fails verification is refused
        (422) and the old model keeps serving."""
        req = req or ReloadRequest(model=None, path=None)
        if workers > 1 and req.path:
            raise CapabilityError(
                f"this server runs {workers} worker processes, which load the models' own directories: "
                "write the new model over the served directory (recengine train --out does so "
                "atomically) and reload without a path"
            )
        old, new = registry.reload(req.model, Path(req.path) if req.path else None)
        if workers > 1:  # verified here; now every worker, one at a time, without dropping requests
            from recengine.serving.workers import restart_workers

            restart_workers()
        setattr(request.state, STATE_MODEL, new)
        log.info("reloaded %s: %s -> %s", new.name, old.version, new.version)
        return ReloadResult(model=new.ref, previous=old.ref, path=str(new.path))

    app.include_router(web.explore_router(served))  # /v1/models/{name}/explore/...
    _document_api_key(app)
    if tune_process:
        tune_process_for_serving()
    return app


def tune_process_for_serving(threads: int = 1) -> None:
    """Settings for a process that only serves, measured by benchmarks/serving_speed.py on 2 cores.

    - BLAS, OpenMP and torch get ``threads`` threads each: a server answers many small requests at
      once, so threads inside one matrix-vector product only wait for each other (with OpenBLAS's
      default of a thread per core, a top-10 of an ml-20m-sized model cost 3-5 ms of CPU, not 0.8).
    - The objects alive now (the loaded models, the app, the imported modules) are frozen out of
      the cyclic garbage collector: a full collection over them took 200 ms on a busy machine and
      came every few hundred large requests (the p99 of a 1,000-instance invocation).

    Process-wide, so ``recengine serve`` asks for it and an app built in a test process does not."""
    import gc

    import torch
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    torch.set_num_threads(threads)
    gc.collect()
    gc.freeze()


def _document_api_key(app: FastAPI) -> None:
    """Declare the optional X-API-Key header in the OpenAPI document (every route but /ping)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                "ApiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": API_KEY_HEADER,
                    "description": "needed only when the server was started with an API key",
                }
            }
            for path, operations in schema.get("paths", {}).items():
                for op in operations.values():
                    if path != "/ping":
                        op["security"] = [{}, {"ApiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _json(body: BaseModel) -> Response:
    """A validated response model as JSON, serialized once: returning the model itself would have
    FastAPI validate and serialize it again (a third of a top-10 request's CPU).

    Routes that answer this way are ``async``: their work is a few milliseconds of numpy at most, and
    running them on the event loop saves the thread hand-off of a sync route, which cost more."""
    return Response(body.model_dump_json(), media_type="application/json")


def served(request: Request, model: ModelQuery = None) -> ServedModel:
    """The model of this request, looked up once (a reload later does not change it)."""
    sm: ServedModel = request.app.state.registry.get(model)
    setattr(request.state, STATE_MODEL, sm)
    return sm


async def _served(request: Request, model: ModelQuery = None) -> ServedModel:
    """:func:`served` as a dependency on the event loop (a sync one costs a thread hand-off)."""
    return served(request, model)


Served = Annotated[ServedModel, Depends(_served)]


def _reload_all(registry: ModelRegistry) -> None:
    """SIGHUP: reload every model from its directory; a refused one is logged and keeps serving."""
    try:
        for old, new in registry.reload_all():
            log.info("reloaded %s: %s -> %s", new.name, old.version, new.version)
    except RecengineError as e:
        log.error("reload refused, the old model keeps serving: %s", e)
