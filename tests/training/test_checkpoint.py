"""Checkpoints: atomic writes, refusal of foreign or broken files, and resume after a real kill."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from recengine.errors import TrainingError
from recengine.training import checkpoint as ckpt
from recengine.training.checkpoint import (
    CHECKPOINT_FILE,
    clear_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from recengine.training.loop import train
from tests.training.tiny import TinyTask, config, make_arrays, weights

REPO = Path(__file__).resolve().parents[2]
BATCHES = 11  # 2,700 training rows of make_arrays() in batches of 256


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_round_trip_and_none_when_absent(tmp_path):
    assert load_checkpoint(tmp_path / "nothing") is None
    arrays: dict[str, np.ndarray] = {
        "w": np.arange(6, dtype=np.float32).reshape(2, 3),
        "step": np.array(3, dtype=np.int64),
    }
    save_checkpoint(tmp_path / "c", arrays, {"epoch": 2, "best": float("inf"), "h": [{"loss": 0.5}]})
    loaded = load_checkpoint(tmp_path / "c")
    assert loaded is not None
    got, meta = loaded
    assert np.array_equal(got["w"], arrays["w"]) and got["step"].shape == ()
    assert meta == {"epoch": 2, "best": float("inf"), "h": [{"loss": 0.5}]}
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [CHECKPOINT_FILE]


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, {"w": np.zeros(3)}, {"epoch": 1})

    def boom(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.os, "replace", boom)
    with pytest.raises(TrainingError, match=r"cannot write the checkpoint in .*: disk full"):
        save_checkpoint(tmp_path, {"w": np.ones(3)}, {"epoch": 2})
    monkeypatch.undo()
    loaded = load_checkpoint(tmp_path)
    assert loaded is not None and loaded[1]["epoch"] == 1 and not loaded[0]["w"].any()
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_FILE]  # no temporary file left


def test_broken_and_foreign_files_are_refused(tmp_path):
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(TrainingError, match="unreadable checkpoint"):
        load_checkpoint(tmp_path)
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(2)}, str(tmp_path / CHECKPOINT_FILE))
    with pytest.raises(TrainingError, match="no metadata"):
        load_checkpoint(tmp_path)
    save_file({"w": np.zeros(2)}, str(tmp_path / CHECKPOINT_FILE), metadata={"recengine.meta": "{}"})
    with pytest.raises(TrainingError, match="not a recengine checkpoint"):
        load_checkpoint(tmp_path)
    newer = json.dumps({"format": ckpt.FORMAT, "format_version": 99, "meta": {}})
    save_file({"w": np.zeros(2)}, str(tmp_path / CHECKPOINT_FILE), metadata={"recengine.meta": newer})
    with pytest.raises(TrainingError, match="newer"):
        load_checkpoint(tmp_path)
    with pytest.raises(TrainingError, match="JSON-serializable"):
        save_checkpoint(tmp_path, {}, {"x": object()})


def test_clear_removes_only_what_it_wrote(tmp_path):
    save_checkpoint(tmp_path / "a", {"w": np.zeros(1)}, {})
    clear_checkpoint(tmp_path / "a")
    assert not (tmp_path / "a").exists()
    save_checkpoint(tmp_path / "b", {"w": np.zeros(1)}, {})
    (tmp_path / "b" / "notes.txt").write_text("mine")
    clear_checkpoint(tmp_path / "b")
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["notes.txt"]
    # A run's own subdirectories (further ensemble members, a refit) go with it: a member's
    # checkpoint left behind would be taken up by a later resume of another run.
    for sub in ("", "member-1", "member-1/refit", "refit"):
        save_checkpoint(tmp_path / "c" / sub, {"w": np.zeros(1)}, {})
    (tmp_path / "c" / "member-x").mkdir()
    clear_checkpoint(tmp_path / "c")
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["member-x"]


def test_each_epoch_is_checkpointed_with_everything_a_resume_needs(tmp_path):
    train(TinyTask(), make_arrays(), config(epochs=2, patience=5), checkpoint_dir=tmp_path)
    loaded = load_checkpoint(tmp_path)
    assert loaded is not None
    arrays, meta = loaded
    prefixes = {k.split(".")[0] for k in arrays}
    assert prefixes == {"module", "optim", "best"}
    assert "module.norm.running_mean" in arrays and "optim.0.exp_avg" in arrays
    assert meta["epoch"] == 2 and meta["stopped"] == "completed" and len(meta["history"]) == 2
    assert {"early_stopping", "optimizer", "scheduler", "config", "fingerprint"} <= meta.keys()


@pytest.mark.parametrize("schedule", ["step", "plateau"])
def test_resume_after_a_kill_ends_with_the_uninterrupted_weights(tmp_path, schedule):
    arrays = make_arrays()
    cfg = config(lr_schedule=schedule, lr_step_epochs=2)
    kill_at = 3 * BATCHES + 5  # in the middle of epoch 4, after the checkpoint of epoch 3
    proc = subprocess.run(
        [sys.executable, "-m", "tests.training.tiny", str(tmp_path), str(kill_at), schedule],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    loaded = load_checkpoint(tmp_path)
    assert loaded is not None and loaded[1]["epoch"] == 3

    resumed = TinyTask(seed=99)  # other initial weights: the checkpoint must override all of them
    result = train(resumed, arrays, cfg, checkpoint_dir=tmp_path, resume=True)
    assert resumed.calls == 3 * BATCHES  # only epochs 4-6 ran here
    assert result.resumed_at_epoch == 3 and len(result.history) == 6

    clean = TinyTask()
    expected = train(clean, arrays, cfg)
    assert same(weights(resumed), weights(clean))
    strip = [
        {k: v for k, v in h.items() if k not in ("seconds", "samples_per_second")} for h in result.history
    ]
    assert strip == [
        {k: v for k, v in h.items() if k not in ("seconds", "samples_per_second")} for h in expected.history
    ]


def test_resuming_a_finished_run_trains_nothing(tmp_path):
    arrays = make_arrays()
    first = TinyTask()
    train(first, arrays, config(epochs=2), checkpoint_dir=tmp_path)
    again = TinyTask(seed=5)
    result = train(again, arrays, config(epochs=2), checkpoint_dir=tmp_path, resume=True)
    assert again.calls == 0 and result.stopped == "completed"
    assert same(weights(first), weights(again))


def test_resume_refuses_other_settings_or_other_data(tmp_path):
    arrays = make_arrays()
    train(TinyTask(), arrays, config(epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(TrainingError, match=r"lr: 0\.02 then, 0\.05 now"):
        train(TinyTask(), arrays, config(epochs=1, lr=0.05), checkpoint_dir=tmp_path, resume=True)
    other = make_arrays(seed=1)
    with pytest.raises(TrainingError, match="other data"):
        train(TinyTask(), other, config(epochs=1), checkpoint_dir=tmp_path, resume=True)
    # Without resume the old checkpoint is simply replaced.
    train(TinyTask(), other, config(epochs=1, lr=0.05), checkpoint_dir=tmp_path)

    # The model's own settings, given by the model, are kept and compared too.
    def with_width(width: int, resume: bool) -> None:
        cfg = config(epochs=1, lr=0.05)
        train(TinyTask(), other, cfg, checkpoint_dir=tmp_path, resume=resume, identity={"width": width})

    with_width(8, resume=False)
    with pytest.raises(TrainingError, match=r"other model settings \(width: 8 then, 16 now\)"):
        with_width(16, resume=True)
    with_width(8, resume=True)


@contextlib.contextmanager
def held_elsewhere(directory: Path) -> Iterator[int]:
    """Another process holds ``directory`` (as a running training does) until the block ends; its pid."""
    code = (
        "import sys; from recengine.training.checkpoint import held\n"
        f"with held({str(directory)!r}): print('in', flush=True); sys.stdin.readline()\n"
    )
    other = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "in"
        yield other.pid
    finally:
        other.communicate("\n", timeout=30)


def test_a_checkpoint_directory_is_held_by_one_run_at_a_time(tmp_path: Path) -> None:
    """A second run (another process) fails at once naming the holder; after the run the lock goes,
    and so does the directory when nothing else is left in it."""
    from recengine.training.checkpoint import LOCK_FILE, held

    d = tmp_path / "ckpt"
    with held_elsewhere(d) as pid:
        busy = rf"in use by another training \(process {pid}\)"
        with pytest.raises(TrainingError, match=busy), held(d):
            pass
    assert not d.exists()  # released and removed by its holder
    with held(d):
        assert (d / LOCK_FILE).is_file()
        (d / "checkpoint.safetensors").write_bytes(b"x")  # a checkpoint left for --resume
    assert d.is_dir() and not (d / LOCK_FILE).exists()
