"""``recengine explore`` as a library call: load a model directory, analyse it, write the report."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from recengine.errors import ConfigError, listed

from .analysis import ExploreOptions, analyse
from .embeddings import load

# Every file explore writes; explore.json (a JSON object with these keys) marks a directory as its own.
OWN_FILES = frozenset(
    {
        "map_genre.png",
        "map_kmeans.png",
        "map_agglomerative.png",
        "k_selection.png",
        "report.html",
        "explore.json",
    }
)
_OWN_KEYS = ("model", "map", "clusters")


def jsonable(o: Any) -> Any:
    """Plain JSON data (numpy scalars unwrapped, NaN and inf as null)."""
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [jsonable(v) for v in o]
    if hasattr(o, "item") and callable(o.item):
        return jsonable(o.item())
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def explore(model_dir: Path, out_dir: Path, options: ExploreOptions | None = None) -> dict[str, Any]:
    """Write ``map_genre.png``, ``map_<method>.png``, ``k_selection.png``, ``report.html`` and
    ``explore.json`` (everything, JSON) into ``out_dir``; return a summary of what was found."""
    from .html import write_html
    from .report import write_pngs

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    check_out_dir(out_dir)  # before the t-SNE, which can take minutes
    data = load(Path(model_dir))
    result = jsonable(analyse(data, options))
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = write_pngs(result, out_dir)
    html = write_html(result, pngs, out_dir / "report.html")
    (out_dir / "explore.json").write_text(json.dumps(result, allow_nan=False) + "\n", encoding="utf-8")
    files = {**{k: str(p) for k, p in pngs.items()}, "html": str(html), "json": str(out_dir / "explore.json")}
    return summary(result, files, seconds=time.perf_counter() - t0, model_dir=model_dir)


def check_out_dir(out_dir: Path) -> None:
    """Refuse an ``out_dir`` that holds files explore did not write: a user's report.html would be
    overwritten. A directory with explore's own explore.json is an earlier report and may be rewritten."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ConfigError(f"{out_dir} is a file, not a directory; give a directory for the report")
    names = {p.name: p for p in out_dir.iterdir()}
    own = OWN_FILES if _is_report(out_dir / "explore.json") else frozenset()
    other = sorted(n + ("/" if p.is_dir() else "") for n, p in names.items() if n not in own)
    if other:
        raise ConfigError(f"{out_dir} holds other files ({listed(other)}); give a new or empty directory")


def _is_report(path: Path) -> bool:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(found, dict) and all(k in found for k in _OWN_KEYS)


def summary(
    result: dict[str, Any], files: dict[str, str], *, seconds: float, model_dir: Path
) -> dict[str, Any]:
    """What the CLI prints: files, map, clusters in short, k suggestions, measures, neighbours."""
    sel = result.get("k_selection") or {}
    m = result["map"]
    return {
        "model_dir": str(model_dir),
        "model": result["model"],
        "data": result["data"],
        "n_items": result["n_items"],
        "dimensions": result["dimensions"],
        "k": result["k"],
        "files": files,
        "map": {k: m[k] for k in ("n_points", "subsampled", "max_items", "tsne")},
        "k_suggestions": {
            method: {"elbow_k": s["elbow_k"], "best_silhouette_k": s["best_silhouette_k"]}
            for method, s in sel.items()
            if isinstance(s, dict)
        },
        "clusters": {
            method: [
                {key: c[key] for key in ("cluster", "size", "name", "mean_rating")}
                | {"top_titles": [t["title"] for t in c["most_rated"][:3]]}
                for c in table
            ]
            for method, table in result["clusters"].items()
        },
        "measures": result.get("measures"),
        "neighbours": [
            {"query": e["query"]["title"], "nearest": [n["title"] for n in e["neighbours"]]}
            for e in result["neighbours"]
        ],
        "user_neighbours": [
            {"user": e["query"]["user"], "nearest": [n["user"] for n in e["neighbours"]]}
            for e in result.get("user_neighbours") or []
        ],
        "seconds": round(seconds, 2),
    }
