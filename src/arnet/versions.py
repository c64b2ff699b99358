"""Files written by a newer arnet: refused by name, never read in part.

Each file format arnet writes (checkpoints, export manifests) records `version`, the version of
its format, and `arnet_version`, the arnet that wrote it. A reader knows the formats up to its
own version; a newer one may hold fields it would misread or silently ignore.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from . import __version__

_RELEASE = re.compile(r"^\s*v?(\d+(?:\.\d+)*)")


def release(text: Any) -> tuple[int, ...] | None:
    """`"1.2.3"` (or `"1.2.3.dev4+g5"`) -> (1, 2, 3); None when it is no version number."""
    match = _RELEASE.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    numbers = [int(n) for n in match.group(1).split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:  # 1.0 == 1.0.0
        numbers.pop()
    return tuple(numbers)


def refuse_newer(
    path: str | Path,
    what: str,
    record: dict[str, Any],
    known: int,
    error: type[Exception],
) -> None:
    """Raise `error` naming `path` when `record` (a file's header fields) declares a format
    version above `known`, a version that is no whole number, or an arnet newer than this one.
    A record without a version is of the first format."""
    version = record.get("version", 1)
    writer = record.get("arnet_version")
    by = f" (written by arnet {writer})" if isinstance(writer, str) else ""
    if isinstance(version, bool) or not isinstance(version, int):
        raise error(f"{path}: {what} format version {version!r}{by} is not a whole number")
    mine = release(__version__)
    if version > known or (release(writer) or ()) > (mine or ()):
        raise error(
            f"{path}: {what} format version {version}{by} is newer than this arnet "
            f"({__version__}, {what} format {known}) reads; upgrade arnet to use it"
        )
