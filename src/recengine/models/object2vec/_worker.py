"""A worker process of :func:`recengine.models.object2vec.members.train_members`.

``python -m recengine.models.object2vec._worker DIR J`` trains the member in ``DIR/job-J.pkl`` on
``DIR/arrays.pkl`` and writes ``DIR/result-J.pkl``: the trained weights and the history, or the
error that stopped it (re-raised by the caller). The result is written under a temporary name and
renamed, so the caller never reads half a file.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    root, j = Path(argv[0]), int(argv[1])
    sys.stdout = sys.stderr  # the caller's stdout is for its own output
    payload: tuple[Any, Any]
    try:
        from recengine.models.object2vec.members import train_member

        with open(root / f"job-{j}.pkl", "rb") as fh:
            job = pickle.load(fh)
        with open(root / "arrays.pkl", "rb") as fh:
            arrays = pickle.load(fh)
        net, result = train_member(job, arrays)
        payload = ({k: v.detach().cpu() for k, v in net.state_dict().items()}, result)
        code = 0
    except BaseException as exc:  # every error goes back to the caller
        payload = (_picklable(exc), None)
        code = 1
    tmp = root / f"result-{j}.pkl.part"
    with open(tmp, "wb") as fh:
        pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, root / f"result-{j}.pkl")
    return code


def _picklable(exc: BaseException) -> BaseException:
    """The error itself where it survives pickling, else a RuntimeError with its traceback."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # an error with unpicklable arguments: send its text
        text = "".join(traceback.format_exception(exc))
        return RuntimeError(f"a member's worker process failed:\n{text}")
    return exc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
