"""Errors that tell the user what went wrong and where, instead of a traceback from deep inside."""

from __future__ import annotations

from pathlib import Path


class RecengineError(Exception):
    """Base of every error the library raises on purpose; the CLI prints these without a traceback."""


class DataError(RecengineError):
    """Bad input data: names the file, the line (1-based, as an editor shows it) and what is wrong.

    ``unit="row"`` names the place as a 1-based row, for formats without lines (Parquet), where an
    editor's line number would point at nothing.
    """

    def __init__(
        self, message: str, path: str | Path | None = None, line: int | None = None, *, unit: str = "line"
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.unit = unit
        self.reason = message
        where = ""
        if self.path is not None:
            where = self.path + (f", {unit} {line}" if line is not None else "")
            where += ": "
        super().__init__(where + message)


class UnknownIdError(RecengineError, KeyError):
    """An external id that the model or data set has never seen."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class FetchError(RecengineError):
    """A download or import of a data set failed; the data home was left as it was."""


class ConfigError(RecengineError):
    """An unknown model, protocol or parameter, or a parameter value of the wrong kind."""


class CapabilityError(RecengineError):
    """A model was asked for something it declares it cannot do (e.g. rating prediction from popularity)."""


class TrainingError(RecengineError):
    """Training cannot go on (a loss that is not finite, a checkpoint that does not match the run);
    the last good checkpoint is left in place so that nothing already paid for is lost."""


def listed(names: list[str], limit: int = 5) -> str:
    """``a, b, c`` for a message, cut after ``limit`` names with how many more there are."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def write_failure(e: BaseException) -> str:
    """Why a file could not be written, in a few words: an OSError's own reason ("No space left on
    device"), else the message (safetensors' errors carry the I/O error in theirs)."""
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)
