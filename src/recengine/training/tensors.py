"""Training arrays as tensors on the device, cut into batches by index; validation metrics.

The whole data set is moved to the device once when it fits (on the CPU it always does: the
tensors share or copy the numpy memory once), so a batch costs one ``index_select`` per array.
When it does not fit in a CUDA device's free memory, the tensors stay on the host and each batch
is gathered there and copied over.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import torch

from recengine.errors import TrainingError
from recengine.training.data import Arrays


class TorchTask(Protocol):
    """What a model gives the loop: the network, its mean batch loss and its predictions."""

    val_metric: str  # "rmse" | "mae" | "log_loss" | "accuracy" | "cross_entropy"

    @property
    def module(self) -> torch.nn.Module:
        """The network (a plain attribute in the task; read-only here so any Module subclass fits)."""
        ...

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean loss of the batch (a scalar tensor with a gradient)."""
        ...

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One value per row, compared with ``batch["target"]`` by ``val_metric``."""
        ...


#: Share of a CUDA device's free memory the resident data may take.
_DEVICE_SHARE = 0.4


def to_tensor(a: np.ndarray) -> torch.Tensor:
    """Integers → int64 (embedding indices), floats → float32, booleans stay booleans."""
    if a.dtype.kind in "iu":
        a = a.astype(np.int64, copy=False)
    elif a.dtype.kind == "f":
        a = a.astype(np.float32, copy=False)
    return torch.from_numpy(np.ascontiguousarray(a))


class DeviceArrays:
    """Named tensors of one length on ``storage`` (the device, or the host when too large)."""

    def __init__(self, arrays: Arrays, device: torch.device) -> None:
        self.device = device
        self.n = len(arrays["target"])
        host = {k: to_tensor(v) for k, v in arrays.items()}
        self.storage = device if _fits(host, device) else torch.device("cpu")
        self.tensors = {k: t.to(self.storage) for k, t in host.items()}

    def index(self, order: np.ndarray) -> torch.Tensor:
        """A permutation (numpy) as an index tensor where the data lives."""
        return torch.from_numpy(np.ascontiguousarray(order, dtype=np.int64)).to(self.storage)

    def take(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {k: t.index_select(0, idx) for k, t in self.tensors.items()}
        if self.storage != self.device:
            out = {k: v.to(self.device, non_blocking=True) for k, v in out.items()}
        return out

    def slice(self, start: int, stop: int) -> dict[str, torch.Tensor]:
        out = {k: t[start:stop] for k, t in self.tensors.items()}
        if self.storage != self.device:
            out = {k: v.to(self.device, non_blocking=True) for k, v in out.items()}
        return out


def _fits(tensors: dict[str, torch.Tensor], device: torch.device) -> bool:
    if device.type != "cuda":
        return True
    need = sum(t.numel() * t.element_size() for t in tensors.values())
    free, _ = torch.cuda.mem_get_info(device)
    return need <= _DEVICE_SHARE * free


def evaluate(task: TorchTask, data: DeviceArrays, batch_size: int, metric: str) -> float:
    """``metric`` of ``task.predict`` against the targets of ``data``, in eval mode and without grad.

    rmse/mae compare values; log_loss reads predictions as P(target = 1); cross_entropy as the
    probability of each row's true class (the task gives it); accuracy compares
    ``floor(prediction + 0.5)`` with the target (a probability thresholded at 0.5, or a class index).
    """
    module = task.module
    was_training = module.training
    module.eval()
    total = torch.zeros((), dtype=torch.float64, device=data.device)
    try:
        with torch.no_grad():
            for start in range(0, data.n, batch_size):
                batch = data.slice(start, start + batch_size)
                pred = task.predict(batch).reshape(-1).double()
                target = batch["target"].reshape(-1).double()
                if pred.shape != target.shape:
                    raise TrainingError(
                        f"predictions have {pred.numel()} values for {target.numel()} targets in a batch"
                    )
                total += _metric_sum(pred, target, metric)
    finally:
        module.train(was_training)
    value = float(total) / max(data.n, 1)
    return math.sqrt(value) if metric == "rmse" else value


def _metric_sum(pred: torch.Tensor, target: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "rmse":
        return ((pred - target) ** 2).sum()
    if metric == "mae":
        return (pred - target).abs().sum()
    if metric == "log_loss":
        p = pred.clamp(1e-15, 1 - 1e-15)
        return -(target * p.log() + (1 - target) * (1 - p).log()).sum()
    if metric == "accuracy":
        return (torch.floor(pred + 0.5) == target).sum().double()
    if metric == "cross_entropy":  # predictions are the probabilities given to the true classes
        return -pred.clamp(1e-15, 1.0).log().sum()
    raise TrainingError(f"unknown validation metric {metric!r}")
