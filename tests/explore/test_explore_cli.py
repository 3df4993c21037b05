"""``recengine explore`` end to end on a small fitted model, and the views a web route calls."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from recengine.cli import app
from recengine.errors import CapabilityError, UnknownIdError
from recengine.explore import load, web
from recengine.explore.neighbours import item_neighbours, resolve_items, resolve_users, user_neighbours
from recengine.explore.run import OWN_FILES

runner = CliRunner()
FAST = ["--max-items", "150", "--k", "6"]


@pytest.fixture(scope="module")
def explored(mf_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    res = runner.invoke(
        app,
        [
            "explore",
            str(mf_dir),
            "--out",
            str(out),
            *FAST,
            "--titles",
            "Star Wars",
            "--titles",
            "toy story",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    return out, res.stdout


def test_json_is_one_object_naming_every_file(explored):
    _, stdout = explored
    summary = json.loads(stdout)  # the whole of stdout is one JSON object
    assert summary["model"] == "mf" and summary["k"] == 6
    assert set(summary["files"]) == {
        "map_genre",
        "map_kmeans",
        "map_agglomerative",
        "k_selection",
        "html",
        "json",
    }
    assert summary["map"]["n_points"] == 150 and summary["map"]["subsampled"] is True
    assert [n["query"] for n in summary["neighbours"]] == ["Star Wars", "Toy Story"]
    assert "Empire Strikes Back, The" in summary["neighbours"][0]["nearest"]
    assert summary["measures"]["neighbour_genre_share"]["ratio"] > 1
    assert len(summary["user_neighbours"]) == 5


def test_pngs_and_a_self_contained_html(explored):
    out, _ = explored
    for name in ("map_genre", "map_kmeans", "map_agglomerative", "k_selection"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"https?://", html)  # nothing to fetch: no http(s) address at all
    assert not re.search(r"""(src|href)\s*=\s*(?!["']?(data:|#))""", html)  # only data URIs and anchors
    assert "<canvas" in html and "data:image/png;base64," in html
    payload = re.search(r'<script type="application/json" id="explore-data">(.*?)</script>', html, re.S)
    assert payload is not None
    data = json.loads(payload.group(1))
    assert len(data["map"]["points"]["x"]) == 150 and set(data["clusters"]) == {"kmeans", "agglomerative"}
    full = json.loads((out / "explore.json").read_text())
    assert sum(c["size"] for c in full["clusters"]["kmeans"]) == full["n_items"] == 1682


def test_human_output_and_single_method(mf_dir, tmp_path):
    res = runner.invoke(
        app,
        [
            "explore",
            str(mf_dir),
            "--out",
            str(tmp_path),
            "--max-items",
            "60",
            "--k",
            "4",
            "--method",
            "kmeans",
            "--no-k-selection",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "kmeans clusters (k=4)" in res.stdout and "neighbours sharing a genre" in res.stdout
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["map_genre.png", "map_kmeans.png"]


def test_model_without_embeddings_is_a_clear_error(bias_dir, tmp_path):
    with pytest.raises(CapabilityError, match=r"bias has no item embeddings.*mf"):
        load(bias_dir)
    res = runner.invoke(app, ["explore", str(bias_dir), "--out", str(tmp_path), "--json"])
    assert res.exit_code != 0 and isinstance(res.exception, CapabilityError)
    assert not list(tmp_path.iterdir())


def test_cli_error_line(bias_dir, tmp_path, monkeypatch, capsys):
    from recengine.cli import main

    monkeypatch.setattr("sys.argv", ["recengine", "explore", str(bias_dir), "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("error: bias has no item embeddings to explore")


def test_title_lookup_and_neighbour_tables(mf_dir):
    data = load(mf_dir)
    sw = int(np.flatnonzero(data.item_ids == 50)[0])
    assert resolve_items(data, ["50", "0050", "STAR WARS", "star wars (1977)", "Star W"]) == [sw] * 5
    with pytest.raises(UnknownIdError):
        resolve_items(data, ["no such film anywhere"])
    # An unknown id is not read as a part of a title ("0" is in "2001: A Space Odyssey").
    for unknown in ("0", "99999"):
        with pytest.raises(UnknownIdError, match=f"no item has the id '{unknown}'$"):
            resolve_items(data, [unknown])
    table = item_neighbours(data, ["Star Wars"], k=5, min_ratings=50)
    assert all(n["ratings"] >= 50 and n["item"] != 50 for n in table[0]["neighbours"])
    sims = [n["similarity"] for n in table[0]["neighbours"]]
    assert sims == sorted(sims, reverse=True) and len(sims) == 5
    assert resolve_users(data, ["0001"]) == resolve_users(data, ["1"])  # as the id maps read ids
    users = user_neighbours(data, ["1"], k=3)
    assert users[0]["query"]["user"] == 1 and len(users[0]["neighbours"]) == 3
    assert all(n["shared_items"] <= n["ratings"] for n in users[0]["neighbours"])


def test_web_views_are_plain_json(mf_dir):
    data = load(mf_dir)
    views = [
        web.clusters_view(data, k=5),
        web.map_view(data, max_items=50, k=4, titles=["Fargo"]),
        web.neighbours_view(data, titles=["Fargo"], k=4),
        web.user_neighbours_view(data, n=2, k=3),
        web.k_selection_view(data, ks=[2, 4]),
    ]
    for v in views:
        json.dumps(v, allow_nan=False)
    m = views[1]
    fargo = m["points"]["title"].index("Fargo (1996)")
    assert m["n_points"] == 50 and fargo >= 0 and len(m["clusters"]) == 4
    assert sum(c["size"] for c in views[0]["clusters"]) == len(views[0]["labels"]) == data.n_items


def test_without_item_metadata_and_with_string_ids(tmp_path):
    from recengine.data.interactions import Interactions
    from recengine.explore import ExploreOptions, analyse, from_model
    from recengine.explore.html import write_html
    from recengine.explore.report import write_pngs
    from recengine.explore.run import jsonable
    from recengine.models.registry import create

    rng = np.random.default_rng(0)
    users = rng.integers(0, 60, 1500).astype(str)
    items = np.char.add("film-", rng.integers(0, 80, 1500).astype(str))
    inter = Interactions.from_arrays(users, items, rng.integers(1, 6, 1500))
    model = create("mf", {"factors": 8, "epochs": 3}).fit(inter)
    data = from_model(model, None)
    assert data.titles[0].startswith("film-") and not any(data.genres)
    result = jsonable(analyse(data, ExploreOptions(k=3, max_items=40, ks=[2, 3], titles=["film-7"])))
    assert result["measures"] is None and result["has_genres"] is False
    assert all(c["genres"] == [] and c["name"] == "mixed" for c in result["clusters"]["kmeans"])
    assert result["neighbours"][0]["query"]["item"] == "film-7"
    assert result["map"]["points"]["item"].count("film-7") == 1  # asked titles are always mapped
    pngs = write_pngs(result, tmp_path)
    assert sorted(pngs) == ["k_selection", "map_agglomerative", "map_kmeans"]  # no all-grey genre map
    write_html(result, pngs, tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    assert "No genres" in html and "value=genre" not in html and "<option value='kmeans'>" in html


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """``recengine ARGS`` through the console entry point: exit status and stderr."""
    from recengine.cli import main

    capsys.readouterr()
    monkeypatch.setattr("sys.argv", ["recengine", *args])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    return code, capsys.readouterr().err


def test_refuses_a_directory_of_the_users_files(mf_dir, tmp_path, monkeypatch, capsys):
    (tmp_path / "report.html").write_text("my report")
    (tmp_path / "notes.txt").write_text("keep")
    code, err = _main(monkeypatch, capsys, "explore", str(mf_dir), "--out", str(tmp_path), *FAST)
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err
    assert f"{tmp_path} holds other files (notes.txt, report.html); give a new or empty directory" in err
    assert (tmp_path / "report.html").read_text() == "my report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "report.html"]


def test_rewrites_its_own_report_but_not_beside_other_files(mf_dir, tmp_path, monkeypatch, capsys):
    args = ("explore", str(mf_dir), "--out", str(tmp_path), "--max-items", "60", "--k", "3")
    quick = ("--method", "kmeans", "--no-k-selection", "--json")
    assert _main(monkeypatch, capsys, *args, *quick)[0] == 0
    code, err = _main(monkeypatch, capsys, *args, "--no-k-selection", "--json")  # both methods now
    assert code == 0, err
    assert (tmp_path / "map_agglomerative.png").exists()
    assert _main(monkeypatch, capsys, *args, *quick)[0] == 0  # one method again: the other map goes
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["map_genre.png", "map_kmeans.png"]
    (tmp_path / "notes.txt").write_text("keep")
    before = (tmp_path / "report.html").read_bytes()
    code, err = _main(monkeypatch, capsys, *args, *quick)
    assert code == 2 and "holds other files (notes.txt)" in err
    assert (tmp_path / "report.html").read_bytes() == before and (
        tmp_path / "notes.txt"
    ).read_text() == "keep"


# A run killed outright (SIGKILL, no cleanup) once its first PNG is written: the last plot kills it.
KILLED_RUN = """
import os, signal, sys
from pathlib import Path
from recengine.explore import ExploreOptions, explore, report

report.plot_k_selection = lambda result, path: os.kill(os.getpid(), signal.SIGKILL)
explore(Path(sys.argv[1]), Path(sys.argv[2]), ExploreOptions(k=3, max_items=60, ks=[2, 3]))
"""


def test_a_killed_run_leaves_what_the_next_run_knows_as_its_own(mf_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "report"
    child = subprocess.run([sys.executable, "-c", KILLED_RUN, str(mf_dir), str(out)], capture_output=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    (left,) = out.iterdir()  # only the hidden staging directory, the first PNGs in it
    assert left.name.startswith(".explore-") and (left / "map_genre.png").is_file()
    args = ("explore", str(mf_dir), "--out", str(out), "--max-items", "60", "--k", "3")
    code, err = _main(monkeypatch, capsys, *args)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(OWN_FILES)  # the leftovers are cleared
    (out / "notes.txt").write_text("keep")
    code, err = _main(monkeypatch, capsys, *args)
    assert code == 2 and "holds other files (notes.txt)" in err
    (out / "notes.txt").unlink()
    fake = out / left.name  # the staging name holding a user's file is not explore's
    fake.mkdir()
    (fake / "notes.txt").write_text("keep")
    code, err = _main(monkeypatch, capsys, *args)
    assert code == 2 and f"holds other files ({left.name}/)" in err
    assert (fake / "notes.txt").read_text() == "keep"


def test_a_run_that_fails_while_drawing_keeps_the_earlier_report(mf_dir, tmp_path, monkeypatch, capsys):
    from recengine.explore import report

    out = tmp_path / "report"
    args = ("explore", str(mf_dir), "--out", str(out), "--max-items", "60", "--k", "3", "--no-k-selection")
    assert _main(monkeypatch, capsys, *args, "--method", "kmeans")[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(result: object, path: Path) -> None:
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(report, "plot_k_selection", broken)  # after map_genre.png is written
    with pytest.raises(RuntimeError, match="drawing failed"):
        _main(monkeypatch, capsys, *args, "--seed", "1")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    new = tmp_path / "new"
    with pytest.raises(RuntimeError, match="drawing failed"):
        _main(monkeypatch, capsys, "explore", str(mf_dir), "--out", str(new), "--max-items", "60", "--k", "3")
    assert not new.exists()


def test_out_that_is_a_file_and_negative_seed_are_clear_errors(mf_dir, tmp_path, monkeypatch, capsys):
    f = tmp_path / "report.html"
    f.write_text("mine")
    code, err = _main(monkeypatch, capsys, "explore", str(mf_dir), "--out", str(f), *FAST)
    assert code == 2 and err.startswith(f"error: --out {f}: is a file, not a directory")
    code, err = _main(monkeypatch, capsys, "explore", str(mf_dir), "--out", str(f / "x"), *FAST)
    assert code == 2 and err.startswith(f"error: --out {f / 'x'}: {f} is a file, not a directory")
    assert f.read_text() == "mine"
    out = tmp_path / "new"
    code, err = _main(monkeypatch, capsys, "explore", str(mf_dir), "--out", str(out), "--seed", "-1", *FAST)
    assert code == 2 and "--seed" in err and "Traceback" not in err and not out.exists()
