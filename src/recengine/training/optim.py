"""Optimizers of the training loop, with an Adagrad whose embedding updates touch only a batch's rows.

torch's Adagrad applies a sparse gradient through generic sparse-tensor arithmetic: a sort to sum
duplicate rows, a sparse add into the whole accumulator, a ``sparse_mask`` that searches it again and
a second sparse add into the table; at a deep-mf batch that was a quarter of a training step.
:class:`RowAdagrad` runs the same update on the batch's rows only: on the CPU in one compiled pass
(:mod:`recengine.training._row_kernels`), elsewhere with gather/update/scatter tensor ops that give
torch's exact numbers. The compiled pass sums a row's duplicate gradients in batch order rather than
torch's sorted order, so its results agree with torch's to float rounding, and are as deterministic.
:class:`RowAdam` (Adam, with SparseAdam's lazy update on such tables) does the same.
Dense parameters go to torch's own step, and the state (``sum``, ``step``) keeps torch's names, so
checkpoints of either load into the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from recengine.errors import TrainingError
from recengine.training.config import TrainConfig


class _RowSteps(torch.optim.Optimizer):
    """The step shared by the row-wise optimizers: sparse gradients of 2-D tables go to the
    subclass's ``_row_step`` (unless ``_row_skips`` their group, leaving it to torch), the rest to
    the torch optimizer next in the class order; the sparse gradients are kept for the caller."""

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        held: list[tuple[Tensor, Tensor]] = []
        try:
            for group in self.param_groups:
                if self._row_skips(group):
                    continue
                for p in group["params"]:
                    g = p.grad
                    if g is not None and _row_sparse(p, g):
                        self._row_step(p, g, group)
                        held.append((p, g))
                        p.grad = None  # torch's step skips a parameter without a gradient
            super().step()
        finally:
            for p, g in held:
                p.grad = g
        return loss

    def _row_skips(self, group: dict[str, Any]) -> bool:
        raise NotImplementedError

    def _row_step(self, p: Tensor, grad: Tensor, group: dict[str, Any]) -> None:
        raise NotImplementedError

    def _kernel_args(self, p: Tensor, grad: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What a compiled step reads: the gradient's row ids and rows as numpy arrays, and the
        scratch of table ``p`` (one int64 per row, all -1 between steps)."""
        slots = self.__dict__.setdefault("_slots", {})
        slot = slots.get(id(p))
        if slot is None or len(slot) != p.shape[0]:
            slot = slots[id(p)] = np.full(p.shape[0], -1, dtype=np.int64)
        return grad._indices()[0].contiguous().numpy(), grad._values().contiguous().numpy(), slot


class RowAdagrad(_RowSteps, torch.optim.Adagrad):
    """``torch.optim.Adagrad`` with a row-wise update for sparse gradients of 2-D tables
    (``nn.Embedding``/``EmbeddingBag`` with ``sparse=True``); everything else goes to torch's step."""

    def _row_skips(self, group: dict[str, Any]) -> bool:
        return bool(group["weight_decay"] or group["maximize"] or group["differentiable"])  # torch's

    def _row_step(self, p: Tensor, grad: Tensor, group: dict[str, Any]) -> None:
        """torch's sparse Adagrad arithmetic, restricted to the rows the gradient names."""
        state = self.state[p]
        step_t: Tensor = state["step"]
        step_t += 1
        clr = group["lr"] / (1 + (float(step_t) - 1) * group["lr_decay"])
        acc: Tensor = state["sum"]
        if _compiled(p, acc):
            self._compiled_step(p, acc, grad, clr, group["eps"])
            return
        grad = grad.coalesce()  # unique sorted rows, duplicates summed (the update is non-linear)
        rows = grad._indices()[0]
        values = grad._values()
        rows_sum = acc.index_select(0, rows).add_(values.pow(2))
        acc.index_copy_(0, rows, rows_sum)
        std = rows_sum.sqrt_().add_(group["eps"])
        # gather, update, scatter: index_add_ into a large table is several times slower
        p.index_copy_(0, rows, p.index_select(0, rows).add_(values / std, alpha=-clr))

    def _compiled_step(self, p: Tensor, acc: Tensor, grad: Tensor, clr: float, eps: float) -> None:
        """The same update in one compiled pass (duplicates summed in batch order, no sort)."""
        from recengine.training._row_kernels import adagrad_rows

        rows, values, slot = self._kernel_args(p, grad)
        kind = values.dtype.type
        adagrad_rows(rows, values, acc.numpy(), p.detach().numpy(), slot, kind(-clr), kind(eps))


class RowAdam(_RowSteps, torch.optim.Adam):
    """``torch.optim.Adam`` that also takes sparse gradients of 2-D tables: their rows get
    ``torch.optim.SparseAdam``'s lazy update (only the batch's rows and their moments move; the bias
    correction counts this table's steps), with the group's L2 ``weight_decay`` added to the gradient
    of those rows only. Dense parameters go to torch's own step, so a model without sparse
    embeddings trains exactly as with torch's Adam, and the state keeps torch's names.

    Dense Adam over an embedding table of 138K users reads and writes the whole table and both
    moments each step: Object2Vec trained at 721 samples/s that way on the ml-20m shape. On the CPU
    the rows' update is one compiled pass, as RowAdagrad's is (the same arithmetic, duplicates summed
    in batch order, so it agrees with the tensor-op step to float rounding)."""

    def _row_skips(self, group: dict[str, Any]) -> bool:
        return bool(group["amsgrad"] or group["maximize"] or group["differentiable"])  # torch refuses

    def _row_step(self, p: Tensor, grad: Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        step_t: Tensor = state["step"]
        step_t += 1
        beta1, beta2 = group["betas"]
        step = float(step_t)
        step_size = group["lr"] * (1 - beta2**step) ** 0.5 / (1 - beta1**step)
        exp_avg: Tensor = state["exp_avg"]
        exp_avg_sq: Tensor = state["exp_avg_sq"]
        if _compiled(p, exp_avg) and _compiled(p, exp_avg_sq):
            self._compiled_step(p, grad, exp_avg, exp_avg_sq, step_size, group)
            return
        grad = grad.coalesce()  # unique rows, duplicates summed (the moments are non-linear)
        rows = grad._indices()[0]
        values = grad._values()
        weights = p.index_select(0, rows)
        if group["weight_decay"]:
            values = values.add(weights, alpha=group["weight_decay"])
        m = exp_avg.index_select(0, rows).lerp_(values, 1 - beta1)
        v = exp_avg_sq.index_select(0, rows).mul_(beta2).addcmul_(values, values, value=1 - beta2)
        exp_avg.index_copy_(0, rows, m)
        exp_avg_sq.index_copy_(0, rows, v)
        p.index_copy_(0, rows, weights.addcdiv_(m, v.sqrt_().add_(group["eps"]), value=-step_size))

    def _compiled_step(
        self,
        p: Tensor,
        grad: Tensor,
        exp_avg: Tensor,
        exp_avg_sq: Tensor,
        step_size: float,
        group: dict[str, Any],
    ) -> None:
        """The same update in one compiled pass (duplicates summed in batch order, no sort)."""
        from recengine.training._row_kernels import adam_rows

        rows, values, slot = self._kernel_args(p, grad)
        kind = values.dtype.type
        beta1, beta2 = group["betas"]
        adam_rows(
            rows,
            values,
            exp_avg.numpy(),
            exp_avg_sq.numpy(),
            p.detach().numpy(),
            slot,
            kind(1 - beta1),
            kind(beta2),
            kind(1 - beta2),
            kind(-step_size),
            kind(group["eps"]),
            kind(group["weight_decay"]),
        )


def _compiled(p: Tensor, acc: Tensor) -> bool:
    """The compiled step writes through numpy views: CPU, float32/float64, contiguous tables."""
    return (
        p.device.type == "cpu"
        and p.dtype in (torch.float32, torch.float64)
        and acc.dtype == p.dtype
        and p.is_contiguous()
        and acc.is_contiguous()
    )


def _row_sparse(p: Tensor, g: Tensor) -> bool:
    return bool(
        g.is_sparse and p.dim() == 2 and g.sparse_dim() == 1 and g.dense_dim() == 1 and not p.is_complex()
    )


def make_optimizer(module: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` names, over the module's trainable parameters."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise TrainingError("the network has no trainable parameters")
    if cfg.optimizer == "adam":
        return RowAdam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return RowAdagrad(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
