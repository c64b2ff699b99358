"""The table of dataset layouts: one entry per layout, read by detection, loading, `inspect`,
`pack` and the command line's `--format` choices.

A layout is a catalogue reader decorated with `register_format`:

```python
@register_format("mine", detect=is_mine, looks_for="a mine.json", description="...")
def catalog_mine(root, *, ground_truth=None) -> Catalog: ...
```

Its keyword-only parameters are the options it takes (`build_catalog` passes those and refuses
the layout-specific ones it does not take); `detect(path) -> bool` recognises it for
`--format auto`, layouts being tried in registration order.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError


@dataclass(frozen=True)
class FormatEntry:
    """A registered layout.

    Attributes:
        name: its `--format` name.
        catalog: `catalog(path, **options) -> Catalog`.
        detect: whether a path holds this layout.
        looks_for: what `detect` looks for, in words (for the error when nothing matches).
        description: one line for help texts.
        options: the keyword options `catalog` takes.
    """

    name: str
    catalog: Callable[..., Any]
    detect: Callable[[Path], bool]
    looks_for: str
    description: str
    options: frozenset[str]


_FORMATS: dict[str, FormatEntry] = {}


def register_format(
    name: str, *, detect: Callable[[Path], bool], looks_for: str, description: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator adding a catalogue reader to the table under `name`."""

    def add(catalog: Callable[..., Any]) -> Callable[..., Any]:
        if name in _FORMATS:
            raise ValueError(f"dataset format {name!r} is registered twice")
        options = frozenset(
            p.name
            for p in inspect.signature(catalog).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        )
        _FORMATS[name] = FormatEntry(name, catalog, detect, looks_for, description, options)
        return catalog

    return add


def list_formats() -> list[FormatEntry]:
    """Every registered layout, in registration (detection) order."""
    return list(_FORMATS.values())


def format_names() -> tuple[str, ...]:
    return tuple(_FORMATS)


def format_entry(name: str) -> FormatEntry:
    """The entry of `name`.

    Raises:
        DataError: an unknown name, listing the known ones.
    """
    try:
        return _FORMATS[name]
    except KeyError:
        raise DataError(f"unknown dataset format {name!r}; known: {', '.join(_FORMATS)}") from None


def detect_format(path: str | Path) -> str:
    """Name the layout of `path`, or raise DataError saying what was looked for."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: dataset not found")
    for entry in _FORMATS.values():
        if entry.detect(path):
            return entry.name
    looked = ", ".join(e.looks_for for e in _FORMATS.values())
    raise DataError(
        f"{path}: unrecognised dataset layout (looked for {looked}); name the format "
        f"({', '.join(_FORMATS)})"
    )
