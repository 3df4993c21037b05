"""Learning curves as a PNG: training loss and the validation metric by epoch.

Drawn with matplotlib's object API on an Agg canvas (no pyplot, no global backend switch), so it
works on headless machines and from threads, and leaves the caller's matplotlib state alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def history_rows(history: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> list[dict[str, float]]:
    """Per-epoch rows from a model's ``history``, whichever of the two shapes it uses.

    The torch loop keeps ``{"history": [{"epoch": 1, "loss": ...}, ...], ...}`` (``TrainResult``);
    a model with its own loop may keep columns, ``{"epoch": [1, 2], "train_rmse": [...], ...}``.
    Anything else (a model trained in closed form) gives no rows.
    """
    if not history:
        return []
    if isinstance(history, Sequence):
        return [dict(h) for h in history if isinstance(h, Mapping)]
    rows = history.get("history")
    if isinstance(rows, list):
        return [dict(h) for h in rows if isinstance(h, Mapping)]
    epochs = history.get("epoch")
    if isinstance(epochs, list) and epochs:
        cols = {
            k: v
            for k, v in history.items()
            if isinstance(v, list) and len(v) == len(epochs) and all(isinstance(x, int | float) for x in v)
        }
        return [{k: float(v[n]) for k, v in cols.items()} for n in range(len(epochs))]
    return []


def plot_history(history: Sequence[Mapping[str, float]], path: Path, title: str | None = None) -> Path:
    """Write the curves of ``history`` (per-epoch dicts with ``epoch``, ``loss`` or ``train_*``, and
    any ``val_*``) to ``path``; the best validation epoch is marked."""
    if not history:
        raise ValueError("no training history to plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # here: reading histories needs no plotting
    from matplotlib.figure import Figure

    path = Path(path)
    epochs = [float(h.get("epoch", n + 1)) for n, h in enumerate(history)]
    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    train_keys = [k for k in history[0] if k == "loss" or k.startswith("train_")]
    for key, color in zip(train_keys, ("tab:blue", "tab:purple", "tab:brown"), strict=False):
        pts = [(e, float(h[key])) for e, h in zip(epochs, history, strict=True) if key in h]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=color, label=f"training {key}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training " + ", ".join(train_keys))
    val_keys = sorted({k for h in history for k in h if k.startswith("val_")})
    if val_keys:
        ax2 = ax.twinx()
        for key, color in zip(val_keys, ("tab:orange", "tab:green", "tab:red"), strict=False):
            pts = [(e, float(h[key])) for e, h in zip(epochs, history, strict=True) if key in h]
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker="s", color=color, label=key)
            values = [p[1] for p in pts]
            best = max(values) if key.endswith("accuracy") else min(values)
            ax2.axvline(pts[values.index(best)][0], color=color, linestyle=":", alpha=0.6)
        ax2.set_ylabel(", ".join(k.removeprefix("val_") for k in val_keys) + " (validation)")
        lines = ax.get_lines() + ax2.get_lines()
        ax.legend(lines, [str(ln.get_label()) for ln in lines], loc="upper right")
    elif train_keys:
        ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(path), format="png")
    return path
