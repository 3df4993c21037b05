"""Request and response bodies of the REST API v1: pydantic models, so that FastAPI validates input
and the OpenAPI document describes every field (the fuzzing tests generate requests from it)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from recengine.data.interactions import INT64_MAX, INT64_MIN

#: External ids as clients send them: the data set's integers or text (``"42"`` finds 42 in a
#: numeric id map). Bounded so that no id can overflow a 64-bit id map.
IntId = Annotated[StrictInt, Field(ge=INT64_MIN, le=INT64_MAX)]
TextId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ExternalId = IntId | TextId

MAX_K = 1000
MAX_LIST = 10_000
Kind = Literal["regression", "binary", "ranking"]


class _Body(BaseModel):
    """A request body: unknown fields refused, and values taken as JSON types only (strict), so that
    ``"rating": true`` or ``"5"`` or ``"exclude_seen": "no"`` is a 422, not 1 star, 5 or false."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ModelRef(BaseModel):
    """Which model answered: every response carries it, so a client can tell a reload happened."""

    name: str = Field(description="the name the server serves the model under")
    version: str = Field(description="first 12 hex digits of the sha256 of the artifact's manifest")
    created: str | None = Field(None, description="when the artifact was written (ISO 8601)")
    library_version: str | None = Field(None, description="recengine version that wrote the artifact")


class Item(BaseModel):
    item: ExternalId
    title: str | None = None
    year: int | None = None
    genres: list[str] | None = None
    ratings: int = Field(0, description="number of training ratings of the item")


class ScoredItem(Item):
    score: float = Field(
        description="the model's score: for rating models the predicted rating, within the scale "
        "as /predictions gives it"
    )


class Recommendations(BaseModel):
    model: ModelRef
    user: ExternalId | None = Field(None, description="the user, or null for an anonymous history")
    k: int
    folded_in: bool = Field(description="true when computed by fold-in from the user's history")
    history_size: int = Field(description="ratings in the history used (training plus stored feedback)")
    feedback_size: int = Field(description="stored feedback ratings among them")
    items: list[ScoredItem]


class Filters(_Body):
    k: int = Field(10, ge=1, le=MAX_K, description="how many items")
    exclude_seen: bool = Field(True, description="leave out items in the history")
    allow: list[ExternalId] | None = Field(None, max_length=MAX_LIST, description="only these items")
    block: list[ExternalId] | None = Field(None, max_length=MAX_LIST, description="never these items")


class RatingIn(_Body):
    item: ExternalId
    rating: float = Field(allow_inf_nan=False, description="on the model's rating scale")


class HistoryRequest(Filters):
    """An anonymous user given by ratings: recommendations by fold-in, nothing stored."""

    ratings: list[RatingIn] = Field(max_length=MAX_LIST)


class SimilarItems(BaseModel):
    model: ModelRef
    item: Item
    k: int
    items: list[ScoredItem] = Field(description="nearest items by cosine similarity of item embeddings")


class Reason(Item):
    similarity: float = Field(description="cosine similarity of the two items' embeddings")
    rating: float = Field(description="the user's rating of this item")
    contribution: float = Field(description="similarity times (rating minus the scale's middle)")


class Explanation(BaseModel):
    model: ModelRef
    user: ExternalId
    item: Item
    score: float | None = Field(description="the item's score in the user's ranking")
    history_size: int = Field(description="rated items considered (training plus stored feedback)")
    method: str = Field(description="how the reasons were chosen")
    because: list[Reason] = Field(description="the user's rated items that support the item most")


class Pair(_Body):
    user: ExternalId
    item: ExternalId
    timestamp: int | None = Field(
        None,
        ge=-(2**63),
        lt=2**63,
        description="the query's time in seconds: a model that reads time (object2vec's sessions and "
        "session residuals) predicts the pair in the user's sitting it falls in; other models ignore it",
    )


class PredictRequest(_Body):
    pairs: list[Pair] = Field(min_length=1, max_length=MAX_LIST)


class Prediction(BaseModel):
    user: ExternalId
    item: ExternalId
    prediction: float = Field(description="the rating (regression) or the probability of class 1 (binary)")


class Predictions(BaseModel):
    model: ModelRef
    kind: Kind
    predictions: list[Prediction]


class SearchResults(BaseModel):
    model: ModelRef
    query: str
    items: list[Item] = Field(description="exact title first, then title prefix, word prefix, substring")


class ItemDetail(BaseModel):
    model: ModelRef
    item: Item


class FeedbackRequest(_Body):
    ratings: list[RatingIn] = Field(min_length=1, max_length=1000)


class StoredRatingOut(BaseModel):
    item: ExternalId
    rating: float
    created: float = Field(description="Unix seconds when the rating was stored")
    title: str | None = None
    year: int | None = None


class UserRatings(BaseModel):
    model: ModelRef
    user: ExternalId
    store: str = Field(description="the feedback store's kind (sqlite or postgresql)")
    ratings: list[StoredRatingOut] = Field(description="the latest stored rating per item, oldest first")


class ModelInfo(BaseModel):
    model: ModelRef
    algorithm: str = Field(description="the model family (registry name), e.g. bias or mf")
    kind: Kind
    dataset: str | None
    capabilities: dict[str, bool]
    params: dict[str, object]
    rating_scale: dict[str, float | None] | None = Field(
        description="the scale people rate on: the training ratings', which feedback and fold-in take"
    )
    prediction_scale: dict[str, float | None] | None = Field(
        description="the scale of the predictions (0 to 1 for a binary model, even one fitted on stars)"
    )
    n_users: int
    n_items: int
    metrics: dict[str, object]
    created: str | None
    path: str
    default: bool


class ModelList(BaseModel):
    default: str
    models: list[ModelInfo]


class ReloadRequest(_Body):
    model: str | None = Field(None, max_length=200, description="served name (default: the default model)")
    path: str | None = Field(
        None, max_length=4096, description="a new model directory (default: reload the current one)"
    )


class ReloadResult(BaseModel):
    model: ModelRef
    previous: ModelRef
    path: str


class ErrorBody(BaseModel):
    error: str = Field(description="a short machine-readable code, e.g. unknown_id")
    detail: str = Field(description="what was wrong, naming the offending id or field")


class Ping(BaseModel):
    status: Literal["ok"]
    models: list[str]


# ----- exploration of item embeddings ------------------------------------------------------------
ClusterMethod = Literal["kmeans", "agglomerative"]


class ExploreItem(Item):
    mean_rating: float | None = Field(None, description="mean training rating (null for implicit data)")


class MapPoint(BaseModel):
    item: ExternalId
    title: str = Field(description="title with its year")
    genres: list[str]
    genre: str = Field(description="main genre, the colour of the point (one of the map's genres)")
    x: float = Field(ge=0, le=1, description="t-SNE coordinate scaled to [0, 1]")
    y: float = Field(ge=0, le=1, description="t-SNE coordinate scaled to [0, 1]")
    cluster: int = Field(description="cluster number; 0 is the largest cluster")
    ratings: int = Field(description="number of training ratings")
    mean_rating: float | None = None


class ExploreMap(BaseModel):
    """A 2-D t-SNE map of the item embeddings (cosine geometry), computed once per model version."""

    model: ModelRef
    method: ClusterMethod
    k: int
    n_items: int = Field(description="items in the model")
    n_points: int = Field(description="items on the map")
    max_points: int = Field(description="the most items the server maps; larger catalogs are sampled")
    subsampled: bool
    sample: str = Field(description="which items are on the map")
    genres: list[str] = Field(description="colour legend: the most common genres, then other, no genre")
    labelled: list[int] = Field(description="positions in points of the most-rated titles, to label")
    tsne: dict[str, object] = Field(description="how the map was computed")
    points: list[MapPoint]


class GenreLift(BaseModel):
    genre: str
    lift: float = Field(description="share in the cluster over share in the catalog")
    share: float
    catalog_share: float
    count: int
    z: float = Field(description="standard deviations above a random cluster of the same size")


class Cluster(BaseModel):
    cluster: int
    size: int
    share: float
    name: str = Field(description="its two most over-represented genres, or mixed")
    genres: list[GenreLift] = Field(description="over-represented genres, most significant first")
    most_rated: list[ExploreItem]
    ratings: int = Field(description="training ratings of its items")
    mean_rating: float | None


class ExploreClusters(BaseModel):
    model: ModelRef
    method: ClusterMethod
    k: int
    n_items: int
    clusters: list[Cluster]


class KSelection(BaseModel):
    """Curves to choose k: the inertia elbow and the best silhouette."""

    model: ModelRef
    method: ClusterMethod
    ks: list[int]
    n: int = Field(description="items the curves are computed over (a seeded sample of large catalogs)")
    n_items: int
    inertia: list[float]
    silhouette: list[float | None]
    elbow_k: int
    best_silhouette_k: int | None


class NeighbourItem(ExploreItem):
    similarity: float = Field(description="cosine similarity of the item embeddings")


class ItemNeighbourTable(BaseModel):
    query: ExploreItem
    neighbours: list[NeighbourItem]


class ItemNeighbours(BaseModel):
    model: ModelRef
    k: int
    min_ratings: int = Field(description="neighbours have at least this many training ratings")
    neighbours: list[ItemNeighbourTable]


class ExploreUser(BaseModel):
    user: ExternalId
    ratings: int


class NeighbourUser(ExploreUser):
    similarity: float = Field(description="cosine similarity of the user embeddings")
    shared_items: int = Field(description="items both users rated")


class UserNeighbourTable(BaseModel):
    query: ExploreUser
    neighbours: list[NeighbourUser]


class UserNeighbours(BaseModel):
    model: ModelRef
    k: int
    neighbours: list[UserNeighbourTable]
