"""ExploreViews, the per-model-version views a server keeps: the map's point cap and what it says
about the sample, computing the map once under concurrent first requests, and the cluster cache."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from recengine import __version__
from recengine.errors import CapabilityError, ConfigError
from recengine.explore import load
from recengine.explore import web as explore_web
from recengine.explore.web import ExploreViews


def test_map_is_capped_sampled_by_popularity_and_says_so(mf_dir: Path) -> None:
    data = load(mf_dir)
    views = ExploreViews(data, max_points=200)
    m = views.map(k=5)
    assert m["n_points"] == len(m["points"]) == 200 and m["n_items"] == data.n_items
    assert m["subsampled"] and m["max_points"] == 200 and m["sample"].startswith(f"200 of {data.n_items}")
    on_map = {p["item"] for p in m["points"]}
    most_rated = data.item_ids[data.counts.argsort()[::-1][:100]].tolist()
    assert set(most_rated) <= on_map  # the familiar titles are always drawn
    assert ExploreViews(data, max_points=200).map(k=5)["points"] == m["points"]  # seeded


@pytest.fixture
def tsne_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per map the views compute (each runs t-SNE)."""
    calls: list[int] = []
    real = explore_web.map_points

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(explore_web, "map_points", counted)
    return calls


def test_first_requests_share_one_tsne(mf_dir: Path, tsne_calls: list[int]) -> None:
    views = ExploreViews(load(mf_dir), max_points=150)
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(views.map(k=3))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(tsne_calls) == 1 and len(results) == 4
    assert all(r["points"] == results[0]["points"] for r in results)


def test_the_map_is_kept_for_other_processes(mf_dir: Path, tmp_path: Path, tsne_calls: list[int]) -> None:
    """A second server worker (here a second ExploreViews) reads the first one's map instead of
    running t-SNE; a cache file that does not read is computed again and replaced."""
    data = load(mf_dir)
    kept = tmp_path / "maps" / "m.json"
    first = ExploreViews(data, max_points=150, map_file=kept).map(k=3)
    assert len(tsne_calls) == 1 and kept.is_file() and not list(kept.parent.glob(".*.tmp"))
    second = ExploreViews(data, max_points=150, map_file=kept).map(k=3)
    assert len(tsne_calls) == 1 and second == first
    kept.write_text('{"points": [')
    again = ExploreViews(data, max_points=150, map_file=kept).map(k=3)
    assert again["points"] == first["points"]  # recomputed: the same seeded map (its timing differs)
    assert len(tsne_calls) == 2 and kept.read_text().startswith("{")
    assert explore_web.map_file("ab12-cd") != explore_web.map_file("ab12-cd", seed=1)
    # a cache home that cannot hold a directory (it is a file) costs the keeping, not the map
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    served = ExploreViews(data, max_points=150, map_file=blocked / "maps" / "m.json").map(k=3)
    assert served["points"] == first["points"] and blocked.is_file()


def test_kept_maps_are_bounded_and_only_maps_go(
    mf_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tsne_calls: list[int]
) -> None:
    """Writing a map prunes the cache directory to the KEPT_MAPS most recently used maps (a map that
    is read counts as used) and drops the stale partial file of a killed write; files not named as
    maps are never removed (a fresh partial file may be another process's write in progress)."""
    monkeypatch.setenv("RECENGINE_CACHE", str(tmp_path / "cache"))
    data = load(mf_dir)
    used = explore_web.map_file("used", max_points=150)
    ExploreViews(data, max_points=150, map_file=used).map(k=3)
    maps = used.parent
    assert explore_web.map_file("x").parent == maps and maps.is_relative_to(tmp_path)
    n_old = explore_web.KEPT_MAPS + 3
    old = [explore_web.map_file(f"old{j}") for j in range(n_old)]
    old[0] = old[0].with_name(
        old[0].name.replace(f"-{__version__}.json", "-0.0.1.json")
    )  # an earlier release's
    for j, f in enumerate(old):
        f.write_text("{}")
        os.utime(f, (1_000 + j, 1_000 + j))  # oldest first, all older than the maps used below
    os.utime(used, (1, 1))  # the oldest of all on disk ...
    ExploreViews(data, max_points=150, map_file=used).map(k=3)  # ... but read now, so used
    others = ["notes.txt", f"{old[1].name}.bak", f".{old[1].name}.123.tmp"]
    for name in others:
        (maps / name).write_text("mine")
    dir_named_as_a_map = explore_web.map_file("sub").name
    (maps / dir_named_as_a_map).mkdir()  # not a file
    killed = maps / f".{old[2].name}.456.tmp"  # the partial file of a write killed long ago
    killed.write_text("{")
    os.utime(killed, (1_000, 1_000))
    fresh = explore_web.map_file("fresh", seed=1, max_points=150)
    ExploreViews(data, max_points=150, map_file=fresh).map(k=3)
    assert len(tsne_calls) == 2  # "used" was read, not recomputed
    newest_old = {f.name for f in old[n_old - (explore_web.KEPT_MAPS - 2) :]}
    left = {p.name for p in maps.iterdir()}
    assert left == {fresh.name, used.name, *newest_old, *others, dir_named_as_a_map}  # not `killed`
    assert all((maps / name).read_text() == "mine" for name in others)


def test_clusterings_are_kept_and_bounded(mf_dir: Path) -> None:
    views = ExploreViews(load(mf_dir))
    first, _ = views.labels(4)
    assert views.labels(4)[0] is first
    for k in range(5, 5 + explore_web.CACHED_CLUSTERINGS):
        views.labels(k)
    assert views.labels(4)[0] is not first and (views.labels(4)[0] == first).all()  # recomputed, same
    with pytest.raises(ConfigError, match="k must be between 2 and"):
        views.labels(explore_web.MAX_CLUSTERS + 1)
    with pytest.raises(ConfigError, match="unknown clustering method"):
        views.clusters(k=3, method="dbscan")  # type: ignore[arg-type]


def test_neighbours_refuse_blank_queries_and_users_need_user_vectors(mf_dir: Path) -> None:
    views = ExploreViews(load(mf_dir))
    with pytest.raises(ConfigError, match="empty item was given; give an id or a title"):
        views.neighbours(["  "])
    with pytest.raises(ConfigError, match=r"empty user was given; give an id$"):  # users have no titles
        views.user_neighbours([""])
    assert views.neighbours(["Fargo"], k=3)["neighbours"][0]["query"]["title"] == "Fargo"
    views.data.user_vectors = None
    with pytest.raises(CapabilityError, match="user embeddings"):
        views.user_neighbours()


_FIRST_REQUESTS = """
import sys, threading
import numpy as np, scipy.sparse as sp
from recengine.explore.embeddings import ExploreData
from recengine.explore.web import ExploreViews

assert "sklearn" not in sys.modules
rng = np.random.default_rng(0)
n = 60
data = ExploreData(
    model_name="m", data_name=None, item_ids=np.arange(n), titles=[f"t{i}" for i in range(n)],
    years=[None] * n, genres=[[]] * n, counts=np.full(n, 5, dtype=np.int64),
    mean_rating=np.full(n, 3.5), vectors=rng.normal(size=(n, 8)).astype(np.float32), explicit=True,
    seen=sp.csr_matrix((1, n)),
)
views = ExploreViews(data, max_points=n)
errors = []
def run(view):
    try:
        view()
    except Exception as e:
        errors.append(repr(e))
asked = [lambda: views.map(k=3), lambda: views.clusters(k=4), lambda: views.k_selection()]
threads = [threading.Thread(target=run, args=(v,)) for v in asked]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(errors)
"""


def test_first_requests_at_once_in_a_fresh_process() -> None:
    """A server's first map, clusters and k-selection requests come at once, each in its own thread;
    scikit-learn imported for the first time by several threads together can be seen half
    initialised (ImportError from sklearn.base), so the views import it before any request runs."""
    import subprocess
    import sys

    for _ in range(8):  # without the import, about one fresh process in three failed
        out = subprocess.run(
            [sys.executable, "-c", _FIRST_REQUESTS], capture_output=True, text=True, timeout=300, check=True
        )
        assert out.stdout.strip() == "[]", out.stdout + out.stderr
