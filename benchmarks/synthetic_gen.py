"""Time and peak memory of generating and writing the synthetic ml-20m shape.

Why: the ml-20m shape is the project's yardstick for speed and memory, so making it must itself be
cheap (goal: under 2 minutes and 4 GB on the 2-core machine). As a same-run reference (PROTOCOLS.md
quotes ratios), the written ratings.csv is read back with polars and its time reported beside it.

    python benchmarks/synthetic_gen.py [--preset ml-20m] [--out DIR] [--seed 0] [--result PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from recengine.data.synthetic import PRESETS, generate

RESULT = Path(__file__).resolve().parent / "results" / "synthetic_gen.json"


def _maxrss_mib(who: int) -> float:
    """Peak resident set size in MiB (Linux reports KiB)."""
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)


def run(preset: str, out: Path, seed: int) -> dict[str, object]:
    """Generate into ``out``, then read ratings.csv back as the reference; return the figures."""
    t0 = time.perf_counter()
    res = generate(preset=preset, out_dir=out, seed=seed, progress=lambda m: print(f"  {m}", file=sys.stderr))
    wall = time.perf_counter() - t0
    rss_self, rss_children = _maxrss_mib(resource.RUSAGE_SELF), _maxrss_mib(resource.RUSAGE_CHILDREN)
    t1 = time.perf_counter()
    back = pl.read_csv(out / "ratings.csv")
    read_s = time.perf_counter() - t1
    checks = {
        "rows": back.height == res.n_ratings,
        "users": back["userId"].n_unique() == res.n_users,
        "movies": back["movieId"].n_unique() == res.n_items,
    }
    return {
        "benchmark": "synthetic_gen",
        "preset": preset,
        "shape": vars(PRESETS[preset]),
        "seed": seed,
        "wall_s": round(wall, 2),
        "phases_s": res.seconds,
        "peak_rss_mib": rss_self,
        "peak_rss_children_mib": rss_children,
        "reference_read_ratings_csv_s": round(read_s, 2),
        "ratio_generate_to_read": round(wall / read_s, 2) if read_s else None,
        "file_mib": {p.name: round(p.stat().st_size / 2**20, 1) for p in res.files.values()},
        "read_back_checks": checks,
        "goal": {"wall_s": 120, "peak_rss_mib": 4096},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "polars": pl.__version__,
            "platform": platform.platform(),
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="ml-20m", choices=sorted(PRESETS))
    ap.add_argument("--out", type=Path, help="directory to write into (default: a temporary one, removed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--result", type=Path, default=RESULT, help="JSON file for the figures")
    args = ap.parse_args(argv)
    if args.out is not None:
        figures = run(args.preset, args.out, args.seed)
    else:
        with tempfile.TemporaryDirectory(prefix="recengine-synth-") as tmp:
            figures = run(args.preset, Path(tmp), args.seed)
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(figures, indent=2))
    ok = figures["read_back_checks"]
    return 0 if isinstance(ok, dict) and all(ok.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
