"""Learning curves: both history shapes models keep, and a real PNG."""

from __future__ import annotations

import pytest

from recengine.training.curves import history_rows, plot_history

PNG = b"\x89PNG\r\n\x1a\n"


def test_history_rows_reads_both_shapes():
    rows = [{"epoch": 1, "loss": 1.0, "val_rmse": 0.9}, {"epoch": 2, "loss": 0.8, "val_rmse": 0.95}]
    assert history_rows({"history": rows, "best_epoch": 1}) == rows
    assert history_rows(rows) == rows
    cols = {
        "epoch": [1, 2],
        "train_rmse": [1.0, 0.9],
        "val_rmse": [0.95, 0.93],
        "best_epoch": 2,
        "solver": "sgd",
    }
    assert history_rows(cols) == [
        {"epoch": 1.0, "train_rmse": 1.0, "val_rmse": 0.95},
        {"epoch": 2.0, "train_rmse": 0.9, "val_rmse": 0.93},
    ]
    assert history_rows({}) == [] and history_rows(None) == [] and history_rows({"mu": 3.5}) == []


def test_plot_history_writes_a_png(tmp_path):
    rows = [{"epoch": e, "loss": 1 / e, "val_rmse": 1 + (e - 3) ** 2 / 10} for e in range(1, 7)]
    out = plot_history(rows, tmp_path / "sub" / "curves.png", title="tiny")
    assert out.read_bytes().startswith(PNG) and out.stat().st_size > 5000
    out2 = plot_history([{"epoch": 1, "train_rmse": 1.0}], tmp_path / "b.png")
    assert out2.read_bytes().startswith(PNG)
    acc = [{"epoch": 1, "loss": 0.7, "val_accuracy": 0.6}, {"epoch": 2, "loss": 0.6, "val_accuracy": 0.7}]
    assert plot_history(acc, tmp_path / "c.png").read_bytes().startswith(PNG)
    with pytest.raises(ValueError, match="no training history"):
        plot_history([], tmp_path / "d.png")
