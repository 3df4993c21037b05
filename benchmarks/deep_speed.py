"""Training speed of ``deep-mf`` on the CPU (issue target: ≥ 0.5 million samples per second).

* Data: the synthetic MovieLens-shaped ratings, ``generate_arrays(preset=..., seed=0)``
  (``--preset ml-20m`` by default: 20,000,263 ratings, 138,493 users, 26,744 items), optionally cut
  to a seeded random ``--rows`` subset that keeps the full id space (so the embedding tables, and
  with them the per-step optimizer work, keep the preset's size).
* Configurations, each for ``--epochs`` epochs over every row (no validation split, so the epoch is
  all training): ``deep-mf`` with its defaults; ``previous``, the reference: the defaults before
  (batches of 1,024 at lr 0.02) with torch's own sparse Adagrad in place of the loop's row-wise one,
  on one thread, its fastest here (with two, the waits between its many small batches cost more
  than the second core gives); and ``preset=seed-lab1``. The rate is the loop's own per-epoch
  figure (rows / seconds of the epoch: batching, forward, backward, optimizer step); the whole
  ``fit`` (tensor set-up included) is reported beside it. A short warm-up fit on a small slice
  comes first so that one-time costs (thread pools, allocator, compiled kernels) are not counted.
* ``--repeat`` rounds run the configurations in turn, so each is timed beside its reference under the
  same load; the figures are the median over rounds, and ``ratio_to_previous`` is the median of the
  per-round ratios.
* Peak resident memory of each fit (the high-water mark is reset just before it).
* OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it): the
  machine's cores are shared, and a spinning wait holds a core that the other torch thread needs,
  which made 2-thread runs three to twenty times slower whenever other processes were busy (the same
  setting helps any user of a shared machine; set it before Python starts).
* The machine's cores are shared with other work; the samples per CPU second of the whole fit (all
  threads' CPU time, set-up included) is reported beside the wall-clock rate, with the load average
  before and after each fit, so a reader can tell a busy machine from a slow model.

Writes ``benchmarks/results/deep_speed.json``. Run: ``python benchmarks/deep_speed.py``
(``--preset ml-1m`` for a quicker run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when torch loads its OpenMP runtime

import numpy as np
import torch

from _memory import reset_peak, rss_mb
from recengine.data.interactions import Interactions
from recengine.evaluation.runner import run_context
from recengine.models.deep_mf import DeepMF
from recengine.training import loop
from recengine.training.device import cpu_count
from recengine.training.optim import RowAdagrad

OUT = Path(__file__).resolve().parent / "results" / "deep_speed.json"
TARGET = 500_000.0
CONFIGS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "previous": {"batch_size": 1024, "lr": 0.02, "threads": 1},
    "seed-lab1": {"preset": "seed-lab1"},
}
#: Configurations trained with torch's own Adagrad (the kernel before the row-wise one).
STOCK_ADAGRAD = {"previous"}
_SHOWN = ("preset", "user_embedding", "item_embedding", "hidden", "batch_size", "optimizer", "lr", "biases")


@contextlib.contextmanager
def stock_adagrad(on: bool) -> Iterator[None]:
    """Within the block the loop builds ``torch.optim.Adagrad`` where it would build RowAdagrad."""
    real = loop.make_optimizer

    def stock(module: torch.nn.Module, cfg: Any) -> torch.optim.Optimizer:
        opt = real(module, cfg)
        if isinstance(opt, RowAdagrad):
            params = [p for p in module.parameters() if p.requires_grad]
            return torch.optim.Adagrad(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return opt

    if on:
        loop.make_optimizer = stock
    try:
        yield
    finally:
        loop.make_optimizer = real


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


def time_config(
    data: Interactions, params: dict[str, Any], epochs: int, threads: int, stock: bool = False
) -> dict[str, Any]:
    run = {
        "threads": threads,
        **params,
        "epochs": epochs,
        "val_fraction": 0.0,
        "patience": None,
        "device": "cpu",
    }
    model = DeepMF(run)
    tracked = reset_peak()
    load_before = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    with stock_adagrad(stock):
        model.fit(data)
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    hist = model.history["history"]
    rates = [h["samples_per_second"] for h in hist]
    p = model.params
    return {
        "params": {k: v for k, v in p.model_dump(mode="json").items() if k in run or k in _SHOWN},
        "batch_size_used": model.history["batch_size"],
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
        "optimizer": "torch.optim.Adagrad" if stock and p.optimizer == "adagrad" else p.optimizer,
        "load_average_1min_before_after": [load_before, os.getloadavg()[0]],
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median over rounds of each figure, with every round kept."""
    rate = float(np.median([r["samples_per_second"] for r in runs]))
    return {
        "params": runs[0]["params"],
        "optimizer": runs[0]["optimizer"],
        "batch_size_used": runs[0]["batch_size_used"],
        "samples_per_second": rate,
        "fit_samples_per_second": float(np.median([r["fit_samples_per_second"] for r in runs])),
        "samples_per_cpu_second": float(np.median([r["samples_per_cpu_second"] for r in runs])),
        "peak_rss_mb": max((r["peak_rss_mb"] or 0.0) for r in runs) or None,
        "meets_target": rate >= TARGET,
        "rounds": runs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="ml-20m", help="synthetic shape (ml-20m, ml-10m, ml-1m, ...)")
    ap.add_argument("--rows", type=int, default=None, help="time a seeded subset of this many rows")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated: {','.join(CONFIGS)}")
    ap.add_argument("--repeat", type=int, default=2, help="rounds over the configurations")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: every core)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    names = args.configs.split(",")
    load_start = list(os.getloadavg())
    data, info = load(args.preset, args.rows)
    warm = data.subset(np.arange(min(len(data), 200_000)))
    DeepMF(epochs=1, val_fraction=0.0, patience=None, device="cpu", threads=args.threads).fit(warm)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for round_ in range(args.repeat):
        for name in names:
            r = time_config(data, CONFIGS[name], args.epochs, args.threads, stock=name in STOCK_ADAGRAD)
            runs[name].append(r)
            before, after = r["load_average_1min_before_after"]
            print(
                f"round {round_ + 1} {name:10s} {r['samples_per_second'] / 1e6:6.3f} M samples/s per epoch, "
                f"{r['samples_per_cpu_second'] / 1e6:6.3f} M per CPU second "
                f"(fit {r['fit_seconds']:.1f} s, peak RSS {r['peak_rss_mb'] or 0:.0f} MB, "
                f"load {before:.2f}→{after:.2f})",
                flush=True,
            )
    results = {name: summarize(rs) for name, rs in runs.items()}
    if "previous" in runs:
        for name, rs in runs.items():
            ratios = [
                a["samples_per_second"] / b["samples_per_second"]
                for a, b in zip(rs, runs["previous"], strict=True)
            ]
            results[name]["ratio_to_previous"] = float(np.median(ratios))
    out = {
        "benchmark": "deep-mf training speed on the CPU",
        "data": info,
        "target_samples_per_second": TARGET,
        "torch": torch.__version__,
        "threads": args.threads or cpu_count(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_1_5_15_at_start": load_start,
        "load_average_1_5_15": list(os.getloadavg()),
        "note": "other processes on the machine share its cores; load_average shows how busy it was",
        "results": results,
        **run_context(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    for name, r in results.items():
        ratio = f", {r['ratio_to_previous']:.2f}x previous" if "ratio_to_previous" in r else ""
        print(f"{name:10s} median {r['samples_per_second'] / 1e6:.3f} M samples/s{ratio}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
