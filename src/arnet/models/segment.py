"""Models that score each segment on its own: AR-Net's `single` MLP."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .registry import init_weights, register_model


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
