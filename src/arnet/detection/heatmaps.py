"""Where an alert is: its peak frame under a heat map of its segment's cells (`arnet detect`
writes one JPG per alert; `arnet watch` stores the frame beside it as the alert's picture)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from PIL import Image

from ..atomic import write_atomic
from ..extract.video import find_inputs
from .alerts import Alert

HEAT_ALPHA = 0.4  # the frame stays readable under the colours
PICTURE_GAP = 4  # pixels between the frame and its heat map in a live alert's picture


def heat_overlay(frame: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3) uint8 frame and (rows, cols) cell values -> the frame under the cells'
    heat map (jet colours, scaled to the highest cell: red where the segment is most
    anomalous), each cell covering its share of the whole frame; (H, W, 3) uint8."""
    h, w = frame.shape[:2]
    rows, cols = cells.shape
    peak = max(float(np.max(cells)), 1e-12)
    colours = colormaps["jet"](np.clip(np.asarray(cells, np.float64) / peak, 0.0, 1.0))[..., :3]
    ys = np.minimum(np.arange(h) * rows // h, rows - 1)
    xs = np.minimum(np.arange(w) * cols // w, cols - 1)
    heat = colours[ys][:, xs] * 255.0
    mixed = (1.0 - HEAT_ALPHA) * frame[:, :, :3].astype(np.float64) + HEAT_ALPHA * heat
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def heat_picture(frame: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """The frame as it is, and beside it (PICTURE_GAP black pixels to its right) the same
    frame under its heat map: (H, 2 W + PICTURE_GAP, 3) uint8."""
    gap = np.zeros((frame.shape[0], PICTURE_GAP, 3), dtype=np.uint8)
    return np.concatenate([frame[:, :, :3], gap, heat_overlay(frame, cells)], axis=1)


def jpeg_bytes(image: np.ndarray, quality: int = 90) -> bytes:
    """RGB (H, W, 3) uint8 -> JPEG bytes."""
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def write_heat_maps(
    folder: Path,
    stem: str,
    source: str | Path,
    alerts: Sequence[Alert],
    cell_maps: np.ndarray,
    frames_per_segment: int,
) -> dict[str, Path]:
    """NAME.alertN.jpg: each alert's peak frame with the cell map of its segment over it
    (`heat_overlay`: a cell model's highest cell scores, or where nearest-normal finds it
    differs most from normal footage).

    Args:
        folder, stem: where to write, and the files' name stem.
        source: the video (file or frame folder) the alerts are in.
        alerts: its alerts; each one's peak frame is drawn.
        cell_maps: (T, rows, cols) per segment.
        frames_per_segment: frames behind each segment.
    """
    wanted = {a.peak_frame: i for i, a in enumerate(alerts, 1)}
    paths: dict[str, Path] = {}
    for index, frame in enumerate(find_inputs([source])[0].frames()):
        if index not in wanted:
            continue
        assert frame is not None  # a stride of 1 yields every frame
        segment = min(index // frames_per_segment, len(cell_maps) - 1)
        n = wanted[index]
        path = folder / f"{stem}.alert{n}.jpg"
        data = jpeg_bytes(heat_overlay(frame, cell_maps[segment]))
        # mypy cannot type a lambda with a default argument (python/mypy#15459)
        write_atomic(path, lambda f, data=data: f.write(data))  # type: ignore[misc]
        paths[f"alert{n}"] = path
        if len(paths) == len(wanted):
            break
    return paths
