"""The named protocols, checked against independent re-readings of the GroupLens files."""

import csv
from pathlib import Path

import numpy as np
import pytest

from recengine.errors import ConfigError, DataError
from recengine.evaluation.protocols import build


def _pairs(fold_part) -> set[tuple[int, int]]:
    u = fold_part.users.to_external(fold_part.user)
    i = fold_part.items.to_external(fold_part.item)
    return set(zip(u.tolist(), i.tolist(), strict=True))


def _read_tab(path: Path) -> set[tuple[int, int]]:
    with open(path) as fh:
        return {(int(a), int(b)) for a, b, *_ in (line.split("\t") for line in fh)}


def test_ml100k_u_folds_match_grouplens_files(ml100k_dir):
    run = build("ml100k-u", ml100k_dir)
    assert [f.name for f in run.folds] == ["u1", "u2", "u3", "u4", "u5"]
    all_tests: set[tuple[int, int]] = set()
    for n, f in enumerate(run.folds, 1):
        assert (len(f.train), len(f.test)) == (80_000, 20_000)
        assert _pairs(f.test) == _read_tab(ml100k_dir / f"u{n}.test")
        assert _pairs(f.train) == _read_tab(ml100k_dir / f"u{n}.base")
        all_tests |= _pairs(f.test)
    assert len(all_tests) == 100_000  # the five test sets partition u.data


def test_ml100k_ua_and_binary(ml100k_dir):
    ua = build("ml100k-ua", ml100k_dir).folds[0]
    assert (len(ua.train), len(ua.test)) == (90_570, 9_430)
    assert np.all(np.bincount(ua.test.user) == 10)
    b = build("ml100k-ua-binary", ml100k_dir)
    assert b.task == "binary"
    bt = b.folds[0].test
    assert set(np.unique(bt.values()).tolist()) == {0.0, 1.0}
    assert np.array_equal(bt.values(), (ua.test.values() > 3).astype(np.float32))
    rated = b.folds[0].rated_train  # the training ratings stay beside the labels
    assert rated is not None and b.folds[0].label_threshold == 3.0
    np.testing.assert_array_equal(rated.values(), ua.train.values())
    np.testing.assert_array_equal(b.folds[0].train.values(), (rated.values() > 3).astype(np.float32))
    assert ua.rated_train is None and ua.label_threshold is None


def test_ml100k_ua_coldmovies_follows_its_recipe(ml100k_dir):
    """A literal reading of the definition: the movie ids of ua.base sorted, a seeded choice of 10 %,
    their rows out of training, only their rows in the test."""
    cold = build("ml100k-ua-coldmovies", ml100k_dir)
    assert cold.task == "rating" and [f.name for f in cold.folds] == ["ua-coldmovies"]
    base, test = _read_tab(ml100k_dir / "ua.base"), _read_tab(ml100k_dir / "ua.test")
    movies = np.array(sorted({i for _, i in base}))
    held = set(np.random.default_rng(0).choice(movies, size=round(0.1 * len(movies)), replace=False).tolist())
    assert len(held) == 168
    assert _pairs(cold.folds[0].train) == {(u, i) for u, i in base if i not in held}
    assert _pairs(cold.folds[0].test) == {(u, i) for u, i in test if i in held}
    assert len(cold.folds[0].test) == 782


def test_mlsmall_random_follows_the_recipe(mlsmall_dir):
    with open(mlsmall_dir / "ratings.csv") as fh:
        rows = [(int(r["userId"]), int(r["movieId"])) for r in csv.DictReader(fh)]
    n = len(rows)
    assert n == 100_836
    perm = np.random.default_rng(0).permutation(n)
    expected = {rows[j] for j in perm[: n // 10]}
    f = build("mlsmall-random", mlsmall_dir).folds[0]
    assert _pairs(f.test) == expected
    assert len(f.train) == n - n // 10


def _reference_topn(path: Path) -> tuple[set, set]:
    """PROTOCOLS.md's top-N hold-out written out literally, with dicts and loops."""
    with open(path / "ratings.csv") as fh:
        rows = [(int(r["userId"]), int(r["movieId"]), float(r["rating"])) for r in csv.DictReader(fh)]
    positives: dict[int, list[int]] = {}
    for u, i, r in rows:
        if r >= 4:
            positives.setdefault(u, []).append(i)
    kept = sorted(u for u, items in positives.items() if len(items) >= 5)
    rng = np.random.default_rng(0)
    test = set()
    for u in kept:
        items = np.array(sorted(positives[u]))
        order = rng.permutation(len(items))
        n_test = max(1, int(0.2 * len(items) + 0.5))
        test |= {(u, int(i)) for i in items[order[:n_test]]}
    kept_set = set(kept)
    train = {(u, i) for u, i, _ in rows if u in kept_set and (u, i) not in test}
    return train, test


def test_topn_mlsmall_matches_a_literal_reading(mlsmall_dir):
    f = build("topn-mlsmall", mlsmall_dir).folds[0]
    train, test = _reference_topn(mlsmall_dir)
    assert _pairs(f.test) == test
    assert _pairs(f.train) == train
    assert f.train.n_items == 9_724  # candidates: every item in the ratings file


def test_topn_ml100k_shape(ml100k_dir):
    run = build("topn-ml100k", ml100k_dir)
    f = run.folds[0]
    assert run.task == "topn"
    assert float(f.test.values().min()) >= 4
    n_test = np.bincount(f.test.user, minlength=f.test.n_users)
    n_train_pos = np.bincount(f.train.user[f.train.values() >= 4], minlength=f.train.n_users)
    kept = n_test > 0
    total = n_test[kept] + n_train_pos[kept]
    assert np.all(total >= 5)
    assert np.array_equal(n_test[kept], np.maximum(1, (0.2 * total + 0.5).astype(int)))


def test_unknown_protocol():
    with pytest.raises(ConfigError, match="unknown protocol 'ml100k-x'"):
        build("ml100k-x")


def test_a_protocol_refuses_another_data_set(ml100k_dir, mlsmall_dir, tmp_path):
    """Its figures would otherwise be filed under the data set the protocol names."""
    with pytest.raises(DataError, match=r"mlsmall-random is defined on ml-latest-small.*ml-100k layout"):
        build("mlsmall-random", ml100k_dir)
    with pytest.raises(DataError, match=r"topn-ml100k is defined on ml-100k.*ml-latest-small layout"):
        build("topn-ml100k", mlsmall_dir)
    own = tmp_path / "own.csv"
    own.write_text("user,item,rating\n1,10,4\n2,10,5\n")
    with pytest.raises(DataError, match=r"ml100k-ua is defined on ml-100k.*generic layout"):
        build("ml100k-ua", own)
