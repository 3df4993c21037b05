"""Training speed of ``deep-mf`` on the CPU (issue target: ≥ 0.5 million samples per second).

* Data: the synthetic MovieLens-shaped ratings, ``generate_arrays(preset=..., seed=0)``
  (``--preset ml-20m`` by default: 20,000,263 ratings, 138,493 users, 26,744 items), optionally cut
  to a seeded random ``--rows`` subset that keeps the full id space (so the embedding tables, and
  with them the per-step optimizer work, keep the preset's size).
* Configurations: ``deep-mf`` with its defaults and with ``preset=seed-lab1``, each for ``--epochs``
  epochs over every row (no validation split, so the epoch is all training). The rate is the loop's
  own per-epoch figure (rows / seconds of the epoch: batching, forward, backward, optimizer step);
  the whole ``fit`` (tensor set-up included) is reported beside it. A short warm-up fit on a
  small slice comes first so that one-time costs (thread pools, allocator) are not counted.
* Peak resident memory of each fit (the high-water mark is reset just before it).
* The machine's cores are shared with other work; the samples per CPU second of the whole fit (all
  threads' CPU time, set-up included) is reported beside the wall-clock rate, with the load average,
  so a reader can tell a busy machine from a slow model.

Writes ``benchmarks/results/deep_speed.json``. Run: ``python benchmarks/deep_speed.py``
(``--preset ml-1m`` for a quicker run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recengine.data.interactions import Interactions
from recengine.evaluation.runner import run_context
from recengine.models.deep_mf import DeepMF

OUT = Path(__file__).resolve().parent / "results" / "deep_speed.json"
TARGET = 500_000.0
CONFIGS: dict[str, dict[str, Any]] = {"defaults": {}, "seed-lab1": {"preset": "seed-lab1"}}
_SHOWN = ("preset", "user_embedding", "item_embedding", "hidden", "batch_size", "optimizer", "lr", "biases")


def rss_mb(field: str = "VmRSS") -> float:
    """Current (VmRSS) or peak (VmHWM) resident memory of this process, from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def load(preset: str, rows: int | None) -> tuple[Interactions, dict[str, Any]]:
    from recengine.data.synthetic import generate_arrays

    t0 = time.perf_counter()
    data = generate_arrays(preset=preset, seed=0).to_interactions()
    info: dict[str, Any] = {"preset": preset, "generate_seconds": time.perf_counter() - t0}
    if rows is not None and rows < len(data):
        keep = np.sort(np.random.default_rng(0).choice(len(data), size=rows, replace=False))
        data = data.subset(keep)
    info.update(ratings=len(data), users=data.n_users, items=data.n_items)
    return data, info


def time_config(data: Interactions, params: dict[str, Any], epochs: int, threads: int) -> dict[str, Any]:
    run = {
        **params,
        "epochs": epochs,
        "val_fraction": 0.0,
        "patience": None,
        "device": "cpu",
        "threads": threads,
    }
    model = DeepMF(run)
    tracked = reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(data)
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    hist = model.history["history"]
    rates = [h["samples_per_second"] for h in hist]
    p = model.params
    return {
        "params": {k: v for k, v in p.model_dump(mode="json").items() if k in run or k in _SHOWN},
        "epochs": len(hist),
        "epoch_seconds": [h["seconds"] for h in hist],
        "samples_per_second": float(np.median(rates)),
        "samples_per_second_per_epoch": rates,
        "fit_seconds": fit_s,
        "fit_samples_per_second": len(data) * len(hist) / fit_s,
        "fit_cpu_seconds": fit_cpu,
        "samples_per_cpu_second": len(data) * len(hist) / fit_cpu,
        "final_loss": hist[-1]["loss"],
        "peak_rss_mb": rss_mb("VmHWM") if tracked else None,
        "meets_target": float(np.median(rates)) >= TARGET,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="ml-20m", help="synthetic shape (ml-20m, ml-10m, ml-1m, ...)")
    ap.add_argument("--rows", type=int, default=None, help="time a seeded subset of this many rows")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated: defaults,seed-lab1")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: every core)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    data, info = load(args.preset, args.rows)
    warm = data.subset(np.arange(min(len(data), 200_000)))
    DeepMF(epochs=1, val_fraction=0.0, patience=None, device="cpu", threads=args.threads).fit(warm)
    results: dict[str, Any] = {}
    for name in args.configs.split(","):
        results[name] = time_config(data, CONFIGS[name], args.epochs, args.threads)
        r = results[name]
        print(
            f"{name:10s} {r['samples_per_second'] / 1e6:6.3f} M samples/s per epoch, "
            f"{r['samples_per_cpu_second'] / 1e6:6.3f} M per CPU second "
            f"(fit {r['fit_seconds']:.1f} s, peak RSS {r['peak_rss_mb'] or 0:.0f} MB)",
            flush=True,
        )
    out = {
        "benchmark": "deep-mf training speed on the CPU",
        "data": info,
        "target_samples_per_second": TARGET,
        "torch": torch.__version__,
        "threads": args.threads or os.cpu_count(),
        "load_average_1_5_15": list(os.getloadavg()),
        "note": "other processes on the machine share its cores; load_average shows how busy it was",
        "results": results,
        **run_context(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
