"""Training speed on a CUDA device beside the CPU of the same machine, in the same run, as ratios.

* Data: the synthetic ml-20m shape (20,000,263 ratings, 138,493 users, 26,744 items), generated in
  memory on this machine by ``deep_speed.load`` (``generate_arrays(preset="ml-20m", seed=0)``), cut to
  a seeded sample of ``--rows`` rows that keeps the whole id space, so the embedding tables (and with
  them the optimizer's work per step) keep the ml-20m size; object2vec runs on a seeded
  ``--o2v-rows`` part of that sample.
* Systems, one epoch each over their rows, no validation split:
  - ``deep-mf`` with its defaults (``CONFIGS["defaults"]`` of deep_speed.py), at the batch its
    defaults choose on the whole ml-20m shape (``auto_batch_size``: 8,192);
  - ``deep-mf`` at batch 1,024 (what the defaults choose up to 2.5 million rows: many small steps);
  - ``object2vec`` with its defaults and ids only (``RATING_CONFIGS["object2vec (ids only)"]`` of
    object2vec_quality.py: ``optimizer=auto``, which is Adam on sparse gradients at this vocabulary,
    batch 256), trained through that benchmark's ``fit``.
* Each system trains with ``device=cuda`` and with ``device=cpu`` on every core of the machine
  (``threads=0``); the figure is the loop's own samples per second of the epoch (batching, forward,
  backward, optimizer step), the whole ``fit`` beside it; ``cuda_over_cpu`` is their ratio. A short
  warm-up fit of each model on each device comes first (CUDA context, cuBLAS, the compiled CPU
  kernels), so one-time costs are not timed.
* Peak GPU memory of each CUDA fit: ``torch.cuda.max_memory_allocated`` (reset just before it); peak
  resident memory of each CPU fit (``VmHWM``, reset just before it).
* Without a CUDA device only the CPU is measured, and the results say so.
* A time budget (``--budget`` seconds, counted from the start) skips the systems still to come once
  it is spent; the results are written after each fit, so an interrupted run keeps what it measured.

Writes ``gpu_speed.json`` and ``gpu_speed.md`` into ``--out`` (default benchmarks/results).
Run: ``python benchmarks/gpu_speed.py`` (sized for under 5 minutes on 16 cores and one GPU; ``--budget``);
``--quick`` for a smoke run on tiny sizes (the ml-1m shape, thousands of rows).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as deep_speed.py: read once, when torch loads OpenMP

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _memory import reset_peak, rss_mb
from deep_speed import CONFIGS, load
from object2vec_quality import RATING_CONFIGS, fit
from recengine.data.interactions import Interactions
from recengine.data.synthetic import PRESETS
from recengine.evaluation.runner import run_context
from recengine.training.config import auto_batch_size
from recengine.training.device import cpu_count

OUT = Path(__file__).resolve().parent / "results"
#: One epoch over every row, as both benchmarks time it.
ONE_EPOCH: dict[str, Any] = {"epochs": 1, "val_fraction": 0.0, "patience": None}


@dataclass(frozen=True)
class Size:
    preset: str
    rows: int  # sampled for deep-mf
    o2v_rows: int  # of those, for object2vec
    warm_rows: int  # the warm-up fits'


SIZES = {"full": Size("ml-20m", 4_000_000, 1_000_000, 50_000), "quick": Size("ml-1m", 40_000, 8_000, 4_000)}


def systems(preset: str) -> list[tuple[str, str, dict[str, Any], str]]:
    """(label, model, params, rows: "deep" or "o2v") of each timed system."""
    full_batch = auto_batch_size(PRESETS[preset].n_ratings)
    ids = {**RATING_CONFIGS["object2vec (ids only)"], "members": 1}  # the rate of one network
    return [
        (
            f"deep-mf (defaults, batch {full_batch:,} as on the whole {preset} shape)",
            "deep-mf",
            {**CONFIGS["defaults"], "batch_size": full_batch},
            "deep",
        ),
        ("deep-mf (defaults, batch 1,024)", "deep-mf", {**CONFIGS["defaults"], "batch_size": 1024}, "deep"),
        (
            "object2vec (ids only, defaults: optimizer auto, batch 256)",
            "object2vec",
            dict(ids),
            "o2v",
        ),
    ]


def cuda_info() -> dict[str, Any] | None:
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {
        "name": torch.cuda.get_device_name(0),
        "count": torch.cuda.device_count(),
        "total_memory_gib": round(props.total_memory / 2**30, 1),
        "capability": f"{props.major}.{props.minor}",
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def time_fit(name: str, params: dict[str, Any], data: Interactions, device: str) -> dict[str, Any]:
    """One epoch of ``name`` on ``device``: the loop's rate, the whole fit, peak memory."""
    cuda = device.startswith("cuda")
    run = {**params, **ONE_EPOCH, "device": device, "threads": 0}
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    tracked = reset_peak()
    c0 = time.process_time()
    model, fit_s = fit(name, run, data, None)
    cpu_s = time.process_time() - c0
    epoch = model.history["history"][0]
    out: dict[str, Any] = {
        "device": model.history["device"],
        "rows": len(data),
        "batch_size": model.history["batch_size"],
        "samples_per_second": epoch["samples_per_second"],
        "epoch_seconds": epoch["seconds"],
        "fit_seconds": fit_s,
        "fit_samples_per_second": len(data) / fit_s,
        "process_cpu_seconds": cpu_s,
        "loss": epoch["loss"],
        "peak_rss_mb": rss_mb("VmHWM") if tracked else None,
    }
    if cuda:
        out["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["peak_gpu_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    o2v = model.history.get("object2vec")
    if o2v:
        out["optimizer"] = o2v.get("optimizer")
    del model
    if cuda:
        torch.cuda.empty_cache()
    return out


def _cell(v: Any, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def markdown(res: dict[str, Any]) -> str:
    d, c = res["data"], res["context"]
    gpu = res["cuda"]
    where = (
        f"{gpu['name']} ({gpu['total_memory_gib']} GiB, CUDA {gpu['torch_cuda']})"
        if gpu
        else "no CUDA device: the CPU only"
    )
    lines = [
        f"Measured {c['date']} on {c['machine']}, {where}; torch {res['torch']}, "
        f"{res['cpu_threads']} CPU threads (OMP_WAIT_POLICY={res['omp_wait_policy']}).",
        "",
        f"**training speed, {d['preset']} shape** ({d['ratings']:,} sampled ratings over "
        f"{d['users']:,} users and {d['items']:,} items, generated here in {d['generate_seconds']:.0f} s; "
        "one epoch, no validation; samples/s of the epoch)",
        "",
        "| system | rows | batch | cuda samples/s | cpu samples/s | cuda / cpu | peak GPU MiB "
        "| cpu peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["results"]:
        g, p = r.get("cuda") or {}, r.get("cpu") or {}
        opt = (p or g).get("optimizer")
        system = r["system"] + (f" [{opt['optimizer']}, sparse: {opt['sparse']}]" if opt else "")
        lines.append(
            f"| {system} | {r['rows']:,} | {_cell(p.get('batch_size') or g.get('batch_size'), ',')} "
            f"| {_cell(g.get('samples_per_second'), ',.0f')} | {_cell(p.get('samples_per_second'), ',.0f')} "
            f"| {_cell(r.get('cuda_over_cpu'), '.2f')} | {_cell(g.get('peak_gpu_memory_mb'), ',.0f')} "
            f"| {_cell(p.get('peak_rss_mb'), ',.0f')} |"
        )
    if res["skipped"]:
        lines += ["", "Skipped (time budget spent): " + "; ".join(res["skipped"])]
    if not gpu:
        lines += ["", "No CUDA device was visible to torch, so only the CPU was measured."]
    return "\n".join(lines) + "\n"


def write(res: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_speed.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "gpu_speed.md").write_text(markdown(res))


def say(msg: str, start: float) -> None:
    print(f"[{time.perf_counter() - start:6.1f} s] {msg}", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT, help="folder for gpu_speed.json and gpu_speed.md")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (the ml-1m shape), a smoke run")
    ap.add_argument("--rows", type=int, default=None, help="rows sampled for deep-mf")
    ap.add_argument("--o2v-rows", type=int, default=None, help="rows of that sample for object2vec")
    ap.add_argument("--budget", type=float, default=240.0, help="seconds after which systems are skipped")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    size = SIZES["quick" if args.quick else "full"]
    size = replace(
        size,
        rows=size.rows if args.rows is None else args.rows,
        o2v_rows=size.o2v_rows if args.o2v_rows is None else args.o2v_rows,
    )
    gpu = cuda_info()
    devices = ["cuda", "cpu"] if gpu else ["cpu"]
    say(
        f"torch {torch.__version__}, {cpu_count()} CPU threads, " + (gpu["name"] if gpu else "no CUDA"), start
    )

    say(f"generating the {size.preset} shape in memory, sampling {size.rows:,} rows", start)
    data, info = load(size.preset, size.rows)
    keep = np.random.default_rng(1).choice(len(data), size=min(size.o2v_rows, len(data)), replace=False)
    rows = {"deep": data, "o2v": data.subset(np.sort(keep))}
    say(f"generated in {info['generate_seconds']:.1f} s: {info}", start)

    res: dict[str, Any] = {
        "benchmark": "training speed, CUDA beside the CPU of the same machine",
        "quick": args.quick,
        "data": info,
        "cuda": gpu,
        "devices": devices,
        "torch": torch.__version__,
        "cpu_threads": cpu_count(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "budget_seconds": args.budget,
        "warmup_seconds": {},
        "results": [],
        "skipped": [],
        "context": run_context(),
    }
    if not gpu:
        res["note"] = "no CUDA device visible to torch: the CPU only was measured"
    write(res, args.out)

    warm = data.subset(np.arange(min(size.warm_rows, len(data))))
    for name in ("deep-mf", "object2vec"):
        params = {**ONE_EPOCH, "threads": 0}
        if name == "object2vec":
            params.update(RATING_CONFIGS["object2vec (ids only)"], members=1)
        for device in devices:
            t0 = time.perf_counter()
            fit(name, {**params, "device": device}, warm, None)
            res["warmup_seconds"][f"{name} {device}"] = time.perf_counter() - t0
            say(f"warm-up {name} on {device}: {res['warmup_seconds'][f'{name} {device}']:.1f} s", start)

    for label, name, params, which in systems(size.preset):
        row: dict[str, Any] = {"system": label, "model": name, "params": params, "rows": len(rows[which])}
        for device in devices:
            if time.perf_counter() - start > args.budget:
                res["skipped"].append(f"{label} on {device}")
                say(f"skipped {label} on {device}: budget of {args.budget:.0f} s spent", start)
                continue
            r = time_fit(name, params, rows[which], device)
            row[device] = r
            mem = f", peak GPU {r['peak_gpu_memory_mb']:,.0f} MiB" if "peak_gpu_memory_mb" in r else ""
            say(
                f"{label} on {device}: {r['samples_per_second']:,.0f} samples/s "
                f"(epoch {r['epoch_seconds']:.1f} s, fit {r['fit_seconds']:.1f} s{mem})",
                start,
            )
        if "cuda" in row and "cpu" in row:
            row["cuda_over_cpu"] = row["cuda"]["samples_per_second"] / row["cpu"]["samples_per_second"]
            say(f"{label}: cuda / cpu = {row['cuda_over_cpu']:.2f}", start)
        res["results"].append(row)
        res["seconds"] = time.perf_counter() - start
        write(res, args.out)
    res["seconds"] = time.perf_counter() - start
    write(res, args.out)
    print(markdown(res), flush=True)
    say(f"wrote {args.out / 'gpu_speed.json'} and {args.out / 'gpu_speed.md'}", start)


if __name__ == "__main__":
    main()
