"""`motion-grid`: what moves where, as a few numbers per cell of a fixed grid; no weights.

A fixed camera's anomalies are often an object moving differently (a cyclist is a pedestrian
going too fast) somewhere in a wide view. Pooling a network's feature map over the frame loses
both the where and the how fast; this backbone keeps them, at the cost of a frame difference
and an optical flow field per frame (Farneback: a few milliseconds at 180 x 120 on a CPU core,
cheap enough for live cameras).

The frame (after `--short-side` resizing and `--crop`) is cut into ROWS x COLS equal cells
(a remainder of pixels at the bottom and right edges is left out). Per cell and per frame:

    rgb clips (consecutive frames' grey-level difference, grey in [0, 1]):
        diff      mean absolute difference to the previous frame of the segment
        changed   fraction of pixels whose difference exceeds 10 / 255
    flow clips (the extraction's flow field, in units of its bound: `--flow-bound`, 20 px):
        mag       mean flow magnitude
        moving    fraction of pixels moving by more than 1/40 of the bound (0.5 px at 20)
        speed     mean magnitude over the moving pixels (0 when none moves): an object's
                  speed whatever its size
        p90       90th percentile of the magnitude
        dx, dy    mean horizontal and vertical displacement

Each statistic is averaged over the segment's frames. A segment's vector is laid out
(row, col, statistic), row-major: ROWS * COLS * 2 numbers for rgb, ROWS * COLS * 6 for flow,
and `--modal combine` concatenates the two. The layout is recorded with the features
(extraction.json: `grid`, `stats`) so a reader can restore the cells.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ExtractError
from ..videoconfig import MOTION_GRID
from .backbones import Backbone, parse_grid, register_backbone

RGB_STATS = ("diff", "changed")
FLOW_STATS = ("mag", "moving", "speed", "p90", "dx", "dy")
CHANGED_LEVEL = 10.0 / 255.0
MOVING_LEVEL = 0.025  # of the flow bound


def cells(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """(..., H, W) -> (..., rows, cols, h * w): each cell's pixels (edge remainder dropped)."""
    h, w = x.shape[-2] // rows, x.shape[-1] // cols
    if h < 1 or w < 1:
        raise ExtractError(
            f"motion-grid: a {x.shape[-2]} x {x.shape[-1]} frame cannot be cut into "
            f"{rows} x {cols} cells; choose a smaller --grid or a larger --short-side"
        )
    x = x[..., : h * rows, : w * cols]
    lead = x.shape[:-2]
    x = x.reshape(*lead, rows, h, cols, w).transpose(-3, -2)
    return x.reshape(*lead, rows, cols, h * w)


def rgb_statistics(clips: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """(N, 3, L, H, W) in [-1, 1] -> (N, rows, cols, 2): frame differences per cell."""
    grey = (clips.float().mean(dim=1) + 1.0) / 2.0  # (N, L, H, W) in [0, 1]
    if grey.shape[1] < 2:
        diff = torch.zeros_like(grey)
    else:
        diff = (grey[:, 1:] - grey[:, :-1]).abs()
    c = cells(diff, rows, cols)  # (N, L', rows, cols, P)
    stats = torch.stack([c.mean(dim=-1), (c > CHANGED_LEVEL).float().mean(dim=-1)], dim=-1)
    return stats.mean(dim=1)


def flow_statistics(clips: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """(N, 2, L, H, W) flow in units of its bound -> (N, rows, cols, 6): motion per cell."""
    flow = clips.float()
    mag = flow.pow(2).sum(dim=1).sqrt()  # (N, L, H, W)
    m = cells(mag, rows, cols)
    moving = m > MOVING_LEVEL
    count = moving.sum(dim=-1)
    speed = torch.where(count > 0, (m * moving).sum(dim=-1) / count.clamp_min(1), 0.0)
    stats = torch.stack(
        [
            m.mean(dim=-1),
            moving.float().mean(dim=-1),
            speed,
            torch.quantile(m, 0.9, dim=-1),
            cells(flow[:, 0], rows, cols).mean(dim=-1),
            cells(flow[:, 1], rows, cols).mean(dim=-1),
        ],
        dim=-1,
    )
    return stats.mean(dim=1)


class MotionGrid(Backbone):
    """Per-cell motion statistics of a segment (see the module docstring)."""

    name = "motion-grid"

    def __init__(self, modality: str, grid: tuple[int, int]) -> None:
        self.modality = modality
        self.grid = grid
        self.stats = RGB_STATS if modality == "rgb" else FLOW_STATS
        self.dim = grid[0] * grid[1] * len(self.stats)

    def encode(self, clips: torch.Tensor) -> torch.Tensor:
        rows, cols = self.grid
        with torch.inference_mode():
            if self.modality == "rgb":
                out = rgb_statistics(clips, rows, cols)
            else:
                out = flow_statistics(clips, rows, cols)
        return out.reshape(out.shape[0], -1).float()

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "weights": None,
            "sha256": None,
            "options": {"grid": f"{self.grid[0]}x{self.grid[1]}"},
            "grid": list(self.grid),
            "stats": list(self.stats),
        }


@register_backbone(
    "motion-grid",
    modalities=("rgb", "flow"),
    description="per-cell motion statistics on a ROWSxCOLS grid (frame differences for rgb, "
    "flow magnitude, speed and direction for flow); no weights, no network",
)
def make_motion_grid(
    modality: str,
    weights: str | None = None,
    grid: str | tuple[int, int] = MOTION_GRID,
) -> Backbone:
    if weights is not None:
        raise ExtractError("motion-grid has no weights; drop --weights-rgb / --weights-flow")
    return MotionGrid(modality, parse_grid(grid))
