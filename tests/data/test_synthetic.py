"""The synthetic generator: exact shape, ml-20m file layout, a learnable truth, seeded and atomic output."""

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import typer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from recengine.cli.synth import PRESET_NAMES, register
from recengine.data import synthetic
from recengine.data.synthetic import (
    FIRST_TIMESTAMP,
    GENRES,
    LAST_TIMESTAMP,
    PRESETS,
    SynthConfig,
    generate,
    generate_arrays,
    resolve_shape,
)
from recengine.errors import ConfigError

# Enough items for a tail: 200 users x 2,000 movies, 20,000 ratings (5% dense, like a small MovieLens).
SHAPE = (20_000, 200, 2_000)


@pytest.fixture(scope="module")
def data() -> synthetic.SyntheticData:
    return generate_arrays(*SHAPE, seed=1)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ds"
    generate(*SHAPE, seed=1, out_dir=out)
    return out


@pytest.mark.parametrize(
    "shape",
    [SHAPE, (5_000, 100, 400), (1, 1, 1), (12, 3, 4), (100, 100, 1), (100, 1, 100), (9_900, 100, 100)],
)
def test_exact_counts_unique_pairs_every_user_and_item_present(shape):
    n, nu, ni = shape
    d = generate_arrays(n, nu, ni, seed=3)
    assert len(d.rating) == len(d.timestamp) == len(d.true_score) == n
    key = d.user.astype(np.int64) * ni + d.item
    assert bool(np.all(np.diff(key) > 0)), "rows must be unique and sorted by (userId, movieId)"
    assert np.bincount(d.user, minlength=nu).min() >= 1 and len(np.unique(d.user)) == nu
    assert np.bincount(d.item, minlength=ni).min() >= 1 and len(np.unique(d.item)) == ni


def test_users_have_twenty_ratings_when_the_total_allows(data):
    counts = np.bincount(data.user)
    assert counts.min() >= 20
    assert np.bincount(generate_arrays(1_000, 100, 50).user).min() == 10  # 10 each is all there is


def test_heavy_tails(data):
    items = np.sort(np.bincount(data.item))[::-1]
    assert items[: len(items) // 10].sum() > 0.4 * items.sum()
    users = np.bincount(data.user)
    assert users.max() > 4 * np.median(users)


def test_movie_ids_are_a_sparse_sorted_subset_like_ml20m(data):
    ids = data.movie_ids
    assert bool(np.all(np.diff(ids) > 0)) and ids.min() >= 1 and ids.max() <= 131262
    assert ids.max() > 10 * len(ids)
    big = generate_arrays(140_000, 2, 140_000).movie_ids
    assert np.array_equal(big, np.arange(1, 140_001))


def test_learnable_bias_predictor_beats_the_mean_and_truth_correlates(data):
    r = data.rating.astype(np.float64)
    assert 3.3 < r.mean() < 3.7 and 0.8 < r.std() < 1.2
    assert np.corrcoef(data.true_score, r)[0, 1] > 0.3
    test = np.random.default_rng(0).random(len(r)) < 0.2
    tr_u, tr_i, tr_r = data.user[~test], data.item[~test], r[~test]
    mu = tr_r.mean()
    reg = 5.0
    bu = np.bincount(tr_u, tr_r - mu, data.n_users) / (np.bincount(tr_u, minlength=data.n_users) + reg)
    resid = tr_r - mu - bu[tr_u]
    bi = np.bincount(tr_i, resid, data.n_items) / (np.bincount(tr_i, minlength=data.n_items) + reg)
    pred = np.clip(mu + bu[data.user[test]] + bi[data.item[test]], 0.5, 5.0)
    rmse_bias = np.sqrt(np.mean((pred - r[test]) ** 2))
    rmse_mean = np.sqrt(np.mean((mu - r[test]) ** 2))
    assert rmse_bias < 0.95 * rmse_mean


def test_noise_and_rank_are_honoured():
    quiet = generate_arrays(*SHAPE, seed=1, noise=0.0, rank=3)
    loud = generate_arrays(*SHAPE, seed=1, noise=1.5)
    assert quiet.item_factors.shape[1] == 3 and loud.item_factors.shape[1] == 8
    c_quiet = np.corrcoef(quiet.true_score, quiet.rating)[0, 1]
    c_loud = np.corrcoef(loud.true_score, loud.rating)[0, 1]
    assert c_quiet > 0.9 > c_loud
    cfg = generate_arrays(100, 10, 20, config=SynthConfig(rank=4)).config
    assert cfg.rank == 4 and cfg.noise == 0.7


def test_genres_follow_the_item_factors():
    d = generate_arrays(60_000, 300, 3_000, seed=2)
    assert d.genres.any(axis=1).all()
    half = np.arange(d.n_items) % 2 == 0
    for g in ("Drama", "Comedy"):
        y = d.genres[:, GENRES.index(g)]
        clf = LogisticRegression().fit(d.item_factors[half], y[half])
        auc = roc_auc_score(y[~half], clf.decision_function(d.item_factors[~half]))
        assert auc > 0.7, (g, auc)


def test_timestamps_distinct_per_user_in_range_and_titles_not_after_first_rating(data):
    ts = data.timestamp
    assert ts.min() >= FIRST_TIMESTAMP and ts.max() <= LAST_TIMESTAMP
    per_user = np.unique(data.user.astype(np.int64) << 32 | (ts - FIRST_TIMESTAMP))
    assert len(per_user) == len(ts)  # a strict order of each user's history
    first = np.full(data.n_items, LAST_TIMESTAMP)
    np.minimum.at(first, data.item, ts)
    first_year = first.astype("datetime64[s]").astype("datetime64[Y]").astype(int) + 1970
    assert bool(np.all(data.years <= first_year)) and data.years.min() >= 1915


def test_files_match_the_ml20m_layout(written, data):
    lines = (written / "ratings.csv").read_text().splitlines()
    assert lines[0] == "userId,movieId,rating,timestamp"
    assert len(lines) == 1 + SHAPE[0]
    row = re.compile(r"^[1-9]\d*,[1-9]\d*,(0\.5|[1-4]\.[05]|5\.0),[1-9]\d{8,9}$")
    assert all(row.match(x) for x in lines[1:]), next(x for x in lines[1:] if not row.match(x))
    movies = (written / "movies.csv").read_text().splitlines()
    assert movies[0] == "movieId,title,genres" and len(movies) == 1 + SHAPE[2]
    title = re.compile(r"^(\d+),Synthetic Movie \1 \((19|20)\d\d\),([A-Za-z|-]+)$")
    for line in movies[1:]:
        m = title.match(line)
        assert m, line
        names = m.group(3).split("|")
        assert set(names) <= set(GENRES) and names == sorted(names, key=GENRES.index)
    tags = (written / "tags.csv").read_text().splitlines()
    assert tags[0] == "userId,movieId,tag,timestamp" and 1 < len(tags) < SHAPE[0] // 10
    # Read back: the same rows as in memory, sorted by userId then movieId.
    back = pl.read_csv(written / "ratings.csv")
    assert back.columns == ["userId", "movieId", "rating", "timestamp"]
    assert np.array_equal(back["userId"].to_numpy(), data.user_id)
    assert np.array_equal(back["movieId"].to_numpy(), data.movie_id)
    assert np.array_equal(back["rating"].to_numpy(), data.rating.astype(np.float64))
    assert np.array_equal(back["timestamp"].to_numpy(), data.timestamp)
    inter = data.to_interactions()
    assert inter.n_users == SHAPE[1] and inter.n_items == SHAPE[2] and inter.report.duplicates_removed == 0


def test_same_seed_gives_byte_identical_files(tmp_path, written):
    generate(*SHAPE, seed=1, out_dir=tmp_path / "again")
    generate(*SHAPE, seed=2, out_dir=tmp_path / "other")
    for name in ("ratings.csv", "movies.csv", "tags.csv", "README.txt"):
        assert (tmp_path / "again" / name).read_bytes() == (written / name).read_bytes(), name
    assert (tmp_path / "other" / "ratings.csv").read_bytes() != (written / "ratings.csv").read_bytes()


def test_write_is_atomic_no_temp_files_and_no_half_written_ratings(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    res = generate(2_000, 50, 200, out_dir=out)
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", "movies.csv", "ratings.csv", "tags.csv"]
    assert res.files["ratings.csv"] == out / "ratings.csv" and res.n_tags >= 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = pl.DataFrame.write_csv

    def failing(self, file, **kw):
        if "ratings.csv" in str(file):
            Path(file).write_text("userId,movieId,rating,timestamp\n1,2,")  # half a file, then a crash
            raise KeyboardInterrupt
        return real(self, file, **kw)

    monkeypatch.setattr(pl.DataFrame, "write_csv", failing)
    with pytest.raises(KeyboardInterrupt):
        generate(3_000, 60, 300, seed=5, out_dir=out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_shapes_are_validated_and_presets_resolve():
    assert resolve_shape("ml-20m") == synthetic.Shape(20_000_263, 138_493, 26_744)
    assert resolve_shape("ml-20m", n_ratings=5_000_000).n_users == 138_493
    for n, nu, ni in [(10, 5, 1), (3, 5, 2)]:
        with pytest.raises(ConfigError, match="unique pairs"):
            resolve_shape(n_ratings=n, n_users=nu, n_items=ni)
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve_shape("ml-30m")
    with pytest.raises(ConfigError, match="missing: users, items"):
        resolve_shape(n_ratings=100)


def test_default_out_dir_is_under_the_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("RECENGINE_DATA", str(tmp_path))
    res = generate(preset="tiny")
    assert res.path == tmp_path / "synthetic-tiny-seed0" and (res.path / "ratings.csv").exists()


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test root."""

    register(app)
    return app


def test_cli_json_is_the_only_stdout(tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        _cli(), ["synth", str(out), "--ratings", "3000", "--users", "60", "--items", "300", "--json"]
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert (info["ratings"], info["users"], info["items"]) == (3000, 60, 300)
    assert info["path"] == str(out) and info["seconds"]["total"] >= 0
    assert "sampling" in result.stderr
    assert len((out / "ratings.csv").read_text().splitlines()) == 3001


def test_cli_preset_and_errors(tmp_path):
    result = CliRunner().invoke(_cli(), ["synth", str(tmp_path / "t"), "--preset", "tiny", "--seed", "4"])
    assert result.exit_code == 0 and "wrote 5,000 ratings" in result.stdout
    result = CliRunner().invoke(_cli(), ["synth", str(tmp_path / "u"), "--ratings", "100"])
    assert isinstance(result.exception, ConfigError)
    assert set(PRESET_NAMES) == set(PRESETS)
