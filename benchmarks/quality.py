"""Quality of recengine's models beside peer libraries, on the same folds, in one run.

Peers run where installed (``pip install -e ".[peers]"``): Surprise's BaselineOnly, SVD and SVD++ on
the rating protocols, implicit's ALS and BPR on the top-N protocols. Every system is fitted on
exactly the training rows of recengine's protocol builder and measured by the same metric code.

    python benchmarks/quality.py [--models ...] [--protocols ...] [--peers ...] [--out benchmarks/results]

Writes ``quality.json`` (every fold of every run) and ``quality.md`` (the table the README shows).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recengine.data.interactions import Interactions
from recengine.data.splits import Fold
from recengine.errors import CapabilityError
from recengine.evaluation.metrics import binary_metrics, rating_metrics
from recengine.evaluation.protocols import PROTOCOLS, ProtocolRun, build
from recengine.evaluation.runner import check_task, evaluate_folds, run_context, topn_keys
from recengine.evaluation.topn import evaluate_topn

RATING_PEERS = ("surprise-baselineonly", "surprise-svd", "surprise-svdpp")
TOPN_PEERS = ("implicit-als", "implicit-bpr")
DEFAULT_MODELS = ("global-mean", "user-mean", "bias", "popularity")
DEFAULT_PROTOCOLS = tuple(PROTOCOLS)


def _surprise_fit_predict(name: str, fold: Fold) -> np.ndarray:
    import pandas as pd
    from surprise import SVD, BaselineOnly, Dataset, KNNBaseline, Reader, SlopeOne, SVDpp

    tr = fold.train
    assert tr.scale is not None
    df = pd.DataFrame({"u": tr.user, "i": tr.item, "r": tr.values().astype(float)})
    data = Dataset.load_from_df(df, Reader(rating_scale=(tr.scale.low, tr.scale.high)))
    trainset = data.build_full_trainset()
    algo: Any
    if name == "surprise-baselineonly":
        algo = BaselineOnly(
            bsl_options={"method": "als", "reg_i": 10, "reg_u": 15, "n_epochs": 10}, verbose=False
        )
    elif name == "surprise-svd":
        algo = SVD(random_state=0)
    elif name == "surprise-svdpp":
        algo = SVDpp(random_state=0, cache_ratings=True)
    elif name in ("surprise-knnbaseline-item", "surprise-knnbaseline-user"):
        sim = {"name": "pearson_baseline", "user_based": name.endswith("user")}
        algo = KNNBaseline(k=40, sim_options=sim, verbose=False)
    elif name == "surprise-slopeone":
        algo = SlopeOne()
    else:
        raise ValueError(f"unknown Surprise peer {name!r}")
    algo.fit(trainset)
    te = fold.test
    return np.array([algo.predict(int(u), int(i)).est for u, i in zip(te.user, te.item, strict=True)])


def _implicit_score_fn(name: str, train: Interactions) -> Callable[[np.ndarray], np.ndarray]:
    from implicit.als import AlternatingLeastSquares
    from implicit.bpr import BayesianPersonalizedRanking

    model: Any
    if name == "implicit-als":
        model = AlternatingLeastSquares(factors=64, iterations=15, random_state=0)
    else:
        model = BayesianPersonalizedRanking(factors=64, iterations=100, random_state=0)
    model.fit(train.csr("ones"), show_progress=False)
    u, v = np.asarray(model.user_factors), np.asarray(model.item_factors)
    return lambda users: u[users] @ v.T


def run_peer(peer: str, run: ProtocolRun, k: int = 10) -> dict[str, Any]:
    """One peer on every fold of ``run``, in the same JSON shape as recengine's own results."""
    rows = []
    for fold in run.folds:
        t0 = time.perf_counter()
        row: dict[str, Any] = {"fold": fold.name, "n_train": len(fold.train), "n_test": len(fold.test)}
        if run.task == "topn":
            score_fn = _implicit_score_fn(peer, fold.train)
            row["fit_seconds"] = time.perf_counter() - t0
            res = evaluate_topn(score_fn, fold.train, fold.test, k=k)
            row["users"] = int(res.pop("users"))
            row.update(res)
        else:
            yhat = _surprise_fit_predict(peer, fold)
            row["fit_seconds"] = time.perf_counter() - t0
            y = fold.test.values().astype(float)
            if run.task == "rating":
                row.update(rating_metrics(y, np.clip(yhat, fold.train.scale.low, fold.train.scale.high)))  # type: ignore[union-attr]
            else:
                row.update(binary_metrics(y, np.clip(yhat, 0.0, 1.0)))
        rows.append(row)
    keys: tuple[str, ...] = ("rmse", "mae") if run.task == "rating" else ("accuracy", "f1", "auc", "log_loss")
    if run.task == "topn":
        keys = topn_keys(k)
    out: dict[str, Any] = {"protocol": run.name, "model": peer, "peer": True, "folds": rows}
    out["fit_seconds"] = float(sum(r["fit_seconds"] for r in rows))
    for key in keys:
        out[key] = float(np.mean([r[key] for r in rows]))
    return out


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def markdown(results: list[dict[str, Any]], context: dict[str, Any]) -> str:
    """One table per protocol: systems as rows, the protocol's metrics as columns."""
    lines = [
        f"Measured {context['date']} on {context['machine']}, recengine {context['recengine_version']}.",
        "",
    ]
    for proto in dict.fromkeys(r["protocol"] for r in results):
        rows = [r for r in results if r["protocol"] == proto and "skipped" not in r]
        if not rows:
            continue
        task = PROTOCOLS[proto].task
        keys = ["rmse", "mae"] if task == "rating" else ["accuracy", "f1", "auc", "log_loss"]
        if task == "topn":
            keys = ["ndcg@10", "recall@10", "hr@10", "coverage@10"]
        if proto == "ml100k-u":
            keys = keys + [f"rmse {f['fold']}" for f in rows[0]["folds"]]
        lines.append(f"**{proto}** ({PROTOCOLS[proto].description})")
        lines.append("")
        lines.append("| system | " + " | ".join(keys) + " | fit s |")
        lines.append("|---|" + "---:|" * (len(keys) + 1))
        for r in rows:
            vals = []
            for key in keys:
                if key.startswith("rmse "):
                    fold = next(f for f in r["folds"] if f["fold"] == key.split()[1])
                    vals.append(f"{fold['rmse']:.4f}")
                else:
                    vals.append(f"{r[key]:.4f}")
            name = f"{r['model']} (peer)" if r.get("peer") else f"recengine {r['model']}"
            lines.append(f"| {name} | " + " | ".join(vals) + f" | {r['fit_seconds']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS))
    ap.add_argument("--protocols", default=",".join(DEFAULT_PROTOCOLS))
    ap.add_argument("--peers", default=",".join(RATING_PEERS + TOPN_PEERS), help="'' for none")
    ap.add_argument("--ml100k", default=None, help="ml-100k directory (default: the data home's)")
    ap.add_argument("--mlsmall", default=None, help="ml-latest-small directory (default: the data home's)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    peers = [p for p in args.peers.split(",") if p]
    have = {"surprise": _installed("surprise"), "implicit": _installed("implicit")}
    results: list[dict[str, Any]] = []
    for proto in [p for p in args.protocols.split(",") if p]:
        spec = PROTOCOLS[proto]
        data = args.ml100k if spec.dataset == "ml-100k" else args.mlsmall
        run = build(proto, data)
        for m in models:
            try:
                check_task(m, spec.task)
            except CapabilityError:
                continue
            res = {"protocol": proto, "dataset": spec.dataset}
            res.update(evaluate_folds(m, run.folds, spec.task, dataset=run.dataset))
            results.append(res)
            print(f"{proto:18s} {m:22s} " + _summary(res), file=sys.stderr)
        for p in peers:
            lib = p.split("-")[0]
            fits = (p in RATING_PEERS and spec.task != "topn") or (p in TOPN_PEERS and spec.task == "topn")
            if not fits:
                continue
            if not have.get(lib):
                print(f"{proto:18s} {p:22s} skipped: {lib} not installed", file=sys.stderr)
                continue
            res = run_peer(p, run)
            results.append(res)
            print(f"{proto:18s} {p:22s} " + _summary(res), file=sys.stderr)
    context = run_context()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps({"context": context, "results": results}, indent=1) + "\n")
    (out / "quality.md").write_text(markdown(results, context) + "\n")
    print(markdown(results, context))
    return 0


def _summary(res: dict[str, Any]) -> str:
    keys = [k for k in ("rmse", "accuracy", "auc", "ndcg@10", "hr@10") if k in res]
    return " ".join(f"{k}={res[k]:.4f}" for k in keys) + f" fit={res['fit_seconds']:.1f}s"


if __name__ == "__main__":
    raise SystemExit(main())
