"""Nearest neighbours by cosine similarity: tables for chosen or popular titles, and for users.

Cosine of the model's own vectors, as :meth:`Recommender.similar_items` measures it, computed here in
blocks so that a 50,000-item catalog never needs an n × n matrix in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from recengine.data.interactions import parse_int_id
from recengine.errors import CapabilityError, ConfigError, UnknownIdError

from .embeddings import ExploreData, _plain, unit_rows

BLOCK = 512


def top_k_cosine(
    unit: npt.NDArray[np.float32],
    queries: npt.ArrayLike,
    k: int,
    candidates: npt.ArrayLike | None = None,
    *,
    exclude_self: bool = True,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The ``k`` rows of ``unit`` (unit vectors) most similar to each query row, best first.

    ``candidates`` (row indices) limits who can be a neighbour; with ``exclude_self`` a row is never
    its own neighbour. Rows with fewer than ``k`` candidates are padded with -1 and NaN.
    """
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    q = np.asarray(queries, dtype=np.int64)
    cand = np.arange(len(unit), dtype=np.int64) if candidates is None else np.asarray(candidates, np.int64)
    out_i = np.full((len(q), k), -1, dtype=np.int64)
    out_s = np.full((len(q), k), np.nan, dtype=np.float32)
    if len(q) == 0 or len(cand) == 0:
        return out_i, out_s
    pos_in_cand = np.full(len(unit), -1, dtype=np.int64)
    pos_in_cand[cand] = np.arange(len(cand))
    c_vec = unit[cand]
    kk = min(k, len(cand))
    for start in range(0, len(q), BLOCK):
        qb = q[start : start + BLOCK]
        sims = unit[qb] @ c_vec.T
        if exclude_self:
            rows = np.flatnonzero(pos_in_cand[qb] >= 0)
            sims[rows, pos_in_cand[qb[rows]]] = -np.inf
        part = (
            np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
            if kk < len(cand)
            else np.tile(np.arange(len(cand)), (len(qb), 1))
        )
        psims = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-psims, axis=1, kind="stable")
        top = np.take_along_axis(part, order, axis=1)
        top_s = np.take_along_axis(psims, order, axis=1)
        ok = np.isfinite(top_s)
        out_i[start : start + len(qb), :kk] = np.where(ok, cand[top], -1)
        out_s[start : start + len(qb), :kk] = np.where(ok, top_s, np.nan)
    return out_i, out_s


def resolve_items(data: ExploreData, queries: Sequence[str]) -> list[int]:
    """Internal indices for titles or item ids as a person types them.

    Each query is tried as an external item id, then as an exact title (with or without its year,
    any case), then as a part of a title; among several matches the most-rated item wins. A query of
    digits alone that is no item's id matches whole titles only ("1941"), never a part of one: an
    unknown id must not answer for a movie whose title holds that digit.
    """
    find = _id_finder(data.item_ids)
    lowered = [t.casefold() for t in data.titles]
    labels = [data.label(i).casefold() for i in range(data.n_items)]
    out: list[int] = []
    for raw in queries:
        q = str(raw).strip()
        found = find(q)
        if found is not None:
            out.append(found)
            continue
        f = q.casefold()
        number = parse_int_id(q) is not None
        hits = [i for i in range(data.n_items) if lowered[i] == f or labels[i] == f]
        if not hits and not number:
            hits = [i for i in range(data.n_items) if f in labels[i]]
        if not hits:
            what = "no item has the id" if number else "no item has the id or a title matching"
            raise UnknownIdError(f"{what} {q!r}")
        out.append(max(hits, key=lambda i: (int(data.counts[i]), -i)))
    return out


def most_rated(counts: npt.ArrayLike, n: int, among: npt.ArrayLike | None = None) -> npt.NDArray[np.int64]:
    """Indices of the ``n`` largest counts (ties: lower index first), optionally within ``among``."""
    c = np.asarray(counts)
    idx = np.arange(len(c)) if among is None else np.asarray(among, dtype=np.int64)
    order = np.lexsort((idx, -c[idx]))
    return idx[order[:n]].astype(np.int64)


def item_neighbours(
    data: ExploreData,
    queries: Sequence[str] | None = None,
    *,
    n_items: int = 10,
    k: int = 10,
    min_ratings: int = 1,
) -> list[dict[str, Any]]:
    """For each asked title (default: the ``n_items`` most rated), its ``k`` nearest items, JSON-ready.

    Only items with at least ``min_ratings`` training ratings are offered as neighbours: the vectors of
    barely rated items are mostly their random start.
    """
    q = resolve_items(data, queries) if queries else most_rated(data.counts, n_items).tolist()
    cand = np.flatnonzero(data.counts >= min_ratings)
    idx, sims = top_k_cosine(data.unit(), q, k, cand)
    out = []
    for qi, row_i, row_s in zip(q, idx, sims, strict=True):
        nb = [
            {**data.item_record(int(j)), "similarity": round(float(s), 4)}
            for j, s in zip(row_i, row_s, strict=True)
            if j >= 0
        ]
        out.append({"query": data.item_record(int(qi)), "neighbours": nb})
    return out


def resolve_users(data: ExploreData, users: Sequence[str]) -> list[int]:
    """Internal user indices for external user ids given as text."""
    if data.user_ids is None:
        raise CapabilityError(f"{data.model_name} has no user embeddings")
    find = _id_finder(data.user_ids)
    out = []
    for u in users:
        found = find(str(u).strip())
        if found is None:
            raise UnknownIdError(f"unknown user {u!r}")
        out.append(found)
    return out


def _id_finder(ids: np.ndarray) -> Callable[[str], int | None]:
    """Position of an id typed as text: integer ids read as the id maps read them ("0050" is 50),
    text ids as they are."""
    if ids.dtype.kind in "iu":
        by_int = {int(x): p for p, x in enumerate(ids.tolist())}
        return lambda q: by_int.get(n) if (n := parse_int_id(q)) is not None else None
    by_text = {str(_plain(x)): p for p, x in enumerate(ids)}
    return by_text.get


def user_neighbours(
    data: ExploreData,
    users: Sequence[str] | None = None,
    *,
    n_users: int = 5,
    k: int = 10,
) -> list[dict[str, Any]]:
    """For each asked user (default: the ``n_users`` most active), the ``k`` nearest users by cosine of
    user vectors, with how many items each pair both rated (a check that the vectors mean taste)."""
    if data.user_vectors is None or data.user_ids is None:
        raise CapabilityError(f"{data.model_name} has no user embeddings")
    counts = data.user_counts
    q = resolve_users(data, users) if users else most_rated(counts, n_users).tolist()
    idx, sims = top_k_cosine(unit_rows(data.user_vectors), q, k)
    binary = data.seen.copy()
    binary.data = np.ones_like(binary.data)
    out = []
    for qi, row_i, row_s in zip(q, idx, sims, strict=True):
        valid = row_i[row_i >= 0]
        shared = np.asarray((binary[valid] @ binary[qi].T).todense()).ravel() if len(valid) else np.zeros(0)
        nb = [
            {
                "user": _plain(data.user_ids[j]),
                "similarity": round(float(s), 4),
                "ratings": int(counts[j]),
                "shared_items": int(c),
            }
            for j, s, c in zip(valid, row_s[row_i >= 0], shared, strict=True)
        ]
        out.append(
            {"query": {"user": _plain(data.user_ids[qi]), "ratings": int(counts[qi])}, "neighbours": nb}
        )
    return out
