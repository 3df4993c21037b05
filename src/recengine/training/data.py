"""Training arrays: checks, the seeded validation split and per-epoch orders (numpy only, no torch).

Every model that trains by epochs (the torch loop and the numba factorizers alike) takes its
validation rows from :func:`split_validation` and its epoch order from :func:`epoch_rng`, so one
seed means the same held-out rows and the same batch order everywhere, also after a resume.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import numpy.typing as npt

from recengine.errors import DataError

Arrays = dict[str, np.ndarray]

#: Stream number mixed into the seed of the validation split, so that it never equals an epoch order.
_VALIDATION_STREAM = 0x5EED_7A1


def check_arrays(arrays: Arrays, what: str = "training", keys: list[str] | None = None) -> Arrays:
    """``arrays`` with a ``target`` and inputs of one length and of numeric or boolean dtype."""
    if "target" not in arrays:
        raise DataError(f"{what} arrays need a 'target' array; got {', '.join(sorted(arrays)) or 'none'}")
    if keys is not None and sorted(arrays) != sorted(keys):
        raise DataError(f"{what} arrays have {sorted(arrays)}, expected {sorted(keys)}")
    out: Arrays = {}
    n = len(arrays["target"])
    for name, value in arrays.items():
        a = np.asarray(value)
        if a.ndim == 0:
            raise DataError(f"{what} array {name!r} is a scalar, not one value per row")
        if len(a) != n:
            raise DataError(f"{what} array {name!r} has {len(a)} rows, 'target' has {n}")
        if a.dtype.kind not in "biuf":
            raise DataError(f"{what} array {name!r} has dtype {a.dtype}; only numbers and booleans train")
        out[name] = a
    if out["target"].dtype.kind == "f" and n and not bool(np.isfinite(out["target"]).all()):
        row = int(np.argmax(~np.isfinite(out["target"])))
        raise DataError(f"{what} target is not finite at row {row} ({out['target'][row]!r})")
    return out


def n_rows(arrays: Arrays) -> int:
    return len(arrays["target"])


def split_validation(arrays: Arrays, fraction: float, seed: int) -> tuple[Arrays, Arrays]:
    """A seeded row split: ``round(fraction * n)`` rows for validation, the rest for training.

    Both parts keep the original row order. With too few rows for both parts the validation part
    is empty (zero rows), and the loop then trains without early stopping.
    """
    train_idx, val_idx = validation_rows(n_rows(arrays), fraction, seed)
    return {k: v[train_idx] for k, v in arrays.items()}, {k: v[val_idx] for k, v in arrays.items()}


def validation_rows(
    n: int, fraction: float, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The row numbers (ascending) :func:`split_validation` keeps for training and holds out, so that a
    model can tell afterwards which of its rows a network never trained on."""
    if not 0 <= fraction < 1:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    n_val = round(n * fraction) if fraction > 0 else 0
    n_val = min(n_val, n - 1) if n > 1 else 0
    perm = np.random.default_rng([seed, _VALIDATION_STREAM]).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of epoch ``epoch`` (0-based): a function of (seed, epoch) only, so that a run
    resumed at any epoch draws exactly what an uninterrupted one would."""
    return np.random.default_rng([seed, epoch])


def epoch_seed(seed: int, epoch: int) -> int:
    """An integer seed for other libraries' RNGs (torch's dropout) in epoch ``epoch``."""
    return int(np.random.default_rng([seed, epoch, 1]).integers(0, 2**62))


def fingerprint(arrays: Arrays) -> dict[str, Any]:
    """Shapes, dtypes and CRC32 of the arrays: enough to refuse resuming on different data."""
    out: dict[str, Any] = {}
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        out[name] = {
            "shape": list(a.shape),
            "dtype": str(a.dtype),
            "crc32": zlib.crc32(a.reshape(-1).view(np.uint8).data) if a.size else 0,
        }
    return out
