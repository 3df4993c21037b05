"""Object2Vec's quality and speed targets in one run, beside the baselines, the seed's presets and peers.

    python benchmarks/object2vec_quality.py [--data DIR] [--out benchmarks/results] [--quick] [--no-speed]
        [--only SECTION ...]

* ``ml100k-ua``: RMSE/MAE of our defaults (with side tokens), ids only, the ``seed-lab2`` preset, the
  bias baseline and Surprise (SVD, SVD++), all on ua.base/ua.test.
* ``ml100k-ua-binary``: accuracy, F1, AUC, log loss of our defaults (squared error on the 0/1 labels),
  a softmax head and the ``seed-lab2-classifier`` preset, beside the bias baseline; and a softmax over
  the five rating classes fitted on ua.base's ratings (the rows the labels come from), whose
  P(rating > 3) is scored against ua.test's labels.
* ``binary-blend`` (only with ``--only binary-blend``): how far stacking goes on the binary split:
  the five-class object2vec and six Surprise rating predictors weighed by a logistic regression fitted
  on ub.test's rows of ua.base (the inputs fitted on the rest), then applied to ua.test; and both
  again with the query's timestamp: the shrunk mean residual of the user's training ratings entered
  within 0, 1 and 600 seconds of it.
* ``topn-ml100k``: NDCG@10 (and recall, HR, coverage) of the negative-sampling model beside popularity
  and implicit's ALS.
* cold-start movies (``ml100k-ua-coldmovies``): 10% of the movies of ua.base (``default_rng(0)``)
  are removed from training; RMSE on their ua.test ratings of the content-token model, the ids-only
  model (every cold movie is the UNK token) and mu + b_u (user bias plus global mean; these movies
  have no item bias).
* ``item-history`` (only with ``--only item-history``): the flipped history (``item_history=mixed``
  and ``on``) on the inner split of ``tune``, then ``mixed`` on ua.test for RMSE and for the binary
  metrics of the five-class model.
* ``sessions`` (only with ``--only sessions``): rating sessions (``session_gap``, each test row
  predicted at its own time) chosen on the inner split of ``tune``, then the choice on ua.test for
  the binary metrics of the five-class model and for RMSE.
* ``residuals`` (only with ``--only residuals``): session residuals (``session_residuals``: the
  user's training rows near the query's time, weighed on the networks' own early-stopping rows; with
  ``session_residuals_similar`` also those of movies like the query's), the windows chosen on the
  inner split of ``tune`` by log loss, then the choice on ua.test for the binary metrics of the
  five-class model (also with ``session_gap``) and for RMSE.
* ``ensemble-speed`` (only with ``--only ensemble-speed``): the default fit's wall time on ua.base with
  every core, members trained in turn against side by side in worker processes.
* training speed on the ml-20m shape (synthetic, seed 0): one epoch over 1,000,000 sampled rows (the
  full id space; 100,000 of them for dense Adam, which updates every table row at each step),
  samples/s of object2vec and deep-mf in the same process, one thread each; object2vec with the
  item history pooled in full and capped (``history_max_len``); and, on a fifth of those rows, the
  item history with the sparse tables' compiled row step against the tensor-op step it replaced.
* Terminator's nearest movies by cosine of the item embeddings, for each fitted ml100k-ua model.
* ``row-step`` (only with ``--only row-step``): the item history (default cap) on all of the speed
  section's sampled rows, with the sparse tables' compiled row step and with the tensor-op one.
* ``tune`` (only with ``--only tune``): the defaults' candidates on an inner split of ua.base (fitted
  without the rows of ub.test, scored on them), beside mf and the bias baseline.

Everything tuned (early stopping, the defaults) used parts of the training rows, never test rows.
Writes ``object2vec_quality.json`` and ``object2vec_quality.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from recengine.data.dataset import Dataset
from recengine.data.interactions import Interactions
from recengine.data.splits import Fold
from recengine.evaluation.metrics import binary_metrics, rating_metrics
from recengine.evaluation.protocols import ProtocolRun, build, cold_movie_ids
from recengine.evaluation.runner import run_context
from recengine.evaluation.topn import evaluate_topn
from recengine.models.base import Recommender
from recengine.models.registry import create
from recengine.training import optim

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import _surprise_fit_predict, run_peer  # the peers' code of the main quality benchmark

THREADS = {"threads": 1}  # the machine is shared: one thread keeps timings comparable
RATING_CONFIGS: dict[str, dict[str, Any]] = {
    "object2vec (defaults)": {},
    "object2vec (defaults, bias_terms=false)": {"bias_terms": False},
    "object2vec (ids only)": {"user_tokens": [], "item_tokens": []},
    "object2vec preset=seed-lab2": {"preset": "seed-lab2"},
}
BINARY_CONFIGS: dict[str, dict[str, Any]] = {
    "object2vec (defaults, squared error)": {},
    "object2vec (softmax)": {"output_layer": "softmax"},
    "object2vec preset=seed-lab2-classifier": {"preset": "seed-lab2-classifier"},
}
#: Trained on ua.base's ratings (1-5, the same rows the binary labels come from): a softmax over the five
#: rating classes whose P(rating > 3) = P(4) + P(5) is the prediction.
RATING_CLASS_CONFIGS: dict[str, dict[str, Any]] = {
    "object2vec (5 rating classes, P(rating > 3))": {
        "output_layer": "softmax",
        "num_classes": 5,
        "label_threshold": 3,
        "rating_classes": True,
    },
}
#: Chosen on an inner hold-out of the training rows (the same procedure applied to them).
TOPN_CONFIG: dict[str, Any] = {
    "members": 1,  # six times the rows of the ratings: one network (auto would train four)
    "negative_sampling_rate": 5,
    "output_layer": "softmax",
    "weight_decay": 0.0,
    "epochs": 10,
}
PUBLISHED = {
    "ml100k-ua": "seed notebook (SageMaker Object2Vec): RMSE about 0.954",
    "ml100k-ua-binary": "seed notebook: accuracy about 0.704; SageMaker factorization machines 0.693, "
    "F1 0.734",
}
TERMINATOR, NEIGHBOURS = 195, 10


def fit(
    name: str, params: dict[str, Any], train: Interactions, ds: Dataset | None
) -> tuple[Recommender, float]:
    model = create(name, {**THREADS, **params} if name in ("object2vec", "deep-mf") else params)
    if ds is not None:
        model.use_dataset(ds)
    t0 = time.perf_counter()
    model.fit(train)
    return model, time.perf_counter() - t0


def training_info(model: Recommender) -> dict[str, Any]:
    h = model.history or {}
    out = {k: h.get(k) for k in ("best_epoch", "stopped", "val_metric", "best_value")}
    out["epochs_run"] = len(h.get("history") or [])
    if "object2vec" in h:
        out["side_tokens"] = h["object2vec"].get("side_tokens")
    return out


def neighbours(model: Recommender, ds: Dataset) -> list[str]:
    assert ds.items is not None
    titles = dict(zip(ds.items["item"].to_list(), ds.items["title"].to_list(), strict=True))
    ids, _ = model.similar_items([TERMINATOR], k=NEIGHBOURS)
    return [f"{titles.get(int(i), i)} ({int(i)})" for i in ids[0]]


def rating_section(run: ProtocolRun, quick: bool, systems: set[str] | None = None) -> list[dict[str, Any]]:
    fold, ds = run.folds[0], run.dataset
    rows = []
    for label, params in RATING_CONFIGS.items():
        if systems is not None and label not in systems:
            continue
        model, secs = fit("object2vec", {**params, **({"epochs": 2} if quick else {})}, fold.train, ds)
        pred = model.predict_internal(fold.test.user, fold.test.item)
        rows.append(
            {
                "system": label,
                "params": model.get_params(),
                "fit_seconds": secs,
                **rating_metrics(fold.test.values(), pred),
                **training_info(model),
                "terminator_neighbours": neighbours(model, ds),
            }
        )
    if systems is not None:  # rows rerun alone (--systems): merged into the last run's table
        return rows
    bias, secs = fit("bias", {}, fold.train, None)
    rows.append(
        {
            "system": "recengine bias",
            "fit_seconds": secs,
            **rating_metrics(fold.test.values(), bias.predict_internal(fold.test.user, fold.test.item)),
        }
    )
    for peer in ("surprise-svd", "surprise-svdpp") if not quick else ():
        res = run_peer(peer, run)
        rows.append(
            {
                "system": f"{peer} (peer)",
                "fit_seconds": res["fit_seconds"],
                "rmse": res["rmse"],
                "mae": res["mae"],
            }
        )
    return rows


def binary_section(run: ProtocolRun, quick: bool, systems: set[str] | None = None) -> list[dict[str, Any]]:
    fold, ds = run.folds[0], run.dataset
    rated = fold.rated_train  # ua.base with its ratings: the binary labels' source rows
    assert rated is not None
    rows = []
    configs = [(label, params, fold.train) for label, params in BINARY_CONFIGS.items()]
    configs += [(label, params, rated) for label, params in RATING_CLASS_CONFIGS.items()]
    configs = [c for c in configs if systems is None or c[0] in systems]
    for label, params, train in configs:
        model, secs = fit("object2vec", {**params, **({"epochs": 2} if quick else {})}, train, ds)
        p = model.predict_internal(fold.test.user, fold.test.item)
        rows.append(
            {
                "system": label,
                "params": model.get_params(),
                "fit_seconds": secs,
                **binary_metrics(fold.test.values(), p),
                **training_info(model),
            }
        )
    if systems is not None:
        return rows
    bias, secs = fit("bias", {}, fold.train, None)
    p = bias.predict_internal(fold.test.user, fold.test.item)
    rows.append({"system": "recengine bias", "fit_seconds": secs, **binary_metrics(fold.test.values(), p)})
    return rows


#: Rating predictors whose predictions the blend below stacks beside object2vec's P(rating > 3).
BLEND_PEERS = (
    "surprise-baselineonly",
    "surprise-svd",
    "surprise-svdpp",
    "surprise-knnbaseline-item",
    "surprise-knnbaseline-user",
    "surprise-slopeone",
)


def blend_section(ratings: ProtocolRun, quick: bool) -> list[dict[str, Any]]:
    """How far the binary accuracy goes when every model at hand is stacked: object2vec's P(rating > 3)
    and six Surprise rating predictors, fitted on ua.base without ub.test's rows, weighed by a logistic
    regression on those rows' labels, then refitted on all of ua.base and weighed the same on ua.test.
    A bound on what blending buys on this split, not a model of ours."""
    from sklearn.linear_model import LogisticRegression

    ds = ratings.dataset
    assert ds.path is not None
    rated, test = ratings.folds[0].train, ratings.folds[0].test
    inner, held = inner_split(rated, ds.path)
    peers = BLEND_PEERS[:2] if quick else BLEND_PEERS
    params = {**next(iter(RATING_CLASS_CONFIGS.values())), **({"epochs": 2} if quick else {})}
    columns: dict[str, list[np.ndarray]] = {}
    for train, query in ((inner, held), (rated, test)):
        model, _ = fit("object2vec", params, train, ds)
        columns.setdefault("object2vec (5 rating classes)", []).append(
            model.predict_internal(query.user, query.item)
        )
        for peer in peers:
            columns.setdefault(peer, []).append(_surprise_fit_predict(peer, Fold("blend", train, query)))
    x_held, x_test = (np.column_stack([c[n] for c in columns.values()]) for n in (0, 1))
    y_held, y_test = held.values() > 3, (test.values() > 3).astype(np.float64)  # the protocol's labels
    lr = LogisticRegression(max_iter=5000).fit(x_held, y_held)
    rows = [
        {
            "system": f"blend of {len(columns)} (logistic regression on ub.test's rows)",
            "weights": dict(zip(columns, lr.coef_[0].round(3).tolist(), strict=True)),
            **binary_metrics(y_test, lr.predict_proba(x_test)[:, 1]),
        }
    ]
    for j, name in enumerate(columns):  # each input alone, weighed by its own logistic regression
        one = LogisticRegression(max_iter=5000).fit(x_held[:, [j]], y_held)
        p = one.predict_proba(x_test[:, [j]])[:, 1]
        rows.append({"system": f"{name} alone", **binary_metrics(y_test, p)})
    # The same with the query's time: the user's training ratings entered within a few seconds of it
    s_held, s_test = session_residuals(inner, held), session_residuals(rated, test)
    o2v = [0]  # object2vec's column
    for label, cols in (("object2vec (5 rating classes)", o2v), (f"blend of {len(columns)}", None)):
        xh = np.column_stack([x_held if cols is None else x_held[:, cols], s_held])
        xt = np.column_stack([x_test if cols is None else x_test[:, cols], s_test])
        one = LogisticRegression(max_iter=5000).fit(xh, y_held)
        rows.append(
            {
                "system": f"{label} + session residuals (uses the query's timestamp)",
                **binary_metrics(y_test, one.predict_proba(xt)[:, 1]),
            }
        )
    return rows


#: Windows (seconds either side of the query's timestamp) and shrinkage of the session residuals.
SESSION_WINDOWS, SESSION_SHRINK = (0, 1, 600), 3.0


def session_residuals(train: Interactions, query: Interactions) -> np.ndarray:
    """Per query row and window: the shrunk mean residual (rating − the bias model's prediction) of
    the user's training ratings whose timestamps lie within the window of the query's.

    MovieLens users rated movies a page at a time: ratings entered in the same second share a level
    beyond the user's mean (timeSVD++'s day-specific user bias, at the scale of one submission). It
    needs the time of the query, which ua.test carries; a rating service knows it for the session in
    progress."""
    if train.timestamp is None or query.timestamp is None:
        raise ValueError("session residuals need timestamps on both sides")
    bias, _ = fit("bias", {}, train, None)
    residual = train.values() - bias.predict_internal(train.user, train.item)
    key = (train.user.astype(np.int64) << 32) + train.timestamp  # timestamps are < 2**32 seconds
    order = np.argsort(key, kind="stable")
    key, cum = key[order], np.concatenate([[0.0], np.cumsum(residual[order])])
    qkey = (query.user.astype(np.int64) << 32) + query.timestamp
    out = []
    for w in SESSION_WINDOWS:
        lo, hi = np.searchsorted(key, qkey - w, "left"), np.searchsorted(key, qkey + w, "right")
        out.append((cum[hi] - cum[lo]) / (hi - lo + SESSION_SHRINK))
    return np.column_stack(out)


def topn_section(run: ProtocolRun, quick: bool) -> list[dict[str, Any]]:
    fold, ds = run.folds[0], run.dataset
    rows = []
    model, secs = fit("object2vec", {**TOPN_CONFIG, **({"epochs": 1} if quick else {})}, fold.train, ds)
    res = evaluate_topn(model.score, fold.train, fold.test, k=10)
    rows.append(
        {
            "system": "object2vec (negative sampling)",
            "params": model.get_params(),
            "fit_seconds": secs,
            **{k: float(v) for k, v in res.items()},
            **training_info(model),
        }
    )
    pop, secs = fit("popularity", {}, fold.train, None)
    res = evaluate_topn(pop.score, fold.train, fold.test, k=10)
    rows.append(
        {"system": "recengine popularity", "fit_seconds": secs, **{k: float(v) for k, v in res.items()}}
    )
    if not quick:
        res = run_peer("implicit-als", run)
        rows.append(
            {"system": "implicit-als (peer)", **{k: v for k, v in res.items() if isinstance(v, float)}}
        )
    return rows


def cold_section(run: ProtocolRun, quick: bool) -> dict[str, Any]:
    cold, ds = run.folds[0], run.dataset  # ml100k-ua-coldmovies
    train, test = cold.train, cold.test
    rows = []
    for label, params in (
        ("object2vec (content tokens)", {}),
        ("object2vec (ids only)", RATING_CONFIGS["object2vec (ids only)"]),
    ):
        model, secs = fit("object2vec", {**params, **({"epochs": 2} if quick else {})}, cold.train, ds)
        pred = model.predict_internal(cold.test.user, cold.test.item)
        rows.append({"system": label, "fit_seconds": secs, **rating_metrics(cold.test.values(), pred)})
    bias, secs = fit("bias", {}, cold.train, None)
    pred = bias.predict_internal(cold.test.user, cold.test.item)  # b_i = 0: these movies have no rows
    rows.append(
        {
            "system": "mu + b_u (user bias and global mean)",
            "fit_seconds": secs,
            **rating_metrics(cold.test.values(), pred),
        }
    )
    held = len(cold_movie_ids(build("ml100k-ua", ds).folds[0]))
    return {"held_movies": held, "train_rows": len(train), "test_rows": len(test), "rows": rows}


#: The tune rows were measured before ``item_history=mixed`` became a default; they pin the earlier
#: setting so that a rerun reproduces them.
NO_ITEM_HISTORY: dict[str, Any] = {"item_history": "off"}
#: What the defaults were chosen from (``--only tune``): RMSE on an inner split of ua.base, never
#: ua.test, beside mf and the bias baseline fitted on the same rows. Single networks from three seeds
#: show how much one network depends on its seed; the ensembles average such networks.
ONE = {"members": 1}
TUNE_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "mf (defaults)": ("mf", {}),
    "bias": ("bias", {}),
    **{f"object2vec, one network, seed {s}": ("object2vec", {**ONE, "seed": s}) for s in (0, 1, 2)},
    "object2vec, one network with the user's history": ("object2vec", {**ONE, "user_history": "on"}),
    "object2vec, 3 networks (seeds 0-2)": (
        "object2vec",
        {"members": 3, "user_history": "off", **NO_ITEM_HISTORY},
    ),
    "object2vec, 3 networks (seeds 3-5)": (
        "object2vec",
        {"members": 3, "user_history": "off", "seed": 3, **NO_ITEM_HISTORY},
    ),
    "object2vec, 3 networks, the 2nd with history": ("object2vec", {"members": 3, **NO_ITEM_HISTORY}),
    "object2vec, 4 networks, 2nd and 4th with history (the defaults)": ("object2vec", NO_ITEM_HISTORY),
    "object2vec, the defaults from seed 4": ("object2vec", {"seed": 4, **NO_ITEM_HISTORY}),
}


def inner_split(train: Interactions, data_dir: Path) -> tuple[Interactions, Interactions]:
    """ua.base without the rows of ub.test, and those rows. ub.test lies inside ua.base and was drawn
    by the same rule as ua.test (10 ratings of every user): it leans, as ua.test does, to more popular
    movies and higher ratings than a uniform draw (mean rating 3.59 against ua.base's 3.52), which a
    uniform inner hold-out did not reproduce."""
    from recengine.data.movielens import read_ml100k_split

    held_rows = read_ml100k_split(data_dir / "ub.test", train.users, train.items)
    key = train.user.astype(np.int64) * train.n_items + train.item
    held = np.isin(key, held_rows.user.astype(np.int64) * train.n_items + held_rows.item)
    if int(held.sum()) != len(held_rows):
        raise RuntimeError("ub.test is not inside ua.base: not the GroupLens ml-100k files")
    return train.subset(~held), train.subset(held)


def tune_section(run: ProtocolRun, quick: bool) -> list[dict[str, Any]]:
    assert run.dataset.path is not None
    fit_rows, held = inner_split(run.folds[0].train, run.dataset.path)
    rows = []
    for label, (name, params) in TUNE_CONFIGS.items():
        extra = {"epochs": 2} if quick and name == "object2vec" else {}
        model, secs = fit(name, {**params, **extra}, fit_rows, run.dataset if name == "object2vec" else None)
        pred = model.predict_internal(held.user, held.item)
        rows.append(
            {
                "system": label,
                "fit_seconds": secs,
                **rating_metrics(held.values(), pred),
                **training_info(model),
            }
        )
    return rows


#: The flipped history (``item_history``): enc1 also pools the users who rated the item. Measured
#: beside the defaults on the inner split first (what a default is chosen from), then on ua.test.
ITEM_HISTORY_TUNE: dict[str, dict[str, Any]] = {
    "object2vec, 4 networks, user and item histories crossed (item_history=mixed)": {"item_history": "mixed"},
    "object2vec, 4 networks, every one with the item history (item_history=on)": {"item_history": "on"},
}
ITEM_HISTORY_TEST: dict[str, dict[str, Any]] = {
    "object2vec (item_history=mixed)": {"item_history": "mixed"},
    "object2vec (5 rating classes, P(rating > 3), item_history=mixed)": {
        **next(iter(RATING_CLASS_CONFIGS.values())),
        "item_history": "mixed",
    },
}


def item_history_section(run: ProtocolRun, quick: bool) -> list[dict[str, Any]]:
    """The item history's rows: RMSE on the inner split (beside the defaults' row of ``tune``), then
    ua.test's RMSE and the binary metrics of P(rating > 3) (beside the defaults' rows)."""
    assert run.dataset.path is not None
    fold = run.folds[0]
    fit_rows, held = inner_split(fold.train, run.dataset.path)
    extra = {"epochs": 2} if quick else {}
    rows = []
    for split, configs, train, query in (
        ("inner split (ub.test's rows)", ITEM_HISTORY_TUNE, fit_rows, held),
        ("ua.test", ITEM_HISTORY_TEST, fold.train, fold.test),
    ):
        for label, params in configs.items():
            model, secs = fit("object2vec", {**params, **extra}, train, run.dataset)
            pred = model.predict_internal(query.user, query.item)
            truth = query.values()
            if params.get("rating_classes"):
                metrics = binary_metrics((truth > 3).astype(np.float64), pred)
            else:
                metrics = rating_metrics(truth, pred)
            info = training_info(model)
            rows.append({"system": label, "split": split, "fit_seconds": secs, **metrics, **info})
    return rows


_CLASSES = next(iter(RATING_CLASS_CONFIGS.values()))
#: Sessions on the inner split (five rating classes, P(rating > 3) on ub.test's rows): the gap and
#: the shrinkage are chosen here.
SESSION_TUNE: dict[str, dict[str, Any]] = {
    "object2vec (5 rating classes), no sessions": _CLASSES,
    "... session_gap=0 (same second), session_reg=3": {**_CLASSES, "session_gap": 0, "session_reg": 3},
    "... session_gap=0, session_reg=10": {**_CLASSES, "session_gap": 0, "session_reg": 10},
    "... session_gap=600 (10 minutes), session_reg=10": {**_CLASSES, "session_gap": 600, "session_reg": 10},
    "... session_gap=600, session_reg=30": {**_CLASSES, "session_gap": 600, "session_reg": 30},
    "... session_gap=600, session_reg=100": {**_CLASSES, "session_gap": 600, "session_reg": 100},
    "... session_gap=3600 (an hour), session_reg=30": {**_CLASSES, "session_gap": 3600, "session_reg": 30},
}
#: The choice of SESSION_TUNE on ua.test, for the binary metrics and for RMSE.
SESSION_TEST: dict[str, dict[str, Any]] = {
    "object2vec (5 rating classes, session_gap=600, session_reg=30)": {
        **_CLASSES,
        "session_gap": 600,
        "session_reg": 30,
    },
    "object2vec (defaults, session_gap=600, session_reg=30)": {"session_gap": 600, "session_reg": 30},
}


def _session_row(job: tuple[str, str, dict[str, Any], Interactions, Interactions, Dataset]) -> dict[str, Any]:
    label, split, params, train, query, ds = job
    model, secs = fit("object2vec", params, train, ds)
    pred = model.predict_internal(query.user, query.item, query.timestamp)  # the query's time
    truth = query.values()
    if params.get("rating_classes"):
        metrics = binary_metrics((truth > 3).astype(np.float64), pred)
    else:
        metrics = rating_metrics(truth, pred)
    sessions = getattr(model, "sessions", None)
    share = None if sessions is None else float(np.mean(sessions.lookup(query.user, query.timestamp) > 0))
    return {
        "system": label,
        "split": split,
        "fit_seconds": secs,
        **metrics,
        "in_session": share,
        **training_info(model),
    }


#: Session residuals on the inner split (five rating classes, P(rating > 3) on ub.test's rows): the
#: windows, and whether the similarity-weighted one joins them, are chosen here, by log loss.
RESIDUAL_CHOICES: dict[str, dict[str, Any] | None] = {
    "object2vec (5 rating classes), no session residuals": None,
    "... session_residuals=0,1,600": {"session_residuals": [0, 1, 600]},
    "... session_residuals=0,1,600, session_residuals_similar=600": {
        "session_residuals": [0, 1, 600],
        "session_residuals_similar": 600,
    },
}


def residuals_section(run: ProtocolRun, quick: bool) -> list[dict[str, Any]]:
    """Session residuals: each test row is predicted at its own time, and the residuals of the user's
    training rows near it (and, with ``session_residuals_similar``, those of movies like its own) are
    weighed beside the model's output. The settings are chosen on the inner split (lowest log loss),
    then measured on ua.test: the five-class model alone and with sessions, and the defaults for
    RMSE. Two fits side by side (one thread each)."""
    from concurrent.futures import ProcessPoolExecutor

    assert run.dataset.path is not None
    fold = run.folds[0]
    fit_rows, held = inner_split(fold.train, run.dataset.path)
    extra = {"epochs": 2} if quick else {}
    split = "inner split (ub.test's rows)"
    tune = [
        (label, split, {**_CLASSES, **extra, **(w or {})}, fit_rows, held)
        for label, w in RESIDUAL_CHOICES.items()
    ]
    with ProcessPoolExecutor(max_workers=2) as pool:
        rows = list(pool.map(_session_row, [(*job, run.dataset) for job in tune]))
        choices = list(RESIDUAL_CHOICES.values())
        chosen = min((c for c in zip(rows, choices, strict=True) if c[1]), key=lambda c: c[0]["log_loss"])[1]
        assert chosen is not None
        named = ", ".join(
            f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in chosen.items()
        )
        test = [
            (f"object2vec (5 rating classes, {named})", {**_CLASSES, **chosen}),
            (
                f"object2vec (5 rating classes, {named}, session_gap=600)",
                {**_CLASSES, **chosen, "session_gap": 600},
            ),
            (f"object2vec (defaults, {named})", chosen),
        ]
        jobs = [
            (label, "ua.test", {**params, **extra}, fold.train, fold.test, run.dataset)
            for label, params in test
        ]
        rows += list(pool.map(_session_row, jobs))
    return rows


def sessions_section(run: ProtocolRun, quick: bool) -> list[dict[str, Any]]:
    """Rating sessions (``session_gap``): each test row is predicted at its own time, so in the user's
    training session it falls in. The gap and shrinkage are chosen on the inner split; the choice is
    then measured on ua.test, beside the defaults' rows of the first two tables. Two fits run side by
    side (one thread each), so their fit seconds are of a loaded machine."""
    from concurrent.futures import ProcessPoolExecutor

    assert run.dataset.path is not None
    fold = run.folds[0]
    fit_rows, held = inner_split(fold.train, run.dataset.path)
    extra = {"epochs": 2} if quick else {}
    jobs = [
        (label, split, {**params, **extra}, train, query, run.dataset)
        for split, configs, train, query in (
            ("ua.test", SESSION_TEST, fold.train, fold.test),  # first, so they come soonest
            ("inner split (ub.test's rows)", SESSION_TUNE, fit_rows, held),
        )
        for label, params in configs.items()
    ]
    with ProcessPoolExecutor(max_workers=2) as pool:
        rows = list(pool.map(_session_row, jobs))
    return rows[len(SESSION_TEST) :] + rows[: len(SESSION_TEST)]  # the choice, then its measure


def ensemble_speed_section(run: ProtocolRun, quick: bool) -> list[dict[str, Any]]:
    """Wall time of the default fit on ua.base with every core (threads=0), in the same run: the
    members one after another, each on every thread, against the members side by side in worker
    processes (``member_processes=auto``), each on its share of the threads."""
    from recengine.models.object2vec import Object2Vec
    from recengine.training.device import cpu_count

    fold, ds = run.folds[0], run.dataset
    rows: list[dict[str, Any]] = []
    for label, processes in (
        ("members in turn, every thread each", 1),
        ("members side by side (auto)", "auto"),
    ):
        model = Object2Vec(member_processes=processes, **({"epochs": 2} if quick else {}))
        model.use_dataset(ds)
        t0 = time.perf_counter()
        model.fit(fold.train)
        secs = time.perf_counter() - t0
        info = (model.history or {})["object2vec"]
        rows.append(
            {
                "system": label,
                "processes": info["member_processes"],
                "cores": cpu_count(),
                "fit_seconds": secs,
                **rating_metrics(fold.test.values(), model.predict_internal(fold.test.user, fold.test.item)),
            }
        )
    rows[1]["speedup"] = rows[0]["fit_seconds"] / rows[1]["fit_seconds"]
    return rows


@contextlib.contextmanager
def tensor_row_step(on: bool) -> Iterator[None]:
    """Within the block the sparse optimizers take their tensor-op step (torch's gather/update/
    scatter ops, as on CUDA) where the CPU would run the compiled one: the reference it replaced."""
    real = optim._compiled
    if on:
        optim._compiled = lambda p, acc: False
    try:
        yield
    finally:
        optim._compiled = real


def _ml20m_rows(quick: bool) -> tuple[Interactions, Interactions, float]:
    """The ml-20m shape (synthetic, seed 0), its seeded sample of rows to time, the seconds it took."""
    from recengine.data.synthetic import generate_arrays

    t0 = time.perf_counter()
    data = generate_arrays(preset="ml-20m", seed=0).to_interactions()
    gen = time.perf_counter() - t0
    n = 20_000 if quick else 1_000_000
    rows_idx = np.sort(np.random.default_rng(0).choice(len(data), size=n, replace=False))
    return data, data.subset(rows_idx), gen


def _epoch_row(label: str, name: str, params: dict[str, Any], rows_in: Interactions) -> dict[str, Any]:
    """One epoch's training rate (the tensor-op row step where the label says so)."""
    with tensor_row_step("tensor-op row step" in label):
        model, secs = fit(name, params, rows_in, None)
    epoch = model.history["history"][0]
    return {
        "system": label,
        "optimizer": (model.history.get("object2vec") or {}).get("optimizer"),
        "rows": len(rows_in),
        "samples_per_second": epoch["samples_per_second"],
        "epoch_seconds": epoch["seconds"],
        "fit_seconds": secs,
    }


def row_step_section(quick: bool) -> dict[str, Any]:
    """The item history with every row of the sample (so the histories are as long as in the speed
    section): the compiled row step and the tensor-op one, in turn in one run."""
    _, sub, gen = _ml20m_rows(quick)
    params = {"epochs": 1, "val_fraction": 0.0, **RATING_CONFIGS["object2vec (ids only)"], "members": 1}
    params["item_history"] = "on"
    base = "object2vec (ids only, item_history=on, history_max_len=1,000"
    rows = [
        _epoch_row(f"{base}; compiled row step)", "object2vec", params, sub),
        _epoch_row(f"{base}; tensor-op row step)", "object2vec", params, sub),
    ]
    rows[1]["compiled_speedup"] = rows[0]["samples_per_second"] / rows[1]["samples_per_second"]
    return {"rows_timed": len(sub), "generate_seconds": gen, "rows": rows}


def speed_section(quick: bool) -> dict[str, Any]:
    data, sub, gen = _ml20m_rows(quick)
    n = len(sub)
    dense = sub.subset(np.arange(n // 10))  # dense Adam updates every table row each step: slow
    one = {"epochs": 1, "val_fraction": 0.0}
    ids = {**RATING_CONFIGS["object2vec (ids only)"], "members": 1}  # the rate of one network
    configs: list[tuple[str, str, dict[str, Any], Interactions]] = [
        (
            "object2vec (ids only, defaults: auto = Adam on sparse gradients, batch 256)",
            "object2vec",
            {**one, **ids},
            sub,
        ),
        (
            "object2vec (ids only, optimizer=adagrad: sparse, batch 256)",
            "object2vec",
            {**one, **ids, "optimizer": "adagrad", "lr": 0.02, "weight_decay": 0.0},
            sub,
        ),
        (
            "object2vec (ids only, defaults, batch 1024)",
            "object2vec",
            {**one, **ids, "batch_size": 1024},
            sub,
        ),
        (
            "object2vec (ids only, optimizer=adam: dense, batch 256)",
            "object2vec",
            {**one, **ids, "optimizer": "adam"},
            dense,
        ),
    ]
    # The item history pools every rater of a row's item, and rows are drawn in proportion to their
    # item's popularity: what the cap on a history's length saves where a movie has thousands of raters.
    for cap, what in ((10_000_000, ": every rater pooled"), (1_000, ": the default cap"), (100, "")):
        label = f"object2vec (ids only, item_history=on, history_max_len={cap:,}{what})"
        capped = {**one, **ids, "item_history": "on", "history_max_len": cap}
        configs.append((label, "object2vec", capped, sub))
    # The row step of the sparse tables, compiled on the CPU, against the tensor-op step it replaced
    # (which CUDA still runs), on a fifth of the rows: histories a fifth as long as above, where the
    # step is a small part of the work (the row-step section times the two on every row).
    fifth = sub.subset(np.arange(n // 5))
    step_pair = {**one, **ids, "item_history": "on"}
    configs.append(
        (
            "object2vec (ids only, item_history=on, history_max_len=1,000; compiled row step)",
            "object2vec",
            step_pair,
            fifth,
        )
    )
    configs.append(
        (
            "object2vec (ids only, item_history=on, history_max_len=1,000; tensor-op row step)",
            "object2vec",
            step_pair,
            fifth,
        )
    )
    configs.append(("deep-mf (defaults)", "deep-mf", one, sub))
    rows = [_epoch_row(*config) for config in configs]
    ref = rows[-1]["samples_per_second"]
    for r in rows:
        r["vs_deep_mf"] = r["samples_per_second"] / ref
    return {
        "ratings": len(data),
        "users": data.n_users,
        "items": data.n_items,
        "rows_timed": n,
        "generate_seconds": gen,
        "rows": rows,
    }


# ----- report -----------------------------------------------------------------------------------------
def _table(rows: list[dict[str, Any]], cols: list[str]) -> list[str]:
    out = ["| system | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for r in rows:
        cells = [f"{r[c]:.4f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols]
        out.append(f"| {r['system']} | " + " | ".join(cells) + " |")
    return out


#: The columns of the sections whose rows read each query's time (sessions, residuals).
TIMED_COLUMNS = ["split", "rmse", "mae", "accuracy", "f1", "auc", "log_loss", "in_session", "best_epoch"]


def markdown(res: dict[str, Any]) -> str:
    c = res["context"]
    lines = [
        f"Measured {c['date']} on {c['machine']}, recengine {c['recengine_version']}, one torch thread.",
        "",
    ]
    if res.get("section_measured"):  # partial runs (--only) update their sections of the last full run
        dates = ", ".join(f"{k} {v}" for k, v in res["section_measured"].items())
        lines += [f"Each section's run: {dates}.", ""]
    if res.get("rows_measured"):  # rows rerun alone (--systems), in place in their section's table
        dates = "; ".join(
            f"{section}: {system} {date}"
            for section, rows in res["rows_measured"].items()
            for system, date in rows.items()
        )
        lines += [f"Rows rerun alone since: {dates}.", ""]
    if res.get("note"):
        lines += [str(res["note"]), ""]
    if "ml100k-ua" in res:
        lines += [
            "**ml100k-ua** (ua.base / ua.test; target RMSE <= 0.920; " + PUBLISHED["ml100k-ua"] + ")",
            "",
        ]
        lines += [*_table(res["ml100k-ua"], ["rmse", "mae", "best_epoch", "epochs_run", "fit_seconds"]), ""]
        lines += ["Terminator (195)'s nearest movies by cosine of the item embeddings:", ""]
        lines += [
            f"- {r['system']}: " + "; ".join(r["terminator_neighbours"])
            for r in res["ml100k-ua"]
            if "terminator_neighbours" in r
        ] + [""]
    if "ml100k-ua-binary" in res:
        lines += [
            "**ml100k-ua-binary** (label = rating > 3; target accuracy >= 0.735; "
            + PUBLISHED["ml100k-ua-binary"]
            + ")",
            "",
        ]
        lines += [*_table(res["ml100k-ua-binary"], ["accuracy", "f1", "auc", "log_loss", "fit_seconds"]), ""]
    if "binary-blend" in res:
        lines += [
            "**ml100k-ua-binary, stacked** (`--only binary-blend`; the weights fitted on ub.test's rows "
            "of ua.base, each input fitted on the rest of ua.base, then everything refitted on ua.base; "
            "a bound on what blending buys here, not a model of ours)",
            "",
        ]
        lines += [*_table(res["binary-blend"], ["accuracy", "f1", "auc", "log_loss"]), ""]
    if "topn-ml100k" in res:
        lines += ["**topn-ml100k** (K = 10)", ""]
        lines += _table(res["topn-ml100k"], ["ndcg@10", "recall@10", "hr@10", "coverage@10", "fit_seconds"])
        lines += [""]
    if "cold-start" in res:
        cs = res["cold-start"]
        lines += [
            f"**cold-start movies** (ml100k-ua-coldmovies; {cs['held_movies']} movies held out of training "
            f"entirely, {cs['test_rows']} of their ua.test ratings measured)",
            "",
        ]
        lines += [*_table(cs["rows"], ["rmse", "mae", "fit_seconds"]), ""]
    if "tune" in res:
        lines += [
            "**choosing the defaults** (`--only tune`; RMSE on the rows of ub.test, which ua.base holds, "
            "fitted on the rest of ua.base; ua.test is never looked at; measured before the item "
            "history, with item_history=off: the defaults of then, whose item-history rows follow)",
            "",
        ]
        lines += [*_table(res["tune"], ["rmse", "mae", "best_epoch", "fit_seconds"]), ""]
    if "item-history" in res:
        lines += [
            "**the item history** (`--only item-history`; enc1 also pools the users who rated the "
            "item; the inner split as in the table above, whose defaults row is the reference; then "
            "ua.test beside the defaults' rows of the first two tables)",
            "",
        ]
        cols = ["split", "rmse", "mae", "accuracy", "f1", "auc", "log_loss", "fit_seconds"]
        lines += [*_table(res["item-history"], cols), ""]
    if "sessions" in res:
        lines += [
            "**rating sessions** (`--only sessions`; `session_gap`: a run of a user's ratings, each "
            "within that many seconds of the one before, is a session whose bias joins the user's, and "
            "each test row is predicted at its own time, in the session it falls in; chosen on the inner "
            "split, then ua.test beside the defaults' rows of the first two tables; in_session: the share "
            "of rows that fell in a training session; two fits side by side)",
            "",
        ]
        lines += [*_table(res["sessions"], TIMED_COLUMNS), ""]
    if "residuals" in res:
        lines += [
            "**session residuals** (`--only residuals`; `session_residuals`: a query given its time also "
            "reads the shrunk mean residual of the user's training rows within each window of it "
            "(`session_residuals_similar`: and within that window, weighed by how alike each row's movie "
            "is to the query's by co-occurrence), weighed beside the model's output by a regression "
            "fitted on the networks' own early-stopping rows; the settings chosen on the inner split by "
            "log loss, then ua.test beside "
            "the defaults' rows of the first two tables; in_session: the share of rows in a training "
            "session, with session_gap; two fits side by side)",
            "",
        ]
        lines += [*_table(res["residuals"], TIMED_COLUMNS), ""]
    if "ensemble-speed" in res:
        lines += [
            "**the default ensemble's fit, every core** (`--only ensemble-speed`; ua.base, threads=0, "
            "the members in turn against side by side in worker processes, same run)",
            "",
        ]
        cols = ["processes", "cores", "fit_seconds", "speedup", "rmse"]
        lines += [*_table(res["ensemble-speed"], cols), ""]
    if "speed" in res:
        sp = res["speed"]
        lines += [
            f"**training speed, ml-20m shape** ({sp['ratings']:,} ratings, {sp['users']:,} users, "
            f"{sp['items']:,} items, all in the id maps; one epoch over the first `rows` of "
            f"{sp['rows_timed']:,} sampled rows, one thread)",
            "",
        ]
        lines += [*_table(sp["rows"], ["rows", "samples_per_second", "vs_deep_mf", "epoch_seconds"]), ""]
    if "row-step" in res:
        rs = res["row-step"]
        lines += [
            "**the sparse tables' row step** (`--only row-step`; the speed section's default-cap "
            f"item-history configuration on all {rs['rows_timed']:,} sampled rows, so the histories are "
            "as long as there: the compiled step of the CPU against the tensor-op step it replaced, "
            "which CUDA runs; in turn, one thread)",
            "",
        ]
        lines += [
            *_table(rs["rows"], ["rows", "samples_per_second", "compiled_speedup", "epoch_seconds"]),
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--data", default=None, help="the ml-100k directory (default: the data home's copy)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--quick", action="store_true", help="a smoke run: tiny epochs, no peers")
    ap.add_argument("--no-speed", action="store_true", help="skip the ml-20m shape timing")
    ap.add_argument("--only", nargs="*", default=None, help="sections to run (ml100k-ua, ... speed)")
    ap.add_argument(
        "--systems",
        nargs="*",
        default=None,
        help="with --only ml100k-ua or ml100k-ua-binary: rerun these rows alone, in place in the last run",
    )
    args = ap.parse_args(argv)
    systems = set(args.systems) if args.systems else None
    if systems is not None and not (args.only and set(args.only) <= {"ml100k-ua", "ml100k-ua-binary"}):
        ap.error("--systems reruns rows of --only ml100k-ua and/or ml100k-ua-binary")
    sections = args.only or ["ml100k-ua", "ml100k-ua-binary", "topn-ml100k", "cold-start", "speed"]
    suffix = "_quick" if args.quick else ""
    json_path = args.out / f"object2vec_quality{suffix}.json"
    res: dict[str, Any] = {}
    if args.only and json_path.exists():  # a partial run updates its sections of the last full one
        res = json.loads(json_path.read_text())
    res.update(context=run_context(), published=PUBLISHED, topn_config=TOPN_CONFIG)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in sections:
        t0 = time.perf_counter()
        if name in ("ml100k-ua", "ml100k-ua-binary"):
            section = rating_section if name == "ml100k-ua" else binary_section
            rows = section(build(name, args.data), args.quick, systems)
            if systems is None:
                res[name] = rows
            else:  # in place of the same rows of the last run, each with its own date
                new = {r["system"]: r for r in rows}
                res[name] = [new.pop(r["system"], r) for r in res.get(name, [])] + list(new.values())
                for system in {r["system"] for r in rows}:
                    res.setdefault("rows_measured", {}).setdefault(name, {})[system] = run_context()["date"]
                print(f"{name}: {len(rows)} row(s) rerun", file=sys.stderr, flush=True)
                json_path.write_text(json.dumps(res, indent=1, default=str) + "\n")
                (args.out / f"object2vec_quality{suffix}.md").write_text(markdown(res) + "\n")
                continue
        elif name == "binary-blend":
            res[name] = blend_section(build("ml100k-ua", args.data), args.quick)
        elif name == "topn-ml100k":
            res[name] = topn_section(build(name, args.data), args.quick)
        elif name == "cold-start":
            res[name] = cold_section(build("ml100k-ua-coldmovies", args.data), args.quick)
        elif name == "tune":
            res[name] = tune_section(build("ml100k-ua", args.data), args.quick)
        elif name == "item-history":
            res[name] = item_history_section(build("ml100k-ua", args.data), args.quick)
        elif name == "residuals":
            res[name] = residuals_section(build("ml100k-ua", args.data), args.quick)
        elif name == "sessions":
            res[name] = sessions_section(build("ml100k-ua", args.data), args.quick)
        elif name == "ensemble-speed":
            res[name] = ensemble_speed_section(build("ml100k-ua", args.data), args.quick)
        elif name == "row-step":
            res[name] = row_step_section(args.quick)
        elif name == "speed" and not args.no_speed:
            res[name] = speed_section(args.quick)
        res.setdefault("section_seconds", {})[name] = time.perf_counter() - t0
        res.setdefault("section_measured", {})[name] = run_context()["date"]
        print(f"{name}: {res['section_seconds'][name]:.0f} s", file=sys.stderr, flush=True)
        json_path.write_text(json.dumps(res, indent=1, default=str) + "\n")  # after each section
        (args.out / f"object2vec_quality{suffix}.md").write_text(markdown(res) + "\n")
    print(markdown(res))


if __name__ == "__main__":
    main()
