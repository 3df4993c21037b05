"""Item metadata for responses and title search, aligned with a model's internal item ids.

Built once per loaded model (at start or reload) so a request only indexes arrays: titles, years
and genres come from the artifact's ``items.parquet``, popularity from its seen matrix.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from recengine.data.interactions import IdMap

# "Godfather, The" → "the godfather": MovieLens moves leading articles to the end of a title.
_ARTICLE = re.compile(r"^(.*), (the|a|an|les|la|le|l'|il|das|der|die|el)$", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    return _SPACES.sub(" ", text).strip().casefold()


class Catalog:
    """Per internal item id: title, year, genres and number of training ratings."""

    def __init__(self, items: IdMap, meta: pl.DataFrame | None, popularity: npt.NDArray[np.int64]) -> None:
        n = len(items)
        self.items = items
        self.popularity = popularity.astype(np.int64)
        self.titles: list[str | None] = [None] * n
        self.years: list[int | None] = [None] * n
        self.genres: list[list[str] | None] = [None] * n
        if meta is not None and "item" in meta.columns and meta.height:
            idx = items.to_internal(np.asarray(meta["item"].to_list()), missing="ignore")
            for col, target in (("title", self.titles), ("year", self.years), ("genres", self.genres)):
                if col in meta.columns:
                    for i, v in zip(idx.tolist(), meta[col].to_list(), strict=True):
                        if i >= 0:
                            target[i] = v
        self.has_titles = any(t is not None for t in self.titles)
        self._keys = [_search_keys(t) for t in self.titles]

    def describe(self, idx: int) -> dict[str, Any]:
        """The response fields of internal item ``idx``."""
        return {
            "item": self.items.external[idx].item(),
            "title": self.titles[idx],
            "year": self.years[idx],
            "genres": self.genres[idx],
            "ratings": int(self.popularity[idx]),
        }

    def search(self, query: str, limit: int) -> list[int]:
        """Internal ids whose title holds ``query`` (case-insensitive), best first: the whole title,
        then a title prefix, then a word prefix, then anywhere; ties go to the more rated item."""
        q = normalize(query)
        if not q:
            return []
        hits: list[tuple[int, int, str, int]] = []
        for i, keys in enumerate(self._keys):
            tier = min((_tier(k, q) for k in keys), default=4)
            if tier < 4:
                hits.append((tier, -int(self.popularity[i]), keys[0], i))
        hits.sort()
        return [h[3] for h in hits[:limit]]


def _search_keys(title: str | None) -> tuple[str, ...]:
    """The title as written and, for "Godfather, The", as said ("the godfather")."""
    if not title:
        return ()
    t = normalize(title)
    m = _ARTICLE.match(t)
    return (t, f"{m.group(2)} {m.group(1)}") if m else (t,)


def _tier(key: str, q: str) -> int:
    if key == q:
        return 0
    if key.startswith(q):
        return 1
    pos = key.find(q)
    if pos < 0:
        return 4
    while pos >= 0:  # a match at the start of a word ranks above one inside a word
        if not key[pos - 1].isalnum():
            return 2
        pos = key.find(q, pos + 1)
    return 3
