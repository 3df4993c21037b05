"""What exploration reads from a model: item (and user) vectors beside titles, genres and rating counts.

Everything is aligned on the model's internal item order. Titles, years and genres come from the
artifact's ``items.parquet`` (so a map shows what the model was trained on, not what a data home holds
today); rating counts and mean ratings from the stored seen matrix, whose values are the training
ratings. Genres that only say "no genre" (``unknown``, ``(no genres listed)``) are dropped, so they
never count as a shared genre.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recengine.errors import CapabilityError

if TYPE_CHECKING:
    import polars as pl

    from recengine.models.base import Recommender

NO_GENRE = frozenset({"unknown", "(no genres listed)", ""})
OTHER, NONE = "other", "no genre"


@dataclass
class ExploreData:
    """Vectors and metadata of one model, one row per internal item (and user) id."""

    model_name: str
    data_name: str | None
    item_ids: np.ndarray
    titles: list[str]
    years: list[int | None]
    genres: list[list[str]]
    counts: npt.NDArray[np.int64]  # training ratings per item
    mean_rating: npt.NDArray[np.float64]  # NaN for items without ratings or implicit data
    vectors: npt.NDArray[np.float32]
    explicit: bool
    seen: sp.csr_matrix
    user_ids: np.ndarray | None = None
    user_vectors: npt.NDArray[np.float32] | None = None

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def has_users(self) -> bool:
        return self.user_vectors is not None

    @property
    def user_counts(self) -> npt.NDArray[np.int64]:
        return np.diff(self.seen.indptr).astype(np.int64)

    def unit(self) -> npt.NDArray[np.float32]:
        """Item vectors scaled to length 1: neighbours, clusters and the map all use cosine geometry."""
        return unit_rows(self.vectors)

    def label(self, i: int) -> str:
        """A title with its year, for tables and plots."""
        y = self.years[i]
        return f"{self.titles[i]} ({y})" if y is not None and str(y) not in self.titles[i] else self.titles[i]

    def item_record(self, i: int) -> dict[str, Any]:
        """One item as JSON-ready data."""
        mean = float(self.mean_rating[i])
        return {
            "item": _plain(self.item_ids[i]),
            "title": self.titles[i],
            "year": self.years[i],
            "genres": self.genres[i],
            "ratings": int(self.counts[i]),
            "mean_rating": round(mean, 3) if np.isfinite(mean) else None,
        }


def unit_rows(x: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Rows divided by their L2 norm; all-zero rows (items a model never updated) stay zero."""
    a = np.asarray(x, dtype=np.float32)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), np.float32(1e-12))


def has_embeddings(model_cls: type[Recommender]) -> bool:
    """Whether a model class overrides ``item_embeddings`` (checked without fitting it)."""
    from recengine.models.base import Recommender

    return model_cls.item_embeddings is not Recommender.item_embeddings


def embedding_models() -> list[str]:
    """Registered model names that have item embeddings, for error messages and benchmarks."""
    from recengine.models.registry import MODELS

    return [name for name, cls in MODELS.items() if has_embeddings(cls)]


def load(model_dir: Path) -> ExploreData:
    """Load a model directory for exploration; CapabilityError when its model has no item vectors."""
    from recengine import artifacts

    model = artifacts.load(Path(model_dir))
    data = (artifacts.info(Path(model_dir)).get("data") or {}).get("name")
    return from_model(model, artifacts.item_metadata(Path(model_dir)), data_name=data)


def from_model(
    model: Recommender, metadata: pl.DataFrame | None, data_name: str | None = None
) -> ExploreData:
    """Exploration data from a fitted model and its item metadata (item, title, year, genres)."""
    try:
        vectors = np.asarray(model.item_embeddings(), dtype=np.float32)
    except CapabilityError:
        raise CapabilityError(
            f"{model.name} has no item embeddings to explore; models that have them: "
            f"{', '.join(embedding_models())}"
        ) from None
    n = len(model.items)
    if vectors.ndim != 2 or vectors.shape[0] != n:
        raise CapabilityError(f"{model.name}: item embeddings have shape {vectors.shape}, expected ({n}, d)")
    users: npt.NDArray[np.float32] | None
    try:
        users = np.asarray(model.user_embeddings(), dtype=np.float32)
    except CapabilityError:
        users = None
    seen = model.seen().tocsr()
    counts = np.bincount(seen.indices, minlength=n).astype(np.int64)
    explicit = model.scale is not None
    sums = np.bincount(seen.indices, weights=seen.data.astype(np.float64), minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan) if explicit else np.full(n, np.nan)
    ids = model.items.external
    titles, years, genres = _metadata(ids, metadata)
    return ExploreData(
        model_name=model.name,
        data_name=data_name,
        item_ids=ids,
        titles=titles,
        years=years,
        genres=genres,
        counts=counts,
        mean_rating=mean.astype(np.float64),
        vectors=vectors,
        explicit=explicit,
        seen=seen,
        user_ids=model.users.external if users is not None else None,
        user_vectors=users,
    )


def _metadata(
    ids: np.ndarray, metadata: pl.DataFrame | None
) -> tuple[list[str], list[int | None], list[list[str]]]:
    """Titles, years and cleaned genres in internal order; ids without metadata get their id as title."""
    n = len(ids)
    titles = [str(_plain(i)) for i in ids]
    years: list[int | None] = [None] * n
    genres: list[list[str]] = [[] for _ in range(n)]
    if metadata is None or "item" not in metadata.columns or metadata.height == 0:
        return titles, years, genres
    keys = [str(k) for k in metadata["item"].to_list()]
    pos = {str(_plain(i)): p for p, i in enumerate(ids)}
    cols = {c: metadata[c].to_list() for c in ("title", "year", "genres") if c in metadata.columns}
    for row, key in enumerate(keys):
        p = pos.get(key)
        if p is None:
            continue
        if cols.get("title") and cols["title"][row]:
            titles[p] = str(cols["title"][row])
        if cols.get("year") and cols["year"][row] is not None:
            years[p] = int(cols["year"][row])
        if cols.get("genres") and cols["genres"][row]:
            genres[p] = [str(g) for g in cols["genres"][row] if str(g) not in NO_GENRE]
    return titles, years, genres


def _plain(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x


# ----- genres ------------------------------------------------------------------------------------
def genre_matrix(genres: list[list[str]]) -> tuple[npt.NDArray[np.bool_], list[str]]:
    """Item × genre membership (bool) and the genre names, most frequent first."""
    freq: dict[str, int] = {}
    for gs in genres:
        for g in gs:
            freq[g] = freq.get(g, 0) + 1
    vocab = sorted(freq, key=lambda g: (-freq[g], g))
    col = {g: k for k, g in enumerate(vocab)}
    G = np.zeros((len(genres), len(vocab)), dtype=bool)
    for i, gs in enumerate(genres):
        for g in gs:
            G[i, col[g]] = True
    return G, vocab


def main_genres(genres: list[list[str]], palette_size: int = 12) -> tuple[list[str], list[str]]:
    """One colour genre per item, and the palette of genres that get a colour.

    The palette is the catalog's ``palette_size`` most frequent genres; an item's main genre is the
    *least* frequent palette genre it carries, so "Comedy|Romance" reads as Romance and
    "Animation|Children's|Comedy" as Animation rather than everything collapsing into Drama and
    Comedy. Items whose genres are all outside the palette are "other", those with none "no genre".
    """
    _, vocab = genre_matrix(genres)
    palette = vocab[:palette_size]
    rank = {g: r for r, g in enumerate(palette)}
    out: list[str] = []
    for gs in genres:
        inside = [g for g in gs if g in rank]
        if inside:
            out.append(max(inside, key=lambda g: rank[g]))
        else:
            out.append(OTHER if gs else NONE)
    return out, palette
