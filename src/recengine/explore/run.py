"""``recengine explore`` as a library call: load a model directory, analyse it, write the report."""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
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
# The hidden directory inside ``out_dir`` where a run writes before moving its files into place.
_STAGING = re.compile(r"\.explore-[0-9a-f]{8}\.partial")


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
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    check_out_dir(out_dir)  # before the t-SNE, which can take minutes
    data = load(Path(model_dir))
    result = jsonable(analyse(data, options))
    written = _write(result, out_dir)
    files = {k: str(p) for k, p in written.items()}
    return summary(result, files, seconds=time.perf_counter() - t0, model_dir=model_dir)


def _write(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Every file of the report, written into a hidden staging directory inside ``out_dir`` and
    moved into place only once all are complete, explore.json first.

    A run killed while drawing leaves only the staging directory (its own name, only explore's
    file names inside), and one killed while moving leaves the new explore.json already in place:
    either way the next run knows the leftovers as its own, where half-written PNGs beside no
    explore.json would look like a user's files and be refused.
    """
    from .html import write_html
    from .report import write_pngs

    made = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".explore-{secrets.token_hex(4)}.partial"
    os.mkdir(staging)
    try:
        pngs = write_pngs(result, staging)
        write_html(result, pngs, staging / "report.html")
        (staging / "explore.json").write_text(json.dumps(result, allow_nan=False) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if made and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a failed run into a new directory leaves none behind
        raise
    names = {**{k: p.name for k, p in pngs.items()}, "html": "report.html", "json": "explore.json"}
    for name in ["explore.json", *(n for n in names.values() if n != "explore.json")]:
        os.replace(staging / name, out_dir / name)
    staging.rmdir()
    for p in out_dir.iterdir():  # what killed runs left behind, and an earlier report's other maps
        if _is_staging(p):
            shutil.rmtree(p, ignore_errors=True)
        elif p.name in OWN_FILES and p.name not in names.values() and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
    return {k: out_dir / n for k, n in names.items()}


def check_out_dir(out_dir: Path) -> None:
    """Refuse an ``out_dir`` that holds files explore did not write: a user's report.html would be
    overwritten. A directory with explore's own explore.json is an earlier report and may be rewritten;
    the staging directory of a killed run is explore's own too."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ConfigError(f"{out_dir} is a file, not a directory; give a directory for the report")
    names = {p.name: p for p in out_dir.iterdir()}
    own = OWN_FILES if _is_report(out_dir / "explore.json") else frozenset()
    other = sorted(
        n + ("/" if p.is_dir() else "") for n, p in names.items() if n not in own and not _is_staging(p)
    )
    if other:
        raise ConfigError(f"{out_dir} holds other files ({listed(other)}); give a new or empty directory")


def _is_staging(path: Path) -> bool:
    """A staging directory a run left: its exact name, holding nothing but files of explore's names."""
    if not _STAGING.fullmatch(path.name) or path.is_symlink() or not path.is_dir():
        return False
    return all(p.name in OWN_FILES and p.is_file() and not p.is_symlink() for p in path.iterdir())


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
