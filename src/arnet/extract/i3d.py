"""I3D: Inception-v1 inflated to 3D (Carreira and Zisserman, CVPR 2017), for RGB and flow.

The module names follow the widely used PyTorch conversion of the Kinetics-400 checkpoints
(`rgb_imagenet.pt`, `flow_imagenet.pt`), so those files load as they are:
`Conv3d_1a_7x7.conv3d.weight`, `Conv3d_1a_7x7.bn.running_mean`, `Mixed_3b.b1b.conv3d.weight`,
..., `logits.conv3d.bias`. Every convolution and max-pool pads like TensorFlow's "SAME", so a
converted TensorFlow checkpoint computes what it computed there, at any input size.

The segment feature is Mixed_5c averaged over time and space: 1024 values. At the standard
input of 16 frames of 224 x 224 this equals the conversion's 2 x 7 x 7 average pool; unlike that
pool it is defined for any input size, which lets tests run at 64 x 64.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ExtractError
from .backbones import Backbone, ModuleBackbone, register_backbone
from .weights import read_weight_file

FEATURE_DIM = 1024
KINETICS_CLASSES = 400
CHANNELS = {"rgb": 3, "flow": 2}

# Inception-v1 mixed blocks: (name, input channels, outputs of branch 0, branch 1 reduce,
# branch 1, branch 2 reduce, branch 2, branch 3 pool projection).
_MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


def _same_padding(
    sizes: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]
) -> tuple[int, ...]:
    """F.pad amounts (last dim first) of TensorFlow "SAME": output = ceil(size / stride)."""
    pads: list[int] = []
    for size, k, s in zip(reversed(sizes), reversed(kernel), reversed(stride)):
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


class Unit3D(nn.Module):
    """Conv3d with "SAME" padding, then BatchNorm3d and ReLU (both optional)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        batch_norm: bool = True,
        relu: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride, padding=0, bias=bias)
        # eps 1e-3 is TensorFlow's batch-norm epsilon, which the converted statistics assume.
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(F.pad(x, _same_padding(tuple(x.shape[2:]), self.kernel, self.stride)))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max pooling with "SAME" padding. It pads with zeros, which equals TensorFlow's -inf
    padding here because every pool in I3D follows a ReLU (inputs >= 0)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, _same_padding(tuple(x.shape[2:]), self.kernel, self.stride))
        return F.max_pool3d(x, self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; pool -> 1x1), concatenated."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.b0 = Unit3D(in_channels, w0)
        self.b1a = Unit3D(in_channels, w1a)
        self.b1b = Unit3D(w1a, w1b, (3, 3, 3))
        self.b2a = Unit3D(in_channels, w2a)
        self.b2b = Unit3D(w2a, w2b, (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, w3)
        self.out_channels = w0 + w1b + w2b + w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1
        )


class InceptionI3d(nn.Module):
    """I3D for `in_channels` input channels (3 RGB, 2 flow).

    Args:
        in_channels: 3 for RGB clips, 2 for flow clips.
        num_classes: outputs of the logits layer (400 for Kinetics-400); features ignore it,
            it exists so that a full converted checkpoint loads strictly.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = KINETICS_CLASSES) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.layers: list[str] = []

        def add(name: str, module: nn.Module) -> None:
            self.add_module(name, module)
            self.layers.append(name)

        add("Conv3d_1a_7x7", Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2)))
        add("MaxPool3d_2a_3x3", MaxPool3dSame((1, 3, 3), (1, 2, 2)))
        add("Conv3d_2b_1x1", Unit3D(64, 64))
        add("Conv3d_2c_3x3", Unit3D(64, 192, (3, 3, 3)))
        add("MaxPool3d_3a_3x3", MaxPool3dSame((1, 3, 3), (1, 2, 2)))
        for name in ("Mixed_3b", "Mixed_3c"):
            add(name, InceptionBlock(*_MIXED[name]))
        add("MaxPool3d_4a_3x3", MaxPool3dSame((3, 3, 3), (2, 2, 2)))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            add(name, InceptionBlock(*_MIXED[name]))
        add("MaxPool3d_5a_2x2", MaxPool3dSame((2, 2, 2), (2, 2, 2)))
        for name in ("Mixed_5b", "Mixed_5c"):
            add(name, InceptionBlock(*_MIXED[name]))
        self.logits = Unit3D(FEATURE_DIM, num_classes, batch_norm=False, relu=False, bias=True)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """Segment features: Mixed_5c averaged over time and space.

        Args:
            clips: (N, C, L, H, W) in [-1, 1].

        Returns:
            (N, 1024).
        """
        x = clips
        for name in self.layers:
            x = getattr(self, name)(x)
        return x.mean(dim=(2, 3, 4))

    def classify(self, clips: torch.Tensor) -> torch.Tensor:
        """Class logits (N, num_classes), averaged over time: the checkpoint's own classifier."""
        x = clips
        for name in self.layers:
            x = getattr(self, name)(x)
        pooled = x.mean(dim=(3, 4), keepdim=True)  # (N, 1024, L', 1, 1)
        return self.logits(pooled).mean(dim=(2, 3, 4))


def _listing(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{f', ... {len(keys) - limit} more' if len(keys) > limit else ''}]"


def load_i3d(path: str | Path, modality: str) -> InceptionI3d:
    """Build an I3D from a converted state-dict file (`rgb_imagenet.pt` / `flow_imagenet.pt`).

    The file is read with `torch.load(weights_only=True)`: it can hold tensors only, never code.
    A `module.` prefix (a model saved from DataParallel) is accepted; the logits layer may be
    absent (features do not use it); BatchNorm's `num_batches_tracked` counters may be absent
    (the original conversion predates them).

    Args:
        path: the .pt file.
        modality: "rgb" or "flow"; the file's first convolution must take 3 or 2 channels.

    Raises:
        ExtractError: naming the file, when it is missing, unreadable, for the other modality,
            or its keys or shapes do not fit (listing missing, unexpected and mismatched keys).
    """
    path = Path(path)
    if modality not in CHANNELS:
        raise ExtractError(f"I3D modality must be rgb or flow, got {modality!r}")
    state = read_weight_file(path, f"I3D {modality}")

    stem = state.get("Conv3d_1a_7x7.conv3d.weight")
    if stem is not None and stem.ndim == 5 and stem.shape[1] != CHANNELS[modality]:
        other = "flow" if stem.shape[1] == 2 else "rgb" if stem.shape[1] == 3 else None
        hint = f" (a {other} checkpoint?)" if other else ""
        raise ExtractError(
            f"{path}: its first convolution takes {stem.shape[1]} channels, but {modality} "
            f"clips have {CHANNELS[modality]}{hint}"
        )
    logits = state.get("logits.conv3d.weight")
    classes = int(logits.shape[0]) if logits is not None and logits.ndim == 5 else KINETICS_CLASSES
    model = InceptionI3d(CHANNELS[modality], classes)
    expected = model.state_dict()
    optional = {k for k in expected if k.endswith("num_batches_tracked") or k.startswith("logits.")}
    missing = sorted(k for k in expected if k not in state and k not in optional)
    unexpected = sorted(k for k in state if k not in expected)
    mismatched = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    )
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing {len(missing)} keys {_listing(missing)}")
        if unexpected:
            problems.append(f"unexpected {len(unexpected)} keys {_listing(unexpected)}")
        if mismatched:
            problems.append(f"wrong shapes {_listing(mismatched)}")
        raise ExtractError(f"{path}: not an I3D {modality} state dict: {'; '.join(problems)}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ExtractError(f"{path}: weights hold NaN or Inf (first: {bad[0]})")
    model.load_state_dict(state, strict=False)
    return model.eval()


@register_backbone(
    "i3d",
    modalities=("rgb", "flow"),
    description="I3D Inception-v1 (Kinetics-400), avg-pooled Mixed_5c, 1024-d; weights from a "
    "converted rgb_imagenet.pt / flow_imagenet.pt",
    needs_weights=True,
)
def make_i3d(
    modality: str, weights: str | Path | None = None, random_init: bool = False, seed: int = 0
) -> Backbone:
    """I3D from a weight file, or (random_init=True, for tests and dry runs) seeded random weights.

    Raises:
        ExtractError: no weight file and no random_init, or a file that does not fit.
    """
    if weights is not None:
        model = load_i3d(weights, modality)
        options: dict[str, Any] = {}
    elif random_init:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = InceptionI3d(CHANNELS[modality]).eval()
            # He initialisation keeps activations at unit scale through the 60-odd layers;
            # PyTorch's default would shrink the features towards zero.
            for module in model.modules():
                if isinstance(module, nn.Conv3d):
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        options = {"random_init": True, "seed": seed}
    else:
        raise ExtractError(
            f"I3D {modality} needs a weight file ({modality}_imagenet.pt); "
            "see the README for where to get it"
        )
    return ModuleBackbone("i3d", modality, FEATURE_DIM, model, weights, options=options)
