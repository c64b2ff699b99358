"""The table of dataset layouts: one entry per layout, read by detection, loading, `inspect`,
`pack` and the command line's `--format` choices.

The built-in layouts are named in `BUILT_IN` with the module that registers each, so that their
names are known without loading a reader (every `--help` is built without numpy or torch); a
reader module is imported when a layout is looked up. A layout is a catalogue reader decorated
with `register_format`:

```python
@register_format("mine", detect=is_mine, looks_for="a mine.json", description="...")
def catalog_mine(root, *, ground_truth=None) -> Catalog: ...
```

Its keyword-only parameters are the options it takes (`build_catalog` passes those and refuses
the layout-specific ones it does not take); `detect(path) -> bool` recognises it for
`--format auto`, layouts being tried in registration order.
"""

from __future__ import annotations

import importlib
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


# The built-in layouts, in the order `--format auto` tries them: name -> its reader's module.
BUILT_IN = {
    "packed": "arnet.formats.packed",
    "arnet": "arnet.formats.arnet",
    "crops": "arnet.formats.crops",
    "list": "arnet.formats.lists",
    "csv": "arnet.formats.lists",
}

_FORMATS: dict[str, FormatEntry] = {}


def _loaded() -> dict[str, FormatEntry]:
    """Every layout, the built-in readers imported (which registers them), in order."""
    for module in dict.fromkeys(BUILT_IN.values()):
        importlib.import_module(module)
    missing = [name for name in BUILT_IN if name not in _FORMATS]
    if missing:  # a name in the table whose module registers no such layout
        raise RuntimeError(f"built-in dataset format(s) {missing} are not registered")
    return {**{n: _FORMATS[n] for n in BUILT_IN}, **_FORMATS}


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
    """Every layout, in detection order: the built-in ones, then those registered since."""
    return list(_loaded().values())


def format_names() -> tuple[str, ...]:
    """The layouts' names, without loading their readers."""
    return tuple(dict.fromkeys([*BUILT_IN, *_FORMATS]))


def format_entry(name: str) -> FormatEntry:
    """The entry of `name`.

    Raises:
        DataError: an unknown name, listing the known ones.
    """
    try:
        return _loaded()[name]
    except KeyError:
        known = ", ".join(format_names())
        raise DataError(f"unknown dataset format {name!r}; known: {known}") from None


def detect_format(path: str | Path) -> str:
    """Name the layout of `path`, or raise DataError saying what was looked for."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: dataset not found")
    entries = _loaded()
    for entry in entries.values():
        if entry.detect(path):
            return entry.name
    looked = ", ".join(e.looks_for for e in entries.values())
    raise DataError(
        f"{path}: unrecognised dataset layout (looked for {looked}); name the format "
        f"({', '.join(entries)})"
    )
