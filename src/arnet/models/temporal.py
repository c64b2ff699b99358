"""Models that look along time: three temporal-convolution variants and an LSTM (SPEC §3).

Padding never reaches a valid score:

- every convolution with a kernel wider than 1 reads an input whose padded positions were
  zeroed first, so a padded segment adds nothing to its valid neighbours. Since batches are
  padded at the end, a video in a batch then sees exactly the zeros that 'same' padding gives
  the same video scored alone;
- kernel-1 convolutions and linear layers mix no positions and need no mask;
- the LSTM reads each video from its first valid segment, and padding comes after the last
  one, so no valid step has seen a padded one (see LstmModel).
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import torch
from torch import nn

from .registry import ScoringModel, init_weights, register_model

BRANCH_KERNELS = (1, 3, 5)
"""Temporal kernel sizes of the three branches (reference conv1, conv2, conv3)."""


def mask_time(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero the padded positions of a channels-first tensor.

    Args:
        x: (B, C, T).
        mask: (B, T) bool, True at valid segments.

    Returns:
        (B, C, T), a copy with 0 wherever mask is False (also where x held NaN or Inf there).
    """
    return x.masked_fill(~mask[:, None, :], 0.0)


class TemporalBranches(nn.Module):
    """Three Conv1d branches over time (kernels 1, 3, 5; 'same' padding; D -> D), each + ReLU.

    Args:
        feature_dim: D, input and output channels of every branch.
    """

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(feature_dim, feature_dim, k, padding=k // 2) for k in BRANCH_KERNELS
        )

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """features (B, T, D), mask (B, T) -> one (B, D, T) activation per kernel size."""
        x = mask_time(features.transpose(1, 2), mask)  # (B, D, T), zero at padding
        return [torch.relu(conv(x)) for conv in self.convs]


class _BranchModel(ScoringModel, metaclass=ABCMeta):
    """Shared body of mean / sequence / concat: branches -> combine -> dropout -> classifier.

    Subclasses define `combine`, turning the three (B, D, T) branch outputs into (B, T, H).
    """

    def __init__(self, feature_dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.branches = TemporalBranches(feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, 1)

    @abstractmethod
    def combine(self, c1: torch.Tensor, c3: torch.Tensor, c5: torch.Tensor) -> torch.Tensor:
        """Three (B, D, T) branch outputs -> (B, T, H) per-segment features."""

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """features (B, T, D), mask (B, T) -> scores (B, T) in [0, 1], 0 at padding."""
        h = self.dropout(self.combine(*self.branches(features, mask)))  # (B, T, H)
        scores = torch.sigmoid(self.classifier(h)).squeeze(-1)
        return scores.masked_fill(~mask, 0.0)


@register_model("mean", "three temporal convs (k=1,3,5) + ReLU averaged, dropout, Linear+sigmoid")
class MeanModel(_BranchModel):
    """The branches' outputs averaged (reference `Model_mean`).

    Args:
        feature_dim: D.
        dropout: dropout rate before the classifier in training.
    """

    def __init__(self, feature_dim: int, dropout: float = 0.7) -> None:
        super().__init__(feature_dim, feature_dim, dropout)
        self.apply(init_weights)

    def combine(self, c1: torch.Tensor, c3: torch.Tensor, c5: torch.Tensor) -> torch.Tensor:
        """Three (B, D, T) -> (B, T, D) average."""
        return ((c1 + c3 + c5) / 3).transpose(1, 2)


@register_model(
    "sequence", "temporal convs k=5+k=3 -> 1x1 conv, + k=1 -> 1x1 conv, dropout, Linear+sigmoid"
)
class SequenceModel(_BranchModel):
    """The branches merged in sequence (reference `Model_sequence`):
    x = ReLU(conv1x1_b(c5 + c3)); x = ReLU(conv1x1_a(x + c1)).

    Args:
        feature_dim: D.
        dropout: dropout rate before the classifier in training.
    """

    def __init__(self, feature_dim: int, dropout: float = 0.7) -> None:
        super().__init__(feature_dim, feature_dim, dropout)
        self.merge_wide = nn.Conv1d(feature_dim, feature_dim, 1)  # reference conv_b2
        self.merge_all = nn.Conv1d(feature_dim, feature_dim, 1)  # reference conv_b1
        self.apply(init_weights)

    def combine(self, c1: torch.Tensor, c3: torch.Tensor, c5: torch.Tensor) -> torch.Tensor:
        """Three (B, D, T) -> (B, T, D)."""
        x = torch.relu(self.merge_wide(c5 + c3))
        return torch.relu(self.merge_all(x + c1)).transpose(1, 2)


@register_model(
    "concat", "temporal convs k=1,3,5 concatenated, Linear(3D,D)+ReLU, dropout, Linear+sigmoid"
)
class ConcatModel(_BranchModel):
    """The branches concatenated and projected back to D (reference `Model_concatcate`).

    The reference projects with Linear(D, D) and crashes on its 3D-wide input; this model
    uses Linear(3D, D), which is what the architecture needs.

    Args:
        feature_dim: D.
        dropout: dropout rate before the classifier in training.
    """

    def __init__(self, feature_dim: int, dropout: float = 0.7) -> None:
        super().__init__(feature_dim, feature_dim, dropout)
        self.project = nn.Linear(len(BRANCH_KERNELS) * feature_dim, feature_dim)
        self.apply(init_weights)

    def combine(self, c1: torch.Tensor, c3: torch.Tensor, c5: torch.Tensor) -> torch.Tensor:
        """Three (B, D, T) -> (B, T, D)."""
        x = torch.cat((c1, c3, c5), dim=1).transpose(1, 2)  # (B, T, 3D)
        return torch.relu(self.project(x))


def reverse_valid(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each video's valid segments in time, leaving its padding at the end.

    Args:
        x: (B, T, ...) with video i valid at positions < lengths[i].
        lengths: (B,) valid lengths.

    Returns:
        (B, T, ...): out[i, t] = x[i, lengths[i] - 1 - t] for t < lengths[i], else x[i, t].
        Applying it twice gives x back.
    """
    t = torch.arange(x.shape[1], device=x.device)[None, :]  # (1, T)
    index = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # (B, T)
    index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


@register_model(
    "lstm", "LSTM over time (one direction; bidirectional=true for both), Linear+sigmoid"
)
class LstmModel(ScoringModel):
    """An LSTM over each video's valid segments, then a per-segment classifier
    (reference `model_lstm`).

    The reference runs one direction (its layer is named bidirectional but is not); the seed
    describes a bidirectional one. Both are here: one direction by default, as the reference
    trains it, and `bidirectional=True` (`--model-arg bidirectional=true`).

    Padded steps never reach a valid output, with the same result as packing the sequences
    but without packing, which on the CPU runs 5-10 times slower: padding sits at the end of
    each video, and a forward LSTM's output at step t depends on steps <= t only. The
    backward direction is a second LSTM run forwards over each video's valid segments
    reversed in time (padding still at the end), its outputs reversed back.

    Args:
        feature_dim: D.
        hidden_dim: LSTM state size per direction (default D, as the reference).
        bidirectional: add the backward direction and concatenate the two states.
        dropout: dropout rate on the LSTM states in training (the reference uses none).
    """

    def __init__(
        self,
        feature_dim: int,
        hidden_dim: int | None = None,
        bidirectional: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        hidden = hidden_dim or feature_dim
        self.lstm = nn.LSTM(feature_dim, hidden, num_layers=1, batch_first=True)
        self.lstm_backward = (
            nn.LSTM(feature_dim, hidden, num_layers=1, batch_first=True) if bidirectional else None
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden * (2 if bidirectional else 1), 1)
        init_weights(self.classifier)  # the LSTMs keep PyTorch's own init, as in the reference

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """features (B, T, D), mask (B, T) valid-first -> scores (B, T) in [0, 1], 0 at padding.

        Each video's valid segments must come first (padding at the end), as in every batch
        that `arnet.data` builds.
        """
        # Zeroed padding keeps NaN or Inf there out of the weight gradients (0 * NaN = NaN).
        x = features.masked_fill(~mask[..., None], 0.0)
        h, _ = self.lstm(x)  # (B, T, H)
        if self.lstm_backward is not None:
            lengths = mask.sum(dim=1)
            back, _ = self.lstm_backward(reverse_valid(x, lengths))
            h = torch.cat((h, reverse_valid(back, lengths)), dim=-1)  # (B, T, 2H)
        scores = torch.sigmoid(self.classifier(self.dropout(h))).squeeze(-1)  # (B, T)
        return scores.masked_fill(~mask, 0.0)
