"""The shared training loop and its parts.

Light on import: ``TrainConfig`` and the checkpoint and data helpers need no torch (the numba
models use them); the torch loop lives in :mod:`recengine.training.loop`.
"""

from recengine.training.checkpoint import clear_checkpoint, load_checkpoint, save_checkpoint
from recengine.training.config import TrainConfig
from recengine.training.data import epoch_rng, epoch_seed, split_validation

__all__ = [
    "TrainConfig",
    "clear_checkpoint",
    "epoch_rng",
    "epoch_seed",
    "load_checkpoint",
    "save_checkpoint",
    "split_validation",
]
