"""``recengine train`` → ``recommend`` / ``predict`` / ``similar`` as a user runs them: one JSON object
on stdout with --json, one error line and exit status 2 on bad input.

Training and one failure run as real processes; the rest go through the same entry point
(``recengine.cli.main``) in this process, which spares a torch import per command.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recengine import artifacts
from tests.cli.runner import failed


def run_process(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recengine", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def model_dir(ml100k_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train") / "bias-model"
    p = run_process(
        "train", "bias", "--data", str(ml100k_dir), "--out", str(out), "--set", "reg_user=5", "--json"
    )
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["model"] == "bias" and summary["params"]["reg_user"] == 5 and summary["out"] == str(out)
    assert {"weights.safetensors", "config.json", "items.parquet", "users.json"} <= summary["files"].keys()
    assert not out.with_name("bias-model.checkpoints").exists()  # removed after a successful save
    return out


def test_train_writes_a_verified_model(model_dir):
    report = artifacts.verify(model_dir)
    assert report["ok"] and report["model"] == "bias"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["data"]["name"] == "ml-100k" and config["fit"]["ratings"] == 100_000


def test_recommend_from_the_directory_matches_fitting_in_place(model_dir, ml100k_dir, run):
    p = run("recommend", str(model_dir), "--user", "1", "--user", "2", "-k", "5", "--json")
    assert p.returncode == 0, p.stderr
    saved = json.loads(p.stdout)
    assert saved["model"] == "bias" and saved["data"] == "ml-100k" and saved["model_dir"] == str(model_dir)
    fresh = run(
        "recommend", "--data", str(ml100k_dir), "--model", "bias", "--set", "reg_user=5",
        "--user", "1", "--user", "2", "-k", "5", "--json",
    )  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr
    assert saved["users"] == json.loads(fresh.stdout)["users"]
    recs = saved["users"][0]["recommendations"]
    assert len(recs) == 5 and all(r["title"] for r in recs)
    text = run("recommend", str(model_dir), "--user", "1", "-k", "2")
    assert text.returncode == 0 and "top 2 for user 1" in text.stdout
    failed(run("recommend", str(model_dir), "--model", "bias", "--user", "1"), "not both")


def test_predict_round_trip_and_unknown_ids(model_dir, tmp_path, run):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user,item,rating\n1,1,5\n 2 ,50,4\n999999,1,3\n1,abc,2\n7,100,1\n")
    out = tmp_path / "pred.csv"
    failed(
        run("predict", str(model_dir), "--input", str(pairs), "--output", str(out)),
        "pairs.csv, line 4", "user '999999'", "lines 4, 5", "--unknown skip",
    )  # fmt: skip
    assert not out.exists()
    p = run(
        "predict", str(model_dir), "--input", str(pairs), "--output", str(out), "--unknown", "skip", "--json"
    )
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["rows"] == 5 and summary["predicted"] == 3 and summary["skipped"] == 2
    df = pl.read_csv(out)
    assert df.columns == ["user", "item", "prediction"] and df["user"].to_list() == [1, 2, 7]
    expected = artifacts.load(model_dir).predict([1, 2, 7], [1, 50, 100])
    np.testing.assert_allclose(df["prediction"].to_numpy(), expected, rtol=1e-12)
    (tmp_path / "bad.csv").write_text("who,what\n1,1\n")
    failed(
        run("predict", str(model_dir), "--input", str(tmp_path / "bad.csv"), "--output", str(out)),
        "user,item",
    )
    (tmp_path / "ragged.csv").write_text("user,item\n1,1\n2\n3,4,5\n")
    failed(
        run("predict", str(model_dir), "--input", str(tmp_path / "ragged.csv"), "--output", str(out)),
        "ragged.csv, line 3: expected 2 fields (user, item)",
    )
    (tmp_path / "movielens.csv").write_text("userId,movieId\n1,1\n")  # the training reader's names
    p = run("predict", str(model_dir), "--input", str(tmp_path / "movielens.csv"), "--output", str(out))
    assert p.returncode == 0, p.stderr
    assert pl.read_csv(out).columns == ["user", "item", "prediction"]


def test_similar_needs_embeddings(model_dir, run):
    failed(
        run("similar", str(model_dir), "--item", "1", "-k", "3", "--json"), "item embeddings", "object2vec"
    )


def test_help_names_every_model(run, monkeypatch):
    """The model lists in --help are written out; they must keep up with the registry."""
    from recengine.models.registry import MODELS

    monkeypatch.setenv("COLUMNS", "400")  # one line per option: rich's box would split the phrases

    for command in ("train", "evaluate"):
        text = " ".join(run(command, "--help").stdout.split())  # rich wraps the help text
        assert all(name in text for name in MODELS), (command, text)
    assert "JSON Lines pairs" in " ".join(run("train", "--help").stdout.split())


def test_train_refuses_before_fitting(ml100k_dir, tmp_path, run):
    failed(
        run("train", "bias", "--data", str(ml100k_dir), "--out", str(tmp_path / "m"), "--set", "nope=1"),
        "nope",
    )
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    failed(run("train", "bias", "--data", str(ml100k_dir), "--out", str(mine)), "refusing to replace")
    assert (mine / "notes.txt").read_text() == "keep me"


def test_train_refuses_an_out_whose_parent_it_cannot_write(ml100k_dir, tmp_path, run, monkeypatch):
    """A model directory is written beside itself and renamed into place: an existing --out in a
    directory that cannot be written would fail only after the fit (root passes os.access, so the
    refusal is simulated)."""
    import os

    parent = tmp_path / "p"
    (parent / "m").mkdir(parents=True)
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != parent and real(path, mode))
    failed(
        run("train", "bias", "--data", str(ml100k_dir), "--out", str(parent / "m")),
        f"cannot write in {parent}, where it is replaced",
    )


@pytest.mark.parametrize("solver", ["sgd", "als"])
@pytest.mark.parametrize("init_std", ["1e10", "1e300"])
def test_an_mf_run_that_diverges_says_so_without_numpy_warnings(ml100k_dir, tmp_path, run, solver, init_std):
    """An init_std beyond float32 overflows the initial factors; 1e10 leaves ALS's first normal
    equations numerically singular (its kernel raised ZeroDivisionError). Every solver: the one
    error line, no warning, no model directory."""
    out = tmp_path / "m"
    settings = ["--set", f"solver={solver}", "--set", f"init_std={init_std}"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = run("train", "mf", "--data", str(ml100k_dir), "--out", str(out), *settings)
    hint = "lower lr (now 0.006) or init_std" if solver == "sgd" else "lower init_std"
    failed(p, "mf: training diverged at epoch 1", hint)
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []
    assert "Warning" not in p.stderr and not out.exists()


def test_a_corrupt_model_is_one_clear_error(model_dir, tmp_path, run):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    f = broken / "weights.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    failed(run_process("recommend", str(broken), "--user", "1"), "weights.safetensors", "truncated")
    failed(run("similar", str(tmp_path), "--item", "1"), "not a recengine model directory")


def test_train_includes_feedback_from_the_store(ml100k_dir, tmp_path, run):
    from recengine.serving.store import open_store

    store_path = tmp_path / "feedback.sqlite3"
    store = open_store(store_path)
    # the server files feedback under the data set's name; ml100k_dir's directory name is ml-100k
    store.add("ml-100k", "web-newcomer", [("50", 5.0), ("181", 4.0)])
    store.add("ml-100k", "1", [("50", 1.0)])  # a known user changes a rating
    store.close()
    out = tmp_path / "with-feedback"
    res = run(
        "train",
        "bias",
        "--data",
        str(ml100k_dir),
        "--out",
        str(out),
        "--include-feedback",
        str(store_path),
        "--json",
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["fit_info"]["feedback_ratings"] == 3
    m = artifacts.load(out)
    items, ratings = m.user_history("web-newcomer")
    assert sorted(items.tolist()) == [50, 181] and sorted(ratings.tolist()) == [4.0, 5.0]
    items1, ratings1 = m.user_history(1)
    assert ratings1[items1.tolist().index(50)] == 1.0


def test_retraining_refuses_a_model_directory_holding_other_files(model_dir, tmp_path, run):
    import shutil

    mine = tmp_path / "m"
    shutil.copytree(model_dir, mine)
    (mine / "notes.txt").write_text("keep me")
    # --data names nothing: the refusal must come before the data is read, let alone fitted
    failed(
        run("train", "bias", "--data", str(tmp_path / "no-data"), "--out", str(mine)),
        "also holds other files (notes.txt)",
        "refusing to replace",
    )
    assert (mine / "notes.txt").read_text() == "keep me" and artifacts.verify(mine)["ok"]


def test_output_paths_that_cannot_be_made_fail_before_any_work(model_dir, tmp_path, run):
    notadir = tmp_path / "notadir"
    notadir.write_text("hi\n")
    no_data = str(tmp_path / "no-data")  # reading it would fail: every refusal below comes first
    failed(
        run("train", "bias", "--data", no_data, "--out", str(notadir / "sub" / "model")),
        f"--out {notadir / 'sub' / 'model'}: {notadir} is a file, not a directory",
    )
    out = str(tmp_path / "m")
    failed(
        run("train", "mf", "--data", no_data, "--out", out, "--checkpoint-dir", str(notadir)),
        f"--checkpoint-dir {notadir}: is a file, not a directory",
    )
    failed(
        run("train", "mf", "--data", no_data, "--out", out, "--checkpoint-dir", str(notadir / "x")),
        f"--checkpoint-dir {notadir / 'x'}: {notadir} is a file, not a directory",
    )
    failed(
        run("train", "mf", "--data", no_data, "--out", out, "--checkpoint-dir", str(tmp_path / "m" / "ck")),
        "is inside --out",
    )
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user,item\n1,1\n")
    (tmp_path / "pr" / "outdir").mkdir(parents=True)
    failed(
        run("predict", str(model_dir), "--input", str(pairs), "--output", str(tmp_path / "pr" / "outdir")),
        "--output", "is a directory; give a file name",
    )  # fmt: skip
    failed(
        run("predict", str(model_dir), "--input", str(pairs), "--output", str(notadir / "x.csv")),
        f"--output {notadir / 'x.csv'}: {notadir} is a file, not a directory",
    )
    assert notadir.read_text() == "hi\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "notadir",
        "pairs.csv",
        "pr",
    ]
    assert not any((tmp_path / "pr" / "outdir").iterdir())


def test_a_feedback_store_that_is_not_there_is_refused(ml100k_dir, tmp_path, run):
    missing = tmp_path / "nope" / "feedback.sqlite3"
    out = str(tmp_path / "m")
    for store in (str(missing), f"sqlite://{missing}"):
        failed(
            run("train", "bias", "--data", str(ml100k_dir), "--out", out, "--include-feedback", store),
            f"no such feedback store: {store}",
        )
    assert not (tmp_path / "nope").exists() and not (tmp_path / "m").exists()


def test_resume_without_a_checkpoint_says_it_starts_over(ml100k_dir, tmp_path, run):
    out = tmp_path / "m"
    p = run("train", "bias", "--data", str(ml100k_dir), "--out", str(out), "--resume", "--json")
    assert p.returncode == 0, p.stderr
    assert f"no checkpoint in {out}.checkpoints; training from the start\n" in p.stderr
    assert json.loads(p.stdout)["fit_info"]["resumed"] is False


def test_train_reads_a_file_of_ones_own_as_evaluate_does(ml100k_dir, tmp_path, run):
    """No header, another separator, other column names, a declared scale: the same options as
    ``evaluate``, and the same refusals."""
    rows = [(1, 10, 4), (2, 10, 5), (1, 11, 3), (3, 12, 2), (2, 12, 1), (3, 10, 4)]
    bare = tmp_path / "bare.txt"
    bare.write_text("".join(f"{u};{i};{r}\n" for u, i, r in rows))
    p = run("train", "bias", "--data", str(bare), "--out", str(tmp_path / "a"), "--no-header", "--sep", ";")
    assert p.returncode == 0, p.stderr
    model = artifacts.load(tmp_path / "a")
    assert len(model.users) == 3 and len(model.items) == 3
    named = tmp_path / "named.csv"
    named.write_text("who,what,stars\n" + "".join(f"{u},{i},{r}\n" for u, i, r in rows))
    failed(run("train", "bias", "--data", str(named), "--out", str(tmp_path / "b")), "--user-col")
    cols = ("--user-col", "who", "--item-col", "what", "--rating-col", "stars")
    p = run("train", "bias", "--data", str(named), "--out", str(tmp_path / "b"), *cols, "--scale", "1:5")
    assert p.returncode == 0, p.stderr
    assert artifacts.load(tmp_path / "b").scale is not None
    failed(
        run("train", "bias", "--data", str(named), "--out", str(tmp_path / "c"), *cols, "--scale", "5:1"),
        "--scale 5:1: rating scale needs low < high",
    )
    failed(
        run("train", "bias", "--data", str(ml100k_dir), "--out", str(tmp_path / "d"), "--no-header"),
        "apply to a ratings file",
    )
    failed(run("train", "bias", "--data", "", "--out", str(tmp_path / "e")), "--data is empty")
    failed(run("recommend", "--user", "1", "--data", " "), "--data is empty")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stopped_training_run_says_so_and_keeps_its_checkpoint(ml100k_dir, tmp_path, signum):
    out, ckpt = tmp_path / "m", tmp_path / "ckpt"
    args = ["train", "deep-mf", "--data", str(ml100k_dir), "--out", str(out), "--checkpoint-dir", str(ckpt)]
    args += ["--set", "epochs=1000", "--set", "patience=null", "--set", "threads=1"]
    proc = subprocess.Popen([sys.executable, "-m", "recengine", *args], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (ckpt / "checkpoint.safetensors").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, err
    assert err.strip().splitlines()[-1] == ("interrupted" if signum == signal.SIGINT else "terminated")
    assert "Traceback" not in err and not out.exists()
    assert (ckpt / "checkpoint.safetensors").is_file()
    assert not [p.name for p in ckpt.iterdir() if p.name != "checkpoint.safetensors"]  # no temporary left


def test_train_gives_the_model_the_data_sets_features(ml100k_dir, tmp_path, run):
    """Object2Vec trained by the command reads ml-100k's item and user features (its side tokens),
    as the library's ``use_dataset`` gives them; deep-mf reads the genres."""
    out = tmp_path / "o2v"
    small = ["--set", "epochs=1", "--set", "members=1", "--set", "enc_dim=8", "--set", "mlp_dim=8"]
    small += ["--set", "token_embedding_dim=8", "--set", "threads=1", "--set", "mini_batch_size=1024"]
    p = run("train", "object2vec", "--data", str(ml100k_dir), "--out", str(out), *small, "--json")
    assert p.returncode == 0, p.stderr
    side = artifacts.load(out).history["object2vec"]["side_tokens"]
    assert side == {"user": ["age", "gender", "occupation"], "item": ["genres", "title", "year"]}
    out = tmp_path / "dmf"
    dmf = ["--set", "genres=true", "--set", "epochs=1", "--set", "threads=1"]
    p = run("train", "deep-mf", "--data", str(ml100k_dir), "--out", str(out), *dmf, "--json")
    assert p.returncode == 0, p.stderr
    genres = artifacts.load(out).state_arrays()["item_genres"]
    assert genres.shape[0] == 1682 and genres.shape[1] >= 18
    np.testing.assert_allclose(genres.sum(axis=1), 1.0)  # every ml-100k movie has a genre


def test_train_reads_sagemaker_json_lines_pairs(tmp_path, run):
    """A JSON Lines file of Object2Vec pairs (in0, in1, label) trains object2vec as SageMaker's
    training channel does; other models, reading options and a bad line are refused by name."""
    from recengine.data.pairs import read_pairs, write_pairs

    rng = np.random.default_rng(0)
    cells = rng.choice(39 * 59, 600, replace=False)  # distinct (user, item) pairs
    users, items = cells // 59 + 1, cells % 59 + 1
    labels = np.clip(np.round(3 + (users % 2) - (items % 2) + rng.normal(0, 0.5, 600)), 1, 5)
    path = write_pairs(tmp_path / "train.jsonl", users[:, None], items[:, None], labels)
    out = tmp_path / "o2v"
    small = ["--set", "epochs=2", "--set", "members=1", "--set", "enc_dim=8", "--set", "threads=1"]
    p = run("train", "object2vec", "--data", str(path), "--out", str(out), *small, "--json")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["data"] == "train.jsonl" and summary["fit_info"]["ratings"] == 600
    from recengine.models.object2vec import Object2Vec

    m = artifacts.load(out)
    assert isinstance(m, Object2Vec) and m.layout["mode"] == "pairs"
    pairs_csv = tmp_path / "pairs.csv"
    pairs_csv.write_text(
        "user,item\n" + "".join(f"{u},{i}\n" for u, i in zip(users[:5], items[:5], strict=True))
    )
    p = run("predict", str(out), "--input", str(pairs_csv), "--output", str(tmp_path / "pred.csv"))
    assert p.returncode == 0, p.stderr
    got = pl.read_csv(tmp_path / "pred.csv")["prediction"].to_numpy()
    np.testing.assert_allclose(got, m.predict_pairs(read_pairs(path))[:5], rtol=1e-5)

    failed(run("train", "bias", "--data", str(path), "--out", str(tmp_path / "b")), "only object2vec")
    p = run("train", "object2vec", "--data", str(path), "--out", str(tmp_path / "c"), "--no-header")
    failed(p, "holds Object2Vec pairs", "--no-header apply to ratings files")
    bad = tmp_path / "bad.jsonl"
    lines = path.read_text().splitlines()
    bad.write_text("\n".join([*lines[:2], '{"in0": [1], "in1": "x", "label": 3}', *lines[3:]]) + "\n")
    failed(run("train", "object2vec", "--data", str(bad), "--out", str(tmp_path / "d")), "line 3", "in1")
    assert not (tmp_path / "b").exists() and not (tmp_path / "d").exists()


def test_a_warning_is_one_line_on_stderr(tmp_path):
    """Truncated token sequences are counted and said in one ``warning:`` line, without the source
    line of the code that noticed them."""
    from recengine.data.pairs import write_pairs

    path = write_pairs(tmp_path / "long.jsonl", [[1, 2, 3, 4], [2]], [[10], [11]], [4.0, 3.0])
    out = tmp_path / "m"
    p = run_process(
        "train",
        "object2vec",
        "--data",
        str(path),
        "--out",
        str(out),
        "--set",
        "epochs=1",
        "--set",
        "enc0_max_seq_len=2",
        "--set",
        "members=1",
    )
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    want = "warning: object2vec: 1 in0 token sequences were longer than max_seq_len=2 and were truncated"
    assert want in lines and "UserWarning" not in p.stderr and ".py:" not in p.stderr, p.stderr


def test_predict_answers_json_lines_instances_as_the_endpoint_does(model_dir, tmp_path, run):
    """SageMaker's batch transform: JSON Lines instances in, one answer line each out, as
    ``/invocations`` answers them; a bad line is named and nothing is written."""
    src = tmp_path / "instances.jsonl"
    src.write_text('{"in0": ["196"], "in1": ["242"]}\n\n{"in0": [186], "in1": [302], "label": 3}\n')
    out = tmp_path / "answers.jsonl"
    p = run("predict", str(model_dir), "--input", str(src), "--output", str(out), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["rows"] == 2
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    expected = artifacts.load(model_dir).predict([196, 186], [242, 302])
    assert [a["scores"] for a in answers] == [[pytest.approx(x)] for x in expected]
    for name, second, needle in [
        ("b.jsonl", '{"in0": [196], "in1": [424242]}', "424242"),
        ("c.jsonl", '{"in0": [196], ', "not a JSON object"),
    ]:
        bad = tmp_path / f"in-{name}"
        bad.write_text('{"in0": [196], "in1": [242]}\n' + second + "\n")
        p = run("predict", str(model_dir), "--input", str(bad), "--output", str(tmp_path / name))
        failed(p, "line 2", needle)
    row = [0.0] * (943 + 1682)  # a factorization-machine row: user 1 and item 1, one-hot
    row[0] = row[943] = 1.0
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"in0": [196], "in1": [242]}\n' + json.dumps({"features": row}) + "\n")
    p = run("predict", str(model_dir), "--input", str(mixed), "--output", str(tmp_path / "m.jsonl"))
    failed(p, "the lines are not all of one format")
    p = run(
        "predict",
        str(model_dir),
        "--input",
        str(src),
        "--output",
        str(tmp_path / "d.jsonl"),
        "--unknown",
        "skip",
    )
    failed(p, "--unknown skip applies to CSV input")
    assert not any((tmp_path / n).exists() for n in ("b.jsonl", "c.jsonl", "d.jsonl", "m.jsonl"))


def sittings_csv(path: Path, seed: int, per_sitting: int) -> Path:
    """Twenty users, each with one good sitting (every rating 5) and one bad (1) a day apart,
    ``per_sitting`` ratings a second apart in each: a CSV with a timestamp column."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, 21):
        for k, good in enumerate(rng.permutation([True, False])):
            for j, i in enumerate(rng.permutation(30)[:per_sitting] + 1 + 30 * k):
                rows.append(f"{u},{i},{5 if good else 1},{1_000_000 + 86_400 * k + j}\n")
    path.write_text("user,item,rating,timestamp\n" + "".join(rows))
    return path


def test_predict_reads_the_query_time_for_a_model_with_sessions(tmp_path, run):
    """A timestamp column in --input reaches a model with sessions (each row predicted in the
    sitting it falls in); a time that is not whole seconds is named by its line."""
    data = sittings_csv(tmp_path / "ratings.csv", seed=0, per_sitting=6)
    out = tmp_path / "o2v"
    small = ["--set", "epochs=15", "--set", "members=1", "--set", "enc_dim=8", "--set", "threads=1"]
    small += ["--set", "session_gap=60", "--set", "session_reg=0.5", "--set", "val_fraction=0"]
    p = run("train", "object2vec", "--data", str(data), "--out", str(out), *small, "--json")
    assert p.returncode == 0, p.stderr
    m = artifacts.load(out)
    queries = tmp_path / "queries.csv"
    queries.write_text("user,item,time\n1,7,1000003\n1,7,1086403.0\n1,7,99\n1,7,\n1,999,soon\n")
    p = run(
        "predict",
        str(out),
        "--input",
        str(queries),
        "--output",
        str(tmp_path / "pred.csv"),
        "--unknown",
        "skip",
    )
    assert p.returncode == 0, p.stderr
    got = pl.read_csv(tmp_path / "pred.csv", schema_overrides={"timestamp": pl.Utf8})
    assert got["timestamp"].to_list() == ["1000003", "1086403.0", "99", None]  # the rows told apart
    uu, ii = m.users.to_internal([1] * 4), m.items.to_internal([7] * 4)
    want = m.predict_internal(uu, ii, [1_000_003, 1_086_403, 99, -(2**63)])
    np.testing.assert_allclose(got["prediction"].to_numpy(), want, rtol=1e-5)
    assert len(set(np.round(want, 6))) == 3  # two sittings and none (a time in none, or no time)
    assert want[2] == want[3] == m.predict_internal(uu[:1], ii[:1])[0]
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,timestamp\n1,7,1000003\n1,7,soon\n")
    p = run("predict", str(out), "--input", str(bad), "--output", str(tmp_path / "b.csv"))
    failed(p, "line 3", "soon")
    # A model without sessions does not read the column at all (whatever it holds).
    bias = tmp_path / "bias"
    assert run("train", "bias", "--data", str(data), "--out", str(bias)).returncode == 0
    assert run("predict", str(bias), "--input", str(bad), "--output", str(tmp_path / "c.csv")).returncode == 0


def test_predict_with_session_residuals_notes_a_file_without_times(tmp_path, run):
    """``--set session_residuals=600`` (one window, read as a number) trains a model that reads the
    query's time; a pairs file without a timestamp column is predicted as without, with a note."""
    data = sittings_csv(tmp_path / "ratings.csv", seed=1, per_sitting=8)
    out = tmp_path / "o2v"
    small = ["--set", "epochs=10", "--set", "members=1", "--set", "enc_dim=8", "--set", "threads=1"]
    small += ["--set", "session_residuals=600", "--set", "val_fraction=0.3"]
    p = run("train", "object2vec", "--data", str(data), "--out", str(out), *small, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["params"]["session_residuals"] == [600]
    plain, timed = tmp_path / "plain.csv", tmp_path / "timed.csv"
    plain.write_text("user,item\n1,7\n")
    timed.write_text("user,item,timestamp\n1,7,1000003\n")
    p = run("predict", str(out), "--input", str(plain), "--output", str(tmp_path / "a.csv"))
    assert p.returncode == 0 and "has no timestamp column" in " ".join(p.stderr.split()), p.stderr
    p = run("predict", str(out), "--input", str(timed), "--output", str(tmp_path / "b.csv"))
    assert p.returncode == 0 and "timestamp column" not in p.stderr, p.stderr
    a, b = (pl.read_csv(tmp_path / n)["prediction"][0] for n in ("a.csv", "b.csv"))
    assert a != b


def test_two_trainings_into_one_out_do_not_share_its_checkpoints(tmp_path, run):
    """While one training holds OUT.checkpoints, a second one into the same --out fails at once
    (it would overwrite the first's checkpoints), and the model already at --out stays."""
    data = tmp_path / "ratings.csv"
    data.write_text(
        "user,item,rating\n" + "".join(f"{u},{i},{1 + (u * i) % 5}\n" for u in range(9) for i in range(7))
    )
    out = tmp_path / "m"
    assert run("train", "bias", "--data", str(data), "--out", str(out)).returncode == 0
    before = (out / "config.json").read_bytes()
    from tests.training.test_checkpoint import held_elsewhere

    with held_elsewhere(tmp_path / "m.checkpoints") as pid:
        p = run("train", "mf", "--data", str(data), "--out", str(out))
        failed(p, "in use by another training", f"process {pid}")
    assert (out / "config.json").read_bytes() == before
    assert run("train", "mf", "--data", str(data), "--out", str(out)).returncode == 0  # free again
    assert not (tmp_path / "m.checkpoints").exists()
