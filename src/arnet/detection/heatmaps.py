"""Where an alert is: its peak frame under a heat map of its segment's cells (`arnet detect`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import write_atomic
from ..evaluation.plots import plt
from ..extract.video import find_inputs

if TYPE_CHECKING:
    from .detector import Detection


def write_heat_maps(folder: Path, stem: str, detection: Detection) -> dict[str, Path]:
    """NAME.alertN.jpg: each alert's peak frame with the cell map of its segment over it,
    scaled to its highest cell: red where the segment is most anomalous (a cell model's
    highest cell scores, or where nearest-normal finds it differs most from normal footage)."""
    wanted = {a.peak_frame: i for i, a in enumerate(detection.alerts, 1)}
    paths: dict[str, Path] = {}
    for index, frame in enumerate(find_inputs([detection.source])[0].frames()):
        if index not in wanted:
            continue
        segment = min(index // detection.frames_per_segment, len(detection.cell_maps) - 1)
        cells = detection.cell_maps[segment]
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
