"""Files written whole or not at all: a temporary file in the same folder, then a rename.

A crash, a full disk or Ctrl-C mid-write leaves the previous file in place, never a truncated
one: checkpoints, ground truth, extracted features and reports all go through here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], Any], fsync: bool = False) -> Path:
    """Call `write(f)` on a temporary binary file beside `path`, then rename it to `path`.

    Args:
        path: the file to (re)place; its folder is created.
        write: writes the whole content to the open file.
        fsync: flush the content to the disk before the rename (for files worth hours of
            work, such as checkpoints).
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
        os.replace(tmp, path)
    except OSError as exc:  # a full disk: say which file could not be written
        if exc.filename is None and exc.errno is not None:
            exc.filename = str(path)
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json_atomic(path: str | Path, value: Any) -> Path:
    """`value` as indented JSON, written atomically."""
    text = (json.dumps(value, indent=2) + "\n").encode()
    return write_atomic(path, lambda f: f.write(text))
