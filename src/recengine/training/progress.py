"""A progress bar on stderr with the running loss and the validation metric, one line per epoch.

stdout stays free for ``--json``. When progress is off every method is a no-op, so the loop
calls them unconditionally.
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

#: Seconds between redraws of the running loss (drawing every batch would cost more than the batch).
_REFRESH = 0.2


class EpochProgress:
    def __init__(self, epochs: int, metric: str | None, enabled: bool) -> None:
        self.epochs, self.metric, self.enabled = epochs, metric, enabled
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last_draw = 0.0
        self._val = "–"

    def __enter__(self) -> EpochProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[val]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.__enter__()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(et, ev, tb)
            self._progress = None

    def start_epoch(self, epoch: int, n_batches: int) -> None:
        if self._progress is None:
            return
        label = f"{epoch}/{self.epochs}"
        if self._task is None:
            self._task = self._progress.add_task(
                "train", total=n_batches, epoch=label, loss="–", val=self._val
            )
        else:
            self._progress.reset(self._task, total=n_batches, epoch=label, loss="–", val=self._val)

    def advance(self, done: int, loss: float) -> None:
        if self._progress is None or self._task is None:
            return
        now = time.monotonic()
        if now - self._last_draw >= _REFRESH:
            self._progress.update(self._task, completed=done, loss=f"{loss:.4f}")
            self._last_draw = now

    def end_epoch(self, record: dict[str, float], improved: bool) -> None:
        if self._progress is None:
            return
        key = f"val_{self.metric}"
        parts = [f"epoch {int(record['epoch'])}/{self.epochs}", f"loss {record['loss']:.4f}"]
        if key in record:
            self._val = f"val {self.metric} {record[key]:.4f}"
            parts.append(self._val + (" *" if improved else ""))
        parts += [
            f"lr {record['lr']:.3g}",
            f"{record['seconds']:.1f}s",
            f"{record['samples_per_second']:,.0f}/s",
        ]
        self._progress.console.print("  ".join(parts))
