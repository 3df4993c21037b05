"""Settings of the shared training loop, as a pydantic model that model params inherit from.

A model's ``Params`` subclasses :class:`TrainConfig`, so ``--set lr=0.01`` reaches the loop through the
same validated, JSON-round-tripping config as the model's own hyperparameters.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import Field, field_validator

from recengine.models.base import Params

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")

#: ``auto_batch_size``: the batch of small data sets, the largest batch, and the steps per epoch
#: aimed at between them.
AUTO_BATCH_MIN, AUTO_BATCH_MAX, AUTO_BATCH_STEPS = 1024, 8192, 2500


def auto_batch_size(n_rows: int) -> int:
    """Rows per batch for ``n_rows`` training rows: 1,024 up to about 2.5 million rows, then the power
    of two that keeps about 2,500 steps per epoch, at most 8,192.

    Why: on small data the number of steps per epoch decides the quality (larger batches did not beat
    1,024 on held-out rows of ml-100k and ml-latest-small at any learning rate tried), while on large
    data an epoch has steps to spare and a step's fixed costs (the optimizer, per-batch overhead)
    decide the speed on the CPU.
    """
    want = max(1, n_rows) / AUTO_BATCH_STEPS
    return int(min(AUTO_BATCH_MAX, max(AUTO_BATCH_MIN, 2 ** math.ceil(math.log2(want)))))


#: The largest learning rate taken: far above any that trains, far below float32's range, where
#: torch's optimizer step fails with an overflow instead of a divergence the loop can report.
LR_MAX = 10.0


class TrainConfig(Params):
    """How the loop trains: batches, optimizer, schedule, early stopping, seed and device."""

    epochs: int = Field(default=20, ge=1, description="passes over the training rows")
    batch_size: int = Field(default=1024, ge=1, description="rows per minibatch")
    optimizer: Literal["adam", "adamw", "sgd", "adagrad"] = "adam"
    lr: float = Field(default=1e-3, gt=0, le=LR_MAX, description="learning rate")
    weight_decay: float = Field(default=0.0, ge=0, description="L2 penalty (decoupled for adamw)")
    momentum: float = Field(default=0.9, ge=0, lt=1, description="sgd only")
    lr_schedule: Literal["constant", "step", "cosine", "plateau"] = "constant"
    lr_step_epochs: int = Field(default=5, ge=1, description="step: epochs between learning-rate decays")
    lr_gamma: float = Field(default=0.5, gt=0, le=1, description="step, plateau: factor of each decay")
    lr_plateau_patience: int = Field(
        default=1, ge=0, description="plateau: epochs without validation improvement before a decay"
    )
    val_fraction: float = Field(
        default=0.05,
        ge=0,
        lt=1,
        description="share of training rows held out (seeded) for early stopping; 0: none",
    )
    patience: int | None = Field(
        default=3, ge=1, description="epochs without improvement before stopping; None: never stop early"
    )
    refit: bool = Field(
        default=False,
        description="after early stopping, train again from the same start on every row (the validation "
        "cut included) for the best epoch count, replaying the learning rate of each epoch",
    )
    lr_plan: list[float] = Field(
        default_factory=list,
        description="the learning rate of each epoch, overriding lr_schedule (what refit replays); "
        "epochs past its end keep its last value",
    )
    tolerance: float = Field(
        default=0.0,
        ge=0,
        description="smallest gain of the validation metric (over the last epoch that made one) that "
        "resets patience; the best epoch's weights are kept whatever their lead",
    )
    seed: int = Field(
        default=0, ge=0, description="one seed for the split, batch order, dropout and initialization"
    )
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N (auto: cuda when available)")
    threads: int = Field(
        default=0, ge=0, description="CPU threads for torch ops; 0: every core this process may use"
    )

    @field_validator("lr_plan")
    @classmethod
    def _positive_rates(cls, v: list[float]) -> list[float]:
        bad = [x for x in v if not (x > 0 and math.isfinite(x))]
        if bad:
            raise ValueError(f"every learning rate of lr_plan must be positive and finite, got {bad[0]}")
        return v

    @field_validator("device")
    @classmethod
    def _device_spec(cls, v: str) -> str:
        v = v.strip().lower()
        if not _DEVICE.match(v):
            raise ValueError("device must be auto, cpu, cuda or cuda:N")
        return v

    def train_config(self) -> TrainConfig:
        """The loop's part of a model's params (the fields declared here, with the model's values)."""
        return TrainConfig.model_validate({k: getattr(self, k) for k in TrainConfig.model_fields})
