"""Masks: regions of a camera that count for nothing (`arnet watch --mask CAMERA=SPEC`).

SPEC is either

- a PNG file, white (any channel above 127) = ignore, of one of two sizes: the camera's frames
  as decoded (W x H; checked at the camera's first segment) or, with a checkpoint that maps
  cells (`Detector.cell_grid`: a grid backbone such as motion-grid on the whole frame), its
  cell grid (COLS x ROWS: one pixel a cell). Never resized from any other size: a mask drawn
  for another camera or resolution is refused, naming the camera and both sizes;
- a cell list `ROW:COL,ROW:COL,...` (0-based) on the checkpoint's cell grid, or on a grid given
  first, `RxC/ROW:COL,...`, with any checkpoint (the frame cut into R x C equal cells).

The masked pixels of every frame a segment hands to the backbone are set to 0 (black, and no
motion in the flow fields) before the backbone runs: what happens there cannot change a score.
On a grid backbone the masked cells' features are then those of a still, black cell whatever
the camera sees, and their heat-map cells are drawn 0. The mask is stored with the camera
(`store.media.set_mask`) for the dashboard to draw over the clip; the clip itself is recorded
unmasked (it shows what happened).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .camera import Segment

_GRID = re.compile(r"^(\d+)x(\d+)/")
_CELL = re.compile(r"^(\d+):(\d+)$")


@dataclass
class Mask:
    """One camera's mask: cells of a grid, or pixels at the PNG's size.

    Attributes:
        camera: the camera's name.
        spec: the option as given (for messages).
        cells: (rows, cols) booleans, True = ignored; or None.
        pixels: (H, W) booleans at the frames' decoded size, True = ignored; or None.
    """

    camera: str
    spec: str
    cells: np.ndarray | None = None
    pixels: np.ndarray | None = None
    _cache: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False)
    checked: bool = False

    def describe(self) -> dict[str, Any]:
        """The mask as stored for the dashboard (JSON)."""
        if self.cells is not None:
            rows, cols = self.cells.shape
            where = [[int(r), int(c)] for r, c in zip(*np.nonzero(self.cells))]
            return {"kind": "cells", "rows": rows, "cols": cols, "cells": where}
        assert self.pixels is not None
        import cv2

        ok, png = cv2.imencode(".png", self.pixels.astype(np.uint8) * 255)
        assert ok
        h, w = self.pixels.shape
        return {
            "kind": "pixels",
            "width": w,
            "height": h,
            "png": base64.b64encode(png.tobytes()).decode(),
            "ignored_share": round(float(self.pixels.mean()), 4),
        }

    def check_frame(self, shape: tuple[int, ...]) -> None:
        """Refuse a pixel mask of another size than the camera's frames (H, W, ...)."""
        if self.pixels is None or self.checked:
            return
        h, w = self.pixels.shape
        if (shape[0], shape[1]) != (h, w):
            raise DataError(
                f"--mask {self.spec}: the mask is {w}x{h}, camera {self.camera!r}'s frames are "
                f"{shape[1]}x{shape[0]}; draw the mask at the camera's size (never resized)"
            )
        self.checked = True

    def at(self, h: int, w: int) -> np.ndarray:
        """The mask as (h, w) booleans for a frame the backbone takes (resized as it is)."""
        key = (h, w)
        if key not in self._cache:
            if self.cells is not None:
                rows, cols = self.cells.shape
                ch, cw = max(1, h // rows), max(1, w // cols)
                out = np.zeros((h, w), dtype=bool)
                for r, c in zip(*np.nonzero(self.cells)):
                    # as the grid backbone cuts its cells; the last row and column to the edge
                    y1 = h if r == rows - 1 else (r + 1) * ch
                    x1 = w if c == cols - 1 else (c + 1) * cw
                    out[r * ch : y1, c * cw : x1] = True
            else:
                import cv2

                assert self.pixels is not None
                small = cv2.resize(
                    self.pixels.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST
                )
                out = small.astype(bool)
            self._cache[key] = out
        return self._cache[key]

    def apply(self, segment: Segment) -> None:
        """Blank the masked pixels of the segment's frames (and flow fields) in place."""
        self.check_frame(segment.first_frame.shape)
        items = []
        for frame, flow in segment.items:
            where = self.at(frame.shape[0], frame.shape[1])
            frame = frame.copy()
            frame[where] = 0
            if flow is not None:
                flow = flow.copy()
                flow[self.at(flow.shape[0], flow.shape[1])] = 0
            items.append((frame, flow))
        segment.items = items

    def blank_cells(self, cells: np.ndarray | None) -> np.ndarray | None:
        """A segment's heat-map cells with the masked ones at 0."""
        if cells is None or self.cells is None or cells.shape != self.cells.shape:
            return cells
        out = np.array(cells, dtype=float, copy=True)
        out[self.cells] = 0.0
        return out


def _cell_list(camera: str, spec: str, text: str, grid: tuple[int, int] | None) -> np.ndarray:
    given = _GRID.match(text)
    if given:
        grid = (int(given[1]), int(given[2]))
        text = text[given.end() :]
        if min(grid) < 1 or max(grid) > 256:
            raise DataError(f"--mask {spec}: a grid of 1 to 256 rows and columns, got {grid}")
    if grid is None:
        raise DataError(
            f"--mask {spec}: this checkpoint maps no cells; give the grid first "
            f"({camera}=4x4/0:0,0:1) or a PNG at the camera's size"
        )
    rows, cols = grid
    cells = np.zeros(grid, dtype=bool)
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = _CELL.match(part)
        if not m:
            raise DataError(f"--mask {spec}: {part!r} is not a cell ROW:COL (e.g. 0:3)")
        r, c = int(m[1]), int(m[2])
        if r >= rows or c >= cols:
            raise DataError(
                f"--mask {spec}: cell {r}:{c} is outside camera {camera!r}'s {rows}x{cols} grid "
                f"(rows 0-{rows - 1}, columns 0-{cols - 1})"
            )
        cells[r, c] = True
    if not cells.any():
        raise DataError(f"--mask {spec}: no cell given")
    return cells


def _png(camera: str, spec: str, path: Path, grid: tuple[int, int] | None) -> Mask:
    import cv2

    if not path.is_file():
        raise DataError(f"--mask {spec}: {path}: no such file")
    pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)  # alpha dropped, grey made 3 channels
    if pixels is None:
        raise DataError(f"--mask {spec}: {path}: not a readable image")
    white: np.ndarray = np.asarray((pixels > 127).any(axis=2))
    if grid is not None and white.shape == grid:  # one pixel a cell
        return Mask(camera, spec, cells=white)
    return Mask(camera, spec, pixels=white)


def parse_masks(
    texts: Iterable[str], cameras: Iterable[str], grid: tuple[int, int] | None
) -> dict[str, Mask]:
    """`--mask CAMERA=SPEC` options -> {camera: Mask}.

    Args:
        texts: the options' values.
        cameras: the names of the cameras watched.
        grid: the checkpoint's cell grid (`Detector.cell_grid`), or None.

    Raises:
        DataError: naming the option: no `=`, an unknown camera, a camera masked twice, an
            unreadable PNG, a cell outside the grid, a cell list without a grid.
    """
    names = list(cameras)
    out: dict[str, Mask] = {}
    for spec in texts:
        camera, sep, value = spec.partition("=")
        if not sep or not camera or not value:
            raise DataError(f"--mask {spec}: give CAMERA=MASK.png or CAMERA=ROW:COL,...")
        if camera not in names:
            shown = ", ".join(names[:10])
            raise DataError(f"--mask {spec}: no camera {camera!r} is watched (cameras: {shown})")
        if camera in out:
            raise DataError(f"--mask {spec}: camera {camera!r} is masked twice")
        if value.lower().endswith(".png") or Path(value).is_file():
            out[camera] = _png(camera, spec, Path(value), grid)
        else:
            out[camera] = Mask(camera, spec, cells=_cell_list(camera, spec, value, grid))
    return out
