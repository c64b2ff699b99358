"""AR-Net's losses (SPEC §4), vectorised over the batch and masked, and the objective they
make (`mil`), which trains every AR-Net model.

"Center-guided discriminative learning" = dynamic top-k multiple-instance loss + center loss.
No loss here loops over videos, and padded positions never enter a top-k, a mean or a variance
(except `padded_center_loss`, the reference code's, which takes them on purpose).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..config import config_field
from ..data.dataset import Batch
from .registry import ScoringModel, register_objective


def topk_counts(lengths: torch.Tensor, k: int) -> torch.Tensor:
    """k_i = ceil(T_i / k): how many top scores video i contributes to the MIL loss."""
    return torch.div(lengths + (k - 1), k, rounding_mode="floor")


def topk_selection(
    scores: torch.Tensor, mask: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each video's ceil(T_i / k) highest valid scores.

    Args:
        scores: (B, T) in [0, 1].
        mask: (B, T) bool.
        k: the divisor (paper: 4).

    Returns:
        values (B, K) sorted descending and taken (B, K) bool marking the selected entries,
        K = the largest count in the batch.
    """
    lengths = mask.sum(dim=1)
    counts = topk_counts(lengths, k)  # (B,)
    kmax = max(1, math.ceil(scores.shape[1] / k))
    # Scores live in [0, 1], so -1 ranks every padded position below every valid one.
    values, _ = torch.topk(scores.masked_fill(~mask, -1.0), kmax, dim=1)
    taken = torch.arange(kmax, device=scores.device)[None, :] < counts[:, None]  # (B, K)
    return values, taken


def binary_cross_entropy(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Element-wise `F.binary_cross_entropy` that a NaN score cannot turn into a CUDA crash.

    The CUDA kernel asserts that every input lies in [0, 1]; a NaN score (weights that have
    diverged) would kill the CUDA context before the trainer's divergence checks could stop
    the run and keep the last good checkpoint. NaN scores enter the loss as 0.5 instead; the
    NaN weights behind them are reported by the trainer's parameter check.
    """
    return F.binary_cross_entropy(torch.nan_to_num(scores, nan=0.5), target, reduction="none")


def dynamic_mil_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    k: int = 4,
    kind: str = "bce",
) -> torch.Tensor:
    """Dynamic top-k multiple-instance loss (reference `KMXMILL_individual`).

    The ceil(T_i / k) highest scores of each video are compared with the video's label, and the
    loss is averaged over all taken instances of the batch.

    Args:
        scores: (B, T) in [0, 1].
        labels: (B,) video labels, 1 anomalous.
        mask: (B, T) bool.
        k: divisor of the top-k count.
        kind: "bce" (paper) or "mse".
    """
    values, taken = topk_selection(scores, mask, k)
    target = labels[:, None].to(values.dtype).expand_as(values)
    values = torch.where(taken, values, target)  # untaken entries contribute exactly zero
    if kind == "bce":
        per = binary_cross_entropy(values, target)
    elif kind == "mse":
        per = (values - target) ** 2
    else:
        raise ValueError(f"unknown MIL loss {kind!r}; choose bce or mse")
    return (per * taken).sum() / taken.sum()


def center_loss(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Center loss (reference `normal_smooth`): mean over normal videos of their score variance.

    The variance is the unbiased one (as torch.var) over valid segments only; the reference
    also counted padded positions, which pulled normal scores towards zero instead of towards
    their video's own center. A one-segment video has variance 0. With no normal video in the
    batch, the loss is 0.

    Args:
        scores: (B, T); labels: (B,); mask: (B, T) bool.
    """
    m = mask.to(scores.dtype)
    n = m.sum(dim=1)  # (B,)
    mean = (scores * m).sum(dim=1) / n.clamp(min=1)
    sq = ((scores - mean[:, None]) ** 2 * m).sum(dim=1)
    var = sq / (n - 1).clamp(min=1)  # (B,)
    normal = (labels == 0).to(scores.dtype)
    return (var * normal).sum() / normal.sum().clamp(min=1)


def anchored_center_loss(
    scores: torch.Tensor, empty: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Center loss with an anchor: per normal video, the unbiased variance of its n valid
    scores together with n scores of an empty scene (an all-zero feature), around their one
    shared mean; averaged over normal videos.

    The anchor ties every normal video's score level to the model's answer for "nothing
    there", the same for all videos, so normal scores cannot follow the sheer amount of
    activity in a scene; the reference code had this pull by accident, through the padded
    positions of its batches (README, "Learning as fast as the reference code").

    Args:
        scores: (B, T) valid scores; empty: (B, T) scores of all-zero features (each drawn
            with its own dropout mask in training); labels: (B,); mask: (B, T) bool.
    """
    both = torch.cat((scores, empty), dim=1)
    m = torch.cat((mask, mask), dim=1).to(scores.dtype)
    n = m.sum(dim=1)
    mean = (both * m).sum(dim=1) / n.clamp(min=1)
    var = ((both - mean[:, None]) ** 2 * m).sum(dim=1) / (n - 1).clamp(min=1)
    normal = (labels == 0).to(scores.dtype)
    return (var * normal).sum() / normal.sum().clamp(min=1)


CENTER_LOSSES = ("valid", "anchored", "padded")


def hinge_ranking_loss(
    scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Ranking hinge relu(1 - max anomalous + max normal), averaged over all anomalous x normal
    video pairs of the batch (the reference toolbox's `hinger_loss`, applied to video maxima).

    Args:
        scores: (B, T); labels: (B,); mask: (B, T) bool.
    """
    top = scores.masked_fill(~mask, -1.0).amax(dim=1)  # (B,)
    anomalous = labels == 1
    pairs = anomalous[:, None] & ~anomalous[None, :]  # (B, B): row anomalous, column normal
    margins = F.relu(1.0 - top[:, None] + top[None, :])
    return (margins * pairs).sum() / pairs.sum().clamp(min=1)


def padded_center_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The reference's center loss: per normal video, the unbiased variance of all its scores
    over the batch's length (padded positions included), averaged over normal videos.

    Args:
        scores: (B, L), padded positions holding the model's score of a zero feature.
        labels: (B,) video labels.
    """
    var = scores.var(dim=1) if scores.shape[1] > 1 else scores.new_zeros(scores.shape[0])
    normal = (labels == 0).to(scores.dtype)
    return (var * normal).sum() / normal.sum().clamp(min=1)


class MilCenterObjective:
    """AR-Net's training objective: mil_weight * MIL + center_weight * center loss.

    Args:
        mil_loss: "bce" or "mse" (dynamic top-k MIL) or "hinge" (ranking over video maxima).
        topk_divisor: k of the dynamic top-k.
        mil_weight, center_weight: lambda_1 and lambda_2 (reference --Lambda 1_20).
        center: "valid" (variance over each normal video's valid segments), "anchored"
            (`anchored_center_loss`) or "padded" (the reference's: over the batch's longest
            length, positions past a video's end scored on all-zero features).
    """

    def __init__(
        self,
        mil_loss: str = "bce",
        topk_divisor: int = 4,
        mil_weight: float = 1.0,
        center_weight: float = 20.0,
        center: str = "valid",
    ) -> None:
        if mil_loss not in ("bce", "mse", "hinge"):
            raise ValueError(f"unknown MIL loss {mil_loss!r}; choose bce, mse or hinge")
        if center not in CENTER_LOSSES:
            raise ValueError(f"unknown center loss {center!r}; choose {', '.join(CENTER_LOSSES)}")
        self.center = center
        self.mil_loss = mil_loss
        self.topk_divisor = topk_divisor
        self.mil_weight = mil_weight
        self.center_weight = center_weight

    def __call__(
        self, model: nn.Module, batch: Batch
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its named parts for one batch."""
        if self.center == "padded":  # padded positions scored too (features are zero there)
            scores = model(batch.features, torch.ones_like(batch.mask))
        else:
            scores = model(batch.features, batch.mask)
        if self.mil_loss == "hinge":
            mil = hinge_ranking_loss(scores, batch.labels, batch.mask)
        else:
            mil = dynamic_mil_loss(
                scores, batch.labels, batch.mask, self.topk_divisor, self.mil_loss
            )
        center = self._center(model, batch, scores)
        total = self.mil_weight * mil + self.center_weight * center
        return total, {"mil": mil, "center": center}

    def _center(self, model: nn.Module, batch: Batch, scores: torch.Tensor) -> torch.Tensor:
        if self.center == "padded":
            return padded_center_loss(scores, batch.labels)
        if self.center == "valid":
            return center_loss(scores, batch.labels, batch.mask)
        normal = batch.labels == 0
        if not bool(normal.any()):
            return scores.new_zeros(())
        mask = batch.mask[normal]
        # one empty-scene score per valid segment
        if model.has_empty_scores:  # a per-segment model scores zeros without multiplying them
            empty_scores = cast(ScoringModel, model).empty_scores  # nn.Module.__getattr__ stub
            empty = mask.to(scores.dtype).masked_scatter(mask, empty_scores(int(mask.sum())))
        else:
            zeros = batch.features.new_zeros(*mask.shape, batch.features.shape[-1])
            empty = model(zeros, mask)
        return anchored_center_loss(scores[normal], empty, batch.labels[normal], mask)


def _default(name: str) -> Any:
    """The TrainConfig default of field `name`: the objective's published value, kept once."""
    return config_field(name).default


@dataclass
class MilArgs:
    """Options of the `mil` objective (TrainConfig fields of the same names)."""

    mil_loss: str = _default("mil_loss")
    topk_divisor: int = _default("topk_divisor")
    mil_weight: float = _default("mil_weight")
    center_weight: float = _default("center_weight")
    center_loss: str = _default("center_loss")


@register_objective("mil", args=MilArgs)
def mil_objective(
    mil_loss: str, topk_divisor: int, mil_weight: float, center_weight: float, center_loss: str
) -> MilCenterObjective:
    """AR-Net's objective from its options (`MilArgs`)."""
    return MilCenterObjective(mil_loss, topk_divisor, mil_weight, center_weight, center_loss)
