"""deep-mf: learning, the seed preset, both heads, gradient checks, determinism, fold-in, state."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from recengine.data.interactions import Interactions
from recengine.errors import ConfigError
from recengine.evaluation.metrics import rmse
from recengine.evaluation.protocols import build
from recengine.models._torch_nets import (
    argmax_rating,
    class_values,
    expected_rating,
    rating_loss,
    split_linear,
)
from recengine.models.baselines import Bias
from recengine.models.deep_mf import SEED_LAB1, DeepMF
from recengine.models.registry import create

TINY: dict[str, Any] = {"user_embedding": 8, "item_embedding": 8, "hidden": [16], "epochs": 30}
TINY.update(batch_size=64, threads=1, patience=None)  # no early stop in a plateau of tiny data


def low_rank(seed: int = 0, half_stars: bool = False) -> tuple[Interactions, Interactions]:
    """80 users × 40 items in two taste groups with a rank-2 signal; 70 % of cells observed.

    Returns (train, test) over one id space; ratings on 1–5 (or 0.5–5 in halves).
    """
    rng = np.random.default_rng(seed)
    nu, ni = 80, 40
    gu, gi = np.arange(nu) % 2, np.arange(ni) % 2
    taste = rng.uniform(0.5, 1.0, nu)
    r = 3.0 + 1.8 * np.where(gu[:, None] == gi[None, :], 1.0, -1.0) * taste[:, None]
    r += 0.3 * rng.standard_normal((nu, ni))
    step = 0.5 if half_stars else 1.0
    low = 0.5 if half_stars else 1.0
    r = np.clip(np.round(r / step) * step, low, 5.0)
    u, i = np.divmod(np.arange(nu * ni), ni)
    d = Interactions.from_arrays(u + 1, i + 1, r.reshape(-1), np.arange(nu * ni))
    test = rng.random(len(d)) < 0.3
    return d.subset(~test), d.subset(test)


@pytest.fixture(scope="module")
def data() -> tuple[Interactions, Interactions]:
    return low_rank()


@pytest.fixture(scope="module")
def fitted(data) -> DeepMF:
    return DeepMF(TINY).fit(data[0])


def test_learns_a_low_rank_pattern(fitted, data):
    train, test = data
    err = rmse(test.values(), fitted.predict_internal(test.user, test.item))
    base = rmse(test.values(), np.full(len(test), train.values().mean()))
    assert err < 0.55 < 1.2 < base, (err, base)
    assert fitted.history["best_epoch"] >= 1 and fitted.history["history"]


def test_quality_floor_on_ml100k_ua_beats_bias(ml100k_dir):
    """A small, fast configuration still beats the bias baseline on the real ua fold."""
    fold = build("ml100k-ua", ml100k_dir).folds[0]
    params = {"user_embedding": 16, "item_embedding": 16, "hidden": [32], "epochs": 6}
    params.update(patience=None, val_fraction=0.0, threads=1)
    m = DeepMF(params).fit(fold.train)
    y = fold.test.values()
    ours = rmse(y, m.predict_internal(fold.test.user, fold.test.item))
    bias = rmse(y, Bias().fit(fold.train).predict_internal(fold.test.user, fold.test.item))
    assert ours < bias - 0.005, (ours, bias)


def test_preset_fills_values_and_explicit_params_win():
    m = DeepMF(preset="seed-lab1")
    for key, value in SEED_LAB1.items():
        assert getattr(m.params, key) == value, key
    m = DeepMF(preset="seed-lab1", epochs=2, user_embedding=7)
    assert m.params.epochs == 2 and m.params.user_embedding == 7 and m.params.item_embedding == 25
    assert DeepMF().params.batch_size != 25_000  # without the preset our own defaults hold
    again = DeepMF(m.get_params())  # a saved config round-trips, preset name included
    assert again.get_params() == m.get_params()
    with pytest.raises(ConfigError, match="unknown preset 'seed-lab9'"):
        DeepMF(preset="seed-lab9")
    with pytest.raises(ConfigError, match="unknown parameter 'hiddden'"):
        DeepMF(hiddden=[3])
    with pytest.raises(ConfigError, match="hidden"):
        DeepMF(hidden=[])


def test_seed_preset_trains_on_everything_for_five_epochs(data):
    m = DeepMF(preset="seed-lab1", batch_size=256, threads=1).fit(data[0])
    h = m.history
    assert len(h["history"]) == 5 and h["val_rows"] == 0 and h["stopped"] == "completed"


def test_classifier_head_expected_and_argmax():
    train, test = low_rank(1, half_stars=True)
    params = {**TINY, "head": "classifier", "epochs": 40, "lr": 0.05}  # 0.02 idles on this tiny set
    expected = DeepMF(params).fit(train)
    argmax = DeepMF({**params, "classifier_predict": "argmax"}).fit(train)
    y = test.values()
    base = rmse(y, np.full(len(y), train.values().mean()))
    e = rmse(y, expected.predict_internal(test.user, test.item))
    a_pred = argmax.predict_internal(test.user, test.item)
    a = rmse(y, a_pred)
    assert e < 0.6 and a < 0.75 and base > 1.2, (e, a, base)
    assert np.allclose(a_pred * 2, np.round(a_pred * 2))  # arg-max lands on the half-star grid
    assert expected.net is not None and expected.net.out_dim == 10  # 0.5 .. 5 in halves


def test_classifier_needs_a_rating_step():
    d = Interactions.from_arrays([1, 2, 3], [1, 2, 1], [1.3, 2.7, 4.1], scale=None)
    with pytest.raises(Exception, match="step"):
        DeepMF(head="classifier", epochs=1).fit(d)


# ----- gradient checks (float64) ---------------------------------------------------------------


def test_gradcheck_expected_rating():
    torch.manual_seed(0)
    logits = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    values = torch.tensor(class_values(Bias().fit(low_rank()[0]).scale), dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: expected_rating(x, values), (logits,))
    probs = torch.softmax(logits, -1)
    assert torch.allclose(expected_rating(logits, values), (probs * values).sum(-1))
    assert torch.equal(argmax_rating(logits, values), values[logits.argmax(-1)])


@pytest.mark.parametrize("head", ["regression", "classifier"])
def test_gradcheck_rating_loss_with_embedding_penalty(head):
    torch.manual_seed(1)
    dt = torch.float64
    out_dim = 1 if head == "regression" else 4
    out = torch.randn(5, out_dim, dtype=dt, requires_grad=True)
    u = torch.randn(5, 3, dtype=dt, requires_grad=True)
    i = torch.randn(5, 2, dtype=dt, requires_grad=True)
    target = torch.rand(5, dtype=dt) * 4 + 1
    label = torch.randint(0, 4, (5,)) if head == "classifier" else None
    assert torch.autograd.gradcheck(lambda o, a, b: rating_loss(o, target, label, a, b, 0.3), (out, u, i))
    if label is None:  # the value itself: MSE + reg × mean squared norms
        want = ((out[:, 0] - target) ** 2).mean() + 0.3 * (u.pow(2).sum(1) + i.pow(2).sum(1)).mean()
        assert torch.allclose(rating_loss(out, target, None, u, i, 0.3), want)


def test_gradcheck_split_linear_matches_the_concatenation():
    torch.manual_seed(2)
    layer = torch.nn.Linear(5, 4).double()
    u = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    i = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    grid = split_linear(layer, u, i)
    pairs = layer(torch.cat([u.repeat_interleave(6, 0), i.repeat(3, 1)], dim=1)).reshape(3, 6, 4)
    assert torch.allclose(grid, pairs)
    assert torch.autograd.gradcheck(lambda a, b: split_linear(layer, a, b), (u, i))


# ----- inference, determinism, fold-in, state ---------------------------------------------------


@pytest.mark.parametrize("extra", [{}, {"batch_norm": True, "dropout": 0.1}, {"head": "classifier"}])
def test_score_matches_predict_and_state_round_trip(data, extra):
    train, _ = data
    m = DeepMF({**TINY, "epochs": 3, **extra}).fit(train)
    users = np.arange(train.n_users)
    grid = m.score(users)
    uu, ii = np.repeat(users, train.n_items), np.tile(np.arange(train.n_items), train.n_users)
    raw = m._predict(uu, ii).reshape(grid.shape)  # unclipped, like score
    np.testing.assert_allclose(grid, raw, rtol=1e-5, atol=1e-5)
    back = DeepMF(m.get_params()).restore(m.users, m.items, m.scale, m.seen(), m.state_arrays())
    np.testing.assert_array_equal(back.score(users), grid)
    np.testing.assert_array_equal(back.predict_internal(uu, ii), m.predict_internal(uu, ii))


def test_same_seed_same_predictions_other_seed_differs(data, fitted):
    train, test = data
    again = DeepMF(TINY).fit(train)
    other = DeepMF({**TINY, "seed": 1}).fit(train)
    p = fitted.predict_internal(test.user, test.item)
    np.testing.assert_array_equal(p, again.predict_internal(test.user, test.item))
    assert not np.array_equal(p, other.predict_internal(test.user, test.item))


def test_fold_in_follows_the_history(fitted, data):
    train, _ = data
    # a fan of even items (group 0 in internal order: external ids 1, 3, 5, ...)
    items = train.items.external[[0, 2, 4, 1, 3]]
    vec = fitted.fold_in(items, [5.0, 5.0, 5.0, 1.0, 1.0])
    assert np.array_equal(vec, fitted.fold_in(items, [5.0, 5.0, 5.0, 1.0, 1.0]))  # deterministic
    scores = fitted._score_folded(vec)
    even, odd = scores[0::2].mean(), scores[1::2].mean()
    assert even > odd + 1.0, (even, odd)
    # a trained user's own ratings give scores close to that user's trained ones
    u = 0
    rows = train.user == u
    vec_u = fitted.fold_in(train.items.external[train.item[rows]], train.values()[rows])
    corr = np.corrcoef(fitted._score_folded(vec_u), fitted.score([u])[0])[0, 1]
    assert corr > 0.9, corr
    prior = fitted.fold_in([], [])
    assert prior.shape == vec.shape and np.isfinite(prior).all()


def test_genres_need_features_and_are_kept_in_the_state(data):
    train, test = data
    with pytest.raises(ConfigError, match="set_item_features"):
        DeepMF({**TINY, "genres": True, "epochs": 1}).fit(train)
    m = DeepMF({**TINY, "genres": True, "epochs": 3})
    with pytest.raises(TypeError, match="give each item's genres as a list"):
        m.set_item_features([1], ["Drama"])  # read as a sequence it would be five one-letter genres
    ext = train.items.external
    m.set_item_features(
        np.append(ext, 999), [["Even"] if k % 2 == 0 else ["Odd", "X"] for k in range(len(ext) + 1)]
    )
    m.fit(train)
    genres = m.state_arrays()["item_genres"]
    assert genres.shape == (train.n_items, 3)
    np.testing.assert_allclose(genres.sum(axis=1), 1.0)
    assert m.item_embeddings().shape == (train.n_items, 8 + m.params.genre_embedding)
    back = DeepMF(m.get_params()).restore(m.users, m.items, m.scale, m.seen(), m.state_arrays())
    np.testing.assert_array_equal(
        back.predict_internal(test.user, test.item), m.predict_internal(test.user, test.item)
    )


def test_embeddings_and_registry(fitted, data):
    train, _ = data
    assert fitted.user_embeddings().shape == (train.n_users, 8)
    assert fitted.item_embeddings().shape == (train.n_items, 8)
    assert type(create("deep-mf", {"preset": "seed-lab1"})) is DeepMF
    assert DeepMF.capabilities.new_users and DeepMF.capabilities.topn


def test_default_batch_follows_the_data_size(data, fitted):
    assert DeepMF().params.batch_size == 0  # auto: 1,024 here, more on millions of rows
    auto = DeepMF({**TINY, "batch_size": 0, "epochs": 1}).fit(data[0])
    assert auto.history["batch_size"] == 1024 and fitted.history["batch_size"] == 64
