"""Side data in, token rows out: feature frames from plain lists, and new items' content as tokens.

A new item (nobody has rated it, its id is not in the model) is the UNK id token followed by the
side tokens of its content that the training vocabulary knows; content tokens it does not know are
left out and reported in a warning, never silently.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from recengine.data.dataset import genre_lists
from recengine.models.object2vec import tokens as tk


def item_frame(
    items: npt.ArrayLike,
    genres: Sequence[Iterable[str] | None] | None,
    titles: Sequence[str | None] | None,
    years: Sequence[int | float | None] | None,
) -> pl.DataFrame:
    """A frame in the layout of ``Dataset.items`` (item, genres, title, year) from plain lists."""
    ids = np.asarray(items)
    cols: dict[str, Any] = {"item": ids.tolist()}
    if genres is not None:
        cols["genres"] = genre_lists(genres)
    if titles is not None:
        cols["title"] = list(titles)
    if years is not None:
        cols["year"] = year_values(years)
    for name in ("genres", "title", "year"):
        if name in cols and len(cols[name]) != len(ids):
            raise ValueError(f"items and {name} must have the same length")
    schema: dict[str, Any] = {"genres": pl.List(pl.String), "title": pl.String, "year": pl.Int64}
    return pl.DataFrame(cols, schema_overrides={k: v for k, v in schema.items() if k in cols})


def year_values(years: Sequence[Any]) -> list[int | None]:
    """Release years as whole numbers (1995.0 and 1995.5 are 1995); None and NaN are unknown, a bool
    is refused (True would be the year 1)."""
    out: list[int | None] = []
    for k, y in enumerate(years):
        if isinstance(y, bool | np.bool_):
            raise TypeError(f"years[{k}] is {y!r}: a year is a number (or None)")
        if y is None or (isinstance(y, float | np.floating) and not np.isfinite(y)):
            out.append(None)
        elif isinstance(y, int | float | np.integer | np.floating):
            out.append(int(y))
        else:
            raise TypeError(f"years[{k}] is {y!r}: a year is a number (or None)")
    return out


def user_frame(
    users: npt.ArrayLike,
    ages: Sequence[int | None] | None,
    genders: Sequence[str | None] | None,
    occupations: Sequence[str | None] | None,
) -> pl.DataFrame:
    """A frame in the layout of ``Dataset.users`` (user, age, gender, occupation) from plain lists."""
    ids = np.asarray(users)
    cols: dict[str, Any] = {"user": ids.tolist()}
    for name, values in (("age", ages), ("gender", genders), ("occupation", occupations)):
        if values is not None:
            if len(values) != len(ids):
                raise ValueError(f"users and {name} must have the same length")
            cols[name] = list(values)
    return pl.DataFrame(cols)


def new_item_tokens(
    layout: dict[str, Any],
    max_len: int,
    year_bucket: int,
    genres: Sequence[Iterable[str] | None] | None,
    titles: Sequence[str | None] | None,
    years: Sequence[int | float | None] | None,
) -> tuple[npt.NDArray[np.int64], dict[str, int]]:
    """Token rows [UNK, known content tokens...] of new items, and the counts of unknown tokens.

    Rows are truncated to ``max_len`` like training rows; an item whose content the vocabulary does
    not know at all is UNK alone: the average item the training taught the UNK token to be.
    """
    if genres is not None:
        genres = genre_lists(genres)
    if years is not None:
        years = year_values(years)
    if titles is not None:
        wrong = [k for k, t in enumerate(titles) if t is not None and not isinstance(t, str)]
        if wrong:
            raise TypeError(f"titles[{wrong[0]}] is {titles[wrong[0]]!r}: a title is text (or None)")
    lengths = {len(v) for v in (genres, titles, years) if v is not None}
    if not lengths:
        raise ValueError("give at least one of genres, titles, years")
    if len(lengths) > 1:
        raise ValueError("genres, titles and years must have the same length")
    n = lengths.pop()
    kinds: list[str] = list(layout.get("item_kinds") or [])
    vocab: list[str] = list(layout.get("item_vocab") or [])
    offset = int(layout["vocab"][1]) - len(vocab)
    index = {name: offset + k for k, name in enumerate(vocab)}
    rows: list[list[int]] = []
    unknown: dict[str, int] = {}
    for k in range(n):
        names = tk.item_content_names(
            kinds,
            genres[k] if genres is not None else None,
            titles[k] if titles is not None else None,
            years[k] if years is not None else None,
            year_bucket,
        )
        row = [tk.UNK]
        for name in names:
            if name in index:
                row.append(index[name])
            else:
                unknown[name] = unknown.get(name, 0) + 1
        rows.append(row)
    if unknown:
        shown = ", ".join(sorted(unknown)[:8])
        more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
        warnings.warn(
            f"object2vec: {sum(unknown.values())} content tokens of the new items are not in the training "
            f"vocabulary and were left out ({shown}{more})",
            stacklevel=3,
        )
    out, _ = tk.rows_to_table(rows, max_len, "new item")
    return out, unknown
