"""Speed of ``evaluate_topn`` over every user of an ml-20m-shaped catalog, against a per-user loop.

Random matrix-factorization scores (138,493 users × 26,744 items, 64 factors, seeded), a few dozen
training items and 5 test items per user. In the same run it times:

* ``evaluate_topn`` over all users (batched, torch.topk, vectorized hits);
* the reference: the straightforward per-user implementation (score one user, mask the training
  items, ``np.argsort``, Python set look-ups) on a subset of users, extrapolated per user; its
  metrics must equal the fast path's per-user metrics on the same users;
* the selection kernel alone on one batch, ``np.argpartition`` against ``torch.topk`` (why the
  fast path uses torch).

Writes ``benchmarks/results/topn_speed.json``. Run: ``python benchmarks/topn_speed.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from _memory import reset_peak, rss_mb
from recengine.data.interactions import IdMap, Interactions
from recengine.evaluation.topn import TopNResult, evaluate_topn

N_USERS, N_ITEMS, FACTORS = 138_493, 26_744, 64
OUT = Path(__file__).resolve().parent / "results" / "topn_speed.json"


def synthetic(
    n_users: int, n_items: int, seed: int
) -> tuple[Interactions, Interactions, npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Factors and a split: 10–60 distinct training items and 5 test items per user.

    User factors lean toward the user's test items, so there are hits to find and the agreement
    check between the fast path and the reference compares more than zeros.
    """
    rng = np.random.default_rng(seed)
    v_f = rng.standard_normal((n_items, FACTORS), dtype=np.float32)
    n_train = rng.integers(10, 61, n_users)
    per_user = n_train + 5
    user = np.repeat(np.arange(n_users, dtype=np.int64), per_user)
    # Popularity-skewed item draws; repeats of a (user, item) pair are dropped below.
    item = np.minimum((rng.pareto(1.2, len(user)) * 200).astype(np.int64), n_items - 1)
    item = rng.permutation(n_items)[item]
    key = np.unique(user * n_items + item)
    user, item = key // n_items, key % n_items
    # Per user, a random 5 of its distinct items are the test items.
    order = np.lexsort((rng.random(len(user)), user))
    user, item = user[order], item[order]
    starts = np.searchsorted(user, user, side="left")
    is_test = (np.arange(len(user)) - starts) < 5
    u_sum = np.zeros((n_users, FACTORS), dtype=np.float32)
    np.add.at(u_sum, user[is_test], v_f[item[is_test]])
    u_f = (0.4 * u_sum + rng.standard_normal((n_users, FACTORS), dtype=np.float32)).astype(np.float32)
    u_f /= np.float32(math.sqrt(FACTORS))
    users = IdMap(np.arange(n_users), "user")
    items = IdMap(np.arange(n_items), "item")

    def make(mask: npt.NDArray[np.bool_]) -> Interactions:
        return Interactions(
            user[mask].astype(np.int32), item[mask].astype(np.int32), None, None, users, items
        )

    return make(~is_test), make(is_test), u_f, v_f


def reference_per_user(
    u_f: npt.NDArray[np.float32],
    v_f: npt.NDArray[np.float32],
    train: Interactions,
    test: Interactions,
    users: npt.NDArray[np.int32],
    k: int,
) -> dict[str, list[float]]:
    """The obvious implementation: one user at a time, full argsort, Python sets."""
    tr = train.csr("ones")
    te = test.csr("ones")
    out: dict[str, list[float]] = {"ndcg": [], "recall": [], "hr": [], "precision": [], "map": []}
    for u in users.tolist():
        s = u_f[u] @ v_f.T
        s[tr.indices[tr.indptr[u] : tr.indptr[u + 1]]] = -np.inf
        ranked = np.argsort(-s, kind="stable")[:k]
        truth = set(te.indices[te.indptr[u] : te.indptr[u + 1]].tolist())
        rel = [1.0 if int(i) in truth else 0.0 for i in ranked]
        m = min(k, len(truth))
        dcg = sum(r / math.log2(p + 2) for p, r in enumerate(rel))
        idcg = sum(1 / math.log2(p + 2) for p in range(m))
        hits = sum(rel)
        out["ndcg"].append(dcg / idcg)
        out["recall"].append(hits / m)
        out["hr"].append(float(hits > 0))
        out["precision"].append(hits / k)
        out["map"].append(sum(sum(rel[: p + 1]) / (p + 1) for p in range(len(rel)) if rel[p]) / m)
    return out


def selection_kernels(u_f: npt.NDArray[np.float32], v_f: npt.NDArray[np.float32], k: int) -> dict[str, float]:
    """One default-sized batch: seconds for the matmul, np.argpartition and torch.topk."""
    n = max(1, (1 << 26) // v_f.shape[0])
    torch.topk(torch.from_numpy(u_f[:64] @ v_f.T), k + 1, dim=1)  # start torch's thread pool
    t0 = time.perf_counter()
    s = u_f[:n] @ v_f.T
    t1 = time.perf_counter()
    np.argpartition(s, v_f.shape[0] - k, axis=1)
    t2 = time.perf_counter()
    torch.topk(torch.from_numpy(s), k + 1, dim=1)
    t3 = time.perf_counter()
    return {
        "batch_users": n,
        "matmul_s": t1 - t0,
        "argpartition_s": t2 - t1,
        "torch_topk_s": t3 - t2,
        "argpartition_over_topk": (t2 - t1) / (t3 - t2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--users", type=int, default=N_USERS)
    ap.add_argument("--items", type=int, default=N_ITEMS)
    ap.add_argument("--ref-users", type=int, default=2000)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    k = int(args.k)

    t = time.perf_counter()
    train, test, u_f, v_f = synthetic(args.users, args.items, args.seed)
    setup_s = time.perf_counter() - t
    print(f"data: {len(train):,} train, {len(test):,} test rows, {setup_s:.1f}s")

    kernels = selection_kernels(u_f, v_f, k)
    print(f"one batch of {kernels['batch_users']}: " + ", ".join(f"{n} {v:.3f}" for n, v in kernels.items()))

    score_time = [0.0]

    def score_fn(users: npt.NDArray[np.int32]) -> npt.NDArray[np.float32]:
        t0 = time.perf_counter()
        s = u_f[users] @ v_f.T
        score_time[0] += time.perf_counter() - t0
        return s

    rss_before = rss_mb()
    peak_reset = reset_peak()
    t = time.perf_counter()
    res: TopNResult = evaluate_topn(score_fn, train, test, k, per_user=True)
    fast_s = time.perf_counter() - t
    peak_eval = rss_mb("VmHWM")
    n_eval = len(res.users)
    print(f"evaluate_topn: {n_eval:,} users in {fast_s:.1f}s ({n_eval / fast_s:,.0f} users/s)")
    print("  " + ", ".join(f"{n} {v:.4f}" for n, v in res.metrics.items()))

    sub = res.users[np.linspace(0, n_eval - 1, min(args.ref_users, n_eval)).astype(np.int64)]
    sub = np.unique(sub)
    t = time.perf_counter()
    ref = reference_per_user(u_f, v_f, train, test, sub, k)
    ref_s = time.perf_counter() - t
    ref_per_user = ref_s / len(sub)
    ref_extrapolated = ref_per_user * n_eval
    pos = np.searchsorted(res.users, sub)
    agree = all(
        np.allclose(res.per_user[f"{name}@{k}"][pos], ref[name], rtol=1e-9, atol=1e-12) for name in ref
    )
    print(
        f"reference: {len(sub):,} users in {ref_s:.1f}s, {ref_per_user * 1e3:.2f} ms/user, "
        f"extrapolated {ref_extrapolated:.0f}s; per-user metrics agree: {agree}"
    )

    result: dict[str, Any] = {
        "benchmark": "topn_speed",
        "shape": {"users": args.users, "items": args.items, "factors": FACTORS, "k": k, "seed": args.seed},
        "train_rows": len(train),
        "test_rows": len(test),
        "evaluated_users": n_eval,
        "evaluate_topn": {
            "seconds": fast_s,
            "users_per_s": n_eval / fast_s,
            "score_fn_seconds": score_time[0],
            "selection_and_metrics_seconds": fast_s - score_time[0],
            "rss_before_mb": rss_before,
            "peak_rss_during_mb": peak_eval if peak_reset else None,
            "metrics": res.metrics,
        },
        "reference_per_user_loop": {
            "users_timed": len(sub),
            "seconds": ref_s,
            "seconds_per_user": ref_per_user,
            "users_per_s": len(sub) / ref_s,
            "extrapolated_seconds_all_users": ref_extrapolated,
            "per_user_metrics_agree": agree,
        },
        "speedup_reference_over_evaluate_topn": ref_extrapolated / fast_s,
        "selection_kernel_one_batch": kernels,
        "peak_rss_process_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "setup_seconds": setup_s,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "threads": {"torch": torch.get_num_threads()},
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"speedup {result['speedup_reference_over_evaluate_topn']:.0f}x; wrote {args.out}")
    if not agree:
        raise SystemExit("per-user metrics of evaluate_topn and the reference differ")


if __name__ == "__main__":
    main()
