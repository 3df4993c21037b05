"""Train a model on each fold's training rows and measure it on the test rows, per the task.

One function serves the named protocols and people's own data, so every model plugs into the same
``recengine evaluate`` by name and its JSON has one shape.
"""

from __future__ import annotations

import datetime as dt
import platform
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

import recengine
from recengine.data.splits import Fold
from recengine.errors import CapabilityError
from recengine.evaluation.metrics import binary_metrics, rating_metrics
from recengine.evaluation.protocols import Task
from recengine.evaluation.topn import evaluate_topn
from recengine.models.registry import create, model_class

if TYPE_CHECKING:
    from recengine.data.dataset import Dataset

RATING_KEYS = ("rmse", "mae")
BINARY_KEYS = ("accuracy", "f1", "auc", "log_loss")


def topn_keys(k: int) -> tuple[str, ...]:
    return tuple(f"{m}@{k}" for m in ("ndcg", "recall", "hr", "precision", "map", "coverage"))


def check_task(model: str, task: Task) -> None:
    caps = model_class(model).capabilities
    if task in ("rating", "binary") and not caps.rating:
        raise CapabilityError(
            f"model {model!r} does not predict ratings, so it cannot be measured on a {task} task"
        )
    if task == "topn" and not caps.topn:
        raise CapabilityError(f"model {model!r} does not rank items, so it cannot be measured on top-N")


def evaluate_folds(
    model: str,
    folds: list[Fold],
    task: Task,
    params: dict[str, Any] | None = None,
    *,
    k: int = 10,
    dataset: Dataset | None = None,
    on_fold: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Fit a fresh ``model`` per fold and measure it; metrics averaged over folds at the top level.
    ``dataset``: where the folds come from, for the item and user features a model reads
    (:meth:`~recengine.models.base.Recommender.use_dataset`)."""
    check_task(model, task)
    per_fold: list[dict[str, Any]] = []
    resolved: dict[str, Any] = {}
    for n, fold in enumerate(folds):
        m = create(model, params)
        resolved = m.get_params()
        if task == "rating" and not m.predicts_ratings:
            raise CapabilityError(
                f"model {model!r} with these params predicts the probability of a label (0..1), not a "
                "rating, so a rating task cannot measure it; measure it on a binary or top-N task"
            )
        if dataset is not None:
            m.use_dataset(dataset)
        train = fold.train
        rated, threshold = fold.rated_train, fold.label_threshold
        if rated is not None and threshold is not None and m.learns_labels_from_ratings(threshold):
            train = rated  # a binary fold's ratings, for a model that makes its labels from them
        t0 = time.perf_counter()
        m.fit(train)
        fit_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        row: dict[str, Any] = {"fold": fold.name, "n_train": len(fold.train), "n_test": len(fold.test)}
        train_users = np.bincount(fold.train.user, minlength=fold.train.n_users) > 0
        train_items = np.bincount(fold.train.item, minlength=fold.train.n_items) > 0
        row["cold_user_rows"] = int(np.count_nonzero(~train_users[fold.test.user]))
        row["cold_item_rows"] = int(np.count_nonzero(~train_items[fold.test.item]))
        if task == "topn":
            res = evaluate_topn(m.score, fold.train, fold.test, k=k)
            row["users"] = int(res.pop("users"))
            row.update(res)
        else:
            y = fold.test.values().astype(np.float64)
            # The query's time is part of it (a test row holds it): models with sessions read it.
            yhat = m.predict_internal(fold.test.user, fold.test.item, fold.test.timestamp)
            row.update(rating_metrics(y, yhat) if task == "rating" else binary_metrics(y, yhat))
        row["fit_seconds"] = fit_s
        row["eval_seconds"] = time.perf_counter() - t1
        per_fold.append(row)
        if on_fold is not None:
            on_fold(n, row)
    keys = RATING_KEYS if task == "rating" else BINARY_KEYS if task == "binary" else topn_keys(k)
    out: dict[str, Any] = {
        "model": model,
        "task": task,
        "params": resolved,
        "folds": per_fold,
        "fit_seconds": float(sum(r["fit_seconds"] for r in per_fold)),
        "eval_seconds": float(sum(r["eval_seconds"] for r in per_fold)),
    }
    for key in keys:
        out[key] = float(np.mean([r[key] for r in per_fold]))
    out.update(run_context())
    return out


def run_context() -> dict[str, Any]:
    """When, where and with what a figure was measured, so a reader can judge it."""
    import os

    return {
        "recengine_version": recengine.__version__,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "python": platform.python_version(),
    }


def evaluate_protocol(
    model: str,
    protocol: str,
    params: dict[str, Any] | None = None,
    *,
    data: str | None = None,
    on_fold: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """``model`` on the named protocol of PROTOCOLS.md (``data``: the data set's directory, if not the
    data home's copy)."""
    from recengine.evaluation.protocols import build, get_spec

    spec = get_spec(protocol)
    check_task(model, spec.task)
    run = build(protocol, data)
    out = {"protocol": protocol, "dataset": spec.dataset}
    out.update(evaluate_folds(model, run.folds, spec.task, params, dataset=run.dataset, on_fold=on_fold))
    return out


def evaluate_split(
    model: str,
    dataset: Dataset,
    split_name: str,
    params: dict[str, Any] | None = None,
    *,
    task: Task | None = None,
    test_size: float = 0.2,
    seed: int = 0,
    n_folds: int = 5,
    k: int = 10,
    on_fold: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """``model`` on people's own data with a seeded split; implicit data is measured on top-N."""
    from recengine.data.splits import split
    from recengine.evaluation.protocols import binary_fold

    inter = dataset.interactions
    chosen: Task = task or ("rating" if inter.is_explicit else "topn")
    if chosen != "topn" and not inter.is_explicit:
        raise CapabilityError(f"a {chosen} evaluation needs ratings, but the data is implicit")
    check_task(model, chosen)
    folds = split(inter, split_name, test_size=test_size, seed=seed, k=n_folds)
    if chosen == "binary":
        folds = [binary_fold(f) for f in folds]
    out: dict[str, Any] = {
        "protocol": f"{split_name}(test_size={test_size:g}, seed={seed})"
        if split_name != "kfold"
        else f"kfold(k={n_folds}, seed={seed})",
        "dataset": str(dataset.path or dataset.name),
    }
    out.update(evaluate_folds(model, folds, chosen, params, k=k, dataset=dataset, on_fold=on_fold))
    return out
