"""CSV cells that a spreadsheet shows as the text they are: every CSV arnet writes (per-video
results, detections, exported alerts) goes through `csv_row` or `csv_cell`."""

from __future__ import annotations

from typing import Any

# A spreadsheet reads a cell starting with one of these as a formula (or, for tab and
# carriage return, strips them first): a video named "=HYPERLINK(...)" would run as one.
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
