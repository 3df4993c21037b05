"""A worker process of :func:`recengine.models.object2vec.members.train_members`.

``python -m recengine.models.object2vec._worker DIR J PARENT_PID`` trains member ``J`` from the job
files in ``DIR`` and writes its result there (:func:`recengine.models.object2vec.members.run_job`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    sys.stdout = sys.stderr  # the caller's stdout is for its own output
    # SIGTERM (the parent stopping its workers) unwinds like an exception, so a checkpoint being
    # written removes its temporary file; a worker whose parent is gone stops the same way.
    signal.signal(signal.SIGTERM, _stop)
    parent = int(argv[2]) if len(argv) > 2 else os.getppid()  # given: it may be gone already
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    from recengine.models.object2vec.members import run_job

    return run_job(Path(argv[0]), int(argv[1]))


def _stop(signum: int, frame: object) -> None:
    sys.exit(128 + signum)


def _watch_parent(parent: int) -> None:
    """Stop this worker once the process that started it has died (killed with SIGKILL, say, it
    could not stop its workers, which would otherwise train on, unseen, into its checkpoints)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    # To the main thread itself: there the handler runs, and a blocking call there is interrupted.
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
