"""Object2Vec's session residuals: the window sums, the weights, what a model gains from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recengine.data.interactions import Interactions
from recengine.errors import ConfigError, DataError
from recengine.models.base import NO_TIME
from recengine.models.object2vec import Object2Vec
from recengine.models.object2vec.residuals import (
    SHRINK,
    SIMILAR_POWER,
    SIMILAR_SHRINK,
    Correction,
    ResidualTable,
    SimilarTable,
    cooccurrence_vectors,
)
from recengine.training.data import split_validation, validation_rows
from tests.models.test_object2vec_sessions import FAST, binary_timed_and_untimed, moods

WITH_VAL: dict[str, Any] = {**FAST, "val_fraction": 0.25, "patience": None}


# ----- the window sums ------------------------------------------------------------------------------
@pytest.mark.parametrize("past", [False, True])
def test_window_features_match_a_direct_sum(past: bool):
    rng = np.random.default_rng(0)
    users, times = rng.integers(0, 20, 2000), rng.integers(0, 50_000, 2000)
    resid = rng.normal(size=2000)
    table = ResidualTable.build(users, times, resid)
    qu, qt = rng.integers(0, 25, 500), rng.integers(-100, 50_100, 500)
    windows = (0, 30, 600)
    got, near = table.features(qu, qt, windows, past)
    for k in range(len(qu)):
        for j, w in enumerate(windows):
            inside = (users == qu[k]) & (times >= qt[k] - w) & (times <= qt[k] + (0 if past else w))
            assert got[k, j] == pytest.approx(resid[inside].sum() / (inside.sum() + SHRINK))
        assert near[k] == bool((inside).any())
    assert 0 < near.sum() < len(near)
    # Two kinds of residual: each its own windows, kind by kind.
    two = ResidualTable.build(users, times, np.column_stack([resid, 2 * resid])).features(
        qu, qt, windows, past
    )
    np.testing.assert_allclose(two[0], np.hstack([got, 2 * got]))


def test_rows_of_one_second_are_summed_into_one_entry():
    table = ResidualTable.build(
        np.array([1, 0, 1, 1]), np.array([50, 50, 50, 51]), np.array([1.0, 2.0, 3.0, 4.0])
    )
    np.testing.assert_array_equal(table.user, [0, 1, 1])
    np.testing.assert_array_equal(table.time, [50, 50, 51])
    np.testing.assert_array_equal(table.total, [[2.0], [4.0], [4.0]])
    np.testing.assert_array_equal(table.count, [1, 2, 1])
    got, near = table.features(np.array([1, 1, 2]), np.array([50, 52, 50]), (0, 1))
    want = np.array([[4 / (2 + SHRINK), 8 / (3 + SHRINK)], [0.0, 4 / (1 + SHRINK)], [0.0, 0.0]])
    np.testing.assert_allclose(got, want)
    np.testing.assert_array_equal(near, [True, True, False])
    # A model saved with one kind stored its totals 1-D: they still load.
    flat = ResidualTable.from_arrays({**table.arrays(), "total": table.total[:, 0]})
    np.testing.assert_allclose(flat.features(np.array([1, 1, 2]), np.array([50, 52, 50]), (0, 1))[0], want)


def test_times_at_the_ends_of_int64_saturate_instead_of_wrapping():
    lo, hi = -(2**63), 2**63 - 1
    table = ResidualTable.build(np.array([0, 0, 0]), np.array([lo, 0, hi]), np.array([1.0, 2.0, 4.0]))
    got, near = table.features(np.zeros(4, dtype=np.int64), np.array([lo, lo + 5, hi - 5, hi]), (10,))
    np.testing.assert_allclose(got[:, 0], np.array([1.0, 1.0, 4.0, 4.0]) / (1 + SHRINK))
    assert near.all()
    assert ResidualTable.build([], [], []).features(np.array([0]), np.array([0]), (5,))[1].tolist() == [False]


@pytest.mark.parametrize("past", [False, True])
def test_the_similar_feature_matches_a_direct_sum(past: bool):
    rng = np.random.default_rng(3)
    n = 3000
    users, times, items = rng.integers(0, 15, n), rng.integers(0, 20_000, n), rng.integers(0, 40, n)
    resid = rng.normal(size=n)
    vectors = rng.normal(size=(40, 5)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[7] = 0.0  # an item nobody rated
    table = SimilarTable.build(users, times, items, np.column_stack([resid, -resid]), vectors)
    qu, qt, qi = rng.integers(0, 18, 400), rng.integers(-50, 20_050, 400), rng.integers(-1, 45, 400)
    both = table.feature(qu, qi, qt, 300, past)
    np.testing.assert_allclose(both[:, 1], -both[:, 0])
    got = both[:, 0]
    for k in range(len(qu)):
        inside = (users == qu[k]) & (times >= qt[k] - 300) & (times <= qt[k] + (0 if past else 300))
        if not 0 <= qi[k] < 40:
            assert got[k] == 0.0
            continue
        w = np.maximum(vectors[items[inside]].astype(np.float64) @ vectors[qi[k]], 0) ** SIMILAR_POWER
        assert got[k] == pytest.approx(w @ resid[inside] / (w.sum() + SIMILAR_SHRINK), rel=1e-5, abs=1e-6)
    assert (got != 0).sum() > 100
    # The pairs are scored a chunk at a time: a small chunk gives the same.
    import recengine.models.object2vec.residuals as res

    old, res._PAIR_CHUNK = res._PAIR_CHUNK, 7
    try:
        np.testing.assert_allclose(table.feature(qu, qi, qt, 300, past), both, rtol=1e-6, atol=1e-9)
    finally:
        res._PAIR_CHUNK = old
    again = SimilarTable.from_arrays(table.arrays())
    np.testing.assert_array_equal(again.feature(qu, qi, qt, 300, past), both)
    with pytest.raises(DataError, match="name items without a vector"):
        SimilarTable.from_arrays({**table.arrays(), "vectors": vectors[:5]})
    with pytest.raises(DataError, match="lack their residual array"):
        SimilarTable.from_arrays({k: v for k, v in table.arrays().items() if k != "residual"})


@pytest.mark.parametrize("n_items", [30, 300])  # dense below, ARPACK above twice the dimension
def test_cooccurrence_vectors_tell_movies_rated_by_the_same_people_apart(n_items: int):
    """Two crowds, each rating its own half of the movies (and one from the other half): a movie's
    nearest movies are of its own half; one nobody rated is 0; reruns agree."""
    rng = np.random.default_rng(4)
    half = n_items // 2
    users, items = [], []
    for u in range(200):
        own = rng.choice(half, 10, replace=False) + (half if u % 2 else 0)
        other = rng.choice(half, 1) + (0 if u % 2 else half)
        users += [u] * 11
        items += [*own, *other]
    items_a = np.array(items)
    items_a[items_a == n_items - 1] = n_items - 2  # the last movie: nobody rated it
    v = cooccurrence_vectors(users, items_a, 200, n_items)
    assert v.shape == (n_items, min(32, n_items // 4)) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v[:-1], axis=1), 1.0, atol=1e-5)
    assert not v[-1].any()
    sim = v[:-1] @ v[:-1].T
    np.fill_diagonal(sim, -np.inf)
    nearest = np.argsort(-sim, axis=1)[:, :5]
    own_half = (nearest < half) == (np.arange(n_items - 1) < half)[:, None]
    assert own_half.mean() > 0.8, own_half.mean()  # by chance: 0.5
    np.testing.assert_array_equal(cooccurrence_vectors(users, items_a, 200, n_items), v)
    assert cooccurrence_vectors([0, 1], [0, 1], 2, 9).shape == (9, 0)  # too small to tell apart


@pytest.mark.parametrize(("n_users", "n_items", "dim"), [(100, 30, 16), (20, 100, 10), (100, 300, 8)])
def test_cooccurrence_vectors_are_the_top_singular_vectors_whichever_side_is_small(
    n_users: int, n_items: int, dim: int
):
    """The items' side (few items), the users' side (few users) and ARPACK give numpy's SVD."""
    rng = np.random.default_rng(5)
    m = rng.uniform(size=(n_users, n_items)) < 0.2
    users, items = np.nonzero(m)
    v = cooccurrence_vectors(users, items, n_users, n_items, dim)
    k = min(dim, min(n_users, n_items) // 4)
    want = np.linalg.svd(m.astype(np.float64), full_matrices=False)[2][:k].T
    norm = np.linalg.norm(want, axis=1, keepdims=True)
    want = np.divide(want, norm, out=np.zeros_like(want), where=norm > 1e-9)  # a movie nobody rated: 0
    assert v.shape == (n_items, k)
    np.testing.assert_allclose(v @ v.T, want @ want.T, atol=1e-4)  # signs aside


def test_the_validation_rows_are_the_loops_own():
    arrays = {"target": np.arange(1000.0), "user": np.arange(1000) % 7}
    train, val = split_validation(arrays, 0.1, 3)
    keep, held = validation_rows(1000, 0.1, 3)
    np.testing.assert_array_equal(train["target"], keep)
    np.testing.assert_array_equal(val["target"], held)
    assert len(held) == 100 and not np.isin(held, keep).any()


# ----- the weights ----------------------------------------------------------------------------------
def test_the_logistic_weights_are_recovered_and_round_trip():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.05, 0.95, 20_000)
    f = rng.normal(size=(20_000, 2))
    z = 0.8 * np.log(p / (1 - p)) + 1.5 * f[:, 0] - 0.5 * f[:, 1] + 0.2
    y = (rng.uniform(size=20_000) < 1 / (1 + np.exp(-z))).astype(np.float64)
    c = Correction.fit("logistic", (0, 600), p, f, y)
    np.testing.assert_allclose(c.weights, [0.8, 1.5, -0.5], atol=0.06)
    assert c.intercept == pytest.approx(0.2, abs=0.06)
    again = Correction.from_dict(c.as_dict())
    assert again == c
    out = c.apply(p[:5], f[:5])
    assert ((out > 0) & (out < 1)).all()
    with pytest.raises(DataError, match="do not fit their windows"):
        Correction.from_dict({**c.as_dict(), "windows": [0]})
    with pytest.raises(DataError, match="malformed"):
        Correction.from_dict({"kind": "logistic"})
    with pytest.raises(DataError, match="all have one label"):
        Correction.fit("logistic", (0,), p[:50], f[:50, :1], np.ones(50))
    similar = Correction.fit("logistic", (600,), p, f, y, similar=600)
    assert similar.similar == 600 and len(similar.weights) == 3
    assert Correction.from_dict(similar.as_dict()) == similar
    for bad in (None, 601, -1):
        with pytest.raises(DataError, match="do not fit their windows"):
            Correction.from_dict({**similar.as_dict(), "similar": bad})
    # A layout saved before the kinds and the similar window: one kind, no similar window.
    old = {k: v for k, v in c.as_dict().items() if k not in ("kinds", "similar")}
    assert Correction.from_dict(old) == c
    four = np.column_stack([f, rng.normal(size=(20_000, 2))])  # two kinds × (one window + similar)
    kinds = Correction.fit("logistic", (600,), p, four, y, similar=600, kinds=2)
    assert len(kinds.weights) == 5 and Correction.from_dict(kinds.as_dict()) == kinds
    with pytest.raises(DataError, match="do not fit their windows"):
        Correction.from_dict({**kinds.as_dict(), "kinds": 1})


def test_the_linear_weights_are_recovered():
    rng = np.random.default_rng(2)
    r = rng.uniform(1, 5, 5000)
    f = rng.normal(size=(5000, 1))
    y = 0.9 * r + 2.0 * f[:, 0] + 0.3 + rng.normal(scale=0.1, size=5000)
    c = Correction.fit("linear", (60,), r, f, y)
    np.testing.assert_allclose([*c.weights, c.intercept], [0.9, 2.0, 0.3], atol=0.02)


# ----- settings -------------------------------------------------------------------------------------
def test_the_setting_reads_a_comma_list_and_refuses_what_cannot_work():
    assert Object2Vec(session_residuals="0, 1,600").params.session_residuals == [0, 1, 600]
    assert Object2Vec(session_residuals="none").params.session_residuals is None
    assert Object2Vec(session_residuals=600).params.session_residuals == [600]  # --set reads JSON
    for bad in ("0,0", "-1", "1,2,3,4,5,6,7,8,9"):
        with pytest.raises(ConfigError, match="1 to 8 distinct windows"):
            Object2Vec(session_residuals=bad)
    for other in ({"negative_sampling_rate": 2}, {"refit": True}, {"val_fraction": 0.0}):
        with pytest.raises(ConfigError, match="early-stopping rows"):
            Object2Vec(session_residuals=[0], **other)


def test_session_residuals_need_timestamps_and_interactions(tmp_path: Path):
    data = Interactions.from_arrays(np.array([0, 1]), np.array([0, 1]), np.array([4.0, 2.0]))
    with pytest.raises(DataError, match="session_residuals needs the time of each rating"):
        Object2Vec(WITH_VAL, session_residuals=[0]).fit(data)
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        "".join(f'{{"in0": [{u}], "in1": [{i}], "label": {u % 2}}}\n' for u in range(4) for i in range(3))
    )
    with pytest.raises(ConfigError, match=r"session_residuals needs the time.*JSON Lines pairs have none"):
        Object2Vec(WITH_VAL, session_residuals=[0]).fit_pairs(path)


def test_too_few_held_rows_near_their_users_rows_are_refused_before_training(monkeypatch):
    import recengine.models.object2vec.model as o2v

    def trained(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a network trained before the rows were checked")

    monkeypatch.setattr(o2v, "train_members", trained)
    train, _ = moods()
    with pytest.raises(DataError, match=r"too few to weigh 1 residual feature\(s\) on; raise val_fraction"):
        Object2Vec(WITH_VAL, val_fraction=0.01, session_residuals=[0]).fit(train)


def test_the_windows_are_not_part_of_what_a_resumed_fit_must_share():
    """They are weighed after the networks train: a resumed fit may weigh other windows."""
    m = Object2Vec(
        WITH_VAL, session_residuals=[0, 600], session_residuals_past=True, session_residuals_similar=600
    )
    assert "session_gap" in m.model_settings()
    later = {"session_residuals", "session_residuals_past", "session_residuals_similar"}
    assert not later & set(m.model_settings())
    with pytest.raises(ConfigError, match="set session_residuals too"):
        Object2Vec(session_residuals_past=True)
    for bad in ({}, {"session_residuals": [0, 60]}):
        with pytest.raises(ConfigError, match="a window of at least 600 s too"):
            Object2Vec(session_residuals_similar=600, **bad)
    with pytest.raises(ConfigError, match="session_residuals_similar"):
        Object2Vec(session_residuals=[600], session_residuals_similar=-1)


# ----- what a model gains ---------------------------------------------------------------------------
def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def test_a_sittings_level_is_read_from_the_models_own_misses():
    """Users rate whole sittings up or down (``moods``): the model alone cannot know a held-out
    rating, the residuals of the rest of its sitting tell it."""
    train, test = moods()
    assert test.timestamp is not None
    m = Object2Vec(WITH_VAL, session_residuals=[0, 600]).fit(train)
    info = m.history["object2vec"]["session_residuals"]
    assert info["kind"] == "linear" and info["fit_rmse"][1] < info["fit_rmse"][0]
    assert m.reads_time
    timed = m.predict_internal(test.user, test.item, test.timestamp)
    untimed = m.predict_internal(test.user, test.item)
    assert _rmse(timed, test.values()) < 1.0 < 1.5 < _rmse(untimed, test.values())
    # No time, or a time far from every training row of the user: the model's own output.
    np.testing.assert_array_equal(m.predict_internal(test.user, test.item, test.timestamp + 10**7), untimed)
    mixed = test.timestamp.copy()
    mixed[::2] = NO_TIME
    got = m.predict_internal(test.user, test.item, mixed)
    np.testing.assert_array_equal(got[::2], untimed[::2])
    np.testing.assert_array_equal(got[1::2], timed[1::2])


def test_past_windows_read_only_the_rows_before_the_query():
    """With ``session_residuals_past`` a query reads its user's rows up to its own time: moods' held
    rows open their sittings, so at their own time there is nothing to read, and after the sitting
    (70 s on) every training row of it is read."""
    train, test = moods()
    assert test.timestamp is not None
    m = Object2Vec(WITH_VAL, session_residuals=[0, 600], session_residuals_past=True).fit(train)
    assert m.residuals is not None and m.residuals[1].past
    untimed = m.predict_internal(test.user, test.item)
    np.testing.assert_array_equal(m.predict_internal(test.user, test.item, test.timestamp), untimed)
    late = m.predict_internal(test.user, test.item, test.timestamp + 70)
    assert _rmse(late, test.values()) < 1.0 < 1.5 < _rmse(untimed, test.values())
    c = Object2Vec(**m.get_params())
    c.restore(m.users, m.items, m.scale, m.seen(), m.state_arrays(), m.history)
    np.testing.assert_array_equal(c.predict_internal(test.user, test.item, test.timestamp + 70), late)


def test_a_probability_is_corrected_on_the_logit_scale():
    train, test = moods()
    classes = {"output_layer": "softmax", "num_classes": 5, "label_threshold": 3, "rating_classes": True}
    m = Object2Vec(WITH_VAL, **classes, session_residuals=[0, 600]).fit(train)
    info = m.history["object2vec"]["session_residuals"]
    assert info["kind"] == "logistic"
    assert info["kinds"] == 2 and len(info["weights"]) == 5  # the label's and the stars' residuals
    p = m.predict_internal(test.user, test.item, test.timestamp)
    assert ((p > 0) & (p < 1)).all()
    liked = test.values() > 3
    assert np.mean((p > 0.5) == liked) > 0.9
    assert np.mean((m.predict_internal(test.user, test.item) > 0.5) == liked) < 0.75


def test_a_probability_from_a_squared_error_head_stays_a_probability():
    """``label_threshold`` with the squared-error head predicts P(label = 1) too: corrected on the
    logit scale, never pushed to exactly 0 or 1 (which would cost log loss without bound)."""
    train, test = moods()
    m = Object2Vec(WITH_VAL, label_threshold=3, session_residuals=[0, 600]).fit(train)
    assert m.history["object2vec"]["session_residuals"]["kind"] == "logistic"
    p = m.predict_internal(test.user, test.item, test.timestamp)
    assert ((p > 0) & (p < 1)).all() and np.mean((p > 0.5) == (test.values() > 3)) > 0.9


def test_session_residuals_round_trip_and_agree_across_worker_processes():
    train, test = moods()
    params = {**WITH_VAL, "epochs": 4, "members": 2, "session_residuals": [0, 600], "session_gap": 60}
    m = Object2Vec(params, member_processes=1).fit(train)
    side = Object2Vec(params, member_processes=2).fit(train)
    want = m.predict_internal(test.user, test.item, test.timestamp)
    np.testing.assert_array_equal(side.predict_internal(test.user, test.item, test.timestamp), want)
    c = Object2Vec(**m.get_params())
    c.restore(m.users, m.items, m.scale, m.seen(), m.state_arrays(), m.history)
    np.testing.assert_array_equal(c.predict_internal(test.user, test.item, test.timestamp), want)
    arrays = m.state_arrays()
    assert all(f"object2vec.residuals.{k}" in arrays for k in ("user", "time", "total", "count"))
    arrays.pop("object2vec.residuals.total")
    with pytest.raises(DataError, match="residuals lack their total array"):
        Object2Vec(**m.get_params()).restore(m.users, m.items, m.scale, m.seen(), arrays, m.history)
    arrays = {k: v for k, v in m.state_arrays().items() if not k.startswith("object2vec.residuals.")}
    with pytest.raises(DataError, match="names session residuals but lacks their arrays"):
        Object2Vec(**m.get_params()).restore(m.users, m.items, m.scale, m.seen(), arrays, m.history)


def kinds_moods(seed: int = 0) -> tuple[Interactions, Interactions]:
    """Sittings that like one kind of movie and dislike the other: movies 0–19 and 20–39 are two
    kinds (a crowd of fans watches each kind alone, always rating 3); each mixed user's sitting rates
    six of each kind, one kind 5 and the other 1, and two of its rows are held out. The
    sitting's mean residual is 0; its residual on movies of the query's kind tells the rating."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[int, int, float, int, bool]] = []  # user, item, rating, time, held out
    for u in range(40):  # the fans
        for i in rng.permutation(20)[:12] + (20 if u % 2 else 0):
            rows.append((u, int(i), 3.0, 10 * len(rows), False))
    for u in range(40, 70):
        kinds = (rng.permutation(20)[:18].reshape(3, 6), rng.permutation(20)[:18].reshape(3, 6) + 20)
        for k in range(3):
            liked = rng.integers(2)
            start = 5_000_000 + 86_400 * k
            for j in range(12):
                kind = j % 2
                rating = 5.0 if kind == liked else 1.0
                rows.append((u, int(kinds[kind][k][j // 2]), rating, start + 10 * j, j < 2))
    users, items, ratings, times, held = (np.array(c) for c in zip(*rows, strict=True))
    data = Interactions.from_arrays(users, items, ratings, timestamps=times)
    return data.subset(~held), data.subset(held)


def test_the_similar_residuals_read_a_sittings_level_per_kind_of_movie():
    train, test = kinds_moods()
    assert test.timestamp is not None
    plain = Object2Vec(WITH_VAL, session_residuals=[0, 600]).fit(train)
    kinds = Object2Vec(WITH_VAL, session_residuals=[0, 600], session_residuals_similar=600).fit(train)
    info = kinds.history["object2vec"]["session_residuals"]
    assert info["similar"] == 600 and len(info["weights"]) == 4 and info["weights"][-1] > 0.5
    err = {
        name: _rmse(m.predict_internal(test.user, test.item, test.timestamp), test.values())
        for name, m in (("plain", plain), ("kinds", kinds))
    }
    untimed = _rmse(kinds.predict_internal(test.user, test.item), test.values())
    assert err["kinds"] < 1.4 < 1.6 < min(err["plain"], untimed), (err, untimed)
    c = Object2Vec(**kinds.get_params())
    c.restore(kinds.users, kinds.items, kinds.scale, kinds.seen(), kinds.state_arrays(), kinds.history)
    np.testing.assert_array_equal(
        c.predict_internal(test.user, test.item, test.timestamp),
        kinds.predict_internal(test.user, test.item, test.timestamp),
    )
    # A batch without any time, and an empty one: the model's own output.
    untimed_rows = np.full(len(test), NO_TIME, dtype=np.int64)
    np.testing.assert_array_equal(
        kinds.predict_internal(test.user, test.item, untimed_rows),
        kinds.predict_internal(test.user, test.item),
    )
    none = np.zeros(0, dtype=np.int64)
    assert kinds.predict_internal(none, none, none).shape == (0,)
    arrays = kinds.state_arrays()
    arrays["object2vec.residuals.total"] = np.column_stack([arrays["object2vec.residuals.total"]] * 2)
    with pytest.raises(DataError, match=r"residuals of \[1, 2\] kind\(s\), its weights are for 1"):
        Object2Vec(**kinds.get_params()).restore(
            kinds.users, kinds.items, kinds.scale, kinds.seen(), arrays, kinds.history
        )
    arrays = {k: v for k, v in kinds.state_arrays().items() if "residuals_similar" not in k}
    with pytest.raises(DataError, match="names similar session residuals but lacks their arrays"):
        Object2Vec(**kinds.get_params()).restore(
            kinds.users, kinds.items, kinds.scale, kinds.seen(), arrays, kinds.history
        )


# ----- real data --------------------------------------------------------------------------------------
def test_session_residuals_raise_the_binary_accuracy_on_ml100k_ua(ml100k_dir: Path):
    """Five rating classes, weighed on the network's own early-stopping rows of ua.base (with the
    similarity-weighted window too), through the runner (which passes each test row's time): better
    than the same network asked without the times, on every binary metric."""
    extra = {"val_fraction": 0.05, "session_residuals": [0, 1, 600], "session_residuals_similar": 600}
    res, timed, untimed = binary_timed_and_untimed(ml100k_dir, extra)
    assert res["accuracy"] == pytest.approx(timed["accuracy"])
    assert timed["accuracy"] > untimed["accuracy"] + 0.008, (timed, untimed)
    assert timed["auc"] > untimed["auc"] + 0.008 and timed["log_loss"] < untimed["log_loss"] - 0.008
    assert timed["accuracy"] > 0.71 and timed["auc"] > 0.78, timed
