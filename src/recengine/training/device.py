"""Where training runs: the device from a ``device=`` setting, threads, and deterministic kernels."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from recengine.errors import ConfigError


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` → CUDA when a device is visible, else CPU; ``cuda``/``cuda:N`` must exist."""
    spec = spec.strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {spec!r} asked for, but this machine has no usable CUDA device")
        dev = torch.device(spec)
        index = 0 if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {spec!r} asked for, but only {torch.cuda.device_count()} CUDA device(s)"
            )
        # cuBLAS is deterministic only with a fixed workspace, which must be set before its first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        return torch.device("cuda", index)
    raise ConfigError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N")


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def deterministic(device: torch.device, threads: int = 0) -> Iterator[None]:
    """Deterministic kernels, ``threads`` CPU threads (0: every core) and a private RNG state.

    On CUDA this switches on ``torch.use_deterministic_algorithms`` (scatter-adds of embedding
    gradients are otherwise atomics in any order). The CPU kernels the loop uses are deterministic
    for a given thread count already, and the switch costs a 2-3 s import of torch's compiler
    there, so it is left alone on the CPU. Global torch settings are restored afterwards: training
    never changes the caller's RNG or algorithm choices.
    """
    cuda = device.type == "cuda"
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_threads = torch.get_num_threads()
    prev_cudnn = torch.backends.cudnn.benchmark
    with torch.random.fork_rng(devices=[device.index or 0] if cuda else []):
        try:
            if cuda and not prev_det:
                torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
            torch.set_num_threads(threads or cpu_count())
            yield
        finally:
            if cuda and not prev_det:
                torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
            torch.backends.cudnn.benchmark = prev_cudnn
            torch.set_num_threads(prev_threads)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block (e.g. building a module) under ``torch.manual_seed(seed)`` without touching the
    caller's RNG state afterwards, so initial weights depend on the seed alone."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
