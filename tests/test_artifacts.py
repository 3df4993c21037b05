"""Model directories: round trips with every baseline, atomic replacement, and each way loading refuses."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recengine import artifacts
from recengine.artifacts import ArtifactError, info, load, save, verify
from recengine.data.dataset import Dataset
from recengine.data.interactions import Interactions
from recengine.errors import CapabilityError, DataError
from recengine.models.registry import create

BASELINES = ["bias", "popularity", "user-mean", "global-mean"]


def ratings(string_ids: bool = False) -> Interactions:
    rng = np.random.default_rng(0)
    key = rng.choice(30 * 20, size=250, replace=False)
    u, i = key // 20 + 1, key % 20 + 1
    r = np.clip(np.round(3 + rng.standard_normal(250)), 1, 5)
    if string_ids:
        return Interactions.from_arrays(
            np.char.add("u", u.astype(str)), np.char.add("sku-", i.astype(str)), r
        )
    return Interactions.from_arrays(u, i, r)


def dataset(inter: Interactions) -> Dataset:
    ids = inter.items.to_list()
    items = pl.DataFrame(
        {
            "item": [*ids, 999],  # an item nobody rated: left out of the artifact
            "title": [f"Movie {x}" for x in ids] + ["Unrated"],
            "year": [1990 + n % 20 for n in range(len(ids) + 1)],
            "genres": [["Drama"] if n % 2 else ["Comedy", "Drama"] for n in range(len(ids) + 1)],
            "imdb_url": ["x"] * (len(ids) + 1),
        }
    )
    return Dataset("tiny", "ml-100k", inter, items=items)


@pytest.fixture(scope="module")
def data() -> Interactions:
    return ratings()


@pytest.mark.parametrize("name", BASELINES)
def test_round_trip_gives_identical_predictions_and_recommendations(tmp_path, data, name):
    model = create(name).fit(data)
    out = save(model, tmp_path / "m", dataset=dataset(data), metrics={"rmse": 0.9})
    back = load(out)
    assert type(back) is type(model) and back.get_params() == model.get_params()
    assert back.users == model.users and back.items == model.items and back.scale == model.scale
    a, b = model.seen(), back.seen()
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.data, b.data) and a.shape == b.shape  # ratings too: fold-in reuses them
    users = model.users.external[:7]
    ids_a, sc_a = model.recommend(users, 5)
    ids_b, sc_b = back.recommend(users, 5)
    assert np.array_equal(ids_a, ids_b) and np.array_equal(sc_a, sc_b)
    if model.capabilities.rating:
        u, i = data.users.external[data.user[:50]], data.items.external[data.item[:50]]
        assert np.array_equal(model.predict(u, i), back.predict(u, i))
    if model.capabilities.new_users:
        hist = data.items.external[:3]
        assert np.array_equal(
            model.recommend_new(hist, [5, 4, 1], 4)[0], back.recommend_new(hist, [5, 4, 1], 4)[0]
        )


def test_string_ids_round_trip(tmp_path):
    data = ratings(string_ids=True)
    model = create("bias").fit(data)
    back = load(save(model, tmp_path / "m"))
    assert back.users.to_list() == model.users.to_list() and back.items.external.dtype.kind == "U"
    assert np.array_equal(back.recommend(["u3"], 4)[0], model.recommend(["u3"], 4)[0])
    assert not (tmp_path / "m" / artifacts.ITEM_META).exists()  # no metadata without a data set


def test_directory_contents(tmp_path, data):
    model = create("bias").fit(data)
    rows = [{"epoch": 1, "loss": 1.0, "val_rmse": 0.9}, {"epoch": 2, "loss": 0.8, "val_rmse": 0.85}]
    model.history = {"history": rows, "best_epoch": 2, "stopped": "completed", "nan": float("nan")}
    out = save(
        model,
        tmp_path / "m",
        dataset=dataset(data),
        metrics={"rmse": np.float64(0.93)},
        fit_info={"seconds": 1.5},
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["weights.safetensors", "config.json", "users.json", "items.json", "items.parquet", "metrics.json",
         "curves.png", "manifest.json"]
    )  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == "recengine-model" and config["format_version"] == artifacts.FORMAT_VERSION
    assert config["model"] == "bias" and config["params"]["reg_user"] == 15.0
    assert config["capabilities"]["rating"] is True and config["rating_scale"]["low"] == 1.0
    assert config["data"] == {"name": "tiny", "layout": "ml-100k"} and config["fit"]["seconds"] == 1.5
    assert "recengine_version" in config and config["created"].endswith("+00:00")
    meta = pl.read_parquet(out / "items.parquet")
    assert meta.columns == ["item", "title", "year", "genres"] and meta.height == len(model.items)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evaluation"] == {"rmse": 0.93} and metrics["training"]["nan"] is None
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    assert set(manifest) == set(names) - {"manifest.json"}
    for name, entry in manifest.items():
        blob = (out / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
    assert verify(out)["ok"] and load(out).history["best_epoch"] == 2
    summary = info(out)
    assert (
        summary["model"] == "bias"
        and summary["training"]["epochs"] == 2
        and summary["training"]["best_epoch"] == 2
    )
    assert artifacts.item_titles(out)[int(model.items.external[0])].startswith("Movie")
    assert not list(tmp_path.glob(".*"))  # no temporary directories left


def test_replacing_a_model_and_refusing_other_directories(tmp_path, data):
    out = tmp_path / "m"
    save(create("bias").fit(data), out)
    save(create("popularity").fit(data), out)  # an existing model is replaced
    assert load(out).name == "popularity" and not list(tmp_path.glob(".*"))
    (tmp_path / "empty").mkdir()
    save(create("bias").fit(data), tmp_path / "empty")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(ArtifactError, match="refusing to replace"):
        save(create("bias").fit(data), mine)
    assert (mine / "thesis.tex").read_text() == "precious" and not list(tmp_path.glob(".*"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match="not a directory"):
        save(create("bias").fit(data), tmp_path / "file")


def test_a_model_directory_holding_other_files_is_not_replaced(tmp_path, data):
    out = save(create("bias").fit(data), tmp_path / "m")
    (out / ".m.tmp-0badcafe").mkdir()  # save's own leftover name: not the user's
    save(create("popularity").fit(data), out)
    (out / "notes.txt").write_text("keep me")
    (out / "plots").mkdir()
    with pytest.raises(ArtifactError, match=r"also holds other files \(notes.txt, plots/\)"):
        save(create("bias").fit(data), out)
    assert (out / "notes.txt").read_text() == "keep me" and (out / "plots").is_dir()
    assert load(out).name == "popularity"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match=r"cannot create the model's directory: .*file is a file"):
        save(create("bias").fit(data), tmp_path / "file" / "sub" / "m")
    assert (tmp_path / "file").read_text() == "x"


def test_a_failed_save_keeps_the_old_model(tmp_path, data, monkeypatch):
    out = save(create("bias").fit(data), tmp_path / "m")
    before = (out / "manifest.json").read_bytes()

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(artifacts, "_write_json", broken)
    with pytest.raises(ArtifactError, match="cannot write the model directory: No space left on device"):
        save(create("popularity").fit(data), out)
    assert (out / "manifest.json").read_bytes() == before and load(out).name == "bias"
    assert not list(tmp_path.glob(".*"))
    from safetensors import SafetensorError

    def full(*args: object, **kwargs: object) -> None:
        raise SafetensorError("Error while serializing: IoError(No space left on device)")

    monkeypatch.setattr(artifacts, "save_file", full)  # the weights file fails the same way
    with pytest.raises(ArtifactError, match=r"cannot write the model directory: .*No space left"):
        save(create("popularity").fit(data), out)
    assert (out / "manifest.json").read_bytes() == before and not list(tmp_path.glob(".*"))


def test_models_that_cannot_be_saved_say_so(tmp_path, data):
    model = create("bias").fit(data)
    model.state_arrays = lambda: (_ for _ in ()).throw(NotImplementedError())  # type: ignore[method-assign]
    with pytest.raises(CapabilityError, match="cannot be saved"):
        save(model, tmp_path / "m")


# ----- each way loading refuses --------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path, data) -> Path:
    return save(create("bias").fit(data), tmp_path / "m", dataset=dataset(data))


def refused(path: Path, *patterns: str) -> str:
    with pytest.raises(ArtifactError) as err:
        load(path)
    message = str(err.value)
    for p in patterns:
        assert p in message, message
    assert isinstance(err.value, DataError)
    return message


def test_corrupt_file_is_named(saved):
    f = saved / "weights.safetensors"
    blob = bytearray(f.read_bytes())
    blob[-3] ^= 0xFF
    f.write_bytes(bytes(blob))
    refused(saved, "weights.safetensors", "corrupt", "sha256")


def test_truncated_file_is_named(saved):
    f = saved / "users.json"
    f.write_bytes(f.read_bytes()[:-10])
    refused(saved, "users.json", "truncated")


def test_grown_file_is_named(saved):
    with (saved / "items.parquet").open("ab") as fh:
        fh.write(b"junk")
    refused(saved, "items.parquet", "corrupt")


def test_missing_file_is_named(saved):
    (saved / "items.json").unlink()
    refused(saved, "items.json", "missing")
    (saved / "manifest.json").unlink()
    refused(saved, "manifest.json", "incomplete")


def test_newer_format_is_refused(saved):
    config = json.loads((saved / "config.json").read_text())
    config["format_version"] = artifacts.FORMAT_VERSION + 1
    (saved / "config.json").write_text(json.dumps(config))
    refused(saved, "config.json", f"format {artifacts.FORMAT_VERSION + 1}", "upgrade recengine")


def test_directories_that_are_not_ours(tmp_path, saved):
    refused(tmp_path / "nope", "no such model directory")
    (tmp_path / "f").write_text("x")
    refused(tmp_path / "f", "not a model directory")
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.bin").write_bytes(b"\0" * 10)
    refused(other, "not a recengine model directory", "config.json")
    (other / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    refused(other, "not a recengine model directory")
    # Someone else's config.json inside an otherwise valid manifest: still not ours.
    (saved / "config.json").write_text(json.dumps({"format": "other"}))
    manifest = json.loads((saved / "manifest.json").read_text())
    blob = (saved / "config.json").read_bytes()
    manifest["files"]["config.json"] = {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
    (saved / "manifest.json").write_text(json.dumps(manifest))
    refused(saved, "not a recengine model", "config.json")


def test_manifest_cannot_point_outside(saved):
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["files"]["../secret"] = {"sha256": "0" * 64, "bytes": 1}
    (saved / "manifest.json").write_text(json.dumps(manifest))
    refused(saved, "not a file of this directory")


@pytest.mark.parametrize("bytes_", [None, "abc", 1e400, True, -1])
def test_a_corrupt_manifest_entry_is_named(saved, bytes_):
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["files"]["config.json"]["bytes"] = bytes_
    (saved / "manifest.json").write_text(json.dumps(manifest))
    refused(saved, "corrupt manifest entry for 'config.json'")
    assert artifacts.info(saved)["files"]["config.json"] == (-1 if bytes_ == -1 else None)  # no traceback


def test_a_manifest_name_too_long_for_the_file_system(saved):
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["files"]["x" * 300] = {"sha256": "0" * 64, "bytes": 1}
    (saved / "manifest.json").write_text(json.dumps(manifest))
    refused(saved, "which cannot be a file here")


def test_unknown_model_name_is_refused(saved):
    config = json.loads((saved / "config.json").read_text())
    config["model"] = "from-the-future"
    blob = json.dumps(config).encode()
    (saved / "config.json").write_bytes(blob)
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["files"]["config.json"] = {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
    (saved / "manifest.json").write_text(json.dumps(manifest))
    refused(saved, "cannot build the saved model", "from-the-future")


def test_no_pickle_in_the_artifact_code():
    import inspect

    src = inspect.getsource(artifacts)
    assert "pickle" not in src.replace("No pickle", "").replace("no pickle", "")
    assert "torch.load" not in src and "allow_pickle=True" not in src
