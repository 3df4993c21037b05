"""Pointwise metrics against scikit-learn as the independent reference, ties and error paths included."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sklearn.metrics as skm
from hypothesis import given, settings
from hypothesis import strategies as st

from recengine.evaluation.metrics import (
    accuracy,
    binary_metrics,
    f1,
    log_loss,
    mae,
    rating_metrics,
    rmse,
    roc_auc,
)


@pytest.fixture(params=[0, 1, 2])
def rating_data(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(request.param)
    n = 500
    y = rng.integers(1, 11, n) / 2.0
    yhat = np.clip(y + rng.normal(0, 1, n), 0.5, 5.0).astype(np.float32)
    return y, yhat


@pytest.fixture(params=[0, 1, 2])
def binary_data(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities rounded to 2 decimals, so many scores tie, some exactly at 0.5."""
    rng = np.random.default_rng(request.param)
    n = 700
    y = rng.integers(0, 2, n)
    p = np.round(np.clip(0.5 + 0.25 * (y - 0.5) + rng.normal(0, 0.2, n), 0.01, 0.99), 2)
    return y, p


def test_rating_metrics_match_sklearn(rating_data: tuple[np.ndarray, np.ndarray]) -> None:
    y, yhat = rating_data
    assert rmse(y, yhat) == pytest.approx(math.sqrt(skm.mean_squared_error(y, yhat)), rel=1e-12)
    assert mae(y, yhat) == pytest.approx(skm.mean_absolute_error(y, yhat), rel=1e-12)
    d = rating_metrics(y, yhat)
    assert set(d) == {"rmse", "mae"}
    assert d["rmse"] == rmse(y, yhat) and d["mae"] == mae(y, yhat)
    assert isinstance(d["rmse"], float)


def test_binary_metrics_match_sklearn(binary_data: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = binary_data
    assert np.any(p == 0.5)  # the threshold itself occurs: p > 0.5 is the positive label
    label = (p > 0.5).astype(int)
    assert accuracy(y, p) == pytest.approx(skm.accuracy_score(y, label), abs=1e-15)
    assert f1(y, p) == pytest.approx(skm.f1_score(y, label), rel=1e-12)
    assert roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), rel=1e-12)
    assert log_loss(y, p) == pytest.approx(skm.log_loss(y, p), rel=1e-12)
    d = binary_metrics(y, p)
    assert list(d) == ["accuracy", "f1", "auc", "log_loss"]
    assert d["auc"] == roc_auc(y, p)


def test_threshold_and_label_types() -> None:
    y = np.array([True, False, True, False])
    p = np.array([0.9, 0.2, 0.3, 0.6])
    assert accuracy(y, p, threshold=0.25) == pytest.approx(skm.accuracy_score(y, p > 0.25))
    assert f1(y.astype(float), p, threshold=0.7) == pytest.approx(skm.f1_score(y, p > 0.7))
    assert accuracy([1, 0], [0.5, 0.5]) == 0.5  # exactly at the threshold is negative


def test_f1_without_positives_is_zero() -> None:
    assert f1([0, 0, 0], [0.1, 0.2, 0.3]) == 0.0
    assert f1([0, 0, 0], [0.9, 0.2, 0.3]) == 0.0
    assert f1([1, 1], [0.9, 0.8]) == 1.0


def test_auc_all_tied_is_half_and_perfect_is_one() -> None:
    assert roc_auc([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3]) == 0.5
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0


def test_auc_accepts_unbounded_scores() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    s = rng.normal(0, 50, 300).round()
    assert roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), rel=1e-12)


def test_log_loss_clips_certain_mistakes() -> None:
    eps = 1e-15
    got = log_loss([1, 0, 1], [0.0, 1.0, 1.0])
    want = -(math.log(eps) + math.log(eps) + math.log(1 - eps)) / 3
    assert got == pytest.approx(want, rel=1e-9)
    assert math.isfinite(got)
    assert log_loss([1, 0], [0.0, 1.0], eps=1e-7) == pytest.approx(-math.log(1e-7), rel=1e-9)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 6)), min_size=2, max_size=60).filter(
        lambda rows: len({r[0] for r in rows}) == 2
    )
)
def test_auc_property_matches_sklearn(rows: list[tuple[bool, int]]) -> None:
    """Heavy ties (7 distinct scores) and arbitrary class balance."""
    y = np.array([r[0] for r in rows], dtype=int)
    s = np.array([r[1] for r in rows], dtype=float) / 6.0
    assert roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert accuracy(y, s) == pytest.approx(skm.accuracy_score(y, s > 0.5), abs=1e-12)


@pytest.mark.parametrize("fn", [rmse, mae, accuracy, f1, roc_auc, log_loss])
def test_empty_and_mismatched_input(fn) -> None:
    with pytest.raises(ValueError, match="empty"):
        fn([], [])
    with pytest.raises(ValueError, match="length mismatch"):
        fn([1, 0, 1], [0.5, 0.5])
    with pytest.raises(ValueError, match="1-D"):
        fn([[1, 0]], [[0.5, 0.5]])


@pytest.mark.parametrize("fn", [rmse, mae, accuracy, f1, roc_auc, log_loss])
def test_nan_predictions(fn) -> None:
    with pytest.raises(ValueError, match="row 1"):
        fn([1, 0, 1], [0.5, float("nan"), 0.2])
    with pytest.raises(ValueError, match="true value"):
        fn([1, float("nan"), 1], [0.5, 0.1, 0.2])


@pytest.mark.parametrize("fn", [accuracy, f1, roc_auc, log_loss, binary_metrics])
def test_labels_must_be_binary(fn) -> None:
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        fn([1, 2, 0], [0.5, 0.4, 0.2])
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        fn([1.0, 0.5, 0.0], [0.5, 0.4, 0.2])


def test_auc_one_class_only() -> None:
    with pytest.raises(ValueError, match="only one class"):
        roc_auc([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(ValueError, match="only one class"):
        binary_metrics([0, 0], [0.2, 0.5])


def test_log_loss_rejects_non_probabilities() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        log_loss([1, 0], [1.5, 0.2])
    with pytest.raises(ValueError, match="eps"):
        log_loss([1, 0], [0.5, 0.2], eps=0.7)


def test_non_numeric_input() -> None:
    with pytest.raises(ValueError, match="numbers"):
        rmse(["a", "b"], [1.0, 2.0])
