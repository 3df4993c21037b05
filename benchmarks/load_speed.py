"""Loading the ml-20m-shape ratings.csv into Interactions, beside a pandas reference, in one run.

Each side runs in its own child process so that its peak RSS is its own. The reference is the usual
pandas pipeline (``read_csv``, ``factorize`` users and items, a user × item CSR matrix); recengine
loads, validates (scale, NaN, duplicates) and indexes the same file.

    python benchmarks/load_speed.py [--dir DIR] [--repeat 2]

``--dir`` is an ml-20m-layout directory; by default the synthetic ml-20m shape is generated once
into the data home (``recengine synth``). Writes ``benchmarks/results/load_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

RECENGINE = """
import json, resource, sys, time
t = time.perf_counter()
from recengine.data.load import read_dataset
ds = read_dataset(sys.argv[1], layout="ml-20m")
inter = ds.interactions
csr = inter.csr()
sec = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": sec, "peak_rss_mb": rss, "rows": len(inter), "users": inter.n_users,
                  "items": inter.n_items, "nnz": int(csr.nnz)}))
"""

PANDAS = """
import json, resource, sys, time
t = time.perf_counter()
import numpy as np, pandas as pd, scipy.sparse as sp
df = pd.read_csv(sys.argv[1] + "/ratings.csv")
u, users = pd.factorize(df["userId"])
i, items = pd.factorize(df["movieId"])
csr = sp.csr_matrix((df["rating"].to_numpy(np.float32), (u, i)), shape=(len(users), len(items)))
sec = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": sec, "peak_rss_mb": rss, "rows": len(df), "users": len(users),
                  "items": len(items), "nnz": int(csr.nnz)}))
"""


def _child(code: str, directory: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", code, str(directory)], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=2, help="runs per side; the best time is kept")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "load_speed.json")
    args = ap.parse_args(argv)
    directory = args.dir
    if directory is None:
        from recengine.data.home import dataset_dir
        from recengine.data.synthetic import generate

        directory = dataset_dir("synthetic-ml-20m-seed0")
        if not (directory / "ratings.csv").exists():
            print(f"generating the ml-20m shape into {directory} ...", file=sys.stderr)
            generate(preset="ml-20m", seed=0, out_dir=directory)
    runs: dict[str, list[dict[str, Any]]] = {"recengine": [], "pandas": []}
    for _ in range(args.repeat):  # interleaved, so both sides see the same machine state
        runs["recengine"].append(_child(RECENGINE, directory))
        runs["pandas"].append(_child(PANDAS, directory))
    best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
    from recengine.evaluation.runner import run_context

    result = {
        "benchmark": "load ml-20m-shape ratings.csv into a user x item structure",
        "data": str(directory),
        "runs": runs,
        "best": best,
        "time_ratio_pandas_over_recengine": best["pandas"]["seconds"] / best["recengine"]["seconds"],
        "rss_ratio_recengine_over_pandas": best["recengine"]["peak_rss_mb"] / best["pandas"]["peak_rss_mb"],
        "targets": {"seconds": 20, "peak_rss_mb": 2560},
        **run_context(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    r, p = best["recengine"], best["pandas"]
    print(
        f"recengine: {r['seconds']:.1f} s, {r['peak_rss_mb']:.0f} MB peak | pandas reference: "
        f"{p['seconds']:.1f} s, {p['peak_rss_mb']:.0f} MB | pandas/recengine time "
        f"{result['time_ratio_pandas_over_recengine']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
