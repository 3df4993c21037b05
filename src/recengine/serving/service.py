"""What the REST routes do, as plain functions of a served model and the feedback store, so that the
HTTP layer only parses and serializes (and the same logic is testable without a server).

A user's history is their training ratings (from the model, when it knows the user) overlaid with
their stored feedback, the latest rating of an item winning; recommendations for a user with any
feedback are computed by fold-in from that history, so a posted rating shows on the next request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from recengine.data.interactions import IdMap, parse_int_id
from recengine.errors import CapabilityError, DataError, UnknownIdError
from recengine.models.base import NO_TIME
from recengine.models.explain import METHOD, explain_item
from recengine.serving.models import ServedModel
from recengine.serving.store import FeedbackStore, StoredRating


@dataclass
class RecResult:
    items: list[dict[str, Any]]
    folded_in: bool
    history_size: int
    feedback_size: int


@dataclass
class History:
    items: npt.NDArray[np.int64]  # internal ids
    ratings: npt.NDArray[np.float64]
    known: bool  # the model was trained on this user
    feedback: int  # how many of the items come from stored feedback


def ids_for(idmap: IdMap, values: Sequence[str | int]) -> np.ndarray:
    """External ids as an array ``idmap`` reads; in a numeric map, a number too large for it is
    an unknown id, named (instead of an overflow deep in numpy)."""
    texts = [str(v) for v in values]
    if idmap.is_numeric:
        for t in texts:
            if len(t) < 19:  # at most 18 digits: within 64 bits whatever they are
                continue
            if parse_int_id(t) is None and t.strip().lstrip("+-").isdigit():
                raise UnknownIdError(f"unknown {idmap.name}: {t!r}")
    return np.asarray(texts)


def canonical_user(sm: ServedModel, user: str | int) -> str:
    """The store key of a user: the model's own spelling of a known id ("042" and 42 are user 42
    in a numeric id map), else the id as given."""
    text = str(user)
    n = parse_int_id(text) if sm.model.users.is_numeric else None
    return text if n is None else str(n)


def public_user(sm: ServedModel, user: str | int) -> str | int:
    """A user id as responses show it: an integer where the model's user ids are integers."""
    text = canonical_user(sm, user)
    n = parse_int_id(text) if sm.model.users.is_numeric else None
    return text if n is None else n


def internal_items(sm: ServedModel, items: Sequence[str | int]) -> npt.NDArray[np.int64]:
    """Internal ids of external items; the first unknown ones are named in the error."""
    if not items:
        return np.zeros(0, dtype=np.int64)
    return sm.model.items.to_internal(ids_for(sm.model.items, items)).astype(np.int64)


def _scored(sm: ServedModel, ids: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
    keep = np.isfinite(scores)
    idx = sm.model.items.to_internal(ids[keep]) if keep.any() else np.zeros(0, dtype=np.int32)
    return [
        {**sm.catalog.describe(int(i)), "score": float(s)}
        for i, s in zip(idx.tolist(), scores[keep].tolist(), strict=True)
    ]


def user_index(sm: ServedModel, user: str) -> int:
    """The model's internal id of ``user``, or -1 when the model was not trained on them."""
    try:
        return int(sm.model.users.to_internal(ids_for(sm.model.users, [user]), missing="ignore")[0])
    except UnknownIdError:  # a number too large for the id map, or text in a numeric one
        return -1


def history(
    sm: ServedModel, store: FeedbackStore, user: str, feedback: list[StoredRating] | None = None
) -> History:
    """Training ratings of ``user`` (if the model knows them) overlaid with their stored feedback
    (``feedback``, when the caller has already read it from the store)."""
    model = sm.model
    known = user_index(sm, user) >= 0
    merged: dict[int, float] = {}
    if known:
        t_items, t_ratings = model.user_history(user)
        idx = model.items.to_internal(t_items)
        merged.update(zip(idx.tolist(), t_ratings.astype(np.float64).tolist(), strict=True))
    fb = store.user_ratings(sm.namespace, user) if feedback is None else feedback
    n_fb = 0
    if fb:
        idx = model.items.to_internal(np.asarray([r.item for r in fb]), missing="ignore")
        for i, r in zip(idx.tolist(), fb, strict=True):
            if i >= 0:  # an item of an older model of this data set that this one lacks is left out
                merged.pop(i, None)
                merged[i] = r.rating
                n_fb += 1
    return History(
        np.fromiter(merged.keys(), dtype=np.int64, count=len(merged)),
        np.fromiter(merged.values(), dtype=np.float64, count=len(merged)),
        known,
        n_fb,
    )


def recommend_user(
    sm: ServedModel,
    store: FeedbackStore,
    user: str,
    k: int,
    *,
    exclude_seen: bool = True,
    allow: Sequence[str | int] | None = None,
    block: Sequence[str | int] | None = None,
) -> RecResult:
    """Top-``k`` for a user: the model's own ranking while they have no feedback, fold-in of their
    whole history once they have; a user unknown to both is an :class:`UnknownIdError`."""
    model = sm.model
    user = canonical_user(sm, user)
    feedback = store.user_ratings(sm.namespace, user)
    allow_ids = None if allow is None else ids_for(model.items, allow)
    block_ids = None if block is None else ids_for(model.items, block)
    if not feedback:  # most requests: the model's own ranking, without merging the training history
        u = user_index(sm, user)
        if u < 0:
            raise UnknownIdError(f"unknown user: {user!r} (not in the training data, no stored ratings)")
        ids, scores = model.recommend(
            np.asarray([user]), k, exclude_seen=exclude_seen, items=allow_ids, exclude_items=block_ids
        )
        indptr = model.seen().indptr
        return RecResult(_scored(sm, ids[0], scores[0]), False, int(indptr[u + 1] - indptr[u]), 0)
    h = history(sm, store, user, feedback)
    if not h.known and h.feedback == 0:
        raise UnknownIdError(f"unknown user: {user!r} (not in the training data, no stored ratings)")
    if h.feedback == 0 or not model.capabilities.new_users:
        if not h.known:
            raise CapabilityError(
                f"{model.name} has no fold-in, so it cannot use the stored ratings of {user!r}"
            )
        if exclude_seen and h.feedback:  # no fold-in, but rated items still count as seen
            fb_ids = model.items.external[h.items].astype(str)
            block_ids = fb_ids if block_ids is None else np.concatenate([block_ids, fb_ids])
        ids, scores = model.recommend(
            np.asarray([user]), k, exclude_seen=exclude_seen, items=allow_ids, exclude_items=block_ids
        )
        return RecResult(_scored(sm, ids[0], scores[0]), False, len(h.items), 0)
    ids1, scores1 = model.recommend_new(
        model.items.external[h.items],
        h.ratings,
        k,
        exclude_seen=exclude_seen,
        candidates=allow_ids,
        exclude_items=block_ids,
    )
    return RecResult(_scored(sm, ids1, scores1), True, len(h.items), h.feedback)


def recommend_history(
    sm: ServedModel,
    items: Sequence[str | int],
    ratings: Sequence[float],
    k: int,
    *,
    exclude_seen: bool = True,
    allow: Sequence[str | int] | None = None,
    block: Sequence[str | int] | None = None,
) -> RecResult:
    """Top-``k`` for an anonymous user given by ratings (fold-in; the latest rating of an item wins)."""
    idx = internal_items(sm, items)
    merged: dict[int, float] = {}
    for i, r in zip(idx.tolist(), ratings, strict=True):
        merged.pop(i, None)
        merged[i] = float(r)
    h_items = np.fromiter(merged.keys(), dtype=np.int64, count=len(merged))
    h_ratings = np.fromiter(merged.values(), dtype=np.float64, count=len(merged))
    ids, scores = sm.model.recommend_new(
        sm.model.items.external[h_items],
        h_ratings,
        k,
        exclude_seen=exclude_seen,
        candidates=None if allow is None else ids_for(sm.model.items, allow),
        exclude_items=None if block is None else ids_for(sm.model.items, block),
    )
    return RecResult(_scored(sm, ids, scores), True, len(merged), 0)


def similar(sm: ServedModel, item: str, k: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    idx = int(internal_items(sm, [item])[0])
    ids, scores = sm.model.similar_items(sm.model.items.external[[idx]], k)
    return sm.catalog.describe(idx), _scored(sm, ids[0], scores[0])


def explain(sm: ServedModel, store: FeedbackStore, user: str, item: str, k: int) -> dict[str, Any]:
    """Why ``item`` is (or would be) recommended to ``user``: its score in the user's ranking and the
    ``k`` rated items (training plus stored feedback) that support it most, by item embeddings."""
    user = canonical_user(sm, user)
    idx = int(internal_items(sm, [item])[0])
    h = history(sm, store, user)
    if not h.known and h.feedback == 0:
        raise UnknownIdError(f"unknown user: {user!r} (not in the training data, no stored ratings)")
    reasons = explain_item(sm.model, idx, h.items, h.ratings, k)
    ranked = recommend_user(sm, store, user, 1, exclude_seen=False, allow=[str(sm.model.items.external[idx])])
    because = [
        {**sm.catalog.describe(j), "similarity": s, "rating": r, "contribution": c}
        for j, s, r, c in zip(
            reasons.items.tolist(),
            reasons.similarity.tolist(),
            reasons.rating.tolist(),
            reasons.contribution.tolist(),
            strict=True,
        )
    ]
    score = ranked.items[0]["score"] if ranked.items else None
    return {
        "item": sm.catalog.describe(idx),
        "score": score,
        "history_size": len(h.items),
        "method": METHOD,
        "because": because,
    }


def predict_pairs(
    sm: ServedModel,
    users: Sequence[str | int],
    items: Sequence[str | int],
    times: Sequence[int | None] | None = None,
) -> np.ndarray:
    """Ratings (or probabilities of class 1) for pairs of known users and items, in one call; a pair's
    time (seconds), where given, is read by a model with sessions (a pair without one is in none)."""
    at = None
    if times is not None and any(t is not None for t in times):
        at = np.asarray([NO_TIME if t is None else t for t in times], dtype=np.int64)
    return sm.model.predict(ids_for(sm.model.users, users), ids_for(sm.model.items, items), at)


def add_ratings(
    sm: ServedModel, store: FeedbackStore, user: str, items: Sequence[str | int], ratings: Sequence[float]
) -> list[StoredRating]:
    """Validate (known items, ratings on the model's scale) and store in one transaction."""
    user = canonical_user(sm, user)
    idx = internal_items(sm, items)
    r = np.asarray(ratings, dtype=np.float64)
    scale = sm.model.input_scale  # what the model was fitted on, as a known user's history is
    if scale is not None and len(r):
        bad = scale.bad_rows(r)
        if bool(bad.any()):
            raise DataError(f"rating {r[bad][0]:g} is outside the model's rating scale {scale}")
    ext = sm.model.items.external[idx]
    return store.add(
        sm.namespace, user, [(str(e), float(x)) for e, x in zip(ext.tolist(), r.tolist(), strict=True)]
    )


def stored_ratings(sm: ServedModel, store: FeedbackStore, user: str) -> list[dict[str, Any]]:
    """The user's latest stored rating per item, with titles where the model knows the item."""
    user = canonical_user(sm, user)
    out = []
    for r in store.user_ratings(sm.namespace, user):
        i = int(sm.model.items.to_internal([r.item], missing="ignore")[0])
        item: Any = sm.model.items.external[i].item() if i >= 0 else r.item
        title, year = (sm.catalog.titles[i], sm.catalog.years[i]) if i >= 0 else (None, None)
        out.append({"item": item, "rating": r.rating, "created": r.created, "title": title, "year": year})
    return out


def search(sm: ServedModel, query: str, limit: int) -> list[dict[str, Any]]:
    if not sm.catalog.has_titles:
        raise CapabilityError(f"model {sm.name!r} was saved without item titles (no data set metadata)")
    return [sm.catalog.describe(i) for i in sm.catalog.search(query, limit)]


def item_detail(sm: ServedModel, item: str) -> dict[str, Any]:
    return sm.catalog.describe(int(internal_items(sm, [item])[0]))
