"""Every error arnet raises on purpose, in one module that imports nothing else of arnet.

Each names the file, video or setting at fault; the CLI turns them into one line and exit
status 2 (a bad input) or 1 (training stopped).
"""

from __future__ import annotations


class DataError(ValueError):
    """A dataset is missing, malformed or inconsistent. The message names the file or video."""


class ExtractError(DataError):
    """A video, frame folder, weight file or extraction setting cannot be used; names it."""


class ExportError(DataError):
    """A run, export folder or option that cannot be exported or loaded; names it."""


class NotifyError(DataError):
    """A target of `arnet watch --notify` (its URL, its secret file) cannot be used; names it."""


class MissingExtraError(ImportError, ValueError):
    """An optional library of the `extract` extra is not installed (the message says which)."""


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt or not an arnet checkpoint; names the file."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); saved work is left untouched."""


class FolderError(ValueError):
    """An output folder cannot be written: another process holds it, it holds other work, or
    it is the input itself. Names the folder; nothing in it was changed."""


class Stopped(KeyboardInterrupt):
    """A stop asked for by a signal: Ctrl-C (SIGINT) or SIGTERM, handled alike; `signum` says
    which (the CLI exits with 128 + signum, as a shell reports a signal)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
