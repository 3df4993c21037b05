"""Object2Vec's rating sessions: how they are found, how a query finds its own, what they learn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from recengine.data.interactions import Interactions
from recengine.data.pairs import interactions_to_pairs
from recengine.errors import ConfigError, DataError
from recengine.models.baselines import Bias
from recengine.models.object2vec import Object2Vec
from recengine.models.object2vec.data import training_arrays
from recengine.models.object2vec.sessions import Sessions

FAST: dict[str, Any] = {
    "threads": 1,
    "epochs": 40,
    "batch_size": 64,
    "enc_dim": 16,
    "mlp_dim": 16,
    "token_embedding_dim": 16,
    "val_fraction": 0.0,
    "members": 1,
    "lr": 0.01,
}


# ----- finding sessions ----------------------------------------------------------------------------
def test_sessions_split_a_users_ratings_where_the_gap_exceeds_the_setting():
    users = np.array([1, 0, 0, 1, 0, 0, 1])
    times = np.array([500, 100, 100, 520, 160, 400, 10_000])
    s, ids = Sessions.fit(users, times, gap=60)
    # user 0: 100, 100, 160 | 400; user 1: 500, 520 | 10000 — numbered in (user, time) order
    np.testing.assert_array_equal(ids, [3, 1, 1, 3, 1, 2, 4])
    np.testing.assert_array_equal(s.user, [0, 0, 1, 1])
    np.testing.assert_array_equal(s.start, [100, 400, 500, 10_000])
    np.testing.assert_array_equal(s.end, [160, 400, 520, 10_000])
    assert s.rows == 5
    _, same_second = Sessions.fit(users, times, gap=0)
    assert same_second[1] == same_second[2] and len(set(same_second.tolist())) == 6


def test_a_query_reads_the_session_its_time_falls_in():
    s, _ = Sessions.fit(np.array([0, 0, 0, 1]), np.array([100, 160, 400, 500]), gap=60)
    got = s.lookup(
        np.array([0, 0, 0, 0, 0, 0, 1, 1, 2]),
        np.array([130, 40, 220, 221, 300, 460, 500, 561, 100]),
    )
    # inside; 60 s before the start; 60 s after the end; 61 s after; between (none); near the 2nd;
    # user 1 inside and beyond; a user without sessions
    np.testing.assert_array_equal(got, [1, 1, 1, 0, 0, 2, 3, 0, 0])
    np.testing.assert_array_equal(s.lookup(np.array([0, 1]), None), [0, 0])
    with pytest.raises(DataError, match="2 timestamps were given for 3 queries"):
        s.lookup(np.array([0, 0, 1]), np.array([1, 2]))


def test_both_ways_of_looking_up_agree():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 50, 3000)
    times = rng.integers(0, 200_000, 3000)
    s, _ = Sessions.fit(users, times, gap=300)
    qu, qt = rng.integers(0, 60, 5000), rng.integers(-1000, 201_000, 5000)
    fast = s.lookup(qu, qt)
    slow = s._lookup_each(qu, qt, np.ones(len(qu), dtype=bool))
    np.testing.assert_array_equal(fast, slow)
    assert 0 < np.count_nonzero(fast) < len(fast)
    # A training row's own time finds its own session.
    _, ids = Sessions.fit(users, times, gap=300)
    np.testing.assert_array_equal(s.lookup(users, times), ids)


@pytest.mark.parametrize(
    "times",
    [[-5, 2**63 - 1], [2**63 - 6, 2**63 - 2], [-(2**63) + 5, -(2**63) + 10], [-(2**63), 2**63 - 1]],
)
def test_times_at_the_ends_of_int64_neither_wrap_nor_fail(times):
    s, ids = Sessions.fit(np.array([0, 0]), np.array(times), gap=60)
    apart = times[1] - times[0] > 60  # exact in Python
    np.testing.assert_array_equal(ids, [1, 2] if apart else [1, 1])
    np.testing.assert_array_equal(s.lookup(np.array([0, 0]), np.array(times)), ids)  # its own session
    far = [-(2**63), -(2**63) + 70, 2**63 - 70, 2**63 - 1]
    spans = [(int(a) - 60, int(b) + 60) for a, b in zip(s.start, s.end, strict=True)]  # exact
    want = [max((k + 1 for k, (a, b) in enumerate(spans) if a <= t <= b), default=0) for t in far]
    np.testing.assert_array_equal(s.lookup(np.zeros(4, dtype=np.int64), np.array(far)), want)


def test_sessions_need_timestamps_and_interactions():
    data = Interactions.from_arrays(np.array([0, 1]), np.array([0, 1]), np.array([4.0, 2.0]))
    with pytest.raises(DataError, match="session_gap needs the time of each rating"):
        Object2Vec(FAST, session_gap=0).fit(data)
    with pytest.raises(ConfigError, match=r"'session_gap'.*greater than or equal to 0"):
        Object2Vec(session_gap=-1)
    with pytest.raises(ConfigError, match="session_gap adds a bias per session: it needs bias_terms"):
        Object2Vec(session_gap=0, bias_terms=False)


def test_json_lines_pairs_have_no_sessions(tmp_path: Path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        "".join(f'{{"in0": [{u}], "in1": [{i}], "label": {u % 2}}}\n' for u in range(4) for i in range(3))
    )
    with pytest.raises(ConfigError, match="JSON Lines pairs have none"):
        Object2Vec(FAST, session_gap=0).fit_pairs(path)


# ----- what they learn ------------------------------------------------------------------------------
def moods(seed: int = 0) -> tuple[Interactions, Interactions]:
    """Users who rate a whole sitting up or down: each user has four sittings a day apart, two good
    (every rating of the sitting 5) and two bad (1); a quarter of each sitting's rows are held out.
    Without the sitting a rating is a coin toss; with it, it is known."""
    rng = np.random.default_rng(seed)
    users, items, ratings, times, held = [], [], [], [], []
    for u in range(30):
        seen = rng.permutation(40)[:32].reshape(4, 8)  # a movie once per user
        for k, good in enumerate(rng.permutation([True, True, False, False])):
            for j, i in enumerate(seen[k]):
                users.append(u)
                items.append(int(i))
                ratings.append(5.0 if good else 1.0)
                times.append(1_000_000 + 86_400 * k + 10 * j)
                held.append(j < 2)
    data = Interactions.from_arrays(
        np.array(users), np.array(items), np.array(ratings), timestamps=np.array(times)
    )
    mask = np.array(held)
    return data.subset(~mask), data.subset(mask)


def test_a_sessions_level_is_learned_and_read_from_the_querys_time():
    train, test = moods()
    assert test.timestamp is not None
    m = Object2Vec(FAST, session_gap=60, session_reg=0.5).fit(train)
    assert m.history["object2vec"]["sessions"] == 120
    with_time = m.predict_internal(test.user, test.item, test.timestamp)
    without = m.predict_internal(test.user, test.item)
    plain = Object2Vec(FAST).fit(train).predict_internal(test.user, test.item, test.timestamp)
    err = {
        k: float(np.sqrt(np.mean((p - test.values()) ** 2)))
        for k, p in {"with": with_time, "without": without, "plain": plain}.items()
    }
    assert err["with"] < 1.0 < 1.5 < min(err["without"], err["plain"]), err
    # Predicted at a time outside every sitting: as without sessions.
    far = m.predict_internal(test.user, test.item, test.timestamp + 10**7)
    np.testing.assert_allclose(far, without)


def test_session_rows_get_gradients_and_the_empty_row_stays_zero():
    train, _ = moods()
    m = Object2Vec(FAST, session_gap=60, epochs=2).fit(train)
    net = m.net
    assert net is not None
    session = net.get_submodule("session")
    assert isinstance(session, torch.nn.Embedding)
    table = session.weight
    assert torch.count_nonzero(table[0]) == 0 and torch.count_nonzero(table[1:]) > 0
    u = net.user_side(torch.tensor([0, 1]))
    s = torch.tensor([1, 0])
    moved = net.with_context(u, s)
    torch.testing.assert_close(moved[1], u[1])
    torch.testing.assert_close(moved[0, :-1], u[0, :-1])  # a bias: the last column alone moves
    torch.testing.assert_close(moved[0, -1], u[0, -1] + table[1, 0])
    torch.testing.assert_close(net.context_penalty(s), torch.stack([table[1, 0] ** 2, table[0, 0]]))
    with pytest.raises(TypeError, match="takes no context"):
        Object2Vec(FAST, epochs=1).fit(train).net.with_context(u, s)  # type: ignore[union-attr]


def test_a_negative_shares_its_positives_session():
    """Sampled negatives are items not chosen in their positive's sitting, so a session's bias weighs
    its positives against its own negatives and does not learn that every sitting row is a 1."""
    train, test = moods()
    labels = (train.values() > 3).astype(np.float32)
    m = Object2Vec(
        FAST, session_gap=60, session_reg=0.5, epochs=15, negative_sampling_rate=3, label_threshold=3
    )
    arrays, _, _ = training_arrays(train, m.params, Sessions.fit(train.user, train.timestamp, 60)[1])
    n = len(train)
    assert arrays["session"][n:].min() > 0 and len(arrays["session"]) == n + 3 * int(labels.sum())
    m.fit(train)
    items = np.random.default_rng(0).integers(0, len(m.items), len(test))
    timed = m.predict_internal(test.user, items, test.timestamp).mean()
    untimed = m.predict_internal(test.user, items).mean()
    assert abs(timed - untimed) < 0.15, (timed, untimed)  # unseen items do not look liked in a sitting


def test_session_reg_shrinks_the_session_biases():
    train, _ = moods()
    size = {}
    for reg in (0.0, 3.0, 30.0):
        net = Object2Vec(FAST, session_gap=60, session_reg=reg, epochs=8).fit(train).net
        assert net is not None
        size[reg] = float(net.get_parameter("session.weight").detach().abs().mean())
    assert size[0.0] > size[3.0] > size[30.0] > 0, size


def test_sessions_round_trip_and_reach_every_member():
    train, test = moods()
    m = Object2Vec(FAST, session_gap=60, epochs=3, members=2).fit(train)
    c = Object2Vec(**m.get_params())
    c.restore(m.users, m.items, m.scale, m.seen(), m.state_arrays(), m.history)
    assert c.sessions is not None and m.sessions is not None and c.sessions.gap == 60
    for a, b in zip(c.sessions.arrays().values(), m.sessions.arrays().values(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        m.predict_internal(test.user, test.item, test.timestamp),
        c.predict_internal(test.user, test.item, test.timestamp),
    )
    arrays = m.state_arrays()
    assert all(f"object2vec.sessions.{k}" in arrays for k in ("user", "start", "end"))
    arrays.pop("object2vec.sessions.end")
    with pytest.raises(DataError, match="sessions lack their end array"):
        Object2Vec(**m.get_params()).restore(m.users, m.items, m.scale, m.seen(), arrays, m.history)


def test_sessions_reach_members_trained_in_worker_processes():
    """The session rows, weights and shrinkage travel to the workers: the same members as in turn."""
    train, test = moods()
    params = {**FAST, "session_gap": 60, "session_reg": 2.0, "epochs": 3, "members": 2}
    in_turn = Object2Vec(params, member_processes=1).fit(train)
    side = Object2Vec(params, member_processes=2).fit(train)
    assert side.history["object2vec"]["member_processes"] == 2
    np.testing.assert_array_equal(
        side.predict_internal(test.user, test.item, test.timestamp),
        in_turn.predict_internal(test.user, test.item, test.timestamp),
    )


def test_pairs_written_from_a_session_model_score_as_without_a_time():
    train, _ = moods()
    m = Object2Vec(FAST, session_gap=60, epochs=2).fit(train)
    np.testing.assert_allclose(
        m.predict_pairs(interactions_to_pairs(train)), m.predict_internal(train.user, train.item), rtol=1e-5
    )


def test_models_without_a_time_context_ignore_the_time_and_bad_times_are_refused():
    train, test = moods()
    assert test.timestamp is not None
    b = Bias().fit(train)
    np.testing.assert_array_equal(
        b.predict_internal(test.user, test.item, test.timestamp), b.predict_internal(test.user, test.item)
    )
    with pytest.raises(DataError, match="one integer"):
        b.predict_internal(test.user, test.item, test.timestamp.astype(np.float64))
    with pytest.raises(DataError, match="one integer"):
        b.predict_internal(test.user, test.item, test.timestamp[:3])


# ----- real data --------------------------------------------------------------------------------------
def binary_timed_and_untimed(ml100k_dir: Path, extra: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """Five rating classes with ``extra``, on ml100k-ua-binary: the runner's metrics (which pass each
    test row's time), then those of one fit asked with and without the times."""
    from recengine.evaluation.metrics import binary_metrics
    from recengine.evaluation.protocols import build
    from recengine.evaluation.runner import evaluate_folds
    from tests.models.test_object2vec import SMALL_ML100K

    ratings = build("ml100k-ua", ml100k_dir)
    binary = build("ml100k-ua-binary", ml100k_dir)
    params = {
        **SMALL_ML100K,
        "output_layer": "softmax",
        "num_classes": 5,
        "label_threshold": 3,
        "rating_classes": True,
        **extra,
    }
    res = evaluate_folds("object2vec", binary.folds, "binary", params, dataset=binary.dataset)
    m = Object2Vec(**params)
    m.use_dataset(ratings.dataset)
    m.fit(ratings.folds[0].train)
    test = binary.folds[0].test
    timed = binary_metrics(test.values(), m.predict_internal(test.user, test.item, test.timestamp))
    untimed = binary_metrics(test.values(), m.predict_internal(test.user, test.item))
    return res, timed, untimed


def test_sessions_raise_the_binary_accuracy_on_ml100k_ua(ml100k_dir: Path):
    """Five rating classes with ten-minute sessions, evaluated through the runner (which passes each
    test row's time): better than the same model asked without the times."""
    res, timed, untimed = binary_timed_and_untimed(ml100k_dir, {"session_gap": 600})
    assert res["accuracy"] == pytest.approx(timed["accuracy"])
    better = timed["log_loss"] < untimed["log_loss"] - 0.003 and timed["auc"] > untimed["auc"] + 0.003
    assert better and timed["accuracy"] > untimed["accuracy"], (timed, untimed)
    assert timed["accuracy"] > 0.70 and timed["auc"] > 0.765, timed
