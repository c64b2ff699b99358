"""BaS-Net, the Background Suppression Network, as an anomaly detector (SPEC §3).

A filter module gives each segment a foreground weight; a class activation sequence (CAS)
module scores every segment for C classes plus a background class, once on the features as
they are (base branch) and once on the features scaled by their foreground weights
(suppressed branch). A video's class scores are the softmax over classes of the mean of its
top-(T_i // 8) CAS values over time. Anomaly detection has one class, the anomaly, so the CAS
has two channels: anomaly (index 0) and background (index 1).

The reference defines these modules but cannot build or train them. Here the model trains
with its own losses (`BasObjective`, registered as objective `bas`) and scores each segment
for testing and plots with `forward`, like every other registry model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data.dataset import Batch
from .losses import _default, binary_cross_entropy
from .registry import ScoringModel, init_weights, register_model, register_objective
from .temporal import mask_time

ANOMALY, BACKGROUND = 0, 1
"""CAS channels of the anomaly detector (one class plus background)."""
SEGMENT_SCORES = ("suppressed", "base", "foreground")
"""What BasNet.forward can return per segment (see BasNet)."""


def _valid(features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The given mask, or all-valid for (B, T, D) features."""
    if mask is None:
        return features.new_ones(features.shape[:2], dtype=torch.bool)
    return mask


class FilterModule(nn.Module):
    """Foreground weight per segment: Conv1d(D, 512, k=1) + LeakyReLU, Conv1d(512, 1, k=1)
    + sigmoid. Both kernels are 1 wide: a segment's weight depends on that segment only.

    Args:
        feature_dim: D.
        hidden_dim: width of the hidden layer (BaS-Net: 512).
    """

    def __init__(self, feature_dim: int, hidden_dim: int = 512) -> None:
        super().__init__()
        self.hidden = nn.Conv1d(feature_dim, hidden_dim, 1)
        self.out = nn.Conv1d(hidden_dim, 1, 1)
        self.apply(init_weights)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """features (B, T, D), mask (B, T) bool or None (all valid) -> weights (B, T) in
        (0, 1), 0 at padding."""
        valid = _valid(features, mask)
        features = features.masked_fill(~valid[..., None], 0.0)  # no NaN from padding in grads
        x = nn.functional.leaky_relu(self.hidden(features.transpose(1, 2)))
        weights = torch.sigmoid(self.out(x)).squeeze(1)  # (B, T)
        return weights.masked_fill(~valid, 0.0)


class CasModule(nn.Module):
    """Class activation sequence: Conv1d(D, 2048, k=3) + LeakyReLU, Conv1d(2048, 2048, k=3)
    + LeakyReLU, dropout, Conv1d(2048, C + 1, k=1, no bias).

    Padded positions are zeroed before each kernel-3 convolution, so they add nothing to a
    valid segment's logits (a video padded at the end gets the 'same' zero padding it would
    get alone).

    Args:
        feature_dim: D.
        num_classes: C; the last output channel is the background class.
        hidden_dim: width of both hidden layers (BaS-Net: 2048).
        dropout: dropout rate before the last layer in training (BaS-Net: 0.7).
    """

    def __init__(
        self,
        feature_dim: int,
        num_classes: int = 1,
        hidden_dim: int = 2048,
        dropout: float = 0.7,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(feature_dim, hidden_dim, 3, padding=1)
        self.conv2 = nn.Conv1d(hidden_dim, hidden_dim, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv1d(hidden_dim, num_classes + 1, 1, bias=False)
        self.apply(init_weights)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """features (B, T, D), mask (B, T) bool or None (all valid) -> logits (B, T, C + 1),
        0 at padding."""
        mask = _valid(features, mask)
        x = nn.functional.leaky_relu(self.conv1(mask_time(features.transpose(1, 2), mask)))
        x = nn.functional.leaky_relu(self.conv2(mask_time(x, mask)))
        logits = self.classifier(self.dropout(x)).transpose(1, 2)  # (B, T, C + 1)
        return logits.masked_fill(~mask[..., None], 0.0)


def topk_mean_over_time(cas: torch.Tensor, mask: torch.Tensor, divisor: int = 8) -> torch.Tensor:
    """Per video and class, the mean of the top-k_i CAS values over valid segments,
    k_i = max(1, T_i // divisor).

    Args:
        cas: (B, T, C) logits.
        mask: (B, T) bool.
        divisor: 8 in BaS-Net.

    Returns:
        (B, C).
    """
    counts = (mask.sum(dim=1) // divisor).clamp(min=1)  # (B,)
    kmax = max(1, cas.shape[1] // divisor)
    # -inf ranks padding below every valid value; counts <= valid length keeps it untaken.
    values = torch.topk(cas.masked_fill(~mask[..., None], float("-inf")), kmax, dim=1).values
    taken = torch.arange(kmax, device=cas.device)[None, :] < counts[:, None]  # (B, K)
    total = torch.where(taken[..., None], values, torch.zeros_like(values)).sum(dim=1)
    return total / counts[:, None].to(cas.dtype)


@dataclass
class BasOutput:
    """Everything one BaS-Net pass computes (C + 1 = 2 channels: anomaly, background).

    Attributes:
        video_base: (B, C + 1) video class probabilities of the base branch.
        cas_base: (B, T, C + 1) segment logits of the base branch.
        video_suppressed: (B, C + 1) video class probabilities of the suppressed branch.
        cas_suppressed: (B, T, C + 1) segment logits of the suppressed branch.
        foreground: (B, T) foreground weights, 0 at padding.
    """

    video_base: torch.Tensor
    cas_base: torch.Tensor
    video_suppressed: torch.Tensor
    cas_suppressed: torch.Tensor
    foreground: torch.Tensor


@register_model(
    "bas",
    "BaS-Net: filter (foreground weights) + CAS on base and suppressed input, own losses",
    objective="bas",
    example={"filter_dim": 16, "hidden_dim": 32},
    citation='Lee, Uh, Byun, "Background Suppression Network for Weakly-supervised Temporal '
    'Action Localization", AAAI 2020',
)
class BasNet(ScoringModel):
    """BaS-Net with one class (anomaly) plus background.

    Args:
        feature_dim: D.
        filter_dim: hidden width of the filter module (BaS-Net: 512).
        hidden_dim: hidden width of the CAS module (BaS-Net: 2048).
        dropout: dropout rate of the CAS module in training.
        topk_divisor: video scores average the top T_i // topk_divisor CAS values (BaS-Net: 8).
        score: what `forward` returns per segment: "suppressed" (default), the anomaly
            probability of the suppressed branch's CAS, softmax over classes per segment,
            which is the branch BaS-Net localises with; "base", the same on the base branch;
            "foreground", the filter's foreground weight.
    """

    def __init__(
        self,
        feature_dim: int,
        filter_dim: int = 512,
        hidden_dim: int = 2048,
        dropout: float = 0.7,
        topk_divisor: int = 8,
        score: str = "suppressed",
    ) -> None:
        super().__init__()
        if topk_divisor < 1:
            raise ValueError(f"bas: topk_divisor must be >= 1, got {topk_divisor}")
        if score not in SEGMENT_SCORES:
            raise ValueError(f"bas: score must be one of {SEGMENT_SCORES}, got {score!r}")
        self.score = score
        self.filter = FilterModule(feature_dim, filter_dim)
        self.cas = CasModule(feature_dim, 1, hidden_dim, dropout)
        self.topk_divisor = topk_divisor

    def branches(self, features: torch.Tensor, mask: torch.Tensor) -> BasOutput:
        """Both branches and the foreground weights; see BasOutput for the shapes.

        Args:
            features: (B, T, D).
            mask: (B, T) bool.
        """
        foreground = self.filter(features, mask)  # (B, T)
        cas_base = self.cas(features, mask)
        cas_suppressed = self.cas(features * foreground[..., None], mask)
        return BasOutput(
            self.video_scores(cas_base, mask),
            cas_base,
            self.video_scores(cas_suppressed, mask),
            cas_suppressed,
            foreground,
        )

    def video_scores(self, cas: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, C + 1) logits -> (B, C + 1) class probabilities (softmax of top-k means)."""
        return torch.softmax(topk_mean_over_time(cas, mask, self.topk_divisor), dim=-1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """features (B, T, D), mask (B, T) -> segment anomaly scores (B, T) in [0, 1],
        0 at padding."""
        if self.score == "foreground":
            return self.filter(features, mask)
        if self.score == "base":
            cas = self.cas(features, mask)
        else:
            cas = self.cas(features * self.filter(features, mask)[..., None], mask)
        scores = torch.softmax(cas, dim=-1)[..., ANOMALY]  # (B, T)
        return scores.masked_fill(~mask, 0.0)


# ---------------------------------------------------------------------- its objective


def bas_targets(labels: torch.Tensor, background: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """BaS-Net's video targets over (anomaly, background), each row normalised to sum 1.

    With the background class on (base branch), every video holds background: an anomalous
    video's target is (1/2, 1/2), a normal video's (0, 1). With it off (suppressed branch),
    an anomalous video's target is (1, 0); a normal video then holds no class at all, has no
    target, and is left out of that branch's loss.

    Args:
        labels: (B,) video labels, 1 anomalous.
        background: whether the background class is on.

    Returns:
        targets (B, 2) and has_target (B,) bool.
    """
    anomaly = labels.to(torch.float32)
    back = torch.full_like(anomaly, 1.0 if background else 0.0)
    targets = torch.stack((anomaly, back), dim=1)  # (B, 2)
    total = targets.sum(dim=1, keepdim=True)
    return targets / total.clamp(min=1), total.squeeze(1) > 0


def bas_branch_loss(
    video_scores: torch.Tensor, labels: torch.Tensor, background: bool
) -> torch.Tensor:
    """Binary cross-entropy of one branch's video class probabilities against BaS-Net's
    normalised targets, averaged over the classes of the videos that have a target.

    Args:
        video_scores: (B, 2) probabilities over (anomaly, background).
        labels: (B,) video labels.
        background: True for the base branch, False for the suppressed branch.

    Returns:
        A scalar; 0 when no video of the batch has a target.
    """
    targets, has_target = bas_targets(labels, background)
    per = binary_cross_entropy(video_scores, targets.to(video_scores.dtype))
    weight = has_target.to(per.dtype)[:, None].expand_as(per)
    return (per * weight).sum() / weight.sum().clamp(min=1)


def foreground_l1_loss(foreground: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BaS-Net's sparsity term: per video, the L1 norm of its foreground weights over its
    valid segments; averaged over videos.

    Args:
        foreground: (B, T) weights in [0, 1].
        mask: (B, T) bool.
    """
    return (foreground.abs() * mask).sum(dim=1).mean()


class BasObjective:
    """BaS-Net's training objective:
    base_weight * base-branch BCE + suppressed_weight * suppressed-branch BCE
    + foreground_weight * L1 of the foreground weights.

    Called like MilCenterObjective: `objective(model, batch) -> (total, parts)`; the model
    must be a BaS-Net (`model.branches(features, mask) -> BasOutput`).

    Args:
        base_weight: weight of the base branch loss (background class on).
        suppressed_weight: weight of the suppressed branch loss (background class off).
        foreground_weight: weight of the L1 norm of the foreground weights.
    """

    def __init__(
        self,
        base_weight: float = 1.0,
        suppressed_weight: float = 1.0,
        foreground_weight: float = 1e-4,
    ) -> None:
        self.base_weight = base_weight
        self.suppressed_weight = suppressed_weight
        self.foreground_weight = foreground_weight

    def __call__(
        self, model: nn.Module, batch: Batch
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its named parts for one batch."""
        if not callable(getattr(type(model), "branches", None)):
            raise ValueError(
                f"the BaS-Net objective needs a model with branches(), not {type(model).__name__}"
            )
        out = model.branches(batch.features, batch.mask)  # type: ignore[operator]  # checked above
        base = bas_branch_loss(out.video_base, batch.labels, background=True)
        suppressed = bas_branch_loss(out.video_suppressed, batch.labels, background=False)
        foreground = foreground_l1_loss(out.foreground, batch.mask)
        total = (
            self.base_weight * base
            + self.suppressed_weight * suppressed
            + self.foreground_weight * foreground
        )
        return total, {"base": base, "suppressed": suppressed, "foreground": foreground}


@dataclass
class BasArgs:
    """Options of the `bas` objective (TrainConfig fields of the same names)."""

    bas_base_weight: float = _default("bas_base_weight")
    bas_suppressed_weight: float = _default("bas_suppressed_weight")
    bas_foreground_weight: float = _default("bas_foreground_weight")


@register_objective("bas", args=BasArgs, refuses={"mil_loss": "bce"}, scores_only=False)
def bas_objective(
    bas_base_weight: float, bas_suppressed_weight: float, bas_foreground_weight: float
) -> BasObjective:
    """BaS-Net's objective from its options (`BasArgs`)."""
    return BasObjective(bas_base_weight, bas_suppressed_weight, bas_foreground_weight)
