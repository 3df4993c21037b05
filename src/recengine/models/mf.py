"""Biased matrix factorization, ``mu + b_u + b_i + p_u . q_i``, trained by compiled SGD or ALS.

Both solvers minimise one objective, so ``reg`` means the same thing for either and for fold-in:

    sum over training ratings (u, i) of (r - mu - b_u - b_i - p_u . q_i)^2
        + reg (|p_u|^2 + |q_i|^2) + reg_bias (b_u^2 + b_i^2)

(a penalty per rating, as per-rating SGD applies it, which is ALS's "weighted-lambda" form). SGD runs
the stratified, race-free schedule of :mod:`recengine.models._mf_kernels` on ``threads`` cores;
ALS solves the k + 1 normal equations of every user, then every item, in parallel. With the same
seed and ``threads`` the factors are bit-identical from run to run, however many cores run them
(another CPU model may round differently: the kernels are compiled for the host's vector units).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Literal

import numba
import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from recengine.data.interactions import Interactions
from recengine.errors import DataError, TrainingError
from recengine.models import _mf_kernels as K
from recengine.models._mf_solvers import STATE_KEYS, ALSTrainer, SGDTrainer, State, finite
from recengine.models.base import Capabilities, FloatArray, Params, Recommender
from recengine.training.checkpoint import load_checkpoint, save_checkpoint, settings_diff
from recengine.training.data import fingerprint as data_fingerprint
from recengine.training.data import split_validation
from recengine.training.progress import EpochProgress

_INIT_STREAM = 0x1A17_0001  # a seed stream apart from the epochs' [seed, epoch]


class MFParams(Params):
    """Defaults chosen on held-out training rows only (10% of u1.base, 10 ratings per user of
    ua.base, 10% of the mlsmall training rows), never on test rows. What won there: SGD from a small
    start (init_std 0.003) stopped near epoch 70 with a moderate reg, biases learning at a quarter
    of the factors' rate; it beat SGD run to convergence and ALS at their best reg (0.904 against
    0.910 and 0.911 RMSE on u1's held-out rows). More factors help a little (128: +0.001, 512: -0.0003).
    """

    factors: int = Field(256, ge=1, le=2048, description="k, the length of p_u and q_i")
    solver: Literal["sgd", "als"] = Field("sgd", description="stochastic gradient or alternating LS")
    epochs: int = Field(70, ge=1, le=10_000, description="passes over the training ratings (at most)")
    lr: float = Field(0.006, gt=0, le=1, description="SGD step size of the factors")
    lr_bias: float | None = Field(0.0015, gt=0, le=1, description="SGD step size of the biases (None: lr)")
    lr_decay: float = Field(1.0, gt=0, le=1, description="step sizes are multiplied by this each epoch")
    reg: float = Field(0.055, ge=0, description="L2 weight of the factors, per rating")
    reg_bias: float = Field(0.03, ge=0, description="L2 weight of the biases, per rating")
    init_std: float = Field(0.003, ge=0, description="std of the normal initial factors")
    seed: int = Field(0, ge=0, description="seeds the initial factors, the order and the validation cut")
    threads: int = Field(
        2, ge=1, le=256, description="SGD strata run side by side (the result depends on it)"
    )
    val_fraction: float = Field(
        0.0, ge=0, lt=1, description="training rows held out for early stopping (0: run every epoch)"
    )
    patience: int = Field(3, ge=1, description="epochs without a better validation RMSE before stopping")
    tol: float = Field(1e-4, ge=0, description="smallest validation RMSE decrease that counts as better")
    fold_in_reg: float | None = Field(
        None, ge=0, description="reg of a folded-in user (None: reg for als, 3 × reg for sgd)"
    )

    @model_validator(mode="after")
    def _als_needs_reg(self) -> MFParams:
        if self.solver == "als" and (self.reg <= 0 or self.reg_bias <= 0):
            raise ValueError("als needs reg > 0 and reg_bias > 0 (the normal equations are singular)")
        return self


class _Run:
    """The bookkeeping of one training run: epoch, history, early stopping, checkpoint contents."""

    def __init__(self, state: State, p: MFParams, has_val: bool) -> None:
        self.state, self.p, self.has_val = state, p, has_val
        self.best: State | None = None
        self.best_val, self.best_epoch, self.bad, self.start = math.inf, 0, 0, 0
        self.hist: dict[str, Any] = {"solver": p.solver, "epoch": [], "train_rmse": [], "lr": []}
        # The solver's own wall and CPU time (all threads), without the validation pass.
        self.hist["epoch_seconds"], self.hist["epoch_cpu_seconds"] = [], []
        if has_val:
            self.hist["val_rmse"] = []

    def record(
        self, epoch: int, train_rmse: float, lr: float, val_rmse: float | None, secs: tuple[float, float]
    ) -> bool:
        """Adds the epoch to the history; True when it is the best validation epoch so far."""
        h = self.hist
        h["epoch"].append(epoch + 1)
        h["train_rmse"].append(train_rmse)
        h["lr"].append(lr)
        h["epoch_seconds"].append(secs[0])
        h["epoch_cpu_seconds"].append(secs[1])
        if val_rmse is None:
            return False
        h["val_rmse"].append(val_rmse)
        if val_rmse < self.best_val - self.p.tol:
            self.best_val, self.best_epoch, self.bad = val_rmse, epoch + 1, 0
            self.best = self.state.copy()
            return True
        self.bad += 1
        return False

    def stopped(self) -> bool:
        return self.has_val and self.bad >= self.p.patience

    def checkpoint(self, fingerprint: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = self.state.arrays() | (self.best.arrays("best_") if self.best is not None else {})
        meta = fingerprint | {
            "epoch": self.hist["epoch"][-1],
            "history": self.hist,
            "best_val": self.best_val if math.isfinite(self.best_val) else None,
            "best_epoch": self.best_epoch,
            "bad": self.bad,
        }
        return arrays, meta

    def restore(self, loaded: tuple[dict[str, np.ndarray], dict[str, Any]] | None) -> None:
        if loaded is None:
            return
        arrays, meta = loaded
        self.state = State.from_arrays(arrays)
        self.best = State.from_arrays(arrays, "best_") if "best_" + STATE_KEYS[0] in arrays else None
        self.hist, self.start = meta["history"], int(meta["epoch"])
        self.best_val = math.inf if meta["best_val"] is None else float(meta["best_val"])
        self.best_epoch, self.bad = int(meta["best_epoch"]), int(meta["bad"])

    def finish(self) -> dict[str, Any]:
        h = dict(self.hist)
        if self.best is not None:
            h["best_epoch"], h["best_val_rmse"] = self.best_epoch, self.best_val
        h["epochs_run"] = len(h["epoch"])
        return h


class MF(Recommender):
    """Biased MF (Koren, Bell & Volinsky 2009; Surprise's SVD) with a compiled, two-core trainer.

    ``history`` gets ``train_rmse`` per epoch (SGD: the errors met during the epoch; ALS: after it)
    and, with ``val_fraction`` > 0, ``val_rmse``; early stopping keeps the best epoch's factors.
    Users and items without training ratings keep zero factors and biases (the model's definition).
    """

    name = "mf"
    ParamsModel = MFParams
    capabilities = Capabilities(rating=True, topn=True, new_users=True)
    params: MFParams

    # ----- fitting ------------------------------------------------------------------------------
    def _fit(self, train: Interactions) -> None:
        p = self.params
        if train.rating is None:
            raise DataError("mf predicts ratings and needs explicit ratings, but the data is implicit")
        u, i, r = train.user, train.item, train.values().astype(np.float32)
        val: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        is_val = self._validation_rows(train)
        if is_val is not None:
            val = (u[is_val], i[is_val], r[is_val])
            u, i, r = u[~is_val], i[~is_val], r[~is_val]
        self.mu = float(r.mean(dtype=np.float64))
        run = _Run(self._init_state(u, i, train.n_users, train.n_items), p, val is not None)
        fingerprint = self._fingerprint(train, u, i, r) if self.checkpoint_dir is not None else {}
        if self.resume and self.checkpoint_dir is not None:
            run.restore(self._load_checkpoint(fingerprint))
        trainer: SGDTrainer | ALSTrainer
        if p.solver == "sgd":
            trainer = SGDTrainer(u, i, r, train.n_users, train.n_items, p)
        else:
            trainer = ALSTrainer(u, i, r - self.mu, train.n_users, train.n_items, p)
        n_train = len(r)
        del u, i, r, is_val
        prev_threads = numba.get_num_threads()
        numba.set_num_threads(min(p.threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
        try:
            with EpochProgress(p.epochs, "rmse" if val is not None else None, self.progress) as bar:
                self._epochs(run, trainer, val, n_train, fingerprint, bar)
        finally:
            numba.set_num_threads(prev_threads)
        self.history = run.finish()
        self._set_state(run.best if run.best is not None else run.state)

    def _epochs(
        self,
        run: _Run,
        trainer: SGDTrainer | ALSTrainer,
        val: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
        n_train: int,
        fingerprint: dict[str, Any],
        bar: EpochProgress,
    ) -> None:
        """The epoch loop: one solver pass, the divergence check, history, checkpoint, early stop.

        The solver works on its own copy of the state (``trainer.begin``), copied back only when
        validation, a checkpoint or the end needs it: per epoch that copy would cost as much as the
        epoch itself on small data.
        """
        p = self.params
        work = trainer.begin(run.state)
        sync = val is not None or self.checkpoint_dir is not None
        for epoch in range(run.start, run.start if run.stopped() else p.epochs):
            bar.start_epoch(epoch + 1, 1)
            lr = p.lr * p.lr_decay**epoch
            lr_bias = (p.lr if p.lr_bias is None else p.lr_bias) * p.lr_decay**epoch
            t0, c0 = time.perf_counter(), time.process_time()
            train_rmse = math.sqrt(trainer.epoch(work, self.mu, epoch, lr, lr_bias) / n_train)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            if sync:
                trainer.end(work, run.state)
            s = run.state
            v = None
            if val is not None:
                v = math.sqrt(K.sum_sq_error(*val, s.P, s.Q, s.bu, s.bi, self.mu) / len(val[2]))
            if not (math.isfinite(train_rmse + (v or 0.0)) and finite(work)):
                kept = self.checkpoint_dir is not None and epoch > 0
                where = f"; the last good checkpoint is kept in {self.checkpoint_dir}" if kept else ""
                # ALS has no step size: its factors overflow from a huge start (the first user step
                # solves against the initial item factors) or too little reg. SGD's step is the usual
                # cause, but a start far beyond the ratings' scale (init_std > 1) is named too.
                knobs = [f"lr (now {p.lr:g})"] if p.solver == "sgd" else []
                if p.solver != "sgd" or p.init_std > 1:
                    knobs.append(f"init_std (now {p.init_std:g})")
                knob = " or ".join(knobs)
                raise TrainingError(
                    f"mf: training diverged at epoch {epoch + 1} (the loss is not a finite number); "
                    f"lower {knob} or raise reg (now {p.reg:g}){where}"
                )
            improved = run.record(epoch, train_rmse, lr, v, (seconds, cpu))
            bar.advance(1, train_rmse)
            record = {"epoch": epoch + 1, "loss": train_rmse, "lr": lr, "seconds": seconds}
            record["samples_per_second"] = n_train / max(seconds, 1e-9)
            bar.end_epoch(record | ({"val_rmse": v} if v is not None else {}), improved)
            if self.checkpoint_dir is not None:
                save_checkpoint(Path(self.checkpoint_dir), *run.checkpoint(fingerprint))
            if run.stopped():
                break
        trainer.end(work, run.state)

    def _validation_rows(self, train: Interactions) -> npt.NDArray[np.bool_] | None:
        """The training rows held out for early stopping: the shared seeded split of
        :func:`recengine.training.data.split_validation` (the same rows the torch models hold out)."""
        if self.params.val_fraction == 0:
            return None
        _, val = split_validation(
            {"target": np.arange(len(train))}, self.params.val_fraction, self.params.seed
        )
        if len(val["target"]) == 0:
            return None  # too few rows for both parts: train without early stopping
        is_val = np.zeros(len(train), dtype=bool)
        is_val[val["target"]] = True
        return is_val

    def _init_state(self, u: np.ndarray, i: np.ndarray, n_users: int, n_items: int) -> State:
        """Normal factors (seeded); rows of users and items without training ratings stay zero.

        An ``init_std`` beyond float32 gives infinite factors without numpy's overflow warnings: the
        first epoch's divergence check reports it as one clear error.
        """
        p = self.params
        rng = np.random.default_rng([p.seed, _INIT_STREAM])
        with np.errstate(over="ignore", invalid="ignore"):
            P = rng.standard_normal((n_users, p.factors), dtype=np.float32) * np.float32(p.init_std)
            Q = rng.standard_normal((n_items, p.factors), dtype=np.float32) * np.float32(p.init_std)
        P[np.bincount(u, minlength=n_users) == 0] = 0
        Q[np.bincount(i, minlength=n_items) == 0] = 0
        return State(P, Q, np.zeros(n_users, np.float32), np.zeros(n_items, np.float32))

    def _set_state(self, s: State) -> None:
        self.P, self.Q, self.bu, self.bi = s.P, s.Q, s.bu, s.bi

    # ----- checkpoints --------------------------------------------------------------------------
    def _fingerprint(self, train: Interactions, *arrays: np.ndarray) -> dict[str, Any]:
        """What a checkpoint must match to be resumed: model, params and the very training rows."""
        return {
            "model": self.name,
            "params": self.get_params(),
            "n_users": train.n_users,
            "n_items": train.n_items,
            "data": data_fingerprint(dict(zip(("user", "item", "rating"), arrays, strict=True))),
        }

    def _load_checkpoint(self, fingerprint: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict] | None:
        assert self.checkpoint_dir is not None
        loaded = load_checkpoint(Path(self.checkpoint_dir))
        if loaded is None:
            return None
        for key, value in fingerprint.items():
            old = loaded[1].get(key)
            if old != value:
                what = (
                    settings_diff(old, value)
                    if isinstance(old, dict) and isinstance(value, dict)
                    else f"{old!r} then, {value!r} now"
                )
                raise TrainingError(
                    f"mf: the checkpoint in {self.checkpoint_dir} belongs to a run with another {key} "
                    f"({what}); train without resume to start over"
                )
        return loaded

    # ----- prediction ---------------------------------------------------------------------------
    def _predict(self, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64]) -> FloatArray:
        return K.predict_rows(users, items, self.P, self.Q, self.bu, self.bi, self.mu)

    def _score(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.floating]:
        out = self.P[users] @ self.Q.T
        out += (np.float32(self.mu) + self.bu[users])[:, None]
        out += self.bi[None, :]
        return out

    def item_embeddings(self) -> npt.NDArray[np.float32]:
        """The item factors q_i without the bias: cosine neighbours by taste, not by popularity."""
        return self.Q

    def user_embeddings(self) -> npt.NDArray[np.float32]:
        return self.P

    # ----- state ----------------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        return {"mu": np.array([self.mu]), **State(self.P, self.Q, self.bu, self.bi).arrays()}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.mu = float(arrays["mu"][0])
        self._set_state(State.from_arrays(arrays))

    # ----- fold-in --------------------------------------------------------------------------------
    def _fold_in(self, items: npt.NDArray[np.int64], ratings: FloatArray) -> FloatArray:
        """(b, p) of a new user: the exact minimiser of the training objective with the items frozen.

        For ALS that is the very user step of training. Early-stopped SGD ends more regularized than
        its ``reg`` says, so its fold-in uses 3 × reg: on held-out ratings of ua.base, u1.base and
        the mlsmall training rows, 2-3 × reg gave the best fold-in RMSE (1 × reg was 0.007-0.015 worse).
        """
        p = self.params
        reg = p.fold_in_reg if p.fold_in_reg is not None else p.reg * (1.0 if p.solver == "als" else 3.0)
        return K.solve_row(items.astype(np.int32), ratings - self.mu, self.Q, self.bi, reg, p.reg_bias)

    def _score_folded(self, vector: FloatArray) -> FloatArray:
        return self.mu + vector[0] + self.bi.astype(np.float64) + self.Q.astype(np.float64) @ vector[1:]
