"""Do the embeddings know genres? Cluster purity and neighbour genre share beside chance, per model.

For each data set and each registered model with item embeddings, fit on every rating, save a model
directory (with the data set's item metadata), load it back through ``recengine.explore`` and measure:

- cluster purity of K-Means and agglomerative (Ward) clusters, k=12, against the same cluster sizes
  with members shuffled (20 seeded permutations);
- the share of each item's 10 nearest neighbours (cosine) that share a genre with it, against all
  pairs of items (the exact expectation of random pairs).

Both over items with a genre and at least 1 (all) or at least 10 training ratings. A control row with
random Gaussian vectors of the same shape shows what "no learning" scores. Then t-SNE is timed on
50,000 random 64-d vectors, the largest map ``recengine explore`` draws without subsampling.

    python benchmarks/explore_quality.py [--data ml-100k ml-latest-small] [--models mf deep-mf neumf]
        [--skip-tsne] [--out benchmarks/results]

Writes ``explore_quality.json`` and ``explore_quality.md``. Timings depend on the machine's load,
which is recorded beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from recengine import artifacts
from recengine.data.load import load_dataset
from recengine.explore import ExploreData, load
from recengine.explore.clusters import METHODS, fit_clusters
from recengine.explore.embeddings import embedding_models, genre_matrix, unit_rows
from recengine.explore.metrics import neighbours_vs_random, purity_vs_random
from recengine.explore.run import jsonable
from recengine.explore.tsne import available_backend, tsne_2d
from recengine.models.registry import create


def measure(
    data: ExploreData,
    vectors: np.ndarray,
    *,
    k: int,
    neighbours: int,
    thresholds: list[int],
    permutations: int,
    seed: int,
) -> dict[str, Any]:
    """Purity per method and neighbour share, each beside chance, per rating threshold."""
    from threadpoolctl import threadpool_limits

    unit = unit_rows(vectors)
    G, _ = genre_matrix(data.genres)
    labels = {m: fit_clusters(unit, k, m, seed=seed) for m in METHODS}
    out: dict[str, Any] = {}
    with threadpool_limits(1):
        for t in thresholds:
            mask = data.counts >= t
            out[str(t)] = {
                "purity": {
                    m: purity_vs_random(lab, G, mask, permutations=permutations, seed=seed)
                    for m, lab in labels.items()
                },
                "neighbours": neighbours_vs_random(unit, G, neighbours, mask),
            }
    return out


def run_data(name: str, models: list[str], args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    ds = load_dataset(name)
    rows = []
    for model_name in models:
        t0 = time.perf_counter()
        model = create(model_name).fit(ds.interactions)
        fit_s = time.perf_counter() - t0
        path = artifacts.save(model, work / f"{name}-{model_name}", dataset=ds)
        data = load(path)
        m = measure(
            data,
            data.vectors,
            k=args.k,
            neighbours=args.neighbours,
            thresholds=args.min_ratings,
            permutations=args.permutations,
            seed=args.seed,
        )
        rows.append(
            {
                "data": name,
                "model": model_name,
                "params": model.get_params(),
                "fit_seconds": round(fit_s, 1),
                "n_items": data.n_items,
                "dimensions": int(data.vectors.shape[1]),
                "measures": m,
            }
        )
        print(_line(rows[-1], args.min_ratings), flush=True)
        if model_name == models[0]:  # a control: random vectors of the same shape, same items
            rng = np.random.default_rng(args.seed)
            noise = rng.standard_normal(data.vectors.shape).astype(np.float32)
            rows.append(
                {
                    "data": name,
                    "model": "random vectors (control)",
                    "n_items": data.n_items,
                    "dimensions": int(data.vectors.shape[1]),
                    "measures": measure(
                        data,
                        noise,
                        k=args.k,
                        neighbours=args.neighbours,
                        thresholds=args.min_ratings,
                        permutations=args.permutations,
                        seed=args.seed,
                    ),
                }
            )
            print(_line(rows[-1], args.min_ratings), flush=True)
    return rows


def _line(row: dict[str, Any], thresholds: list[int]) -> str:
    parts = [f"{row['data']} {row['model']}:"]
    for t in thresholds:
        m = row["measures"][str(t)]
        pur = ", ".join(f"{k} {v['observed']:.3f}/{v['random']:.3f}" for k, v in m["purity"].items())
        nb = m["neighbours"]
        parts.append(f"[≥{t}] purity {pur}; neighbours {nb['observed']:.3f}/{nb['random']:.3f}")
    return " ".join(parts)


def time_tsne(n: int, dims: int, jobs: list[int], seed: int) -> list[dict[str, Any]]:
    """Seconds to map ``n`` random ``dims``-d vectors, once per thread count."""
    x = np.random.default_rng(seed).standard_normal((n, dims)).astype(np.float32)
    out = []
    for j in jobs:
        load_before = os.getloadavg()[0]
        _, info = tsne_2d(x, seed=seed, n_jobs=j)
        info.update(load_before=round(load_before, 2), load_after=round(os.getloadavg()[0], 2), dims=dims)
        out.append(info)
        print(
            f"t-SNE {n:,} × {dims} ({info['backend']}, {j} thread(s)): {info['seconds']:.1f} s "
            f"(load {info['load_before']} → {info['load_after']})",
            flush=True,
        )
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Embedding exploration: do the vectors know genres?",
        "",
        f"k={result['k']} clusters, {result['neighbours']} nearest neighbours (cosine), purity chance = "
        f"same cluster sizes shuffled ({result['permutations']} permutations), neighbour chance = all pairs. "
        "Cells: model / random (ratio; for purity also z, standard deviations of the shuffled purities "
        "above their mean). Items: those with a genre and at least the ratings shown.",
        "",
        "| data | model | dims | min ratings | items | purity K-Means | purity agglomerative | "
        "neighbours sharing a genre |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for r in result["runs"]:
        for t, m in r["measures"].items():
            cells = [
                f"{p['observed']:.3f} / {p['random']:.3f} ({p['ratio']:.2f}×, z={p['z']:.0f})"
                for p in (m["purity"][meth] for meth in ("kmeans", "agglomerative"))
            ]
            nb = m["neighbours"]
            cells.append(f"{nb['observed']:.3f} / {nb['random']:.3f} ({nb['ratio']:.2f}×)")
            head = f"| {r['data']} | {r['model']} | {r['dimensions']} | {t} | {nb['n']:,} | "
            lines.append(head + " | ".join(cells) + " |")
    if result.get("tsne"):
        lines += ["", "t-SNE on random 64-d vectors:", ""]
        for t in result["tsne"]:
            lines.append(
                f"- {t['n']:,} points, {t['backend']}, {t['n_jobs']} thread(s): {t['seconds']:.1f} s "
                f"(1-min load average {t['load_before']} before, {t['load_after']} after, on "
                f"{result['machine']['cores']} cores)"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", default=["ml-100k", "ml-latest-small"])
    ap.add_argument("--models", nargs="+", default=None, help="default: every model with item embeddings")
    ap.add_argument("--k", type=int, default=12)
    ap.add_argument("--neighbours", type=int, default=10)
    ap.add_argument("--min-ratings", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--permutations", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tsne-n", type=int, default=50_000)
    ap.add_argument("--tsne-jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--skip-tsne", action="store_true")
    ap.add_argument("--skip-models", action="store_true")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    models = args.models or embedding_models()
    result: dict[str, Any] = {
        "k": args.k,
        "neighbours": args.neighbours,
        "permutations": args.permutations,
        "seed": args.seed,
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "tsne": available_backend(),
        },
        "runs": [],
    }
    if not args.skip_models:
        with tempfile.TemporaryDirectory() as tmp:
            for name in args.data:
                result["runs"] += run_data(name, models, args, Path(tmp))
    if not args.skip_tsne:
        result["tsne"] = time_tsne(args.tsne_n, 64, args.tsne_jobs, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "explore_quality.json").write_text(json.dumps(jsonable(result), indent=1) + "\n")
    (args.out / "explore_quality.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
