"""neumf: learning, a quality floor on real data, the grid form, determinism, fold-in, state."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from recengine.data.interactions import Interactions
from recengine.errors import ConfigError
from recengine.evaluation.metrics import rmse
from recengine.evaluation.protocols import build
from recengine.models.baselines import Bias
from recengine.models.neumf import NeuMF
from recengine.models.registry import create
from tests.models.test_deep_mf import low_rank

TINY: dict[str, Any] = {"gmf_dim": 8, "mlp_embedding": 8, "hidden": [16, 8], "epochs": 30}
TINY.update(batch_size=64, threads=1)


@pytest.fixture(scope="module")
def data() -> tuple[Interactions, Interactions]:
    return low_rank()


@pytest.fixture(scope="module")
def fitted(data) -> NeuMF:
    return NeuMF(TINY).fit(data[0])


def test_learns_a_low_rank_pattern(fitted, data):
    train, test = data
    err = rmse(test.values(), fitted.predict_internal(test.user, test.item))
    base = rmse(test.values(), np.full(len(test), train.values().mean()))
    assert err < 0.55 < 1.2 < base, (err, base)


def test_quality_floor_on_ml100k_ua_beats_bias(ml100k_dir):
    fold = build("ml100k-ua", ml100k_dir).folds[0]
    params = {"gmf_dim": 16, "mlp_embedding": 16, "hidden": [32], "epochs": 6}
    params.update(patience=None, val_fraction=0.0, threads=1)
    m = NeuMF(params).fit(fold.train)
    y = fold.test.values()
    ours = rmse(y, m.predict_internal(fold.test.user, fold.test.item))
    bias = rmse(y, Bias().fit(fold.train).predict_internal(fold.test.user, fold.test.item))
    assert ours < bias - 0.005, (ours, bias)


@pytest.mark.parametrize("extra", [{}, {"biases": False, "dropout": 0.2, "hidden": [8]}])
def test_score_matches_predict_and_state_round_trip(data, extra):
    train, _ = data
    m = NeuMF({**TINY, "epochs": 3, **extra}).fit(train)
    users = np.arange(train.n_users)
    grid = m.score(users)
    uu, ii = np.repeat(users, train.n_items), np.tile(np.arange(train.n_items), train.n_users)
    np.testing.assert_allclose(grid, m._predict(uu, ii).reshape(grid.shape), rtol=1e-5, atol=1e-5)
    back = NeuMF(m.get_params()).restore(m.users, m.items, m.scale, m.seen(), m.state_arrays())
    np.testing.assert_array_equal(back.score(users), grid)
    np.testing.assert_array_equal(back.predict_internal(uu, ii), m.predict_internal(uu, ii))


def test_same_seed_same_predictions(data, fitted):
    train, test = data
    again = NeuMF(TINY).fit(train)
    np.testing.assert_array_equal(
        fitted.predict_internal(test.user, test.item), again.predict_internal(test.user, test.item)
    )


def test_fold_in_follows_the_history(fitted, data):
    train, _ = data
    items = train.items.external[[0, 2, 4, 1, 3]]
    vec = fitted.fold_in(items, [5.0, 5.0, 5.0, 1.0, 1.0])
    scores = fitted._score_folded(vec)
    assert scores[0::2].mean() > scores[1::2].mean() + 1.0
    u = 3
    rows = train.user == u
    vec_u = fitted.fold_in(train.items.external[train.item[rows]], train.values()[rows])
    corr = np.corrcoef(fitted._score_folded(vec_u), fitted.score([u])[0])[0, 1]
    assert corr > 0.9, corr


def test_embeddings_give_the_gmf_term(fitted, data):
    train, _ = data
    p, q = fitted.user_embeddings(), fitted.item_embeddings()
    assert p.shape == (train.n_users, 8) and q.shape == (train.n_items, 8)
    net = fitted.net
    assert net is not None
    with torch.inference_mode():
        u = net.user_emb.weight[:5, :8]
        i = net.item_emb.weight[:7, :8]
        gmf = (u[:, None, :] * i[None, :, :]) @ net.output.weight[0, :8]
    np.testing.assert_allclose(p[:5] @ q[:7].T, gmf.numpy(), rtol=1e-5, atol=1e-6)


def test_params_and_registry():
    assert type(create("neumf")) is NeuMF
    with pytest.raises(ConfigError, match="preset"):
        NeuMF(preset="seed-lab1")  # the seed preset belongs to deep-mf
    with pytest.raises(ConfigError, match="hidden"):
        NeuMF(hidden=[0])
