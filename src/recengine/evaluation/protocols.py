"""The named evaluation protocols of PROTOCOLS.md, built exactly as written there.

A protocol fixes the data set, the train/test rows and the task, so that a figure quoted with its
protocol name can be set beside any other system's figure on the same name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from recengine.data.dataset import Dataset
from recengine.data.interactions import Interactions, RatingScale
from recengine.data.splits import Fold
from recengine.errors import ConfigError, DataError

Task = Literal["rating", "binary", "topn"]


@dataclass(frozen=True)
class ProtocolSpec:
    name: str
    dataset: str
    task: Task
    description: str


PROTOCOLS: dict[str, ProtocolSpec] = {
    p.name: p
    for p in [
        ProtocolSpec("ml100k-u", "ml-100k", "rating", "GroupLens u1..u5 base/test folds; RMSE, MAE"),
        ProtocolSpec("ml100k-ua", "ml-100k", "rating", "ua.base/ua.test (10 test ratings per user)"),
        ProtocolSpec("ml100k-ua-binary", "ml-100k", "binary", "ua.base/ua.test, label 1 where rating > 3"),
        ProtocolSpec(
            "ml100k-ua-coldmovies",
            "ml-100k",
            "rating",
            "ua with a seeded 10% of ua.base's movies out of training; test: their ua.test ratings",
        ),
        ProtocolSpec("mlsmall-random", "ml-latest-small", "rating", "seeded 10% random rows of ratings.csv"),
        ProtocolSpec("topn-ml100k", "ml-100k", "topn", "per-user 20% of positives (>= 4) held out; K=10"),
        ProtocolSpec(
            "topn-mlsmall", "ml-latest-small", "topn", "per-user 20% of positives (>= 4) held out; K=10"
        ),
    ]
}

BINARY_SCALE = RatingScale(0.0, 1.0, 1.0)
#: A binary task's label is 1 where the rating is above this (the Object2Vec notebook's recommend / not).
BINARY_THRESHOLD = 3.0


@dataclass
class ProtocolRun:
    """A protocol made concrete: its folds, the task, and the data set (for titles and side data)."""

    spec: ProtocolSpec
    dataset: Dataset
    folds: list[Fold]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def task(self) -> Task:
        return self.spec.task


def get_spec(name: str) -> ProtocolSpec:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ConfigError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}") from None


def build(name: str, data: str | Path | Dataset | None = None) -> ProtocolRun:
    """Folds of protocol ``name``; ``data`` is the data set's directory (default: the data home's copy)."""
    from recengine.data.load import load_dataset

    spec = get_spec(name)
    ds = data if isinstance(data, Dataset) else load_dataset(data if data is not None else spec.dataset)
    if ds.layout != spec.dataset:  # the figures would be filed under a data set they do not come from
        raise DataError(
            f"protocol {name} is defined on {spec.dataset}, but the data given has the {ds.layout} layout; "
            f"give {spec.dataset}'s directory (or none, for the data home's copy)",
            ds.path,
        )
    if name in ("ml100k-u", "ml100k-ua", "ml100k-ua-binary"):
        folds = _ml100k_files(ds, name)
    elif name == "ml100k-ua-coldmovies":
        folds = [cold_movies(_ml100k_files(ds, "ml100k-ua")[0])]
    elif name == "mlsmall-random":
        folds = [mlsmall_random(ds.interactions)]
    else:
        folds = [topn_holdout(ds.interactions)]
    return ProtocolRun(spec, ds, folds)


def _ml100k_files(ds: Dataset, name: str) -> list[Fold]:
    from recengine.data.movielens import read_ml100k_split

    if ds.path is None or not (ds.path / "u.data").exists():
        raise DataError(f"protocol {name} needs the ml-100k directory (u.data and its split files)", ds.path)
    base = ds.path
    prefixes = [f"u{i}" for i in range(1, 6)] if name == "ml100k-u" else ["ua"]
    folds = []
    users, items = ds.interactions.users, ds.interactions.items
    for p in prefixes:
        for suffix in ("base", "test"):
            if not (base / f"{p}.{suffix}").exists():
                raise DataError(f"protocol {name} needs {p}.{suffix}, which is missing", base)
        fold = Fold(
            p,
            read_ml100k_split(base / f"{p}.base", users, items),
            read_ml100k_split(base / f"{p}.test", users, items),
        )
        folds.append(binary_fold(fold) if name == "ml100k-ua-binary" else fold)
    return folds


def binary_fold(fold: Fold, threshold: float = BINARY_THRESHOLD) -> Fold:
    """``fold`` with labels (rating > threshold) in train and test, keeping the training ratings."""
    return Fold(
        fold.name,
        to_binary(fold.train, threshold),
        to_binary(fold.test, threshold),
        rated_train=fold.train,
        label_threshold=threshold,
    )


def cold_movies(fold: Fold, share: float = 0.1, seed: int = 0) -> Fold:
    """Movies never seen in training: of the movie ids in ``fold``'s training rows, sorted ascending,
    ``numpy.random.default_rng(seed).choice(ids, size=round(share * len(ids)), replace=False)`` are
    held out; training keeps every other row, the test keeps only the held movies' test rows. What a
    model knows of them is its content (genres, title, year), so it measures cold-start quality."""
    train_ids = fold.train.items.external[fold.train.item]
    held = cold_movie_ids(fold, share, seed)
    train = fold.train.subset(~np.isin(train_ids, held))
    test = fold.test.subset(np.isin(fold.test.items.external[fold.test.item], held))
    return Fold(f"{fold.name}-coldmovies", train, test)


def cold_movie_ids(fold: Fold, share: float = 0.1, seed: int = 0) -> np.ndarray:
    """The external ids :func:`cold_movies` holds out of ``fold``'s training rows."""
    movies = np.unique(fold.train.items.external[fold.train.item])
    return np.random.default_rng(seed).choice(movies, size=round(share * len(movies)), replace=False)


def to_binary(data: Interactions, threshold: float = BINARY_THRESHOLD) -> Interactions:
    """Label 1 where rating > threshold, else 0 (the Object2Vec notebook's recommend / not)."""
    if data.rating is None:
        raise DataError("binary labels need ratings, but the data is implicit")
    return data.with_ratings((data.rating > threshold).astype(np.float32), BINARY_SCALE)


def mlsmall_random(data: Interactions) -> Fold:
    """``perm = default_rng(0).permutation(n)``; test = rows ``perm[: n // 10]`` in file order."""
    n = len(data)
    perm = np.random.default_rng(0).permutation(n)
    test = np.zeros(n, dtype=bool)
    test[perm[: n // 10]] = True
    return Fold("random", data.subset(~test), data.subset(test))


def topn_holdout(data: Interactions, min_positives: int = 5, positive: float = 4.0) -> Fold:
    """The top-N hold-out of PROTOCOLS.md, step by step (one rng, users ascending, items ascending).

    Internal ids follow the sorted external ids, so ascending internal order is ascending id order.
    """
    if data.rating is None:
        raise DataError("the top-N protocol defines positives by rating, but the data is implicit")
    for m in (data.users, data.items):
        if not m.is_numeric or not bool(np.all(np.diff(m.external) > 0)):
            raise DataError(f"the top-N protocol needs numeric {m.name} ids numbered in ascending order")
    pos = data.rating >= positive
    n_pos = np.bincount(data.user[pos], minlength=data.n_users)
    kept_users = np.flatnonzero(n_pos >= min_positives)
    rng = np.random.default_rng(0)
    pu, pi = data.user[pos], data.item[pos]
    order = np.lexsort((pi, pu))
    pu, pi = pu[order], pi[order]
    starts = np.searchsorted(pu, kept_users, side="left")
    ends = np.searchsorted(pu, kept_users, side="right")
    test_u: list[np.ndarray] = []
    test_i: list[np.ndarray] = []
    for u, s, e in zip(kept_users, starts, ends, strict=True):
        items = pi[s:e]  # ascending item ids
        perm = rng.permutation(len(items))
        n_test = max(1, int(0.2 * len(items) + 0.5))
        test_u.append(np.full(n_test, u, dtype=np.int64))
        test_i.append(items[perm[:n_test]])
    tu = np.concatenate(test_u) if test_u else np.zeros(0, np.int64)
    ti = np.concatenate(test_i) if test_i else np.zeros(0, np.int64)
    key_all = data.user.astype(np.int64) * data.n_items + data.item
    is_test = np.isin(key_all, tu * data.n_items + ti)
    kept = np.zeros(data.n_users, dtype=bool)
    kept[kept_users] = True
    in_kept = kept[data.user]
    return Fold("holdout", data.subset(in_kept & ~is_test), data.subset(is_test))
