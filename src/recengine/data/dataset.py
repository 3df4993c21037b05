"""A loaded data set: the interactions plus whatever side information its layout carries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from recengine.data.interactions import Interactions


@dataclass
class Dataset:
    """``items``: item, title, year, genres (list of str) and layout extras, keyed by external item id.
    ``users``: user, age, gender, occupation, zip where the layout has them. ``tags``: user, item,
    tag, timestamp. Each is None where the layout has no such file."""

    name: str
    layout: str
    interactions: Interactions
    items: pl.DataFrame | None = None
    users: pl.DataFrame | None = None
    tags: pl.DataFrame | None = None
    path: Path | None = None

    def info(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "layout": self.layout}
        if self.path is not None:
            out["path"] = str(self.path)
        out.update(self.interactions.info())
        out["has_item_metadata"] = self.items is not None
        out["has_user_features"] = self.users is not None
        out["tags"] = 0 if self.tags is None else self.tags.height
        return out


def genre_lists(genres: Iterable[Any]) -> list[list[str] | None]:
    """Each item's genres as a list of strings (from a list, tuple, numpy array or polars Series;
    None stays None). A bare string is refused: read as a sequence it would be its letters."""
    out: list[list[str] | None] = []
    for k, g in enumerate(genres):
        if g is None:
            out.append(None)
        elif isinstance(g, str | bytes):
            raise TypeError(f"genres[{k}] is the text {g!r}: give each item's genres as a list, e.g. [{g!r}]")
        else:
            out.append([str(x) for x in g])
    return out
