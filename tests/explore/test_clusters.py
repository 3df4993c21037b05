"""Clusters, lift and the k-selection report on a fitted model and on small synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics import adjusted_rand_score

from recengine.errors import ConfigError
from recengine.explore import load
from recengine.explore.clusters import (
    cluster_table,
    elbow,
    fit_clusters,
    genre_lift,
    k_selection,
)
from recengine.explore.embeddings import genre_matrix, main_genres, unit_rows


@pytest.fixture(scope="module")
def data(mf_dir):
    return load(mf_dir)


def test_loaded_data_lines_up_with_the_artifact(data, ml100k_dir):
    assert data.model_name == "mf" and data.data_name == "ml-100k"
    assert data.vectors.shape == (data.n_items, 16)
    assert data.counts.sum() == 100_000 and data.has_users
    star_wars = int(np.flatnonzero(data.item_ids == 50)[0])
    assert data.titles[star_wars] == "Star Wars" and data.years[star_wars] == 1977
    assert "Sci-Fi" in data.genres[star_wars]
    assert all("unknown" not in g for g in data.genres)  # "no genre" markers are dropped
    ratings = data.seen[:, star_wars].data
    assert data.mean_rating[star_wars] == pytest.approx(ratings.mean())


@pytest.mark.parametrize("method", ["kmeans", "agglomerative"])
def test_cluster_stats_add_up(data, method):
    labels = fit_clusters(data.unit(), 7, method, seed=0)
    G, vocab = genre_matrix(data.genres)
    table = cluster_table(data, labels, G, vocab)
    assert [c["cluster"] for c in table] == list(range(7))
    assert sum(c["size"] for c in table) == data.n_items
    assert [c["size"] for c in table] == sorted((c["size"] for c in table), reverse=True)
    assert sum(c["ratings"] for c in table) == data.counts.sum()
    for c in table:
        members = np.flatnonzero(labels == c["cluster"])
        for g in c["genres"]:  # lift against a direct count
            in_cluster = sum(g["genre"] in data.genres[i] for i in members) / len(members)
            overall = sum(g["genre"] in gs for gs in data.genres) / data.n_items
            assert g["lift"] == pytest.approx(in_cluster / overall, abs=1e-3) and g["lift"] > 1
        counts = [t["ratings"] for t in c["most_rated"]]
        assert counts == sorted(counts, reverse=True) and counts[0] == data.counts[members].max()
        r = data.seen[:, members].data
        assert c["mean_rating"] == pytest.approx(r.mean(), abs=1e-3)


def test_lift_matrix_against_direct_count():
    genres = [["a"], ["a", "b"], ["b"], [], ["a"], ["c"]]
    labels = np.array([0, 0, 1, 1, 1, 0])
    G, vocab = genre_matrix(genres)
    lift = genre_lift(labels, G)
    for c in (0, 1):
        for j, g in enumerate(vocab):
            members = [i for i in range(6) if labels[i] == c]
            share = sum(g in genres[i] for i in members) / len(members)
            assert lift[c, j] == pytest.approx(share / (sum(g in gs for gs in genres) / 6))


def test_agglomerative_is_scikit_learns_ward():
    x = unit_rows(np.random.default_rng(0).standard_normal((150, 5)))
    ours = fit_clusters(x, 6, "agglomerative")
    theirs = AgglomerativeClustering(6, linkage="ward").fit_predict(x)
    assert adjusted_rand_score(ours, theirs) == pytest.approx(1.0)


def test_agglomerative_beyond_the_cap_assigns_every_item():
    x = unit_rows(np.random.default_rng(1).standard_normal((300, 4)))
    labels = fit_clusters(x, 5, "agglomerative", seed=0, max_agglomerative=100)
    assert len(labels) == 300 and set(labels.tolist()) == set(range(5))


def test_k_selection_report():
    rng = np.random.default_rng(2)
    centres = np.eye(4, 8) * 6
    x = unit_rows(np.concatenate([c + rng.standard_normal((60, 8)) for c in centres]))
    sel = k_selection(x, [2, 3, 4, 5, 6, 8], seed=0)
    assert sel["ks"] == [2, 3, 4, 5, 6, 8]
    for m in ("kmeans", "agglomerative"):
        assert len(sel[m]["inertia"]) == 6 and len(sel[m]["silhouette"]) == 6
        assert sel[m]["best_silhouette_k"] == 4 and sel[m]["elbow_k"] == 4
        assert sel[m]["inertia"][0] > sel[m]["inertia"][-1]


def test_elbow_and_bad_k():
    assert elbow([1, 2, 3, 4, 5], [100, 20, 15, 12, 10]) == 2
    with pytest.raises(ConfigError):
        fit_clusters(np.zeros((3, 2), dtype=np.float32), 5)


def test_main_genre_is_the_rarest_palette_genre():
    genres = [["Drama"]] * 7 + [["Comedy"]] * 4 + [["Comedy", "Romance"]] * 2 + [["Western"]] + [[]]
    main, palette = main_genres(genres, palette_size=3)
    assert palette == ["Drama", "Comedy", "Romance"]
    assert main[:7] == ["Drama"] * 7 and main[11] == "Romance" and main[-2:] == ["other", "no genre"]
