"""One conformance suite, run on every registered model: the Recommender contract, checked alike.

A model added to the registry is picked up here automatically; it only needs a small, fast
configuration in FAST_PARAMS (or runs with its defaults).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recengine.data.interactions import Interactions
from recengine.errors import CapabilityError, ConfigError, UnknownIdError
from recengine.models.base import Recommender
from recengine.models.registry import MODELS, create

#: Small configurations so the whole suite stays fast; keys must exist in the model's params.
FAST_PARAMS: dict[str, dict[str, Any]] = {
    "mf": {"factors": 8, "epochs": 60},
    "deep-mf": {"epochs": 40, "batch_size": 64},
    "neumf": {"epochs": 40, "batch_size": 64},
    "object2vec": {
        "epochs": 30,
        "batch_size": 32,
        "enc_dim": 16,
        "mlp_dim": 16,
        "enc0_token_embedding_dim": 16,
        "enc1_token_embedding_dim": 16,
        "lr": 0.01,
        "weight_decay": 0.0,
        "threads": 1,
        "members": 2,  # the suite runs through the ensemble that small data sets get by default
    },
}
#: Models that rank by non-personal signals (means, biases, counts) cannot find a checkerboard's
#: personal top item; that is their definition, not a failure.
NON_PERSONAL = {"global-mean", "user-mean", "bias", "popularity"}

NAMES = sorted(MODELS)
PERSONAL = [n for n in NAMES if n not in NON_PERSONAL]


def make(name: str) -> Recommender:
    cls = MODELS[name]
    params = {k: v for k, v in FAST_PARAMS.get(name, {}).items() if k in cls.ParamsModel.model_fields}
    return create(name, params)


def checkerboard() -> tuple[Interactions, dict[int, int]]:
    """Two taste groups of 12 users over 2 × 8 items: own-group items rated 5, other group's 1.

    Every user leaves one own-group item unrated (a different one per user within the group) and
    half of the other group's items unrated; that own-group item is the known top recommendation.
    """
    users, items, ratings = [], [], []
    top: dict[int, int] = {}
    for u in range(24):
        g = u // 12
        own = [g * 8 + j for j in range(8)]
        other = [(1 - g) * 8 + j for j in range(8)]
        held = own[u % 8]
        top[u + 1] = held + 100
        for i in own:
            if i != held:
                users.append(u + 1)
                items.append(i + 100)
                ratings.append(5.0)
        for i in other[(u % 2) :: 2]:
            users.append(u + 1)
            items.append(i + 100)
            ratings.append(1.0)
    d = Interactions.from_arrays(np.array(users), np.array(items), np.array(ratings), np.arange(len(users)))
    return d, top


@pytest.fixture(scope="module")
def board() -> tuple[Interactions, dict[int, int]]:
    return checkerboard()


@pytest.fixture(scope="module")
def fitted(board) -> dict[str, Recommender]:
    return {name: make(name).fit(board[0]) for name in NAMES}


@pytest.mark.parametrize("name", PERSONAL)
def test_checkerboard_known_top_item(name, fitted, board):
    m = fitted[name]
    _, top = board
    users = np.array(sorted(top))
    ids, _ = m.recommend(users, k=1)
    hits = np.mean([ids[n, 0] == top[u] for n, u in enumerate(users)])
    assert hits >= 0.9, f"{name} found the known top item for {hits:.0%} of users"


@pytest.mark.parametrize("name", NAMES)
def test_recommend_shapes_sorting_and_seen_filter(name, fitted, board):
    m = fitted[name]
    d, _ = board
    users = d.users.external[:5]
    ids, scores = m.recommend(users, k=4)
    assert ids.shape == (5, 4) and scores.shape == (5, 4)
    for n in range(len(users)):
        seen = set(d.items.external[d.item[d.user == n]].tolist())
        got = [i for i in ids[n].tolist() if i != -1]
        assert not seen & set(got)
        assert len(set(got)) == len(got)
        finite = scores[n][np.isfinite(scores[n])]
        assert np.all(np.diff(finite) <= 1e-6)


@pytest.mark.parametrize("name", [n for n in NAMES if MODELS[n].capabilities.rating])
def test_recommended_scores_are_the_predicted_ratings(name, fitted, board):
    """Ranked by raw score, shown as ``predict`` gives it: within the scale (the board's 5s push
    some models' raw scores past 5)."""
    m = fitted[name]
    d, _ = board
    users = d.users.external[:6]
    ids, scores = m.recommend(users, k=5, exclude_seen=False)
    for n, u in enumerate(users):
        np.testing.assert_allclose(scores[n], m.predict(np.repeat(u, 5), ids[n]), rtol=1e-5, atol=1e-5)
    assert m.scale is not None and scores.max() <= m.scale.high and scores.min() >= m.scale.low


@pytest.mark.parametrize("name", NAMES)
def test_k_larger_than_catalog_and_filters(name, fitted, board):
    m = fitted[name]
    d, _ = board
    u = d.users.external[0]
    ids, scores = m.recommend([u], k=100, exclude_seen=False)
    assert (ids[0] != -1).sum() == d.n_items and np.isnan(scores[0][d.n_items :]).all()
    allow = d.items.external[[0, 5, 9]]
    ids, _ = m.recommend([u], k=10, exclude_seen=False, items=allow)
    assert set(ids[0][ids[0] != -1].tolist()) == set(allow.tolist())
    block = d.items.external[:8]
    ids, _ = m.recommend([u], k=20, exclude_seen=False, exclude_items=block)
    assert not set(block.tolist()) & set(ids[0].tolist())


@pytest.mark.parametrize("name", NAMES)
def test_user_without_history(name):
    d, _ = checkerboard()
    # user 99 is in the id map (one row) but all of its rows are left out of training
    full = Interactions.from_arrays(
        np.concatenate([d.users.to_external(d.user), [99]]),
        np.concatenate([d.items.to_external(d.item), [100]]),
        np.concatenate([d.values(), [3.0]]),
    )
    train = full.subset(full.users.to_external(full.user) != 99)
    m = make(name).fit(train)
    ids, scores = m.recommend([99], k=3)
    assert ids.shape == (1, 3) and np.all(np.isfinite(scores))
    if m.capabilities.rating:
        p = m.predict([99], [101])
        assert np.isfinite(p).all()


@pytest.mark.parametrize("name", NAMES)
def test_non_finite_parameters_are_refused_by_name(name):
    """An infinite value would be written to config.json as null: a saved model that never loads."""
    fields = MODELS[name].ParamsModel.model_fields
    floats = [f for f, info in fields.items() if info.annotation in (float, float | None)]
    for field in floats:
        for bad in (float("inf"), float("nan"), "Infinity"):
            with pytest.raises(ConfigError, match=f"'{field}'.*finite"):
                create(name, {field: bad})


@pytest.mark.parametrize("name", NAMES)
def test_number_parameters_refuse_booleans(name):
    """``--set epochs=true`` would otherwise train one epoch."""
    fields = MODELS[name].ParamsModel.model_fields
    for field, info in fields.items():
        if info.annotation in (int, float, int | None, float | None):
            with pytest.raises(ConfigError, match=f"'{field}'.*expects a number, not true"):
                create(name, {field: True})


@pytest.mark.parametrize("name", [n for n in NAMES if "lr" in MODELS[n].ParamsModel.model_fields])
def test_learning_rates_are_bounded(name):
    with pytest.raises(ConfigError, match="'lr'"):
        create(name, {"lr": 1e308})  # torch's float32 step would overflow with a traceback


@pytest.mark.parametrize("name", NAMES)
def test_unknown_ids_are_clear_errors(name, fitted):
    m = fitted[name]
    with pytest.raises(UnknownIdError, match="unknown user"):
        m.recommend([123456], k=3)
    if m.capabilities.rating:
        with pytest.raises(UnknownIdError, match="unknown item"):
            m.predict([1], [987654])
    else:
        with pytest.raises(CapabilityError):
            m.predict([1], [100])


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_result(name, board, fitted):
    d, _ = board
    again = make(name).fit(d)
    users = d.users.external
    a = fitted[name].recommend(users, k=5, exclude_seen=False)
    b = again.recommend(users, k=5, exclude_seen=False)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, fitted, board, tmp_path: Path):
    artifacts = pytest.importorskip("recengine.artifacts")
    m = fitted[name]
    d, _ = board
    artifacts.save(m, tmp_path / "model")
    back = artifacts.load(tmp_path / "model")
    assert type(back) is type(m) and back.get_params() == m.get_params()
    users = d.users.external
    a, b = m.recommend(users, k=6), back.recommend(users, k=6)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    if m.capabilities.rating:
        u = d.users.to_external(d.user)
        i = d.items.to_external(d.item)
        np.testing.assert_array_equal(m.predict(u, i), back.predict(u, i))


@pytest.mark.parametrize("name", NAMES)
def test_similar_items_when_embeddings_exist(name, fitted, board):
    m = fitted[name]
    d, _ = board
    try:
        m.item_embeddings()
    except CapabilityError:
        with pytest.raises(CapabilityError):
            m.similar_items([100], k=3)
        return
    ids, sims = m.similar_items(d.items.external[:4], k=3)
    assert ids.shape == (4, 3)
    for n, item in enumerate(d.items.external[:4]):
        assert item not in ids[n]
        assert np.all(np.diff(sims[n]) <= 1e-6)
    if name not in NON_PERSONAL:  # items of one taste group are each other's neighbours
        group0 = d.items.external[:4] < 108
        same = [(ids[n] < 108).mean() if group0[n] else (ids[n] >= 108).mean() for n in range(4)]
        assert np.mean(same) >= 0.75


@pytest.mark.parametrize("name", NAMES)
def test_fold_in_new_user(name, fitted, board):
    m = fitted[name]
    history = np.array([100, 101, 102, 103, 110])
    ratings = np.array([5.0, 5.0, 5.0, 5.0, 1.0])
    if not m.capabilities.new_users:
        with pytest.raises(CapabilityError):
            m.recommend_new(history, ratings, k=3)
        return
    ids, scores = m.recommend_new(history, ratings, k=3)
    assert not set(history.tolist()) & set(ids.tolist())
    assert np.all(np.diff(scores) <= 1e-6)
    if name not in NON_PERSONAL:  # a group-0 fan gets group-0 items first
        assert np.all(ids < 108)
    with pytest.raises(UnknownIdError):
        m.recommend_new([424242], [5.0], k=3)
    with pytest.raises(ConfigError, match="give the history's ratings"):  # not silently 1-star
        m.recommend_new(history, None, k=3)
