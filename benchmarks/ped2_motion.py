"""Cheap per-cell motion features of UCSD Ped2, cached: the probe's input.

    python benchmarks/ped2_motion.py            # writes benchmarks/.cache/ped2/motion/VIDEO.npz

Per frame (grey, full 360 x 240): the absolute difference to the previous frame and Farneback
optical flow at half resolution (180 x 120). Over a grid of 8 x 12 cells (30 x 30 px), per frame:

    diff      mean absolute grey difference (0..255)
    mag       mean flow magnitude (px per frame, at half resolution)
    moving    fraction of the cell's pixels whose flow magnitude is over 0.5 px
    speed     mean flow magnitude over the moving pixels (0 when none move): an object's speed
              independent of its size
    p90       90th percentile of the flow magnitude
    dx, dy    mean flow components

Per 16-frame segment (the tail shorter than 16 frames dropped, as `arnet extract` does), each
statistic's mean over the segment's frames: an array (T, 8, 12, 7) float32 per video.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("ARNET_PED2", REPO.parent / "shared" / "data" / "ucsd-ped2"))
DEFAULT_CACHE = REPO / "benchmarks" / ".cache" / "ped2" / "motion"
STATS = ("diff", "mag", "moving", "speed", "p90", "dx", "dy")
ROWS, COLS, FPS = 8, 12, 16


def cell_view(a: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(H, W) -> (rows, cols, h*w): each cell's pixels."""
    h, w = a.shape[0] // rows, a.shape[1] // cols
    a = a[: h * rows, : w * cols]
    return a.reshape(rows, h, cols, w).transpose(0, 2, 1, 3).reshape(rows, cols, h * w)


def frame_stats(prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
    diff = np.abs(cur.astype(np.float32) - prev.astype(np.float32))
    small_p = cv2.resize(
        prev, (prev.shape[1] // 2, prev.shape[0] // 2), interpolation=cv2.INTER_AREA
    )
    small_c = cv2.resize(cur, (cur.shape[1] // 2, cur.shape[0] // 2), interpolation=cv2.INTER_AREA)
    flow = cv2.calcOpticalFlowFarneback(small_p, small_c, None, 0.5, 3, 9, 3, 5, 1.1, 0)
    mag = np.sqrt((flow**2).sum(axis=2))
    d = cell_view(diff, ROWS, COLS)
    m = cell_view(mag, ROWS, COLS)
    fx = cell_view(flow[..., 0], ROWS, COLS)
    fy = cell_view(flow[..., 1], ROWS, COLS)
    moving = m > 0.5
    n = moving.sum(axis=2)
    speed = np.where(n > 0, (m * moving).sum(axis=2) / np.maximum(n, 1), 0.0)
    out = np.stack(
        [
            d.mean(axis=2),
            m.mean(axis=2),
            moving.mean(axis=2),
            speed,
            np.percentile(m, 90, axis=2),
            fx.mean(axis=2),
            fy.mean(axis=2),
        ],
        axis=-1,
    )
    return out.astype(np.float32)


def video_features(folder: Path) -> tuple[np.ndarray, int]:
    paths = sorted(folder.glob("*.jpg"), key=lambda p: int(p.stem))
    grey = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]
    per_frame = [frame_stats(grey[i - 1], grey[i]) for i in range(1, len(grey))]
    per_frame.insert(0, per_frame[0])  # frame 1 has no predecessor: repeat frame 2's motion
    a = np.stack(per_frame)
    t = len(a) // FPS
    return a[: t * FPS].reshape(t, FPS, ROWS, COLS, len(STATS)).mean(axis=1), len(grey)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    out = Path(args.cache)
    out.mkdir(parents=True, exist_ok=True)
    labels = json.loads((Path(args.data) / "labels.json").read_text())
    total_s, total_frames = 0.0, 0
    for name in sorted(labels):
        target = out / f"{name}.npz"
        if target.is_file():
            continue
        started = time.perf_counter()
        feats, frames = video_features(Path(args.data) / "frames" / name)
        seconds = time.perf_counter() - started
        np.savez(target, features=feats, seconds=seconds, frames=frames)
        total_s += seconds
        total_frames += frames
        print(f"{name}: {feats.shape} {seconds:.1f} s", file=sys.stderr)
    if total_frames:
        print(
            f"{total_frames} frames in {total_s:.1f} s "
            f"({1000 * total_s / total_frames:.2f} ms/frame)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
