"""A tiny TorchTask for the loop's tests (an embedding dot product with dropout on synthetic ratings),
and a worker entry point that trains it with checkpoints and is killed mid-run.

``python -m tests.training.tiny CKPT_DIR KILL_AT_CALL`` (from the repository root) SIGKILLs itself at
the given call of ``loss``, as a crash or an OOM kill would.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recengine.training.config import TrainConfig
from recengine.training.device import seeded

N_USERS, N_ITEMS, DIM = 60, 40, 4


class TinyNet(nn.Module):
    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__()
        self.user = nn.Embedding(N_USERS, DIM)
        self.item = nn.Embedding(N_ITEMS, DIM)
        self.bias = nn.Parameter(torch.zeros(1))
        self.drop = nn.Dropout(dropout)
        self.norm = nn.BatchNorm1d(DIM)  # a buffer-carrying layer, so checkpoints hold buffers too
        nn.init.normal_(self.user.weight, std=0.3)
        nn.init.normal_(self.item.weight, std=0.3)

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        u = self.drop(self.norm(self.user(user)))
        return (u * self.item(item)).sum(-1) + self.bias + 3.0


class TinyTask:
    val_metric = "rmse"

    def __init__(
        self, seed: int = 0, kill_at_call: int | None = None, nan_at_call: int | None = None
    ) -> None:
        with seeded(seed):
            self.module: nn.Module = TinyNet()
        self.calls = 0
        self.kill_at_call, self.nan_at_call = kill_at_call, nan_at_call

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.kill_at_call:
            os.kill(os.getpid(), signal.SIGKILL)
        loss = F.mse_loss(self.predict(batch), batch["target"])
        if self.calls == self.nan_at_call:
            loss = loss * float("nan")
        return loss

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.module(batch["user"], batch["item"])


def make_arrays(n: int = 3000, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    pu = rng.normal(0, 0.7, (N_USERS, DIM))
    qi = rng.normal(0, 0.7, (N_ITEMS, DIM))
    user = rng.integers(0, N_USERS, n).astype(np.int32)
    item = rng.integers(0, N_ITEMS, n).astype(np.int32)
    target = 3.0 + (pu[user] * qi[item]).sum(1) + rng.normal(0, 0.1, n)
    return {"user": user, "item": item, "target": target.astype(np.float32)}


def config(**overrides: object) -> TrainConfig:
    base: dict[str, object] = dict(
        epochs=6, batch_size=256, lr=0.02, val_fraction=0.1, patience=None, seed=3, device="cpu", threads=1
    )
    base.update(overrides)
    return TrainConfig.model_validate(base)


def weights(task: Any) -> dict[str, torch.Tensor]:
    """A copy of the weights of any task (anything with a ``module``)."""
    return {k: v.detach().clone() for k, v in task.module.state_dict().items()}


def main() -> None:
    from recengine.training.loop import train

    ckpt, kill_at = Path(sys.argv[1]), int(sys.argv[2])
    schedule = sys.argv[3] if len(sys.argv) > 3 else "step"
    task = TinyTask(kill_at_call=kill_at)
    train(task, make_arrays(), config(lr_schedule=schedule, lr_step_epochs=2), checkpoint_dir=ckpt)
    sys.exit(3)  # never reached when the kill comes


if __name__ == "__main__":
    main()
