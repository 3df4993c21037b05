"""Checkpoints of a training run: one safetensors file, written atomically, no pickle.

The arrays (weights, optimizer moments, ...) are safetensors tensors and the rest of the state
(epoch, history, schedule, early stopping) is JSON stored in the same file's header metadata.
Keeping both in one file makes the write atomic with a single ``os.replace``: after a kill the
directory holds either the previous checkpoint or the new one, never half of each. This module
does not import torch, so the numba models can use it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from recengine.errors import TrainingError, write_failure

CHECKPOINT_FILE = "checkpoint.safetensors"
FORMAT = "recengine-checkpoint"
FORMAT_VERSION = 1
_META_KEY = "recengine.meta"
_TMP_PREFIX = ".checkpoint-"
LOCK_FILE = ".lock"


def checkpoint_path(directory: Path) -> Path:
    return Path(directory) / CHECKPOINT_FILE


def save_checkpoint(directory: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write ``arrays`` and the JSON-serializable ``meta`` as the checkpoint of ``directory``.

    Written to a temporary file in the same directory, flushed to disk, then renamed over the
    previous checkpoint, so a crash at any moment leaves a loadable checkpoint behind.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "meta": meta}
    try:
        text = json.dumps(header, allow_nan=True, default=_json_default)
    except (TypeError, ValueError) as e:
        raise TrainingError(f"checkpoint metadata is not JSON-serializable: {e}") from None
    tensors = {k: np.asarray(v, order="C") for k, v in arrays.items()}
    fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".tmp", dir=directory)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        save_file(tensors, str(tmp), metadata={_META_KEY: text})
        _fsync_file(tmp)
        os.replace(tmp, checkpoint_path(directory))
        _fsync_dir(directory)
    except (OSError, SafetensorError) as e:  # a full disk, say: the previous checkpoint stays
        tmp.unlink(missing_ok=True)
        raise TrainingError(f"cannot write the checkpoint in {directory}: {write_failure(e)}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(directory: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The arrays and meta of the checkpoint in ``directory``; None when there is none.

    A file that is there but unreadable raises :class:`TrainingError` naming it, rather than
    quietly starting over and throwing away the run it belongs to.
    """
    path = checkpoint_path(Path(directory))
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
        arrays = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise TrainingError(f"{path}: unreadable checkpoint ({e}); delete it to start over") from None
    if raw is None:
        raise TrainingError(f"{path}: not a recengine checkpoint (no metadata); delete it to start over")
    try:
        header = json.loads(raw)
    except json.JSONDecodeError as e:
        raise TrainingError(f"{path}: checkpoint metadata is not valid JSON ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise TrainingError(f"{path}: not a recengine checkpoint")
    if int(header.get("format_version", 0)) > FORMAT_VERSION:
        raise TrainingError(
            f"{path}: checkpoint format {header['format_version']} is newer than this recengine reads "
            f"({FORMAT_VERSION})"
        )
    return arrays, dict(header.get("meta") or {})


#: Subdirectories a run checkpoints into beside its own: a refit's, each further ensemble member's.
_RUN_SUBDIRS = re.compile(r"refit|member-[0-9]+")


def clear_checkpoint(directory: Path) -> None:
    """Remove the checkpoint (and stray temporary files) of ``directory`` and of the run's own
    subdirectories (``refit``, ``member-N``), and each directory that this leaves empty; anything
    else is left alone. A member's checkpoint left behind would be taken up by a later resume."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for sub in directory.iterdir():
        if _RUN_SUBDIRS.fullmatch(sub.name) and sub.is_dir() and not sub.is_symlink():
            clear_checkpoint(sub)
    checkpoint_path(directory).unlink(missing_ok=True)
    for stray in directory.glob(f"{_TMP_PREFIX}*.tmp"):
        stray.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: someone else's files live there
        directory.rmdir()


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON-serializable")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (where the platform allows opening a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def settings_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The settings that differ between a checkpoint's run and this one, at most four, for a message."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in keys[:4])


@contextlib.contextmanager
def held(directory: Path) -> Iterator[None]:
    """Hold ``directory`` for one training run: a second run checkpointing there at the same time
    (two ``train`` commands with one ``--out``) would overwrite its checkpoints and resume from the
    other's; it fails at once instead, naming the holder's process. The lock is an exclusive
    ``flock`` on ``directory/.lock``, released (and the file removed) when the run ends or dies."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        yield
        return
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "another process"
            raise TrainingError(
                f"{directory} is in use by another training (process {holder}); wait for it to end, or "
                "give this one another --out or --checkpoint-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # while held: a later run makes a fresh file
            with contextlib.suppress(OSError):  # left empty by clear_checkpoint: it goes too
                directory.rmdir()
    finally:
        os.close(fd)
