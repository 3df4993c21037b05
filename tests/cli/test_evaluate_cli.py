"""``recengine evaluate`` and friends as a user runs them: a real process, stdout, stderr, exit status."""

import json
import subprocess
import sys

import numpy as np


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recengine", *args], capture_output=True, text=True, timeout=300, env=env
    )


def test_evaluate_json_is_the_only_stdout(ml100k_dir):
    p = run(
        "evaluate",
        "--model",
        "bias",
        "--protocol",
        "ml100k-ua",
        "--data",
        str(ml100k_dir),
        "--json",
        "--set",
        "reg_user=5",
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["protocol"] == "ml100k-ua" and out["model"] == "bias"
    assert out["params"]["reg_user"] == 5
    assert {"folds", "fit_seconds", "rmse", "mae"} <= out.keys()
    assert 0.9 < out["rmse"] < 1.0


def test_evaluate_own_data_kfold(tmp_path):
    rng = np.random.default_rng(0)
    lines = ["user_id,item_id,rating,timestamp"]
    seen = set()
    while len(lines) < 400:
        u, i = int(rng.integers(1, 30)), f"sku-{int(rng.integers(1, 40))}"
        if (u, i) in seen:
            continue
        seen.add((u, i))
        lines.append(f"{u},{i},{int(rng.integers(1, 6))},{len(lines)}")
    f = tmp_path / "mine.csv"
    f.write_text("\n".join(lines) + "\n")
    p = run(
        "evaluate", "--model", "user-mean", "--data", str(f), "--split", "kfold", "--folds", "3", "--json"
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert len(out["folds"]) == 3 and out["rmse"] > 0
    table = run("evaluate", "--model", "user-mean", "--data", str(f), "--split", "kfold", "--folds", "3")
    mean_row = next(line for line in table.stdout.splitlines() if "│ mean " in line)
    assert f"{out['rmse']:.4f}" in mean_row and "(sum)" in mean_row  # fit seconds add up, metrics average
    p = run(
        "evaluate",
        "--model",
        "popularity",
        "--data",
        str(f),
        "--split",
        "leave-last-out",
        "--task",
        "topn",
        "--json",
    )
    assert p.returncode == 0, p.stderr
    assert "ndcg@10" in json.loads(p.stdout)
    p = run("evaluate", "--model", "deep-mf", "--data", str(f), "--set", "genres=true", "--set", "epochs=1")
    assert p.returncode == 2 and "needs item genres, and the data given has none" in p.stderr, p.stderr


def test_errors_exit_2_with_one_line():
    p = run("evaluate", "--model", "nope", "--protocol", "ml100k-u")
    assert p.returncode == 2
    assert p.stderr.strip().startswith("error: unknown model 'nope'")
    assert "Traceback" not in p.stderr
    p = run("evaluate", "--model", "bias", "--protocol", "ml100k-u", "--set", "oops")
    assert p.returncode == 2 and "key=value" in p.stderr


def test_a_pairs_file_is_not_ratings(tmp_path):
    """evaluate and recommend read ratings; JSON Lines pairs are for train object2vec and predict."""
    pairs = tmp_path / "train.jsonl"
    pairs.write_text('{"in0": [1], "in1": [2], "label": 1}\n')
    for args in (
        ("evaluate", "--model", "bias", "--data", str(pairs)),
        ("evaluate", "--model", "bias", "--data", str(pairs), "--user-col", "in0", "--item-col", "in1"),
        ("recommend", "--data", str(pairs), "--model", "bias", "--user", "1"),
    ):
        p = run(*args)
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        assert "holds Object2Vec pairs (in0, in1, label), not ratings" in p.stderr
        assert "recengine train object2vec --data" in " ".join(p.stderr.split())


def test_option_ranges_are_checked_before_any_work(tmp_path):
    own = tmp_path / "own.csv"
    own.write_text("user,item,rating\n1,10,4\n2,10,5\n1,11,3\n")
    for args, hint in (
        (("evaluate", "--model", "bias", "--data", str(own), "--seed", "-1"), "--seed"),
        (("evaluate", "--model", "bias", "--data", str(own), "--task", "topn", "--k", "0"), "--k"),
        (("compare", "--models", " , ", "--protocols", "ml100k-ua"), "--models"),
        (("compare", "--models", "bias", "--protocols", ""), "--protocols"),
    ):
        p = run(*args)
        assert p.returncode == 2 and hint in p.stderr and "Traceback" not in p.stderr, args


def test_recommend_prints_titles(ml100k_dir):
    p = run(
        "recommend",
        "--data",
        str(ml100k_dir),
        "--model",
        "bias",
        "--user",
        "1",
        "--user",
        "2",
        "-k",
        "3",
        "--json",
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert [u["user"] for u in out["users"]] == ["1", "2"]
    recs = out["users"][0]["recommendations"]
    assert len(recs) == 3 and all(r["title"] for r in recs)
