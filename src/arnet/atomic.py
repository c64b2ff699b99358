"""Files written whole or not at all: a temporary file in the same folder, then a rename.

A crash, a full disk or Ctrl-C mid-write leaves the previous file in place, never a truncated
one: checkpoints, ground truth, extracted features and reports all go through here.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def write_atomic(
    path: str | Path,
    write: Callable[[IO[bytes]], Any],
    fsync: bool = False,
    replace: bool = True,
) -> Path:
    """Call `write(f)` on a temporary binary file beside `path`, then rename it to `path`.

    Args:
        path: the file to (re)place; its folder is created.
        write: writes the whole content to the open file.
        fsync: flush the content to the disk before the rename (for files worth hours of
            work, such as checkpoints).
        replace: False: `path` must not exist, checked as the file is put in place (a hard
            link), so a file that appeared meanwhile is never replaced.

    Raises:
        FileExistsError: `path` exists (with `replace` False); nothing was changed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            _put_new(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:  # a full disk: say which file could not be written
        if exc.filename is None and exc.errno is not None:
            exc.filename = str(path)
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _put_new(tmp: Path, path: Path) -> None:
    """Give `tmp` the name `path` unless that exists (FileExistsError)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:  # a file system without hard links: checked, then renamed
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
            raise
        if path.exists():
            raise FileExistsError(errno.EEXIST, "file exists", str(path)) from None
        os.replace(tmp, path)


def write_json_atomic(path: str | Path, value: Any) -> Path:
    """`value` as indented JSON, written atomically."""
    text = (json.dumps(value, indent=2) + "\n").encode()
    return write_atomic(path, lambda f: f.write(text))


# ---------------------------------------------------------------------- CSV cells
# Every CSV arnet writes (per-video results, detections, exported alerts) goes through
# `csv_row` or `csv_cell`. A spreadsheet reads a cell starting with one of these as a formula
# (or, for tab and carriage return, strips them first): a video named "=HYPERLINK(...)" would
# run as one.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """`value` as a CSV cell that a spreadsheet shows as the text it is: a string starting
    like a formula gets a leading apostrophe (shown as text, the apostrophe hidden); numbers,
    and strings that are numbers ("-0.5"), are left as they are."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


def csv_row(values: Any) -> list[Any]:
    """Every cell of a row through `csv_cell`."""
    return [csv_cell(v) for v in values]
