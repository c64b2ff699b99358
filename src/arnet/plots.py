"""Score curves: one PNG per video, scores over frames with anomalous frames shaded."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or assumed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .config import FRAMES_PER_SEGMENT  # noqa: E402
from .metrics import expand_to_frames  # noqa: E402


def _draw(
    ax: plt.Axes,
    name: str,
    scores: np.ndarray,
    frame_labels: np.ndarray | None,
    frames_per_segment: int,
    threshold: float | None,
) -> None:
    frame_scores = expand_to_frames(scores, frames_per_segment)
    x = np.arange(len(frame_scores))
    if frame_labels is not None:
        labels = np.asarray(frame_labels).reshape(-1)[: len(frame_scores)]
        ax.fill_between(
            np.arange(len(labels)),
            0,
            1,
            where=labels > 0,
            color="tab:red",
            alpha=0.25,
            linewidth=0,
            label="anomalous frames",
        )
    ax.plot(x, frame_scores, color="tab:blue", linewidth=1.2, label="anomaly score")
    if threshold is not None:
        ax.axhline(threshold, color="gray", linestyle="--", linewidth=0.8)
    ax.set_xlim(0, max(len(frame_scores) - 1, 1))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("frame")
    ax.set_ylabel("anomaly score")
    ax.set_title(name)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")


def plot_filename(name: str) -> str:
    """File name of a video's plot: names with folders (UCF-Crime's `Class/Video`) flattened."""
    return name.replace("/", "__").replace("\\", "__") + ".png"


def plot_scores(
    path: str | Path,
    name: str,
    scores: np.ndarray,
    frame_labels: np.ndarray | None = None,
    frames_per_segment: int = FRAMES_PER_SEGMENT,
    threshold: float | None = 0.5,
) -> Path:
    """Write one video's score curve to `path` (PNG)."""
    fig, ax = plt.subplots(figsize=(8, 3), dpi=80)
    try:
        _draw(ax, name, scores, frame_labels, frames_per_segment, threshold)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return Path(path)


def plot_videos(
    folder: str | Path,
    scores: Mapping[str, np.ndarray],
    frame_labels: Mapping[str, np.ndarray | None],
    frames_per_segment: int = FRAMES_PER_SEGMENT,
    threshold: float | None = 0.5,
) -> Path:
    """Write `folder/VIDEO.png` for every scored video; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 3), dpi=80)
    try:
        for name, s in scores.items():
            ax.clear()
            _draw(ax, name, s, frame_labels.get(name), frames_per_segment, threshold)
            fig.tight_layout()
            fig.savefig(folder / plot_filename(name))
    finally:
        plt.close(fig)
    return folder
