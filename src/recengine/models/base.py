"""The Recommender contract every model follows, so evaluation, the CLI and serving treat them alike.

Models work on dense internal ids (``fit``, ``predict_internal``, ``score``); the public edge
(``recommend``, ``predict``) takes external ids and maps them through the IdMaps of the data the model
was fitted on. Each model declares what it can do in ``capabilities``; asking for anything else is a
:class:`CapabilityError`, never a silent fallback.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from recengine.data.interactions import IdMap, Interactions, RatingScale
from recengine.errors import CapabilityError, ConfigError, DataError, RecengineError

if TYPE_CHECKING:
    from recengine.data.dataset import Dataset

FloatArray = npt.NDArray[np.float64]


#: A query time earlier than any (int64's least): what a query of a batch without a time of its own
#: carries to :meth:`Recommender.predict_internal`, so that a time context finds nothing for it.
NO_TIME = int(np.iinfo(np.int64).min)


class Params(BaseModel):
    """Hyperparameters: data that round-trips to JSON; unknown names are rejected by name."""

    # allow_inf_nan: an infinite value would be written to config.json as null, and never load again
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    #: Other names a user may give for a field (SageMaker's, say), shown beside ours in errors.
    OTHER_NAMES: ClassVar[dict[str, str]] = {}
    #: Names known from elsewhere that this model does not take, with why (instead of "unknown").
    UNSUPPORTED: ClassVar[dict[str, str]] = {}

    @classmethod
    def canonical_names(cls, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` with other names for a setting (SageMaker's, say) turned into ours; a model's
        constructor applies it to its params and its overrides apart, so that an override wins."""
        return dict(data)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_not_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        """``epochs=true`` would otherwise train one epoch: a number field takes numbers only."""
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and field.annotation in _NUMBERS:
            raise ValueError(f"expects a number, not {str(value).lower()}")
        return value


_NUMBERS = (int, float, int | None, float | None)


@dataclass(frozen=True)
class Capabilities:
    rating: bool  # predicts a rating (or probability) for a (user, item) pair
    topn: bool  # scores every item for a user
    known_users: bool = True
    new_users: bool = False  # fold-in from a history without retraining
    new_items: bool = False  # embeds an unseen item from its content

    def as_dict(self) -> dict[str, bool]:
        return asdict(self)


class NotFittedError(RecengineError):
    """A model was used before ``fit``."""


class Recommender(ABC):
    """Base of every model. Subclasses set ``name``, ``ParamsModel``, ``capabilities`` and implement
    ``_fit``, and ``_predict`` and/or ``_score``."""

    name: ClassVar[str]
    ParamsModel: ClassVar[type[Params]] = Params
    capabilities: ClassVar[Capabilities]

    def __init__(self, params: Params | dict[str, Any] | None = None, **overrides: Any) -> None:
        """Hyperparameters as a dict (what ``get_params`` and ``--set`` give; a ``preset`` name
        among them) and/or keyword overrides, which win: ``Object2Vec({"enc_dim": 64}, epochs=5)``.
        Unknown names and bad values are a ConfigError naming them."""
        raw = params.model_dump() if isinstance(params, Params) else dict(params or {})
        try:
            raw = self.ParamsModel.canonical_names(raw)
            raw.update(self.ParamsModel.canonical_names(overrides))  # an override wins, by any name
        except ValueError as e:  # two names of one setting with two values, in one of them
            raise ConfigError(f"{self.name}: {e}") from None
        try:
            self.params = self.ParamsModel(**raw)
        except ValidationError as e:
            raise ConfigError(f"{self.name}: {_pydantic_message(e, self.ParamsModel)}") from None
        self._users: IdMap | None = None
        self._items: IdMap | None = None
        self._scale: RatingScale | None = None
        self._input_scale: RatingScale | None = None
        self._seen: sp.csr_matrix | None = None
        self.history: dict[str, Any] = {}  # training curves and figures, saved with the artifact
        self.checkpoint_dir: Path | None = None
        self.resume = False
        self.progress = False

    # ----- fitting -----------------------------------------------------------------------------
    def use_dataset(self, ds: Dataset) -> Self:
        """Take what this model reads of a data set besides its ratings (item and user features),
        before ``fit``. Every caller that fits on a data set (the evaluation runner, ``train``,
        ``recommend --data``) calls it, so a model's side data is the same whichever way it is fitted;
        models that read none keep this no-op."""
        return self

    @property
    def reads_time(self) -> bool:
        """Whether :meth:`predict_internal` reads the queries' times (a model with sessions)."""
        return False

    @property
    def predicts_ratings(self) -> bool:
        """Whether, fitted on ratings, the model predicts ratings (a rating model may be set up to
        predict the probability of a label instead, which a rating task cannot measure)."""
        return self.capabilities.rating

    def learns_labels_from_ratings(self, threshold: float) -> bool:
        """Whether, asked for P(rating > ``threshold``), this model fits on the ratings themselves rather
        than on the labels; the evaluation runner then gives it a binary fold's training ratings."""
        return False

    def fit(
        self,
        train: Interactions,
        *,
        checkpoint_dir: Path | None = None,
        resume: bool = False,
        progress: bool = False,
    ) -> Self:
        """Fit on ``train``. Iterative models checkpoint each epoch into ``checkpoint_dir`` when given,
        and with ``resume`` continue from the last checkpoint there to the same result as an
        uninterrupted run; ``progress`` draws a progress bar on stderr."""
        self.checkpoint_dir, self.resume, self.progress = checkpoint_dir, resume, progress
        if len(train) == 0:
            raise DataError(f"{self.name}: cannot fit on an empty training set")
        if self.capabilities.rating and not self.capabilities.topn and train.rating is None:
            raise DataError(
                f"{self.name} predicts ratings and needs explicit ratings, but the data is implicit"
            )
        self._users, self._items, self._scale = train.users, train.items, train.scale
        self._input_scale = train.scale
        self._seen = train.csr("rating")  # stored entries = seen; values = ratings (0 labels kept)
        self._fit(train)
        return self

    @abstractmethod
    def _fit(self, train: Interactions) -> None: ...

    @property
    def is_fitted(self) -> bool:
        """Whether ``fit`` (or loading a saved model) has happened."""
        return self._users is not None

    @property
    def users(self) -> IdMap:
        """The training users' external ids ↔ internal ids (``users.to_internal(ids)``)."""
        if self._users is None:
            raise NotFittedError(f"{self.name}: call fit() first")
        return self._users

    @property
    def items(self) -> IdMap:
        """The training items' external ids ↔ internal ids."""
        if self._items is None:
            raise NotFittedError(f"{self.name}: call fit() first")
        return self._items

    @property
    def scale(self) -> RatingScale | None:
        """The scale of the predictions (0..1 for a model that predicts P(label = 1))."""
        return self._scale

    @property
    def input_scale(self) -> RatingScale | None:
        """The scale of the ratings the model was fitted on, which a history given to :meth:`fold_in`
        (and a known user's :meth:`user_history`) is on. It differs from :attr:`scale` where a model
        makes its labels of ratings: one fitted on 1-5 stars that predicts P(rating > 3) takes stars."""
        return self._input_scale if self._input_scale is not None else self._scale

    def seen(self) -> sp.csr_matrix:
        """User × item matrix of the training interactions: its stored entries are what
        ``exclude_seen`` removes, its values the training ratings (ones for implicit data), so a
        known user's history can be folded in again together with new feedback."""
        if self._seen is None:
            raise NotFittedError(f"{self.name}: call fit() first")
        return self._seen

    def user_history(self, user: int | str) -> tuple[np.ndarray, npt.NDArray[np.float32]]:
        """A known user's training items (external ids) and ratings."""
        u = int(self.users.to_internal([user])[0])
        row = self.seen()[u]
        return self.items.external[row.indices], row.data.astype(np.float32)

    # ----- state for artifacts ---------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        """The fitted arrays (weights, biases, ...) by name; the artifact stores them in safetensors.
        Id maps, scale, seen matrix and params are saved by the artifact itself."""
        raise NotImplementedError(f"{self.name} cannot be saved")

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Inverse of :meth:`state_arrays` on a freshly constructed model with the same params."""
        raise NotImplementedError(f"{self.name} cannot be loaded")

    def restore(
        self,
        users: IdMap,
        items: IdMap,
        scale: RatingScale | None,
        seen: sp.csr_matrix,
        arrays: dict[str, np.ndarray],
        history: dict[str, Any] | None = None,
        input_scale: RatingScale | None = None,
    ) -> Self:
        """Bring a saved model back without its training data (used by ``recengine.artifacts``);
        ``input_scale`` defaults to ``scale``, as for a model whose labels are its ratings."""
        self._users, self._items, self._scale, self._seen = users, items, scale, seen.tocsr()
        self._input_scale = input_scale if input_scale is not None else scale
        self.history = dict(history or {})
        self.load_state_arrays(arrays)
        return self

    # ----- internal-id scoring -----------------------------------------------------------------
    def predict_internal(
        self, users: npt.ArrayLike, items: npt.ArrayLike, timestamps: npt.ArrayLike | None = None
    ) -> FloatArray:
        """Predicted ratings for internal id pairs, clipped to the training data's scale.

        ``timestamps`` (seconds, one per pair) are the time of each query: a model with a time
        context (object2vec's sessions) reads them, every other model predicts as without."""
        if not self.capabilities.rating:
            raise CapabilityError(f"{self.name} ranks items but does not predict ratings")
        u = np.asarray(users, dtype=np.int64)
        i = np.asarray(items, dtype=np.int64)
        if u.shape != i.shape:
            raise ValueError("users and items must have the same length")
        self._check_range(u, i)
        if timestamps is None:
            out = self._predict(u, i)
        else:
            t = np.asarray(timestamps)
            if t.shape != u.shape or t.dtype.kind not in "iu":
                raise DataError(
                    f"timestamps must be one integer (seconds) per pair: got {t.dtype} of shape {t.shape} "
                    f"for {len(u)} pairs"
                )
            out = self._predict_at(u, i, t.astype(np.int64))
        return self.scale.clip(out) if self.scale is not None else out

    def score(self, users: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Scores of every item for each internal user id: shape (len(users), n_items), higher is better."""
        if not self.capabilities.topn:
            raise CapabilityError(f"{self.name} does not rank items")
        u = np.asarray(users, dtype=np.int64)
        self._check_range(u, np.zeros(0, dtype=np.int64))
        return self._score(u).astype(np.float32, copy=False)

    def _predict(self, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64]) -> FloatArray:
        raise CapabilityError(f"{self.name} does not predict ratings")

    def _predict_at(
        self, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64], timestamps: npt.NDArray[np.int64]
    ) -> FloatArray:
        """Predictions at the given times; a model without a time context ignores them."""
        return self._predict(users, items)

    def _score(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.floating]:
        """Default: rank by predicted rating for every item (fine for models with cheap predictions)."""
        n_items = self.items.__len__()
        uu = np.repeat(users, n_items)
        ii = np.tile(np.arange(n_items, dtype=np.int64), len(users))
        return self._predict(uu, ii).reshape(len(users), n_items)

    def _check_range(self, u: npt.NDArray[np.int64], i: npt.NDArray[np.int64]) -> None:
        if u.size and (u.min() < 0 or u.max() >= len(self.users)):
            raise DataError(f"{self.name}: internal user id out of range 0..{len(self.users) - 1}")
        if i.size and (i.min() < 0 or i.max() >= len(self.items)):
            raise DataError(f"{self.name}: internal item id out of range 0..{len(self.items) - 1}")

    # ----- external-id edge --------------------------------------------------------------------
    def predict(
        self, users: npt.ArrayLike, items: npt.ArrayLike, timestamps: npt.ArrayLike | None = None
    ) -> FloatArray:
        """Predicted ratings for external (user, item) ids (at the given times, see
        :meth:`predict_internal`); unknown ids raise UnknownIdError."""
        return self.predict_internal(self.users.to_internal(users), self.items.to_internal(items), timestamps)

    def recommend(
        self,
        users: npt.ArrayLike,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        items: npt.ArrayLike | None = None,
        exclude_items: npt.ArrayLike | None = None,
    ) -> tuple[np.ndarray, npt.NDArray[np.float32]]:
        """Top-``k`` external item ids and scores per external user id, as 2-D arrays (one row a user).

        ``items`` restricts the candidates, ``exclude_items`` removes some; rows with fewer than ``k``
        candidates are padded with the id map's missing value (-1 or "") and NaN scores.
        """
        from recengine.evaluation.topn import topk

        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        uidx = self.users.to_internal(users)
        scores = self.score(uidx).astype(np.float32, copy=True)
        if items is not None:
            allowed = np.zeros(len(self.items), dtype=bool)
            allowed[self.items.to_internal(items)] = True
            scores[:, ~allowed] = -np.inf
        if exclude_items is not None and len(np.atleast_1d(np.asarray(exclude_items))):
            scores[:, self.items.to_internal(exclude_items)] = -np.inf
        # The whole seen matrix with the batch's rows: slicing rows out of it first cost more
        # than the scoring of a single user (serving's hot path).
        exclude = self.seen() if exclude_seen else None
        idx, top = topk(scores, k, exclude=exclude, rows=uidx if exclude_seen else None, copy=False)
        return self._external_items(idx), self._as_ratings(top)

    def _as_ratings(self, top: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """A rating model's top scores as the ratings ``predict`` gives (clipped to the scale, the
        order kept): ranking uses the raw scores, but 5.3 stars is no answer on a 1–5 scale."""
        if not self.capabilities.rating or self.scale is None:
            return top
        return self.scale.clip(top).astype(np.float32)

    # ----- embeddings and neighbours --------------------------------------------------------
    def item_embeddings(self) -> npt.NDArray[np.float32]:
        """One row per internal item id; models without item vectors raise CapabilityError."""
        raise CapabilityError(f"{self.name} has no item embeddings")

    def user_embeddings(self) -> npt.NDArray[np.float32]:
        raise CapabilityError(f"{self.name} has no user embeddings")

    def similar_items(self, items: npt.ArrayLike, k: int = 10) -> tuple[np.ndarray, npt.NDArray[np.float32]]:
        """The ``k`` items nearest each external item id by cosine similarity of item embeddings,
        the item itself left out; 2-D arrays like :meth:`recommend`."""
        from recengine.evaluation.topn import topk

        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        idx = self.items.to_internal(items)
        emb = np.asarray(self.item_embeddings(), dtype=np.float32)
        unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        sims = unit[idx] @ unit.T
        sims[np.arange(len(idx)), idx] = -np.inf
        top_idx, top = topk(sims, k, copy=False)
        return self._external_items(top_idx), top

    def _external_items(self, idx: npt.NDArray[np.integer]) -> np.ndarray:
        fill: Any = -1 if self.items.is_numeric else ""
        return np.where(idx >= 0, self.items.external[np.maximum(idx, 0)], fill)

    # ----- new users from a history (fold-in) --------------------------------------------------
    def fold_in(self, items: npt.ArrayLike, ratings: npt.ArrayLike | None = None) -> npt.NDArray[np.float64]:
        """A new user's representation from (external item, rating) pairs, item side frozen; the
        ratings are on :attr:`input_scale`, as the training ratings were. Without ratings every item
        counts as one interaction (a 1), which only a model fitted on interactions or 0/1 labels takes.

        Unknown items raise UnknownIdError; models that cannot do this raise CapabilityError.
        """
        if not self.capabilities.new_users:
            raise CapabilityError(f"{self.name} cannot serve a new user from a history")
        idx = self.items.to_internal(items).astype(np.int64)
        scale = self.input_scale
        if ratings is None and len(idx) and scale is not None and not scale.is_binary:
            raise ConfigError(
                f"{self.name} was fitted on ratings {scale}: give the history's ratings (without them, "
                "each item would count as the lowest rating)"
            )
        r = np.ones(len(idx)) if ratings is None else np.asarray(ratings, dtype=np.float64)
        if r.shape != idx.shape:
            raise ValueError("items and ratings must have the same length")
        if scale is not None and len(r):
            bad = scale.bad_rows(r)
            if bool(bad.any()):
                raise DataError(f"rating {r[bad][0]:g} is outside the model's scale {scale}")
        return self._fold_in(idx, r)

    def _fold_in(self, items: npt.NDArray[np.int64], ratings: FloatArray) -> FloatArray:
        raise CapabilityError(f"{self.name} cannot serve a new user from a history")

    def _score_folded(self, vector: FloatArray) -> FloatArray:
        """Scores of every item for one folded-in user (the rating scale where the model predicts one)."""
        raise CapabilityError(f"{self.name} cannot serve a new user from a history")

    def recommend_new(
        self,
        items: npt.ArrayLike,
        ratings: npt.ArrayLike | None = None,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        candidates: npt.ArrayLike | None = None,
        exclude_items: npt.ArrayLike | None = None,
    ) -> tuple[np.ndarray, npt.NDArray[np.float32]]:
        """Top-``k`` for an anonymous user given by a history; 1-D arrays."""
        from recengine.evaluation.topn import topk

        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        vec = self.fold_in(items, ratings)
        scores = self._score_folded(vec).astype(np.float32)[None, :]
        allowed = np.ones(len(self.items), dtype=bool)
        if candidates is not None:
            allowed[:] = False
            allowed[self.items.to_internal(candidates)] = True
        if exclude_items is not None and len(np.atleast_1d(np.asarray(exclude_items))):
            allowed[self.items.to_internal(exclude_items)] = False
        if exclude_seen and len(np.atleast_1d(np.asarray(items))):
            allowed[self.items.to_internal(items)] = False
        scores[:, ~allowed] = -np.inf
        idx, top = topk(scores, k, copy=False)
        return self._external_items(idx)[0], self._as_ratings(top[0])

    def fitted_capabilities(self) -> Capabilities:
        """What this fitted model can do: its class's capabilities, less what its fit left out
        (an object2vec fitted without item content cannot embed a new item). Saved and served."""
        return self.capabilities

    def get_params(self) -> dict[str, Any]:
        """Every hyperparameter as JSON data: ``type(m)(m.get_params())`` builds the same model."""
        return self.params.model_dump(mode="json")


def _pydantic_message(e: ValidationError, params: type[Params]) -> str:
    """One line per problem, in the names a user types: a near miss of a known name suggested, a name
    from elsewhere that the model does not take said so, a check across settings given as it is."""
    import difflib

    known = [*params.model_fields, *params.OTHER_NAMES.values()]
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            if loc in params.UNSUPPORTED:
                parts.append(f"{loc!r} is not supported: {params.UNSUPPORTED[loc]}")
                continue
            near = difflib.get_close_matches(loc, known, n=1, cutoff=0.7)
            parts.append(f"unknown parameter {loc!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
        elif not loc:  # a check across several settings
            parts.append(msg)
        else:
            other = params.OTHER_NAMES.get(loc)
            name = f"{loc!r}" + (f" ({other})" if other else "")
            parts.append(f"parameter {name}: {msg} (got {err.get('input')!r})")
    return "; ".join(parts)
