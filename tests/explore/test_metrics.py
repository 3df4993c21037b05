"""Purity and neighbour-genre measures against direct loops, and against chance on synthetic vectors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from recengine.explore import metrics
from recengine.explore.clusters import fit_clusters
from recengine.explore.embeddings import genre_matrix, unit_rows
from recengine.explore.neighbours import top_k_cosine

GENRES = ["a", "b", "c", "d", "e", "f"]


def random_genres(rng: np.random.Generator, n: int, empty: float = 0.1) -> list[list[str]]:
    out: list[list[str]] = []
    for _ in range(n):
        if rng.random() < empty:
            out.append([])
        else:
            out.append(sorted(set(rng.choice(GENRES, size=int(rng.integers(1, 3))).tolist())))
    return out


def direct_purity(labels, genres):
    kept = [(lab, set(g)) for lab, g in zip(labels, genres, strict=True) if g]
    total = 0
    for c in {lab for lab, _ in kept}:
        members = [g for lab, g in kept if lab == c]
        total += max(sum(1 for g in members if genre in g) for genre in GENRES)
    return total / len(kept)


def direct_neighbour_share(vectors, genres, k):
    kept = [i for i, g in enumerate(genres) if g]
    hits = pairs = 0
    for i in kept:
        sims = []
        for j in kept:
            if j != i:
                a, b = vectors[i], vectors[j]
                sims.append((float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), j))
        for _, j in sorted(sims, key=lambda t: -t[0])[:k]:
            pairs += 1
            hits += bool(set(genres[i]) & set(genres[j]))
    return hits / pairs


def direct_random_pairs(genres):
    kept = [set(g) for g in genres if g]
    shares = [
        sum(1 for j, b in enumerate(kept) if j != i and a & b) / (len(kept) - 1) for i, a in enumerate(kept)
    ]
    return sum(shares) / len(shares)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_measures_match_direct_loops(seed):
    rng = np.random.default_rng(seed)
    n = 40
    genres = random_genres(rng, n)
    G, _ = genre_matrix(genres)
    labels = rng.integers(0, 5, n)
    vectors = rng.standard_normal((n, 6)).astype(np.float32)
    assert metrics.purity(labels, G) == pytest.approx(direct_purity(labels, genres))
    assert metrics.neighbour_genre_share(unit_rows(vectors), G, k=3) == pytest.approx(
        direct_neighbour_share(vectors, genres, 3)
    )
    assert metrics.random_pair_genre_share(G, block=7) == pytest.approx(direct_random_pairs(genres))


def test_mask_restricts_both_sides():
    rng = np.random.default_rng(3)
    genres = random_genres(rng, 30)
    G, _ = genre_matrix(genres)
    v = rng.standard_normal((30, 4)).astype(np.float32)
    mask = np.arange(30) % 2 == 0
    sub = [g for g, m in zip(genres, mask, strict=True) if m]
    assert metrics.neighbour_genre_share(unit_rows(v), G, 2, mask) == pytest.approx(
        direct_neighbour_share(v[mask], sub, 2)
    )
    assert metrics.random_pair_genre_share(G, mask) == pytest.approx(direct_random_pairs(sub))


def test_random_purity_keeps_cluster_sizes_and_is_seeded():
    rng = np.random.default_rng(4)
    genres = random_genres(rng, 50, empty=0)
    G, _ = genre_matrix(genres)
    labels = rng.integers(0, 4, 50)
    a = metrics.purity_vs_random(labels, G, permutations=5, seed=7)
    b = metrics.purity_vs_random(labels, G, permutations=5, seed=7)
    assert a == b
    perm = np.random.default_rng(7)
    expect = np.mean([direct_purity(perm.permutation(labels), genres) for _ in range(5)])
    assert a["random"] == pytest.approx(expect)
    assert a["observed"] == pytest.approx(direct_purity(labels, genres))


def test_top_k_cosine_matches_brute_force():
    rng = np.random.default_rng(5)
    u = unit_rows(rng.standard_normal((25, 5)))
    cand = np.array([0, 2, 3, 5, 8, 13, 21, 24])
    idx, sims = top_k_cosine(u, [0, 1, 24], 4, cand)
    for row, q in enumerate([0, 1, 24]):
        order = sorted((c for c in cand if c != q), key=lambda c: -float(u[q] @ u[c]))[:4]
        assert idx[row].tolist() == order
        assert np.allclose(sims[row], [u[q] @ u[c] for c in order], atol=1e-6)
    idx, sims = top_k_cosine(u, [0], 10, [0, 1, 2])  # fewer candidates than k: padded
    assert idx[0, :2].tolist() != [-1, -1] and (idx[0, 2:] == -1).all() and np.isnan(sims[0, 2:]).all()


def structured(rng: np.random.Generator, n: int = 600, d: int = 16, noise: float = 0.6):
    genres = random_genres(rng, n, empty=0)
    centres = {g: rng.standard_normal(d) for g in GENRES}
    v = np.stack([sum(centres[g] for g in gs) + noise * rng.standard_normal(d) for gs in genres])
    return v.astype(np.float32), genres


def test_genre_structured_vectors_beat_random_widely_and_random_ones_do_not():
    rng = np.random.default_rng(6)
    v, genres = structured(rng)
    G, _ = genre_matrix(genres)
    for vectors, learned in ((v, True), (rng.standard_normal(v.shape).astype(np.float32), False)):
        u = unit_rows(vectors)
        labels = fit_clusters(u, 8, "kmeans", seed=0)
        pur = metrics.purity_vs_random(labels, G, permutations=10)
        nb = metrics.neighbours_vs_random(u, G, k=10)
        if learned:
            assert pur["ratio"] > 1.5 and pur["z"] > 10
            assert nb["ratio"] > 1.6 and nb["observed"] > 0.9
        else:
            assert 0.85 < pur["ratio"] < 1.15
            assert 0.9 < nb["ratio"] < 1.1


def test_items_without_genres_are_left_out():
    G, vocab = genre_matrix([["x"], [], ["x", "y"], ["y"]])
    assert vocab == ["x", "y"]
    assert metrics.purity([0, 0, 1, 1], G) == pytest.approx(1.0)  # the genre-less item is not counted
    assert metrics.random_pair_genre_share(G) == pytest.approx(2 / 3)


def test_all_pairs_share_equals_pair_enumeration():
    genres = [["a"], ["a", "b"], ["b"], ["c"], ["c", "a"]]
    G, _ = genre_matrix(genres)
    pairs = list(itertools.permutations(range(5), 2))
    share = np.mean([bool(set(genres[i]) & set(genres[j])) for i, j in pairs])
    assert metrics.random_pair_genre_share(G) == pytest.approx(share)
