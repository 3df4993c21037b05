"""Train/test splits for people's own data: random holdout, k-fold, per-user temporal, leave-last-out.

All are seeded and vectorized; every split keeps the whole data set's IdMaps so train and test rows
share one id space. The named protocols of PROTOCOLS.md live in ``recengine.evaluation.protocols``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from recengine.data.interactions import Interactions
from recengine.errors import ConfigError, DataError

SplitName = Literal["random", "kfold", "temporal", "leave-last-out"]
SPLITS: tuple[str, ...] = ("random", "kfold", "temporal", "leave-last-out")


@dataclass
class Fold:
    """One train/test pair; ``name`` says which fold it is (``u1``, ``fold-3``, ``holdout``).

    A fold of a binary task holds labels (rating > ``label_threshold``) in ``train`` and ``test``, and
    the training rows with their ratings in ``rated_train``: a model may learn from the ratings
    themselves what it is asked about the labels (what a rating of 1 says beside one of 3).
    """

    name: str
    train: Interactions
    test: Interactions
    rated_train: Interactions | None = None
    label_threshold: float | None = None


def _check_fraction(test_size: float) -> None:
    if not 0.0 < test_size < 1.0:
        raise ConfigError(f"test size must be a fraction strictly between 0 and 1, got {test_size}")


def random_holdout(data: Interactions, test_size: float = 0.2, seed: int = 0) -> Fold:
    """A seeded random share of the rows as test (the ``mlsmall-random`` recipe, any fraction)."""
    _check_fraction(test_size)
    n = len(data)
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(n * test_size)
    if n_test == 0 or n_test == n:
        raise DataError(f"{n} rows are too few for a {test_size:g} test share")
    test_mask = np.zeros(n, dtype=bool)
    test_mask[perm[:n_test]] = True
    return Fold("holdout", data.subset(~test_mask), data.subset(test_mask))


def kfold(data: Interactions, k: int = 5, seed: int = 0) -> list[Fold]:
    """Seeded k-fold over rows: every row is test exactly once."""
    if k < 2:
        raise ConfigError(f"k-fold needs k >= 2, got {k}")
    n = len(data)
    if n < k:
        raise DataError(f"{n} rows are too few for {k} folds")
    perm = np.random.default_rng(seed).permutation(n)
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[perm] = np.arange(n) % k
    return [Fold(f"fold-{f + 1}", data.subset(fold_of != f), data.subset(fold_of == f)) for f in range(k)]


def _rank_within_user(data: Interactions, seed: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Each row's 0-based position in its user's history (by time, ties in a seeded random order),
    and that user's history length per row."""
    if data.timestamp is None:
        raise DataError("this split orders each user's history by time, but the data has no timestamps")
    tiebreak = np.random.default_rng(seed).permutation(len(data))
    order = np.lexsort((tiebreak, data.timestamp, data.user))
    users_sorted = data.user[order]
    counts = np.bincount(data.user, minlength=data.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(data), dtype=np.int64)
    rank[order] = np.arange(len(data)) - starts[users_sorted]
    return rank, counts[data.user]


def temporal(data: Interactions, test_size: float = 0.2, seed: int = 0) -> Fold:
    """Each user's latest ``test_size`` share of ratings is test (at least one when the user has two)."""
    _check_fraction(test_size)
    rank, length = _rank_within_user(data, seed)
    n_test = np.where(length >= 2, np.maximum(1, np.floor(length * test_size + 0.5)), 0)
    n_test = np.minimum(n_test, length - 1)
    test_mask = rank >= length - n_test
    if not bool(test_mask.any()):
        raise DataError("no user has two or more ratings: nothing to hold out")
    return Fold("temporal", data.subset(~test_mask), data.subset(test_mask))


def leave_last_out(data: Interactions, seed: int = 0) -> Fold:
    """Each user's latest rating is test, for users with at least two."""
    rank, length = _rank_within_user(data, seed)
    test_mask = (rank == length - 1) & (length >= 2)
    if not bool(test_mask.any()):
        raise DataError("no user has two or more ratings: nothing to hold out")
    return Fold("leave-last-out", data.subset(~test_mask), data.subset(test_mask))


def split(data: Interactions, how: str, *, test_size: float = 0.2, seed: int = 0, k: int = 5) -> list[Fold]:
    """Dispatch by name, as the CLI's ``--split`` gives it."""
    if how == "random":
        return [random_holdout(data, test_size, seed)]
    if how == "kfold":
        return kfold(data, k, seed)
    if how == "temporal":
        return [temporal(data, test_size, seed)]
    if how == "leave-last-out":
        return [leave_last_out(data, seed)]
    raise ConfigError(f"unknown split {how!r}; choose one of {', '.join(SPLITS)}")
