import numpy as np
import pytest

from recengine.data.interactions import Interactions
from recengine.data.splits import kfold, leave_last_out, random_holdout, split, temporal
from recengine.errors import ConfigError, DataError


def _data(n_users=30, n_items=40, n=600, seed=1, with_ts=True):
    rng = np.random.default_rng(seed)
    key = rng.choice(n_users * n_items, size=n, replace=False)
    u, i = key // n_items + 1, key % n_items + 100
    r = rng.integers(1, 6, size=n).astype(float)
    ts = rng.integers(0, 10_000, size=n) if with_ts else None
    return Interactions.from_arrays(u, i, r, ts)


def _keys(x: Interactions) -> set[tuple[int, int]]:
    return set(zip(x.user.tolist(), x.item.tolist(), strict=True))


def test_random_holdout_partitions_rows_and_is_seeded():
    d = _data()
    f = random_holdout(d, 0.25, seed=3)
    assert len(f.test) == int(len(d) * 0.25)
    assert len(f.train) + len(f.test) == len(d)
    assert not _keys(f.train) & _keys(f.test)
    again = random_holdout(d, 0.25, seed=3)
    assert np.array_equal(again.test.user, f.test.user) and np.array_equal(again.test.item, f.test.item)
    other = random_holdout(d, 0.25, seed=4)
    assert _keys(other.test) != _keys(f.test)
    assert f.train.users is d.users and f.test.items is d.items  # one id space


def test_kfold_each_row_tested_once():
    d = _data()
    folds = kfold(d, 4, seed=0)
    assert len(folds) == 4
    tested = [k for f in folds for k in _keys(f.test)]
    assert len(tested) == len(d) and set(tested) == _keys(d)
    for f in folds:
        assert not _keys(f.train) & _keys(f.test)


def test_temporal_holds_out_each_users_latest_share():
    d = _data()
    f = temporal(d, 0.2)
    assert f.train.timestamp is not None and f.test.timestamp is not None
    for u in np.unique(d.user):
        tr_ts = f.train.timestamp[f.train.user == u]
        te_ts = f.test.timestamp[f.test.user == u]
        n_u = len(tr_ts) + len(te_ts)
        if n_u >= 2:
            assert len(te_ts) == min(n_u - 1, max(1, int(np.floor(n_u * 0.2 + 0.5))))
            assert te_ts.min() >= tr_ts.max()


def test_leave_last_out_one_latest_per_user():
    d = _data()
    f = leave_last_out(d)
    assert np.all(np.bincount(f.test.user) <= 1)
    assert f.train.timestamp is not None and f.test.timestamp is not None
    for u, t in zip(f.test.user, f.test.timestamp, strict=True):
        assert t >= f.train.timestamp[f.train.user == u].max()


def test_time_splits_need_timestamps():
    d = _data(with_ts=False)
    with pytest.raises(DataError, match="timestamps"):
        temporal(d)
    with pytest.raises(DataError, match="timestamps"):
        leave_last_out(d)


def test_bad_split_arguments():
    d = _data()
    with pytest.raises(ConfigError, match="unknown split"):
        split(d, "sideways")
    with pytest.raises(ConfigError, match="between 0 and 1"):
        random_holdout(d, 1.5)
    with pytest.raises(ConfigError, match="k >= 2"):
        kfold(d, 1)
