"""Where an alert is: its peak frame under a heat map of its segment's cells (`arnet detect`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import write_atomic
from ..evaluation.plots import plt
from ..extract.video import find_inputs
from .alerts import Alert


def write_heat_maps(
    folder: Path,
    stem: str,
    source: str | Path,
    alerts: Sequence[Alert],
    cell_maps: np.ndarray,
    frames_per_segment: int,
) -> dict[str, Path]:
    """NAME.alertN.jpg: each alert's peak frame with the cell map of its segment over it,
    scaled to its highest cell: red where the segment is most anomalous (a cell model's
    highest cell scores, or where nearest-normal finds it differs most from normal footage).

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
        segment = min(index // frames_per_segment, len(cell_maps) - 1)
        cells = cell_maps[segment]
        n = wanted[index]
        path = folder / f"{stem}.alert{n}.jpg"
        h, w = frame.shape[:2]
        fig, ax = plt.subplots(figsize=(w / 80, h / 80), dpi=80)
        try:
            ax.imshow(frame)
            ax.imshow(cells / max(float(cells.max()), 1e-12), cmap="jet", alpha=0.4,
                      extent=(0, w, h, 0), interpolation="nearest", vmin=0, vmax=1)  # fmt: skip
            ax.set_axis_off()
            fig.subplots_adjust(0, 0, 1, 1)
            write_atomic(path, lambda f, fig=fig: fig.savefig(f, format="jpg"))
        finally:
            plt.close(fig)
        paths[f"alert{n}"] = path
        if len(paths) == len(wanted):
            break
    return paths
