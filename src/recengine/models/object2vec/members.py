"""Training the networks of an Object2Vec ensemble: one after another, or side by side in processes.

The members are independent (their own seed, weights, batch order and early stopping), and one
small network keeps a core busy only in part: on a machine with several cores, members trained in
worker processes with their share of the threads finish sooner than the same members trained in
turn on every thread. A member's job holds everything its training needs, so a worker rebuilds the
network from the job alone: with the same thread count the weights it returns are those the member
would have had in this process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from recengine import errors
from recengine.errors import TrainingError
from recengine.models._torch_base import center_output
from recengine.models._torch_nets import RatingTask
from recengine.models.object2vec.encoders import NetSpec, Object2VecNet
from recengine.training.checkpoint import load_checkpoint, save_checkpoint
from recengine.training.config import TrainConfig
from recengine.training.device import seeded
from recengine.training.loop import TrainResult
from recengine.training.loop import train as run_training
from recengine.training.state import load_module_state, module_state_arrays

#: Fewer training rows than this: worker processes cost more to start than they save.
PARALLEL_MIN_ROWS = 20_000


@dataclass(frozen=True)
class MemberInputs:
    """What every member of one fit shares: the token tables, the users' histories (when a member
    reads them), the class values of a softmax head and the loss settings. Written once for the
    workers, beside the training rows."""

    user_tokens: npt.NDArray[np.int64]
    item_tokens: npt.NDArray[np.int64]
    history: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None
    item_history: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None
    values: npt.NDArray[np.float64] | None
    center: bool
    reg: float
    val_metric: str | None
    resume: bool
    identity: dict[str, Any] | None = None  # the model's own settings, which a resumed member must share
    session_reg: float = 0.0  # the pull of each session's bias toward none (sessions only)


@dataclass(frozen=True)
class MemberJob:
    """One member: its seed, its network (with or without the history), the loop's settings and
    where it checkpoints."""

    seed: int
    spec: NetSpec
    config: TrainConfig
    checkpoint_dir: Path | None
    progress: bool

    def build(self, shared: MemberInputs) -> Object2VecNet:
        """The member's untrained network: initial weights from its seed alone."""
        history = None
        if self.spec.history:
            if shared.history is None:
                raise ValueError("a member that reads the user's history needs the history table")
            history = (torch.from_numpy(shared.history[0]), torch.from_numpy(shared.history[1]))
        item_history = None
        if self.spec.item_history:
            if shared.item_history is None:
                raise ValueError("a member that reads the items' histories needs the history table")
            item_history = (
                torch.from_numpy(shared.item_history[0]),
                torch.from_numpy(shared.item_history[1]),
            )
        with seeded(self.seed):
            return Object2VecNet(
                self.spec,
                torch.from_numpy(shared.user_tokens),
                torch.from_numpy(shared.item_tokens),
                history,
                item_history,
            )


def train_member(
    job: MemberJob, shared: MemberInputs, arrays: dict[str, np.ndarray]
) -> tuple[Object2VecNet, TrainResult]:
    """Build and train one member in this process."""
    net = job.build(shared)
    if shared.center:
        center_output(net, arrays["target"], arrays.get("label"), shared.values)
    vals = None if shared.values is None else torch.tensor(shared.values, dtype=torch.float32)
    task = RatingTask(net, vals, shared.reg, False, shared.session_reg)
    if shared.val_metric is not None:
        task.val_metric = shared.val_metric
    with torch.sparse.check_sparse_tensor_invariants(enable=False):  # as the base does for Adagrad
        result = run_training(
            task,
            arrays,
            job.config,
            checkpoint_dir=job.checkpoint_dir,
            resume=shared.resume,
            progress=job.progress,
            identity=shared.identity,
        )
    return net.eval(), result


def train_members(
    jobs: Sequence[MemberJob], shared: MemberInputs, arrays: dict[str, np.ndarray], processes: int
) -> list[tuple[Object2VecNet, TrainResult]]:
    """Train every job: in turn here when ``processes`` is 1, else in that many worker processes.

    A worker is a fresh interpreter running :mod:`recengine.models.object2vec._worker` on the jobs'
    file, not a fork (torch's thread pools do not survive one) nor a ``multiprocessing`` spawn (which
    imports the caller's main script again, and so fails in a script without a main guard). Jobs and
    results travel as checkpoints (safetensors and JSON, :mod:`recengine.training.checkpoint`), so
    nothing read back can run code. Only the first member shows its progress, so the lines of
    several members do not interleave.
    """
    if processes <= 1 or len(jobs) <= 1:
        return [train_member(job, shared, arrays) for job in jobs]
    jobs = [replace(job, progress=job.progress and j == 0) for j, job in enumerate(jobs)]
    with tempfile.TemporaryDirectory(prefix="recengine-members-") as tmp:
        root = Path(tmp)
        write_jobs(root, jobs, shared, arrays)
        codes = _run_workers(root, len(jobs), processes)
        done = {
            j: got for j in range(len(jobs)) if (got := load_checkpoint(root / f"result-{j}")) is not None
        }
        for j in sorted(done):
            if "error" in done[j][1]:
                raise _member_error(j, done[j][1]["error"])
        # The worker that ended on its own first is the one to name; the others were stopped here.
        lost = [j for j in range(len(jobs)) if j not in done]
        failed = [j for j in lost if codes[j] is not None] or lost
        if failed:
            j = failed[0]
            raise TrainingError(
                f"member {j}'s worker process ended with status {codes[j]} and no result (killed, "
                "or out of memory?); member_processes=1 trains the members in this process"
            )
        out = []
        for j, job in enumerate(jobs):
            weights, meta = done[j]
            net = job.build(shared)
            load_module_state(net, weights)
            out.append((net.eval(), TrainResult(**meta["result"])))
        return out


def write_jobs(
    root: Path, jobs: Sequence[MemberJob], shared: MemberInputs, arrays: dict[str, np.ndarray]
) -> None:
    """One file for every job: the training rows and the shared tables as arrays, the shared
    settings and each job's as JSON."""
    data = {f"row.{k}": v for k, v in arrays.items()}
    data["table.user_tokens"], data["table.item_tokens"] = shared.user_tokens, shared.item_tokens
    if shared.history is not None:
        data["table.history_offsets"], data["table.history_items"] = shared.history
    if shared.item_history is not None:
        data["table.item_history_offsets"], data["table.item_history_users"] = shared.item_history
    if shared.values is not None:
        data["table.values"] = shared.values
    settings = {
        "shared": {
            k: getattr(shared, k)
            for k in ("center", "reg", "val_metric", "resume", "identity", "session_reg")
        },
        "jobs": [
            {
                "seed": job.seed,
                "spec": asdict(job.spec),
                "config": job.config.model_dump(mode="json"),
                "checkpoint_dir": None if job.checkpoint_dir is None else str(job.checkpoint_dir),
                "progress": job.progress,
            }
            for job in jobs
        ],
    }
    save_checkpoint(root / "jobs", data, settings)


def read_job(root: Path, j: int) -> tuple[MemberJob, MemberInputs, dict[str, np.ndarray]]:
    """Job ``j`` of :func:`write_jobs`, what the members share, and the training rows."""
    got = load_checkpoint(root / "jobs")
    if got is None:
        raise TrainingError(f"{root / 'jobs'}: no jobs to train")
    data, meta = got
    history = None
    if "table.history_offsets" in data:
        history = (data["table.history_offsets"], data["table.history_items"])
    item_history = None
    if "table.item_history_offsets" in data:
        item_history = (data["table.item_history_offsets"], data["table.item_history_users"])
    shared = MemberInputs(
        user_tokens=data["table.user_tokens"],
        item_tokens=data["table.item_tokens"],
        history=history,
        item_history=item_history,
        values=data.get("table.values"),
        **meta["shared"],
    )
    s = meta["jobs"][j]
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in s["spec"].items()}
    job = MemberJob(
        seed=s["seed"],
        spec=NetSpec(**fields),
        config=TrainConfig.model_validate(s["config"]),
        checkpoint_dir=None if s["checkpoint_dir"] is None else Path(s["checkpoint_dir"]),
        progress=s["progress"],
    )
    arrays = {k.removeprefix("row."): v for k, v in data.items() if k.startswith("row.")}
    return job, shared, arrays


def run_job(root: Path, j: int) -> int:
    """A worker's part: train job ``j`` and write its weights and history, or the error that stopped
    it, as the checkpoint ``result-j`` (written whole or not at all). Returns the exit status."""
    try:
        net, result = train_member(*read_job(root, j))
        save_checkpoint(root / f"result-{j}", module_state_arrays(net), {"result": asdict(result)})
        return 0
    except BaseException as exc:  # every error goes back to the caller, which raises it
        error = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}
        save_checkpoint(root / f"result-{j}", {}, {"error": error})
        return 1


def _member_error(j: int, err: dict[str, str]) -> Exception:
    """The caller's copy of a worker's error: the same class where it is one of ours (a
    TrainingError, a ConfigError, ...), else a TrainingError with the worker's traceback."""
    cls = getattr(errors, err["type"], None)
    if isinstance(cls, type) and issubclass(cls, errors.RecengineError):
        return cls(err["message"])
    return TrainingError(f"member {j} failed in its worker process:\n{err['traceback']}")


def _run_workers(root: Path, n_jobs: int, processes: int) -> list[int | None]:
    """Run job files 0 .. n_jobs-1 in ``root``, at most ``processes`` at once; their exit statuses.
    An interrupt or error here stops every worker still running."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = _stderr_fd()
    codes: list[int | None] = [None] * n_jobs
    running: dict[int, subprocess.Popen[bytes]] = {}
    todo = list(range(n_jobs))
    try:
        while todo or running:
            while todo and len(running) < processes:
                j = todo.pop(0)
                worker = [sys.executable, "-m", "recengine.models.object2vec._worker"]
                cmd = [*worker, str(root), str(j), str(os.getpid())]
                running[j] = subprocess.Popen(cmd, env=env, stdout=out)
            for j, proc in list(running.items()):
                code = proc.poll()
                if code is not None:
                    codes[j] = code
                    del running[j]
                    if code != 0:  # one member failed: the fit fails, so stop the others now
                        return codes
            if running:
                time.sleep(0.05)
    finally:  # asked to stop, a worker removes its temporary files; one that does not is killed
        for proc in running.values():
            proc.terminate()
        for proc in running.values():
            try:
                proc.wait(timeout=_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return codes


#: How long a worker asked to stop (SIGTERM) may take to clean up before it is killed.
_STOP_SECONDS = 10.0


def _stderr_fd() -> int | None:
    """Where workers' stdout goes: this process's stderr where that is a real file descriptor (not a
    capture object), so that a command's stdout holds its own output only."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def plan_processes(
    requested: int | str, n_members: int, n_rows: int, threads: int, cpu: bool, cores: int
) -> int:
    """How many worker processes train ``n_members`` members (1: in this process).

    ``auto`` runs members side by side only on the CPU, with ``threads=0`` (every core: a set thread
    count bounds the whole fit), on at least two cores and :data:`PARALLEL_MIN_ROWS` training rows.
    """
    if requested != "auto":
        return max(1, min(int(requested), n_members))
    if not cpu or threads != 0 or cores < 2 or n_members < 2 or n_rows < PARALLEL_MIN_ROWS:
        return 1
    return min(n_members, cores)
