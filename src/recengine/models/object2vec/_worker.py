"""A worker process of :func:`recengine.models.object2vec.members.train_members`.

``python -m recengine.models.object2vec._worker DIR J`` trains member ``J`` from the job files in
``DIR`` and writes its result there (:func:`recengine.models.object2vec.members.run_job`).
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    sys.stdout = sys.stderr  # the caller's stdout is for its own output
    from recengine.models.object2vec.members import run_job

    return run_job(Path(argv[0]), int(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
