"""Speed and memory of ``mf`` training on the ml-20m shape, beside Surprise's SVD, in one run.

* Data: the ml-20m-shaped synthetic ratings (``generate_arrays(preset="ml-20m", seed=0)``, 20,000,263
  ratings), or a data set directory given with ``--data`` (read with ``load_dataset``).
* recengine ``mf``, SGD, k = 64, on every rating for ``--epochs`` epochs. The kernels are compiled
  (or loaded from numba's cache) on tiny data first, so no compile time is counted. Rate =
  ratings × epochs / seconds of the epochs themselves (``history["epoch_seconds"]``); the rate over
  the whole ``fit`` (layout, initialisation included) is reported beside it.
* Peak resident memory of training: the process's high-water mark is reset (``/proc/self/clear_refs``)
  just before ``fit``, so the peak covers the loaded data plus everything training allocates, not
  the generator's own peak (reported apart, as ``peak_rss_loading_mb``).
* CPU seconds of the epochs (all threads) are recorded beside the wall time: on a shared machine
  the wall-clock rate falls with the other work, ratings per CPU-second much less so.
* Surprise's SVD (``n_factors=64``, one epoch: the same per-rating work) on a seeded random subset of
  ``--surprise-ratings`` rows, timed around ``fit`` only; recengine's ``mf`` runs on the very same
  subset too, so the ratio can be read both ways.

The machine's load average before and after and the process's niceness are recorded: on a shared
2-core machine other work steals the second core and the rate drops with it.

Writes ``benchmarks/results/mf_speed.json``. Run: ``python benchmarks/mf_speed.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from _memory import reset_peak, rss_mb
from recengine.data.interactions import Interactions
from recengine.evaluation.runner import run_context
from recengine.models.mf import MF

OUT = Path(__file__).resolve().parent / "results" / "mf_speed.json"


def load_data(data: str | None) -> tuple[Interactions, dict[str, Any]]:
    t0 = time.perf_counter()
    if data is None:
        from recengine.data.synthetic import generate_arrays

        synth = generate_arrays(preset="ml-20m", seed=0)
        inter = synth.to_interactions()
        del synth
        source = "synthetic ml-20m shape (generate_arrays(preset='ml-20m', seed=0))"
    else:
        from recengine.data.load import load_dataset

        inter = load_dataset(data).interactions
        source = str(data)
    gc.collect()
    return inter, {"source": source, "load_seconds": time.perf_counter() - t0}


def time_mf(train: Interactions, factors: int, epochs: int, threads: int) -> dict[str, Any]:
    model = MF(factors=factors, epochs=epochs, threads=threads)
    t0 = time.perf_counter()
    model.fit(train)
    total = time.perf_counter() - t0
    secs = model.history["epoch_seconds"]
    n = len(train)
    return {
        "ratings": n,
        "epochs": epochs,
        "factors": factors,
        "threads": threads,
        "epoch_seconds": secs,
        "fit_seconds": total,
        "updates_per_s": n * epochs / sum(secs),
        "updates_per_s_whole_fit": n * epochs / total,
        "epoch_cpu_seconds": model.history["epoch_cpu_seconds"],
        "updates_per_cpu_s": n * epochs / sum(model.history["epoch_cpu_seconds"]),
        "final_train_rmse": model.history["train_rmse"][-1],
    }


def time_surprise(train: Interactions, factors: int) -> dict[str, Any]:
    import pandas as pd
    from surprise import SVD, Dataset, Reader

    assert train.scale is not None
    df = pd.DataFrame({"u": train.user, "i": train.item, "r": train.values().astype(np.float64)})
    trainset = Dataset.load_from_df(df, Reader(rating_scale=(train.scale.low, train.scale.high)))
    full = trainset.build_full_trainset()
    algo = SVD(n_factors=factors, n_epochs=1, random_state=0)
    t0, c0 = time.perf_counter(), time.process_time()
    algo.fit(full)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"ratings": len(train), "epochs": 1, "factors": factors, "fit_seconds": secs,
            "updates_per_s": len(train) / secs, "cpu_seconds": cpu,
            "updates_per_cpu_s": len(train) / cpu}  # fmt: skip


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--data", default=None, help="a data set directory (default: generate the ml-20m shape)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--surprise-ratings", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    load_before = load_average()
    data, source = load_data(args.data)
    print(f"data: {len(data):,} ratings, {data.n_users:,} users, {data.n_items:,} items "
          f"({source['load_seconds']:.1f} s); RSS {rss_mb():.0f} MB", flush=True)  # fmt: skip

    MF(factors=args.factors, epochs=1, threads=args.threads).fit(data.subset(np.arange(min(len(data), 5000))))

    rss_before, peak_loading = rss_mb(), rss_mb("VmHWM")
    peak_reset = reset_peak()
    full = time_mf(data, args.factors, args.epochs, args.threads)
    full["rss_before_fit_mb"] = rss_before
    full["peak_rss_fit_mb"] = rss_mb("VmHWM") if peak_reset else None
    print(f"recengine mf: {full['updates_per_s'] / 1e6:.1f} M updates/s over {args.epochs} epochs "
          f"({full['updates_per_s_whole_fit'] / 1e6:.1f} M/s over the whole fit); peak RSS while "
          f"training {full['peak_rss_fit_mb']} MB", flush=True)  # fmt: skip

    rows = np.sort(np.random.default_rng(0).permutation(len(data))[: args.surprise_ratings])
    sub = data.subset(rows)
    del data
    gc.collect()
    mf_sub = time_mf(sub, args.factors, 1, args.threads)
    svd = time_surprise(sub, args.factors)
    print(f"surprise SVD on {len(sub):,} ratings: {svd['updates_per_s'] / 1e6:.2f} M updates/s; "
          f"recengine mf on the same rows: {mf_sub['updates_per_s'] / 1e6:.1f} M/s", flush=True)  # fmt: skip

    out: dict[str, Any] = {
        "benchmark": "mf_speed",
        "data": source,
        "recengine_mf": full,
        "recengine_mf_on_surprise_subset": mf_sub,
        "surprise_svd": svd,
        "ratio_full_mf_over_surprise": full["updates_per_s"] / svd["updates_per_s"],
        "ratio_same_subset_mf_over_surprise": mf_sub["updates_per_s"] / svd["updates_per_s"],
        "peak_rss_loading_mb": peak_loading,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "niceness": os.nice(0),
        "targets": {"updates_per_s": 10e6, "ratio_over_surprise": 5.0, "peak_rss_mb": 3072},
    }
    out.update(run_context())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"ratio mf / surprise SVD: {out['ratio_full_mf_over_surprise']:.1f}× (full data), "
          f"{out['ratio_same_subset_mf_over_surprise']:.1f}× (same 1M rows); wrote {args.out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
