"""Scoring instances: every cell of a grid feature scored as if it were its own video.

Grid backbones (`motion-grid`, `efficientnet-lite0 --grid RxC`) keep a segment's C cells:
its feature is C blocks of D numbers, cell-major (`extract.backbones.cell_layout`; with
`--modal combine` the rgb blocks come before the flow ones, and each cell gathers its rgb and
flow numbers). `arnet train --instances cells` wraps the chosen model (built for D-d input)
in `CellInstances`:

```
features (B, T, C D) --cells--> (B C, T, D), mask repeated --model--> (B C, T)
  --> cell scores (B, T, C) --max over cells--> segment scores (B, T)
```

so the objective (dynamic top-k MIL, center loss) sees segment scores as it always does, and
a segment is as anomalous as its most anomalous cell. One network scores every cell: the cells
are a set, and permuting them (the same way in every segment) permutes the cell scores and
leaves the segment scores as they are. A temporal model follows each cell through time on
its own. Padded segments are masked in every cell, so padding never changes a score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .registry import ScoringModel


class CellInstances(ScoringModel):
    """A registry model applied to each cell of grid features; a segment's score is its
    highest cell score.

    Args:
        model: the model scoring one cell's D-d features (built with feature_dim = D).
        cells: C, cells per segment.
        widths: numbers per cell of each part of the feature (rgb then flow with `--modal
            combine`; one entry otherwise); D is their sum.
    """

    def __init__(self, model: ScoringModel, cells: int, widths: Sequence[int]) -> None:
        super().__init__()
        self.model = model
        self.cells = int(cells)
        self.widths = [int(w) for w in widths]
        if self.cells < 1 or not self.widths or min(self.widths) < 1:
            raise ValueError(f"cells {cells} and widths {list(widths)} must be positive")
        self.cell_dim = sum(self.widths)
        self.feature_dim = self.cells * self.cell_dim
        # a cell score depends on its own segment alone when the model's does
        self.independent_segments = model.independent_segments
        self.has_empty_scores = model.has_empty_scores
        spec = getattr(model, "arnet_spec", None)
        if spec is not None:
            self.arnet_spec = {**spec, "cells": self.cells, "cell_widths": self.widths}

    def split_cells(self, features: torch.Tensor) -> torch.Tensor:
        """(..., C D) -> (..., C, D): each cell's numbers together."""
        if features.shape[-1] != self.feature_dim:
            raise ValueError(
                f"the cell model takes {self.cells} cells x {self.cell_dim} = "
                f"{self.feature_dim} features per segment, got {features.shape[-1]}"
            )
        if len(self.widths) == 1:
            return features.unflatten(-1, (self.cells, self.cell_dim))
        parts = features.split([self.cells * w for w in self.widths], dim=-1)
        return torch.cat([p.unflatten(-1, (self.cells, w)) for p, w in zip(parts, self.widths)], -1)

    def cell_scores(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """features (B, T, C D), mask (B, T) -> each cell's score (B, T, C); 0 at padding."""
        # Shapes are left to flatten / unflatten (no sizes read from the input), so that an
        # exported graph keeps the segment count free.
        x = self.split_cells(features)  # (B, T, C, D)
        c = self.cells
        if self.independent_segments:
            # every (segment, cell) is scored alone: no reordering, the cells of a segment
            # simply become consecutive rows
            cell_mask = mask[..., None].expand(-1, -1, c).flatten(1)  # (B, T C)
            return self.model(x.flatten(1, 2), cell_mask).unflatten(1, (-1, c))
        # one sequence per (video, cell): the model follows each cell through time
        rows = x.transpose(1, 2).flatten(0, 1)  # (B C, T, D)
        cell_mask = mask[:, None, :].expand(-1, c, -1).flatten(0, 1)  # (B C, T)
        return self.model(rows, cell_mask).unflatten(0, (-1, c)).transpose(1, 2)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """features (B, T, C D), mask (B, T) -> segment scores (B, T): the highest cell's."""
        return self.cell_scores(features, mask).amax(dim=-1)

    def empty_scores(self, n: int) -> torch.Tensor:
        """(n,) scores of all-zero segments: the highest of C cell scores of a zero feature,
        each cell with its own dropout mask in training, as `forward` would score them."""
        return self.model.empty_scores(n * self.cells).view(n, self.cells).amax(dim=1)


def input_dim(model: nn.Module) -> int | None:
    """Numbers per segment a model takes: cells x per-cell numbers for a cell model, the
    registry's `feature_dim` otherwise (None when unknown)."""
    if isinstance(model, CellInstances):
        return model.feature_dim
    return getattr(model, "arnet_spec", {}).get("kwargs", {}).get("feature_dim")


def instances_model(model: nn.Module, config: Any) -> nn.Module:
    """`model` wrapped in CellInstances when a TrainConfig scores cells (`instances`), with
    the cell count and widths the config holds; `model` itself otherwise.

    Raises:
        ValueError: a cell config without its cell count (resolved when training starts).
    """
    if getattr(config, "instances", "segment") != "cells":
        return model
    if not config.cells or not config.cell_widths:
        raise ValueError(
            "config field 'instances' is 'cells' but 'cells' / 'cell_widths' are not set"
        )
    # a registry model (ScoringModel); nn.Module here only as the objectives' protocol says
    return CellInstances(model, config.cells, config.cell_widths)  # type: ignore[arg-type]
