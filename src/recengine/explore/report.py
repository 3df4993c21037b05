"""Pictures of an exploration: the map coloured by genre and by cluster, and the k-selection curves.

PNG files people open directly, drawn with the Agg backend (no display needed). The most-rated titles
are named on the maps where a label fits without covering another; the rest are left unnamed
rather than piled into an unreadable heap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

GENRE_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#843c39",
)
OTHER_COLOURS = ("#a0a0a0", "#d4d4d4")  # "other", "no genre"
_PNG_META = {"Software": None}  # keep the library's web address out of the files


def genre_colours(legend: list[str]) -> list[str]:
    """One colour per legend entry of a map (palette genres, then "other" and "no genre")."""
    n = len(legend) - 2
    return [GENRE_COLOURS[i % len(GENRE_COLOURS)] for i in range(n)] + list(OTHER_COLOURS)


def cluster_colours(k: int) -> list[str]:
    """Distinct colours for k clusters: tab10 / tab20 where they suffice, evenly spaced hues beyond."""
    import matplotlib as mpl
    from matplotlib.colors import to_hex

    if k <= 10:
        return [to_hex(c) for c in mpl.colormaps["tab10"].colors[:k]]  # type: ignore[attr-defined]
    if k <= 20:
        cols = mpl.colormaps["tab20"].colors  # type: ignore[attr-defined]
        order = [*range(0, 20, 2), *range(1, 20, 2)]  # the dark ones first, then their light twins
        return [to_hex(cols[i]) for i in order[:k]]
    hsv = mpl.colormaps["hsv"]
    return [to_hex(hsv((i * 0.618034) % 1.0)) for i in range(k)]


def _label_positions(ax: Any, fig: Any, xs: np.ndarray, ys: np.ndarray, texts: list[str]) -> int:
    """Name points where a label fits: try eight places around each, keep the first free one."""
    import matplotlib.patheffects as pe

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes_box = ax.get_window_extent(renderer)
    placed: list[Any] = []
    offsets = [(6, 6), (6, -10), (-6, 6), (-6, -10), (0, 14), (0, -18), (14, 0), (-14, 0)]
    shown = 0
    for x, y, text in zip(xs, ys, texts, strict=True):
        for dx, dy in offsets:
            t = ax.annotate(
                text,
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                fontsize=8,
                ha="left" if dx >= 0 else "right",
                va="center",
                zorder=5,
                path_effects=[pe.withStroke(linewidth=2.5, foreground="white")],
                arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.35", "shrinkA": 0, "shrinkB": 2},
            )
            bb = t.get_window_extent(renderer).expanded(1.04, 1.15)
            inside = axes_box.contains(bb.x0, bb.y0) and axes_box.contains(bb.x1, bb.y1)
            if inside and not any(bb.overlaps(o) for o in placed):
                placed.append(bb)
                shown += 1
                break
            t.remove()
    return shown


def plot_map(
    result: dict[str, Any], path: Path, *, colour_by: str = "genre", title: str | None = None
) -> Path:
    """The t-SNE map as a PNG, coloured by main genre (``"genre"``) or by a clustering method's labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    m = result["map"]
    pts = m["points"]
    x, y = np.asarray(pts["x"]), np.asarray(pts["y"])
    ratings = np.asarray(pts["ratings"], dtype=np.float64)
    n = len(x)
    base = float(np.clip(60 / np.sqrt(max(n, 1) / 300), 1.5, 40))
    size = base * (0.35 + np.log1p(ratings) / max(np.log1p(ratings.max(initial=1)), 1e-9))
    if colour_by == "genre":
        names = m["genres"]
        colours = genre_colours(names)
        codes = np.asarray(pts["genre"], dtype=np.int64)
        entries = [f"{g}" for g in names]
        legend_title = "main genre"
    else:
        codes = np.asarray(pts["clusters"][colour_by], dtype=np.int64)
        table = result["clusters"][colour_by]
        colours = cluster_colours(len(table))
        entries = [f"{c['cluster']}: {c['name']} ({c['size']})" for c in table]
        legend_title = f"{colour_by} cluster: top genres (items)"
    palette = np.asarray(colours)
    fig, ax = plt.subplots(figsize=(13, 9), dpi=110)
    order = np.argsort(ratings, kind="stable")  # popular items drawn last, on top
    ax.scatter(x[order], y[order], s=size[order], c=palette[codes[order]], alpha=0.75, linewidths=0)
    present = sorted(set(codes.tolist()))
    handles = [
        Line2D([], [], marker="o", linestyle="", markersize=7, color=colours[c], label=entries[c])
        for c in present
    ]
    ax.legend(
        handles=handles,
        title=legend_title,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        title_fontsize=9,
        frameon=False,
    )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    sub = f"{n:,} of {m['n_items']:,} items" if m["subsampled"] else f"{n:,} items"
    ax.set_title(title or _title(result, colour_by, sub), fontsize=11, loc="left")
    fig.tight_layout()
    lab = np.asarray(m["labelled"], dtype=np.int64)
    texts = [_short(pts["title"][i]) for i in lab]
    _label_positions(ax, fig, x[lab], y[lab], texts)
    fig.savefig(path, metadata=_PNG_META)
    plt.close(fig)
    return path


def _title(result: dict[str, Any], colour_by: str, sub: str) -> str:
    what = "main genre" if colour_by == "genre" else f"{colour_by} clusters (k={result['k']})"
    data = f" on {result['data']}" if result.get("data") else ""
    return f"t-SNE of {result['model']}{data} item embeddings, coloured by {what} — {sub}; size: ratings"


def _short(text: str, width: int = 32) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def plot_k_selection(result: dict[str, Any], path: Path) -> Path | None:
    """Inertia (elbow) and silhouette against k for each method, the chosen k marked."""
    sel = result.get("k_selection")
    if not sel:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sel["ks"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    styles = {"kmeans": ("#1f77b4", "o"), "agglomerative": ("#d62728", "s")}
    for method in ("kmeans", "agglomerative"):
        if method not in sel:
            continue
        c, mk = styles[method]
        s = sel[method]
        a1.plot(ks, s["inertia"], marker=mk, color=c, label=f"{method} (elbow k={s['elbow_k']})")
        a2.plot(ks, s["silhouette"], marker=mk, color=c, label=f"{method} (best k={s['best_silhouette_k']})")
    for a, name in ((a1, "within-cluster sum of squares (inertia)"), (a2, "silhouette (higher is better)")):
        a.axvline(result["k"], color="0.5", linestyle="--", linewidth=1)
        a.set_xlabel("k (number of clusters)")
        a.set_title(name, fontsize=10)
        a.legend(fontsize=8, frameon=False)
        a.grid(alpha=0.3)
    fig.suptitle(f"Choosing k for {result['model']}: dashed line = k used ({result['k']})", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, metadata=_PNG_META)
    plt.close(fig)
    return path


def write_pngs(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Every PNG of the report into ``out_dir``: map_genre.png (for items with genres),
    map_<method>.png, k_selection.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    if result.get("has_genres", True):  # without genres every point would be "no genre"
        files["map_genre"] = plot_map(result, out_dir / "map_genre.png", colour_by="genre")
    for method in result["clusters"]:
        files[f"map_{method}"] = plot_map(result, out_dir / f"map_{method}.png", colour_by=method)
    ks = plot_k_selection(result, out_dir / "k_selection.png")
    if ks is not None:
        files["k_selection"] = ks
    return files
