"""Why an item was recommended: the user's rated items that pull it up the most, by item embeddings.

Any model with item embeddings can be explained the same way (the item-to-item view of a latent
factor model): an item scores high for a user when it lies near the items they rated highly. For
each rated item ``j`` and the explained item ``i``,

    similarity_j = cos(q_i, q_j)        contribution_j = similarity_j * (r_j - midpoint)

where ``midpoint`` is the middle of the model's rating scale (3 on 1–5), so a liked neighbour pushes
the item up, a disliked neighbour pushes it down, and an item unlike anything the user rated gets
no reason at all. Implicit data (no scale) uses the raw value (1) as the weight. The reasons are the
rated items sorted by contribution, largest first. It is an account of the embedding geometry, not an
exact decomposition of every model's score; it needs no model-specific code, which is why it is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recengine.errors import ConfigError, DataError
from recengine.models.base import Recommender

METHOD = (
    "cosine similarity of item embeddings between the item and each item the user rated, "
    "times the rating minus the middle of the rating scale; largest contributions first"
)


@dataclass(frozen=True)
class Reasons:
    """Rated items (internal ids) ordered by contribution, with the figures that ordered them."""

    items: npt.NDArray[np.int64]
    similarity: npt.NDArray[np.float64]
    rating: npt.NDArray[np.float64]
    contribution: npt.NDArray[np.float64]


def explain_item(
    model: Recommender,
    item: int,
    history_items: npt.ArrayLike,
    history_ratings: npt.ArrayLike,
    k: int = 5,
) -> Reasons:
    """The ``k`` rated items (internal ids) that most support internal item ``item`` for a user with
    this history; the item itself is left out of its own reasons. Models without item embeddings
    raise ``CapabilityError`` (from :meth:`Recommender.item_embeddings`)."""
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    hist = np.asarray(history_items, dtype=np.int64)
    ratings = np.asarray(history_ratings, dtype=np.float64)
    if hist.shape != ratings.shape or hist.ndim != 1:
        raise DataError("history items and ratings must be 1-D and of the same length")
    emb = np.asarray(model.item_embeddings(), dtype=np.float64)
    if not 0 <= item < len(emb) or (len(hist) and (hist.min() < 0 or hist.max() >= len(emb))):
        raise DataError(f"internal item id out of range 0..{len(emb) - 1}")
    keep = hist != item
    hist, ratings = hist[keep], ratings[keep]
    norms = np.linalg.norm(emb[hist], axis=1) * np.linalg.norm(emb[item])
    sims = np.where(norms > 1e-12, emb[hist] @ emb[item] / np.maximum(norms, 1e-12), 0.0)
    scale = model.input_scale  # the history's ratings are on the scale the model was fitted on
    weight = ratings - (scale.low + scale.high) / 2 if scale is not None else ratings
    contrib = sims * weight
    order = np.lexsort((hist, -contrib))[:k]  # ties by the lower id, so the answer is stable
    return Reasons(hist[order], sims[order], ratings[order], contrib[order])
