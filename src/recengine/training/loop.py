"""The one PyTorch training loop: a model brings an ``nn.Module`` and a loss, the loop does the rest.

Batching is by index: each epoch draws a permutation from (seed, epoch) and cuts it into slices,
the data stays as tensors on the device (when it fits) and each batch is one ``index_select`` per
array, never Python per sample. Each epoch ends with a checkpoint (weights, optimizer, schedule,
early-stopping state, history) written atomically; a resumed run reloads it and, because the batch
order and the dropout seed depend on (seed, epoch) only, ends with exactly the weights of an
uninterrupted run.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recengine.errors import TrainingError, listed
from recengine.training import checkpoint as ckpt
from recengine.training.config import TrainConfig
from recengine.training.data import (
    Arrays,
    check_arrays,
    epoch_rng,
    epoch_seed,
    fingerprint,
    n_rows,
    split_validation,
)
from recengine.training.device import deterministic, resolve_device
from recengine.training.optim import make_optimizer
from recengine.training.progress import EpochProgress
from recengine.training.state import (
    clone_state,
    copy_state,
    load_module_state,
    load_optimizer_state,
    module_state_arrays,
    optimizer_state,
)
from recengine.training.tensors import DeviceArrays, TorchTask, evaluate

__all__ = [
    "TorchTask",
    "TrainResult",
    "load_module_state",
    "module_state_arrays",
    "resolve_device",
    "split_validation",
    "train",
]

HIGHER_IS_BETTER = {"accuracy"}
#: Training rows predicted after each epoch to see that the weights still give finite outputs.
_PROBE_ROWS = 1024
#: Batches between finiteness checks by device type. On CUDA each check waits for the device, so
#: it looks at a window of batches at once; on the CPU every batch is checked before its step.
_CHECK_EVERY = {"cuda": 64}


@dataclass
class TrainResult:
    """Per-epoch history (epoch, loss, val_<metric>, lr, seconds, samples_per_second) and outcome.

    Models keep ``as_dict()`` in ``Recommender.history``; the artifact saves it and plots it.
    """

    history: list[dict[str, float]]
    best_epoch: int
    stopped: str  # "completed" | "early-stopped" (a finished run's checkpoint keeps which)
    val_metric: str | None = None
    best_value: float | None = None
    device: str = "cpu"
    seconds: float = 0.0
    resumed_at_epoch: int | None = None
    train_rows: int = 0
    val_rows: int = 0
    batch_size: int = 0
    #: With ``refit``: the validated run that chose the epoch count and the learning rates
    #: (its history, best epoch and best value); this result is then the run on every row.
    refit_from: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def train(
    task: TorchTask,
    arrays: Arrays,
    config: TrainConfig,
    *,
    val_arrays: Arrays | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    progress: bool = False,
    identity: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``task.module`` on ``arrays`` (``target`` plus inputs, one row each) and return its history.

    ``identity``: the model's own settings (JSON values), kept with each checkpoint; a resumed run
    must have the same, as it must have the loop's settings and the data.

    ``val_arrays`` default to a seeded ``config.val_fraction`` of the rows. At the end the module
    holds the weights of the best validation epoch (the last epoch when there is no validation).
    With ``refit`` (and a validation cut taken from ``arrays``) the module then starts again from its
    initial weights and trains on every row for the best epoch count, each epoch at the learning rate
    the validated run used: the rows held out for early stopping are not lost to the model. Its
    checkpoints go to ``checkpoint_dir / "refit"``.
    A loss that is not finite raises :class:`TrainingError` naming the epoch and batch; the
    checkpoint of the last good epoch stays in ``checkpoint_dir``.
    """
    cfg = config.train_config()
    train_np = check_arrays(arrays, "training")
    if n_rows(train_np) == 0:
        raise TrainingError("nothing to train on: the training arrays hold no rows")
    all_np = train_np
    if val_arrays is not None:
        val_np: Arrays | None = check_arrays(val_arrays, "validation", keys=list(train_np))
    elif cfg.val_fraction > 0:
        train_np, val_np = split_validation(train_np, cfg.val_fraction, cfg.seed)
    else:
        val_np = None
    if val_np is not None and n_rows(val_np) == 0:
        val_np = None
    if task.val_metric not in {"rmse", "mae", "log_loss", "accuracy", "cross_entropy"}:
        raise TrainingError(f"unknown validation metric {task.val_metric!r}")
    device = resolve_device(cfg.device)
    with deterministic(device, cfg.threads):
        refit = cfg.refit and val_np is not None and val_arrays is None
        start = clone_state(task.module) if refit else None
        first = _Run(task, train_np, val_np, cfg, device, checkpoint_dir, progress, identity).run(resume)
        if start is None:
            return first
        epochs = max(1, first.best_epoch)
        plan = [float(h["lr"]) for h in first.history[:epochs]]
        again = cfg.model_copy(
            update={"refit": False, "val_fraction": 0.0, "epochs": epochs, "patience": None, "lr_plan": plan}
        )
        copy_state(task.module, start)
        where = None if checkpoint_dir is None else Path(checkpoint_dir) / "refit"
        result = _Run(task, all_np, None, again, device, where, progress, identity).run(resume)
        result.refit_from = {
            "history": first.history,
            "best_epoch": first.best_epoch,
            "val_metric": first.val_metric,
            "best_value": first.best_value,
            "stopped": first.stopped,
            "val_rows": first.val_rows,
            "seconds": first.seconds,
        }
        return result


class _Run:
    """The state of one training run, so that a checkpoint can hold all of it and bring it back."""

    def __init__(
        self,
        task: TorchTask,
        train_np: Arrays,
        val_np: Arrays | None,
        cfg: TrainConfig,
        device: torch.device,
        checkpoint_dir: Path | None,
        progress: bool,
        identity: dict[str, Any] | None = None,
    ) -> None:
        self.task, self.cfg, self.device = task, cfg, device
        self.identity = identity
        self.module = task.module.to(device)
        self.fingerprint = {"train": fingerprint(train_np), "val": fingerprint(val_np) if val_np else None}
        self.data = DeviceArrays(train_np, device)
        self.val = DeviceArrays(val_np, device) if val_np is not None else None
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.progress = progress
        self.metric = task.val_metric
        self.optimizer = make_optimizer(self.module, cfg)
        # The plateau schedule watches the validation metric, or the training loss without one.
        maximize = self.val is not None and self.metric in HIGHER_IS_BETTER
        self.scheduler = _scheduler(self.optimizer, cfg, maximize)
        self.history: list[dict[str, float]] = []
        self.best_value: float | None = None
        self.best_epoch = 0
        self.bad_epochs = 0
        # The value the tolerance is measured from: the last epoch that improved on it by more than
        # the tolerance (the best value itself moves on any gain, however small).
        self.reference: float | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stopped = "running"
        self.last_saved_epoch = 0
        self.resumed_at: int | None = None

    # ----- the epochs -------------------------------------------------------------------------
    def run(self, resume: bool) -> TrainResult:
        started = time.perf_counter()
        if resume and self.checkpoint_dir is not None:
            self._resume()
        reporter = EpochProgress(self.cfg.epochs, self.metric if self.val else None, self.progress)
        with reporter:
            for epoch in range(len(self.history), self.cfg.epochs):
                if self.stopped != "running":
                    break
                self._epoch(epoch, reporter)
        if self.best_state is not None:
            copy_state(self.module, self.best_state)
        if self.val is None:
            self.best_epoch = len(self.history)
        return TrainResult(
            history=list(self.history),
            best_epoch=self.best_epoch,
            stopped=self.stopped,
            val_metric=self.metric if self.val is not None else None,
            best_value=self.best_value,
            device=str(self.device),
            seconds=time.perf_counter() - started,
            resumed_at_epoch=self.resumed_at,
            train_rows=self.data.n,
            val_rows=self.val.n if self.val is not None else 0,
            batch_size=self.cfg.batch_size,
        )

    def _epoch(self, epoch: int, reporter: EpochProgress) -> None:
        cfg, n = self.cfg, self.data.n
        bs = cfg.batch_size
        n_batches = math.ceil(n / bs)
        lr = float(self.optimizer.param_groups[0]["lr"])
        t0 = time.perf_counter()
        torch.manual_seed(epoch_seed(cfg.seed, epoch))
        perm = self.data.index(epoch_rng(cfg.seed, epoch).permutation(n))
        losses = torch.zeros(n_batches, dtype=torch.float64, device=self.device)
        check_every = _CHECK_EVERY.get(self.device.type, 1)
        checked = 0
        reporter.start_epoch(epoch + 1, n_batches)
        self.module.train()
        for b in range(n_batches):
            batch = self.data.take(perm[b * bs : (b + 1) * bs])
            loss = self.task.loss(batch)
            if b == 0 and loss.ndim != 0:
                raise TrainingError(
                    f"the task's loss must be a scalar (the batch mean), got shape {tuple(loss.shape)}"
                )
            losses[b] = loss.detach()
            if (b + 1) % check_every == 0 or b == n_batches - 1:
                self._check_finite(losses, checked, b + 1, epoch, n_batches)
                checked = b + 1
                reporter.advance(checked, float(losses[b]))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self._check_weights(epoch)
        sizes = torch.full((n_batches,), float(bs), dtype=torch.float64, device=self.device)
        sizes[-1] = n - bs * (n_batches - 1)
        epoch_loss = float((losses * sizes).sum()) / n
        record: dict[str, float] = {"epoch": epoch + 1, "loss": epoch_loss}
        improved = False
        if self.val is not None:
            value = evaluate(self.task, self.val, max(bs, 8192), self.metric)
            if not math.isfinite(value):
                raise TrainingError(self._bad_message(f"validation {self.metric} is {value}", epoch + 1))
            record[f"val_{self.metric}"] = value
            improved = self._early_stopping(value, epoch + 1)
        seconds = time.perf_counter() - t0
        record.update(lr=lr, seconds=seconds, samples_per_second=n / max(seconds, 1e-9))
        self.history.append(record)
        self._step_scheduler(record)
        if self.stopped == "running" and epoch + 1 == cfg.epochs:
            self.stopped = "completed"
        self._save()
        reporter.end_epoch(record, improved)

    def _early_stopping(self, value: float, epoch: int) -> bool:
        """Track the best epoch; True when this one improved by more than the tolerance.

        The tolerance decides when to stop (``patience`` epochs without a gain of more than it over
        the reference); the weights kept are the best epoch's, whatever its lead."""
        up = self.metric in HIGHER_IS_BETTER

        def gain(over: float | None) -> float:
            return math.inf if over is None else (value - over if up else over - value)

        if gain(self.best_value) > 0:
            self.best_value, self.best_epoch = value, epoch
            self.best_state = clone_state(self.module)
        improved = gain(self.reference) > self.cfg.tolerance
        if improved:
            self.reference, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
            if self.cfg.patience is not None and self.bad_epochs >= self.cfg.patience:
                self.stopped = "early-stopped"
        return improved

    def _step_scheduler(self, record: dict[str, float]) -> None:
        if self.scheduler is None:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(record.get(f"val_{self.metric}", record["loss"]))
        else:
            self.scheduler.step()

    def _check_finite(self, losses: torch.Tensor, lo: int, hi: int, epoch: int, n_batches: int) -> None:
        window = losses[lo:hi]
        bad = ~torch.isfinite(window)
        if bool(bad.any()):
            b = lo + int(torch.nonzero(bad)[0, 0])
            what = f"training loss is {float(losses[b])} at epoch {epoch + 1}, batch {b + 1} of {n_batches}"
            raise TrainingError(self._bad_message(what, epoch + 1))

    def _check_weights(self, epoch: int) -> None:
        """The losses are those before each step: the epoch's last step is seen only here (or by the
        validation pass), so a run that diverged there is not returned or saved as a model. Finite
        weights can still overflow (1e30 squared): without validation, the predictions of a few
        training rows are checked too."""
        bad = [n for n, p in self.module.named_parameters() if not bool(torch.isfinite(p).all())]
        what = ""
        if bad:
            what = f"weights are not finite after the last step of epoch {epoch + 1} ({listed(bad, 3)})"
        elif self.val is None:
            was_training = self.module.training
            self.module.eval()
            try:
                with torch.no_grad():
                    pred = self.task.predict(self.data.slice(0, min(self.data.n, _PROBE_ROWS)))
            finally:
                self.module.train(was_training)
            if not bool(torch.isfinite(pred).all()):
                what = f"predictions are not finite after the last step of epoch {epoch + 1}"
        if what:
            raise TrainingError(self._bad_message(what, epoch + 1))

    def _bad_message(self, what: str, epoch: int) -> str:
        if self.checkpoint_dir is None:
            kept = "no checkpoint directory was given"
        elif self.last_saved_epoch:
            kept = (
                f"the checkpoint of epoch {self.last_saved_epoch}, the last good one, is kept in "
                f"{self.checkpoint_dir}"
            )
        else:
            kept = "no epoch finished, so there is no checkpoint"
        return f"{what}; {kept}. Try a lower learning rate (lr={self.cfg.lr:g})"

    # ----- checkpoints ------------------------------------------------------------------------
    def _save(self) -> None:
        if self.checkpoint_dir is None:
            return
        arrays = {f"module.{k}": v for k, v in module_state_arrays(self.module).items()}
        opt_arrays, opt_meta = optimizer_state(self.optimizer)
        arrays.update({f"optim.{k}": v for k, v in opt_arrays.items()})
        if self.best_state is not None:
            arrays.update({f"best.{k}": v.detach().cpu().numpy() for k, v in self.best_state.items()})
        meta = {
            "epoch": len(self.history),
            "stopped": self.stopped,
            "config": _comparable(self.cfg),
            "identity": self.identity,
            "fingerprint": self.fingerprint,
            "history": self.history,
            "early_stopping": {
                "best_value": self.best_value,
                "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs,
                "reference": self.reference,
            },
            "optimizer": opt_meta,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "torch": torch.__version__,
        }
        ckpt.save_checkpoint(self.checkpoint_dir, arrays, meta)
        self.last_saved_epoch = len(self.history)

    def _resume(self) -> None:
        assert self.checkpoint_dir is not None
        loaded = ckpt.load_checkpoint(self.checkpoint_dir)
        if loaded is None:
            return
        arrays, meta = loaded
        where = ckpt.checkpoint_path(self.checkpoint_dir)
        if meta.get("config") != _comparable(self.cfg):
            diff = ckpt.settings_diff(meta.get("config") or {}, _comparable(self.cfg))
            raise TrainingError(
                f"{where} belongs to a run with other settings ({diff}); train without --resume to start over"
            )
        if meta.get("identity") != self.identity:
            diff = ckpt.settings_diff(meta.get("identity") or {}, self.identity or {})
            raise TrainingError(
                f"{where} belongs to a run with other model settings ({diff}); train without --resume to "
                "start over"
            )
        if meta.get("fingerprint") != self.fingerprint:
            raise TrainingError(
                f"{where} belongs to a run on other data; train without --resume to start over"
            )
        groups: dict[str, dict[str, np.ndarray]] = {"module": {}, "optim": {}, "best": {}}
        for key, value in arrays.items():
            prefix, _, name = key.partition(".")
            groups.setdefault(prefix, {})[name] = value
        try:
            load_module_state(self.module, groups["module"])
            load_optimizer_state(self.optimizer, groups["optim"], meta["optimizer"])
            if self.scheduler is not None and meta.get("scheduler") is not None:
                self.scheduler.load_state_dict(meta["scheduler"])
        except (KeyError, ValueError, RuntimeError) as e:
            raise TrainingError(f"{where} does not fit this model: {e}") from None
        if groups["best"]:
            self.best_state = {
                k: torch.from_numpy(v.copy()).to(self.device) for k, v in groups["best"].items()
            }
        early = meta["early_stopping"]
        self.best_value, self.best_epoch = early["best_value"], int(early["best_epoch"])
        self.reference = early.get("reference", self.best_value)  # checkpoints before it had one
        self.bad_epochs = int(early["bad_epochs"])
        self.history = [dict(h) for h in meta["history"]]
        self.stopped = str(meta["stopped"])
        self.last_saved_epoch = self.resumed_at = int(meta["epoch"])


def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, maximize: bool) -> Any:
    if cfg.lr_plan:
        plan, base = list(cfg.lr_plan), cfg.lr
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: plan[min(e, len(plan) - 1)] / base)
    if cfg.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step_epochs, gamma=cfg.lr_gamma)
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt,
            mode="max" if maximize else "min",
            factor=cfg.lr_gamma,
            patience=cfg.lr_plateau_patience,
            threshold=cfg.tolerance,
            threshold_mode="abs",
        )
    return None


def _comparable(cfg: TrainConfig) -> dict[str, Any]:
    """The settings a resumed run must share with the checkpoint (device and threads may change)."""
    return {k: v for k, v in cfg.model_dump(mode="json").items() if k not in ("device", "threads")}
