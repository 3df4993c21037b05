"""The ``recengine`` command: one sub-command per user task. Thin: parses, calls the library, prints."""

from __future__ import annotations

import os
import sys

# Before anything loads torch: its OpenMP threads then sleep while they wait instead of spinning,
# which on a machine busy with other work made 2-thread training 3-50x slower (measured by
# benchmarks/deep_speed.py). Whoever sets the variable keeps their own value.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer

from recengine.errors import RecengineError

app = typer.Typer(
    name="recengine",
    help="Rating prediction and top-N recommendation, measured honestly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    # Sub-command modules import lazily-heavy libraries inside their commands, so --help stays fast.
    from recengine.cli import data as data_cmd
    from recengine.cli import evaluate as evaluate_cmd
    from recengine.cli import explore as explore_cmd
    from recengine.cli import predict as predict_cmd
    from recengine.cli import recommend as recommend_cmd
    from recengine.cli import serve as serve_cmd
    from recengine.cli import synth as synth_cmd
    from recengine.cli import train as train_cmd

    app.add_typer(data_cmd.app, name="data")
    evaluate_cmd.register(app)
    explore_cmd.register(app)
    predict_cmd.register(app)
    recommend_cmd.register(app)
    serve_cmd.register(app)
    synth_cmd.register(app)
    train_cmd.register(app)


_register()


class _Stopped(BaseException):
    """Ctrl-C or SIGTERM, raised in the main thread so that cleanup (``finally``, temporary files)
    runs; not a KeyboardInterrupt, which the argument parser turns into a silent exit."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, frame: object) -> None:
    raise _Stopped(signum)


def _format_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """A warning on the command line is one line of what happened (a truncated sequence, a skipped
    row), as an error is: not the file and source line of the code that noticed it."""
    kind = "" if category is UserWarning else f" ({category.__name__})"
    return f"warning{kind}: {message}\n"


def main() -> None:
    """Entry point: library errors become one clear line on stderr and exit status 2, warnings one
    line each; usage errors are reported by the argument parser itself; Ctrl-C and SIGTERM say so and
    exit 130 and 143, after the same cleanup as an error (the server installs its own graceful
    handlers)."""
    import signal
    import warnings

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop)
    formatwarning, warnings.formatwarning = warnings.formatwarning, _format_warning
    try:
        app()
    except (RecengineError, OSError) as e:  # OSError: the machine's refusal the library did not name
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except _Stopped as e:
        what = "interrupted" if e.signum == signal.SIGINT else "terminated"
        print(what, file=sys.stderr)
        sys.exit(128 + e.signum)
    finally:
        warnings.formatwarning = formatwarning
