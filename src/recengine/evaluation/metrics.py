"""Pointwise quality metrics for rating prediction and binary prediction, vectorized with numpy.

These are the metrics of PROTOCOLS.md's rating and binary protocols. They check their input and
raise ``ValueError`` with a plain reason (empty input, length mismatch, NaN, labels outside {0, 1},
one class only for AUC) instead of returning NaN, so a broken model cannot report a number.
Each function returns a plain Python ``float``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Pair = tuple[FloatArray, FloatArray]

__all__ = [
    "accuracy",
    "binary_metrics",
    "f1",
    "log_loss",
    "mae",
    "rating_metrics",
    "rmse",
    "roc_auc",
]


def _pair(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, what: str = "predictions") -> Pair:
    """Both arrays as 1-D float64 after the checks every metric shares."""
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1:
        raise ValueError(f"expected 1-D arrays, got shapes {t.shape} and {p.shape}")
    if len(t) != len(p):
        raise ValueError(f"length mismatch: {len(t)} true values but {len(p)} {what}")
    if len(t) == 0:
        raise ValueError("empty input: no rows to evaluate")
    try:
        tf = t.astype(np.float64)
        pf = p.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"true values and {what} must be numbers") from None
    bad_t = ~np.isfinite(tf)
    if bool(bad_t.any()):
        row = int(np.argmax(bad_t))
        raise ValueError(f"true value at row {row} is {tf[row]!r} ({int(bad_t.sum())} such rows)")
    bad_p = ~np.isfinite(pf)
    if bool(bad_p.any()):
        row = int(np.argmax(bad_p))
        raise ValueError(f"{what} at row {row} is {pf[row]!r} ({int(bad_p.sum())} non-finite rows)")
    return tf, pf


def _binary(y_true: npt.ArrayLike, p: npt.ArrayLike, what: str = "probabilities") -> Pair:
    """Labels must be exactly 0 or 1 (bool, int or float); anything else is a mistake upstream."""
    t, pf = _pair(y_true, p, what)
    bad = (t != 0.0) & (t != 1.0)
    if bool(bad.any()):
        row = int(np.argmax(bad))
        raise ValueError(f"labels must be 0 or 1; row {row} holds {t[row]!r} ({int(bad.sum())} such rows)")
    return t, pf


def rmse(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Root mean squared error."""
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Mean absolute error."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


def accuracy(y_true: npt.ArrayLike, p: npt.ArrayLike, threshold: float = 0.5) -> float:
    """Share of rows whose predicted label (``p > threshold``, as sklearn's classifiers do) is right."""
    t, pf = _binary(y_true, p)
    return float(np.mean((pf > threshold) == (t == 1.0)))


def f1(y_true: npt.ArrayLike, p: npt.ArrayLike, threshold: float = 0.5) -> float:
    """F1 of the positive class with predicted label ``p > threshold``; 0.0 when nothing is positive.

    0.0 for "no positives predicted and none true" matches sklearn's ``zero_division`` default.
    """
    t, pf = _binary(y_true, p)
    pred = pf > threshold
    true = t == 1.0
    tp = int(np.count_nonzero(pred & true))
    fp = int(np.count_nonzero(pred & ~true))
    fn = int(np.count_nonzero(~pred & true))
    denom = 2 * tp + fp + fn
    return 0.0 if denom == 0 else 2.0 * tp / denom


def _average_ranks(x: FloatArray) -> FloatArray:
    """1-based ranks of ``x`` with tied values sharing the mean of their ranks (scipy's rankdata)."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    n = len(x)
    # Start of each run of equal values in sorted order; every member gets the run's mean rank.
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], n]
    mean_rank = (starts + 1 + ends) / 2.0  # mean of (start+1 .. end), 1-based
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def roc_auc(y_true: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """ROC AUC from the Mann–Whitney rank sum; ties count one half, as in sklearn's trapezoids.

    One sort instead of a threshold sweep, so 10M rows cost about a second.
    """
    t, s = _binary(y_true, p, "scores")
    pos = t == 1.0
    n_pos = int(np.count_nonzero(pos))
    n_neg = len(t) - n_pos
    if n_pos == 0 or n_neg == 0:
        only = "positive" if n_neg == 0 else "negative"
        raise ValueError(f"ROC AUC is undefined when every label is {only} (only one class present)")
    rank_sum = float(_average_ranks(s)[pos].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (float(n_pos) * float(n_neg))


def log_loss(y_true: npt.ArrayLike, p: npt.ArrayLike, eps: float = 1e-15) -> float:
    """Mean binary cross-entropy; the probability given to the truth is clipped at eps (finite misses)."""
    t, pf = _binary(y_true, p)
    if not 0.0 <= eps < 0.5:
        raise ValueError(f"eps must be in [0, 0.5), got {eps}")
    outside = (pf < 0.0) | (pf > 1.0)
    if bool(outside.any()):
        row = int(np.argmax(outside))
        raise ValueError(
            f"probabilities must lie in [0, 1]; row {row} holds {pf[row]!r} ({int(outside.sum())} such rows)"
        )
    # Probability given to the true label, clipped at eps; 1 - p is exact for p >= 0.5, where it matters.
    q = np.where(t == 1.0, pf, 1.0 - pf)
    return float(-np.mean(np.log(np.maximum(q, eps))))


def rating_metrics(y: npt.ArrayLike, yhat: npt.ArrayLike) -> dict[str, float]:
    """``{"rmse", "mae"}`` of the rating protocols (clip ``yhat`` to the rating scale before calling)."""
    return {"rmse": rmse(y, yhat), "mae": mae(y, yhat)}


def binary_metrics(y: npt.ArrayLike, p: npt.ArrayLike) -> dict[str, float]:
    """``{"accuracy", "f1", "auc", "log_loss"}`` of the binary protocol (threshold 0.5)."""
    return {
        "accuracy": accuracy(y, p),
        "f1": f1(y, p),
        "auc": roc_auc(y, p),
        "log_loss": log_loss(y, p),
    }
