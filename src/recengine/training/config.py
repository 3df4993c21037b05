"""Settings of the shared training loop, as a pydantic model that model params inherit from.

A model's ``Params`` subclasses :class:`TrainConfig`, so ``--set lr=0.01`` reaches the loop through the
same validated, JSON-round-tripping config as the model's own hyperparameters.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from recengine.models.base import Params

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class TrainConfig(Params):
    """How the loop trains: batches, optimizer, schedule, early stopping, seed and device."""

    epochs: int = Field(default=20, ge=1, description="passes over the training rows")
    batch_size: int = Field(default=1024, ge=1, description="rows per minibatch")
    optimizer: Literal["adam", "adamw", "sgd", "adagrad"] = "adam"
    lr: float = Field(default=1e-3, gt=0, description="learning rate")
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
    tolerance: float = Field(
        default=0.0, ge=0, description="smallest change of the validation metric that counts"
    )
    seed: int = Field(
        default=0, ge=0, description="one seed for the split, batch order, dropout and initialization"
    )
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N (auto: cuda when available)")
    threads: int = Field(
        default=0, ge=0, description="CPU threads for torch ops; 0: every core this process may use"
    )

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
