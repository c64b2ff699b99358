"""Segment scoring models behind one registry.

Every model maps `model(features (B, T, D), mask (B, T) bool) -> scores (B, T)` in [0, 1],
higher = more anomalous. Scores at padded positions are 0, and no valid score depends on a
padded input. `model.train()` / `model.eval()` switch dropout; there are no other modes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

# The reference's names (--model_name model_single, ...) map onto the registry's short names.
REFERENCE_NAMES = {
    "model_single": "single",
    "model_mean": "mean",
    "model_sequence": "sequence",
    "model_concatcate": "concat",
    "model_lstm": "lstm",
    "model_bas": "bas",
}


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its name, class, one-line description and training objective."""

    name: str
    cls: type[nn.Module]
    description: str
    objective: str = "mil"
    """Which loss trains it: "mil" (top-k MIL + center loss) or a model-specific one."""


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, description: str, objective: str = "mil"
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding a model to the registry under `name`."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, cls, description, objective)
        return cls

    return add


def resolve_model_name(name: str) -> str:
    """The registry name for `name`, accepting the reference's spellings (model_single, ...)."""
    name = REFERENCE_NAMES.get(name, name)
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(_REGISTRY)}")
    return name


def model_entry(name: str) -> ModelEntry:
    return _REGISTRY[resolve_model_name(name)]


def list_models() -> list[ModelEntry]:
    return list(_REGISTRY.values())


def create_model(name: str, feature_dim: int, **kwargs: Any) -> nn.Module:
    """Build a registered model; it remembers its name and arguments for checkpoints."""
    entry = model_entry(name)
    model = entry.cls(feature_dim=feature_dim, **kwargs)
    model.arnet_spec = {"name": entry.name, "kwargs": {"feature_dim": feature_dim, **kwargs}}
    return model


def model_spec(model: nn.Module) -> dict[str, Any]:
    """The {"name", "kwargs"} that `create_model` needs to rebuild `model`."""
    spec = getattr(model, "arnet_spec", None)
    if spec is None:
        raise ValueError("model was not built by create_model: its name and arguments are unknown")
    return spec


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def init_weights(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for linear and convolution layers (SPEC §3)."""
    if isinstance(module, (nn.Linear, nn.Conv1d)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def per_segment(
    fn: Callable[[torch.Tensor], torch.Tensor], features: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Apply a per-segment function `(N, D) -> (N,)` to every valid segment: (B, T) scores.

    On the CPU only valid rows are computed, because there padding costs as many FLOPs as
    data. On accelerators the whole padded tensor is computed (its cost is small there) so the
    step needs no host synchronisation to count valid rows; padded scores are zeroed.
    """
    if features.device.type == "cpu":
        scores = features.new_zeros(mask.shape)
        return scores.masked_scatter(mask, fn(features[mask]))
    return fn(features.flatten(0, 1)).view(mask.shape) * mask


@register_model(
    "single", "AR-Net (paper): Linear(D,D)+ReLU, dropout 0.7, Linear(D,1)+sigmoid per segment"
)
class SingleLayer(nn.Module):
    """The AR-Net model: an MLP scoring each segment on its own.

    Args:
        feature_dim: D.
        hidden_dim: width of the hidden layer (default D, as published).
        dropout: dropout rate after the hidden layer in training.
    """

    def __init__(
        self, feature_dim: int, hidden_dim: int | None = None, dropout: float = 0.7
    ) -> None:
        super().__init__()
        hidden = hidden_dim or feature_dim
        self.fc = nn.Linear(feature_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, 1)
        self.apply(init_weights)

    def segment_scores(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) features -> (N,) scores."""
        h = self.dropout(torch.relu(self.fc(x)))
        return torch.sigmoid(self.classifier(h)).squeeze(-1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """features (B, T, D), mask (B, T) -> scores (B, T)."""
        return per_segment(self.segment_scores, features, mask)
