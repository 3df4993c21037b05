import numpy as np
import pytest

from recengine.data.interactions import Interactions
from recengine.errors import CapabilityError, ConfigError, DataError, UnknownIdError
from recengine.evaluation.metrics import rmse
from recengine.evaluation.protocols import build
from recengine.models.baselines import Bias, GlobalMean, Popularity, UserMean
from recengine.models.registry import create


def _small(seed=0):
    rng = np.random.default_rng(seed)
    key = rng.choice(20 * 15, size=120, replace=False)
    u, i = key // 15 + 1, key % 15 + 1
    r = np.clip(np.round(3 + 0.8 * rng.standard_normal(120)), 1, 5)
    return Interactions.from_arrays(u, i, r, np.arange(120))


def test_bias_equals_a_literal_als_loop():
    d = _small()
    m = Bias(reg_user=15, reg_item=10, epochs=10).fit(d)
    mu = d.rating.mean(dtype=np.float64)
    bu = np.zeros(d.n_users)
    bi = np.zeros(d.n_items)
    rows = list(zip(d.user.tolist(), d.item.tolist(), d.rating.tolist(), strict=True))
    for _ in range(10):
        for i in range(d.n_items):
            mine = [(u, r) for u, j, r in rows if j == i]
            bi[i] = sum(r - mu - bu[u] for u, r in mine) / (10 + len(mine))
        for u in range(d.n_users):
            mine = [(i, r) for v, i, r in rows if v == u]
            bu[u] = sum(r - mu - bi[i] for i, r in mine) / (15 + len(mine))
    np.testing.assert_allclose(m.bu, bu, atol=1e-10)
    np.testing.assert_allclose(m.bi, bi, atol=1e-10)


def test_user_mean_and_global_mean():
    d = _small()
    gm = GlobalMean().fit(d)
    assert np.allclose(gm.predict_internal([0, 1], [0, 1]), d.rating.mean())
    um = UserMean().fit(d)
    for u in range(3):
        assert um.predict_internal([u], [0])[0] == pytest.approx(d.rating[d.user == u].mean())


@pytest.fixture(scope="module")
def ua(ml100k_dir):
    return build("ml100k-ua", ml100k_dir).folds[0]


def test_quality_floors_on_ml100k_ua(ua):
    y = ua.test.rating
    got = {
        name: rmse(y, create(name).fit(ua.train).predict_internal(ua.test.user, ua.test.item))
        for name in ("global-mean", "user-mean", "bias")
    }
    # Seeded floors (the estimators are deterministic): bias < user mean < global mean.
    assert got["bias"] < 0.975
    assert got["user-mean"] < 1.06
    assert got["bias"] < got["user-mean"] < got["global-mean"]


def test_predictions_are_clipped_to_the_scale(ua):
    m = Bias(reg_user=0, reg_item=0).fit(ua.train)
    p = m.predict_internal(np.repeat(np.arange(50), 50), np.tile(np.arange(50), 50))
    assert p.min() >= 1 and p.max() <= 5


def test_recommend_filters_and_pads():
    d = _small()
    m = Popularity().fit(d)
    user = d.users.external[0]
    seen = set(d.items.external[d.item[d.user == 0]].tolist())
    ids, scores = m.recommend([user], k=5)
    assert ids.shape == (1, 5)
    assert not seen & set(ids[0].tolist())
    assert np.all(np.diff(scores[0]) <= 0)
    ids2, _ = m.recommend([user], k=3, exclude_items=[ids[0][0]])
    assert ids[0][0] not in ids2[0]
    allow = [x for x in d.items.external.tolist() if x not in seen][:2]
    ids3, s3 = m.recommend([user], k=5, items=allow)
    assert set(ids3[0][:2].tolist()) == set(allow) and np.all(ids3[0][2:] == -1) and np.isnan(s3[0][2:]).all()
    ids4, _ = m.recommend([user], k=100, exclude_seen=False)
    assert (ids4[0] >= 0).sum() == d.n_items  # k larger than the catalog: all items, then padding


def test_popularity_ranks_by_count():
    d = _small()
    m = Popularity().fit(d)
    counts = np.bincount(d.item, minlength=d.n_items)
    ids, _ = m.recommend([d.users.external[0]], k=1, exclude_seen=False)
    assert counts[d.items.to_internal(ids[0])[0]] == counts.max()


def test_errors_are_clear():
    d = _small()
    with pytest.raises(CapabilityError, match="does not predict ratings"):
        Popularity().fit(d).predict_internal([0], [0])
    with pytest.raises(ConfigError, match="unknown parameter 'lr'"):
        create("bias", {"lr": 0.1})
    with pytest.raises(ConfigError, match="reg_user"):
        create("bias", {"reg_user": -1})
    with pytest.raises(ConfigError, match="unknown model 'svd'"):
        create("svd")
    with pytest.raises(UnknownIdError, match="unknown user: 99999"):
        Bias().fit(d).recommend([99999])
    with pytest.raises(UnknownIdError, match="unknown item"):
        Bias().fit(d).predict([d.users.external[0]], [424242])


def test_fold_in_gives_the_shrunk_bias_of_a_new_user():
    d = _small()
    m = Bias(epochs=1).fit(d)
    items, ratings = np.array([0, 1, 2]), np.array([5.0, 4.0, 5.0])
    b = m.fold_in(d.items.external[items], ratings)[0]
    assert b == pytest.approx(((ratings - m.mu - m.bi[items]).sum()) / (m.params.reg_user + 3))
    assert b > 0
    ids, scores = m.recommend_new(d.items.external[items], ratings, k=4)
    assert not set(ids.tolist()) & set(d.items.external[items].tolist())
    assert np.all(np.diff(scores) <= 0)
    with pytest.raises(DataError, match="outside the model's scale"):
        m.fold_in(d.items.external[items], [9.0, 4.0, 5.0])
    with pytest.raises(CapabilityError, match="cannot serve a new user"):
        UserMean().fit(d).fold_in(d.items.external[items], ratings)
