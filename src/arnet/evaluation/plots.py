"""Score curves: one PNG per video, scores over frames with anomalous frames shaded."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or assumed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..atomic import write_atomic  # noqa: E402
from ..config import FRAMES_PER_SEGMENT  # noqa: E402
from .alerts import spans  # noqa: E402


def file_stem(name: str) -> str:
    """A video name as a file name: names with folders (UCF-Crime's `Class/Video`) flattened."""
    return name.replace("/", "__").replace("\\", "__")


def plot_filename(name: str) -> str:
    """File name of a video's score plot."""
    return file_stem(name) + ".png"


def _draw(
    ax: plt.Axes,
    name: str,
    scores: np.ndarray,
    frame_labels: np.ndarray | None,
    frames_per_segment: int,
    threshold: float | None,
) -> None:
    # Segment scores as steps and anomalous frames as a few spans: a handful of artists per
    # video rather than 16 points per segment, so 200 test videos plot in seconds.
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    frames = len(scores) * frames_per_segment
    if frame_labels is not None:
        anomalous = np.asarray(frame_labels).reshape(-1)[:frames] > 0
        for i, (start, end) in enumerate(zip(*spans(anomalous))):
            label = "anomalous frames" if i == 0 else None
            ax.axvspan(start, end, color="tab:red", alpha=0.25, linewidth=0, label=label)
    edges = np.arange(len(scores) + 1) * frames_per_segment
    ax.stairs(scores, edges, baseline=None, color="tab:blue", linewidth=1.2, label="anomaly score")
    if threshold is not None:
        ax.axhline(threshold, color="gray", linestyle="--", linewidth=0.8)
    ax.set_xlim(0, max(frames, 1))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("frame")
    ax.set_ylabel("anomaly score")
    ax.set_title(name)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")


def plot_videos(
    folder: str | Path,
    scores: Mapping[str, np.ndarray],
    frame_labels: Mapping[str, np.ndarray | None],
    frames_per_segment: int = FRAMES_PER_SEGMENT,
    threshold: float | None = 0.5,
) -> Path:
    """Write `folder/VIDEO.png` for every scored video; returns the folder.

    Args:
        folder: where the PNGs go (created).
        scores: video -> (T,) segment scores.
        frame_labels: video -> per-frame 0/1 labels, or None (no shading).
        frames_per_segment: frames each segment score stands for.
        threshold: drawn as a dashed line; None draws none.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 3), dpi=80)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.9)  # fixed: no layout per plot
    try:
        for name, s in scores.items():
            ax.clear()
            _draw(ax, name, s, frame_labels.get(name), frames_per_segment, threshold)
            write_atomic(folder / plot_filename(name), lambda f: fig.savefig(f, format="png"))
    finally:
        plt.close(fig)
    return folder
