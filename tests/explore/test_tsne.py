"""Subsampling for the map and the t-SNE call itself (small inputs only: speed is a benchmark)."""

from __future__ import annotations

import numpy as np
import pytest

from recengine.errors import ConfigError
from recengine.explore.tsne import prepare, subsample, tsne_2d


def test_subsample_cap_keep_top_and_seed():
    counts = np.random.default_rng(0).zipf(1.6, 5000).clip(max=10_000)
    keep = [4999, 17, 4000]
    a = subsample(counts, 500, seed=3, keep=keep)
    assert len(a) == 500 and len(set(a.tolist())) == 500 and (np.diff(a) > 0).all()
    assert set(keep) <= set(a.tolist())
    top = np.argsort(-counts, kind="stable")[:240]
    assert set(top.tolist()) <= set(a.tolist())  # the most rated half of the cap is always mapped
    assert np.array_equal(a, subsample(counts, 500, seed=3, keep=keep))
    assert not np.array_equal(a, subsample(counts, 500, seed=4, keep=keep))
    top_half = np.argsort(-counts, kind="stable")[:250]
    drawn, pool = np.setdiff1d(a, top_half), np.setdiff1d(np.arange(5000), top_half)
    assert counts[drawn].mean() > 1.2 * counts[pool].mean()  # the drawn half leans toward rated items
    assert np.array_equal(subsample(counts[:50], 500), np.arange(50))
    with pytest.raises(ConfigError):
        subsample(counts, 0)


def test_prepare_normalises_and_reduces():
    x = np.random.default_rng(1).standard_normal((80, 64)) * 5
    p = prepare(x)
    assert p.shape == (80, 50) and p.dtype == np.float32
    assert np.allclose(np.linalg.norm(prepare(x[:, :8]), axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("backend", ["auto", "sklearn"])
def test_tsne_shape_and_seed(backend):
    x = np.random.default_rng(2).standard_normal((60, 8))
    y, info = tsne_2d(x, seed=0, backend=backend, iterations=300)
    assert y.shape == (60, 2) and np.isfinite(y).all()
    assert info["n"] == 60 and info["perplexity"] <= 59 / 3 and info["seconds"] >= 0
    y2, _ = tsne_2d(x, seed=0, backend=backend, iterations=300)
    assert np.allclose(y, y2)


def test_tiny_inputs():
    y, info = tsne_2d(np.ones((2, 3)))
    assert y.shape == (2, 2) and info["backend"] == "none"
