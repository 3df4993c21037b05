"""Top-N metrics against a direct, obviously-correct loop over users, and NDCG against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn.metrics as skm
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from recengine.data.interactions import IdMap, Interactions
from recengine.evaluation.topn import TopNResult, evaluate_topn, topk

N_USERS, N_ITEMS = 50, 80
NAMES = ("ndcg", "recall", "hr", "precision", "map")


def make_split(seed: int, n_users: int = N_USERS, n_items: int = N_ITEMS, overlap: bool = False):
    """Train/test over one id space; some users have more test items than K, some none, some no train.

    With ``overlap`` a few test items are also training items (they can then never be hit).
    """
    rng = np.random.default_rng(seed)
    rows_u: list[int] = []
    rows_i: list[int] = []
    is_test: list[bool] = []
    for u in range(n_users):
        n_train = int(rng.integers(0, 30))
        n_test = int(rng.choice([0, 1, 2, 5, 12, 20]))
        perm = rng.permutation(n_items)
        tr = perm[:n_train]
        te = perm[n_train : n_train + n_test]
        if overlap and n_train and n_test:
            te = np.concatenate([te[:-1], tr[:1]])
        for i in tr:
            rows_u.append(u)
            rows_i.append(int(i))
            is_test.append(False)
        for i in te:
            rows_u.append(u)
            rows_i.append(int(i))
            is_test.append(True)
    users = IdMap(np.arange(n_users) * 10 + 3, "user")
    items = IdMap(np.arange(n_items) + 1000, "item")
    ext_u = users.to_external(np.array(rows_u))
    ext_i = items.to_external(np.array(rows_i))
    # Overlapping rows repeat a (user, item) pair, which from_arrays would merge: build halves apart.
    mask = np.array(is_test)
    train = Interactions.from_arrays(ext_u[~mask], ext_i[~mask], user_map=users, item_map=items)
    test = Interactions.from_arrays(ext_u[mask], ext_i[mask], user_map=users, item_map=items)
    return train, test


def sets(inter: Interactions) -> list[set[int]]:
    out: list[set[int]] = [set() for _ in range(inter.n_users)]
    for u, i in zip(inter.user.tolist(), inter.item.tolist(), strict=True):
        out[u].add(i)
    return out


def reference_rank(row: np.ndarray, k: int, banned: set[int], allowed: np.ndarray | None) -> list[int]:
    cands = [
        i
        for i in range(len(row))
        if i not in banned and (allowed is None or allowed[i]) and row[i] > -math.inf
    ]
    return sorted(cands, key=lambda i: (-row[i], i))[:k]


def reference(scores: np.ndarray, train: Interactions, test: Interactions, k: int, allowed=None):
    """Per-user metrics straight from the definitions in PROTOCOLS.md, one user at a time."""
    tr, te = sets(train), sets(test)
    per: dict[str, list[float]] = {n: [] for n in NAMES}
    users, recommended = [], set()
    for u in range(test.n_users):
        if not te[u]:
            continue
        users.append(u)
        ranked = reference_rank(scores[u], k, tr[u], allowed)
        recommended.update(ranked)
        rel = [1 if i in te[u] else 0 for i in ranked]
        m = min(k, len(te[u]))
        dcg = sum(r / math.log2(pos + 2) for pos, r in enumerate(rel))
        idcg = sum(1 / math.log2(pos + 2) for pos in range(m))
        ap = sum(sum(rel[: pos + 1]) / (pos + 1) for pos in range(len(rel)) if rel[pos]) / m
        per["ndcg"].append(dcg / idcg)
        per["recall"].append(sum(rel) / m)
        per["hr"].append(1.0 if any(rel) else 0.0)
        per["precision"].append(sum(rel) / k)
        per["map"].append(ap)
    n_cand = test.n_items if allowed is None else int(np.sum(allowed))
    return users, per, len(recommended) / n_cand


def tied_scores(seed: int, n_users: int = N_USERS, n_items: int = N_ITEMS, levels: int = 6) -> np.ndarray:
    """Few distinct values, so ties cross the K boundary in almost every row."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, levels, (n_users, n_items)).astype(np.float32)


def fn_of(scores: np.ndarray, seen: list | None = None):
    def score_fn(users: np.ndarray) -> np.ndarray:
        if seen is not None:
            seen.append(users.copy())
        return scores[users]  # fancy indexing: a fresh array, as a model would return

    return score_fn


@pytest.mark.parametrize("k", [1, 5, 10, 100])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("with_mask", [False, True])
def test_matches_reference_loop(k: int, seed: int, with_mask: bool) -> None:
    train, test = make_split(seed)
    scores = tied_scores(seed + 10)
    allowed = np.random.default_rng(seed).random(N_ITEMS) < 0.7 if with_mask else None
    res = evaluate_topn(fn_of(scores), train, test, k, candidates=allowed, batch_size=7, per_user=True)
    users, per, coverage = reference(scores, train, test, k, allowed)
    assert isinstance(res, TopNResult)
    assert res.users.tolist() == users
    assert res.users.dtype == np.int32
    for name in NAMES:
        np.testing.assert_allclose(res.per_user[f"{name}@{k}"], per[name], rtol=1e-12, atol=1e-15)
        assert res.metrics[f"{name}@{k}"] == pytest.approx(float(np.mean(per[name])), rel=1e-12)
    assert res.metrics[f"coverage@{k}"] == pytest.approx(coverage, rel=1e-12)
    assert res.metrics["users"] == len(users)
    assert any(len(s) > k for s in sets(test)) or k == 100  # users with more test items than K
    plain = evaluate_topn(fn_of(scores), train, test, k, candidates=allowed)
    assert plain == res.metrics
    assert list(plain) == [f"{n}@{k}" for n in (*NAMES, "coverage")] + ["users"]


def test_test_items_in_train_still_count() -> None:
    train, test = make_split(3, overlap=True)
    scores = np.random.default_rng(3).random((N_USERS, N_ITEMS)).astype(np.float32)
    res = evaluate_topn(fn_of(scores), train, test, 10, per_user=True, batch_size=16)
    _, per, coverage = reference(scores, train, test, 10)
    for name in NAMES:
        np.testing.assert_allclose(res.per_user[f"{name}@10"], per[name], rtol=1e-12)
    assert res.metrics["coverage@10"] == pytest.approx(coverage)


def test_candidates_as_item_ids_equal_mask() -> None:
    train, test = make_split(4)
    scores = tied_scores(4)
    mask = np.zeros(N_ITEMS, dtype=bool)
    mask[::3] = True
    a = evaluate_topn(fn_of(scores), train, test, 5, candidates=mask)
    b = evaluate_topn(fn_of(scores), train, test, 5, candidates=np.flatnonzero(mask))
    assert a == b
    assert a["coverage@5"] <= 1.0


def test_ndcg_matches_sklearn_on_untied_scores() -> None:
    """sklearn's ideal DCG is over the user's relevant items cut at K = min(K, n_test) hits, the
    protocol's, as long as every test item is a candidate; excluded items get relevance 0 and a
    score below all others, so they can only fill places after the candidates run out."""
    train, test = make_split(5)
    scores = np.random.default_rng(5).standard_normal((N_USERS, N_ITEMS)).astype(np.float32)
    tr, te = sets(train), sets(test)
    for k in (3, 10, 60):
        res = evaluate_topn(fn_of(scores), train, test, k, per_user=True)
        for u, got in zip(res.users.tolist(), res.per_user[f"ndcg@{k}"], strict=True):
            y = np.zeros((1, N_ITEMS))
            y[0, list(te[u])] = 1
            s = scores[u].astype(np.float64).copy()
            s[list(tr[u])] = -1e9
            assert got == pytest.approx(skm.ndcg_score(y, s[None, :], k=k), rel=1e-9)


def test_score_fn_gets_int32_batches_and_cached_views_are_not_written() -> None:
    train, test = make_split(6)
    scores = tied_scores(6)
    before = scores.copy()
    seen: list[np.ndarray] = []
    evaluate_topn(fn_of(scores, seen), train, test, 5, batch_size=8)
    assert all(b.dtype == np.int32 for b in seen)
    assert all(len(b) <= 8 for b in seen)
    assert np.concatenate(seen).tolist() == sorted({int(u) for u in test.user})

    cache = scores.copy()

    def view_fn(users: np.ndarray) -> np.ndarray:
        return cache[users[0] : users[0] + 1] if len(users) == 1 else cache[users]

    evaluate_topn(view_fn, train, test, 5, batch_size=1)
    assert np.array_equal(cache, before)

    pop = np.arange(N_ITEMS, dtype=np.float64)
    ro = evaluate_topn(lambda u: np.broadcast_to(pop, (len(u), N_ITEMS)), train, test, 5)
    ref = evaluate_topn(lambda u: np.tile(pop, (len(u), 1)), train, test, 5)
    assert ro == ref


def test_integer_and_all_equal_scores() -> None:
    """A global-mean model scores every item alike: ranking falls back to the lowest item ids."""
    train, test = make_split(7)
    zeros = lambda u: np.zeros((len(u), N_ITEMS), dtype=np.int64)  # noqa: E731
    const = evaluate_topn(zeros, train, test, 4, per_user=True)
    _, per, _ = reference(np.zeros((N_USERS, N_ITEMS)), train, test, 4)
    np.testing.assert_allclose(const.per_user["ndcg@4"], per["ndcg"], rtol=1e-12)


def test_progress_bar_runs(capsys: pytest.CaptureFixture[str]) -> None:
    train, test = make_split(8)
    scores = tied_scores(8)
    assert evaluate_topn(fn_of(scores), train, test, 3, progress=True, batch_size=5) == evaluate_topn(
        fn_of(scores), train, test, 3
    )


def test_evaluate_errors() -> None:
    train, test = make_split(9)
    scores = tied_scores(9)
    with pytest.raises(ValueError, match="k must be"):
        evaluate_topn(fn_of(scores), train, test, 0)
    with pytest.raises(ValueError, match="k must be"):
        evaluate_topn(fn_of(scores), train, test, True)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_topn(fn_of(scores), train, test, 5, batch_size=0)
    with pytest.raises(ValueError, match="one entry per item"):
        evaluate_topn(fn_of(scores), train, test, 5, candidates=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="candidate item ids"):
        evaluate_topn(fn_of(scores), train, test, 5, candidates=np.array([0, N_ITEMS]))
    with pytest.raises(ValueError, match="shape"):
        evaluate_topn(lambda u: scores[u, :10], train, test, 5)
    with pytest.raises(ValueError, match="NaN"):
        evaluate_topn(lambda u: np.full((len(u), N_ITEMS), np.nan), train, test, 5)
    with pytest.raises(ValueError, match="no user to evaluate"):
        evaluate_topn(fn_of(scores), train, test.subset(np.zeros(len(test), dtype=bool)), 5)
    other, _ = make_split(9, n_items=N_ITEMS + 1)
    with pytest.raises(ValueError, match="share their user and item id maps"):
        evaluate_topn(fn_of(scores), other, test, 5)
    renamed = Interactions(
        train.user, train.item, None, None, train.users, IdMap(np.arange(N_ITEMS) + 5000, "item")
    )
    with pytest.raises(ValueError, match="share their user and item id maps"):
        evaluate_topn(fn_of(scores), renamed, test, 5)


# ----- topk --------------------------------------------------------------------------------------


def check_topk(scores: np.ndarray, k: int, exclude: sp.csr_matrix | None, allowed: np.ndarray | None) -> None:
    ids, vals = topk(scores, k, exclude=exclude, candidates=allowed)
    assert ids.shape == vals.shape == (len(scores), k)
    assert ids.dtype == np.int32
    for r, row in enumerate(scores):
        banned = set() if exclude is None else set(exclude[r].indices.tolist())
        want = reference_rank(row, k, banned, allowed)
        assert ids[r].tolist() == want + [-1] * (k - len(want))
        np.testing.assert_array_equal(vals[r, : len(want)], row[want])
        assert np.isnan(vals[r, len(want) :]).all()


@pytest.mark.parametrize("k", [1, 3, 8, 20, 30])
def test_topk_ties_exclusions_and_padding(k: int) -> None:
    rng = np.random.default_rng(k)
    scores = rng.integers(0, 4, (40, 25)).astype(np.float64)
    scores[3] = 1.0  # one row all tied
    scores[4, :] = -np.inf  # one row with nothing to recommend
    scores[5, 7] = np.inf
    exclude = sp.random(40, 25, density=0.3, random_state=k, format="csr")
    allowed = rng.random(25) < 0.8
    check_topk(scores, k, exclude, allowed)
    check_topk(scores, k, None, None)


def test_topk_rows_and_copy() -> None:
    rng = np.random.default_rng(0)
    seen = sp.random(10, 12, density=0.4, random_state=1, format="csr")
    scores = rng.random((3, 12)).astype(np.float32)
    original = scores.copy()
    rows = np.array([7, 2, 7])
    ids, _ = topk(scores, 12, exclude=seen, rows=rows)
    assert np.array_equal(scores, original)  # copy=True leaves the input alone
    for r, u in enumerate(rows):
        assert set(ids[r][ids[r] >= 0].tolist()) == set(range(12)) - set(seen[u].indices.tolist())
    topk(scores, 2, exclude=seen, rows=rows, copy=False)
    assert np.isneginf(scores[0, seen[7].indices]).all()


@settings(max_examples=60, deadline=None)
@given(
    scores=hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 6), st.integers(1, 12)),
        elements=st.sampled_from([-np.inf, -1.0, 0.0, 0.5, 2.0, np.inf]),
    ),
    k=st.integers(1, 15),
    seed=st.integers(0, 2**16),
)
def test_topk_property(scores: np.ndarray, k: int, seed: int) -> None:
    exclude = sp.random(
        scores.shape[0], scores.shape[1], density=0.25, random_state=seed, format="csr", dtype=np.float32
    )
    check_topk(scores, k, exclude, None)


def test_topk_errors() -> None:
    s = np.zeros((2, 5))
    with pytest.raises(ValueError, match="k must be"):
        topk(s, 0)
    with pytest.raises(ValueError, match="2-D"):
        topk(np.zeros(5), 1)
    with pytest.raises(ValueError, match="NaN"):
        topk(np.array([[0.0, np.nan, 1.0]]), 2)
    with pytest.raises(ValueError, match="columns"):
        topk(s, 1, exclude=sp.csr_matrix((2, 4)))
    with pytest.raises(ValueError, match="rows="):
        topk(s, 1, exclude=sp.csr_matrix((3, 5)))
    with pytest.raises(ValueError, match="lie in"):
        topk(s, 1, exclude=sp.csr_matrix((3, 5)), rows=[0, 3])
    with pytest.raises(ValueError, match="only makes sense"):
        topk(s, 1, rows=[0, 1])
    with pytest.raises(ValueError, match="sparse"):
        topk(s, 1, exclude=np.zeros((2, 5)))
    with pytest.raises(ValueError, match="numbers"):
        topk(np.array([["a", "b"]]), 1)
