"""AR-Net's losses (SPEC §4), vectorised over the batch and masked.

"Center-guided discriminative learning" = dynamic top-k multiple-instance loss + center loss.
BaS-Net's losses (base branch, suppressed branch, foreground L1) train the `bas` model.
No loss here loops over videos, and padded positions never enter a top-k, a mean or a variance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..data.dataset import Batch
from ..data.reference import padded_center_loss
from . import model_entry


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
        shortcut = getattr(model, "empty_scores", None)
        if shortcut is not None:  # a per-segment model scores zeros without multiplying them
            empty = mask.to(scores.dtype).masked_scatter(mask, shortcut(int(mask.sum())))
        else:
            zeros = batch.features.new_zeros(*mask.shape, batch.features.shape[-1])
            empty = model(zeros, mask)
        return anchored_center_loss(scores[normal], empty, batch.labels[normal], mask)


# ---------------------------------------------------------------------- BaS-Net (SPEC §3)


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
        branches = getattr(model, "branches", None)
        if branches is None:
            raise ValueError(
                f"the BaS-Net objective needs a model with branches(), not {type(model).__name__}"
            )
        out = branches(batch.features, batch.mask)
        base = bas_branch_loss(out.video_base, batch.labels, background=True)
        suppressed = bas_branch_loss(out.video_suppressed, batch.labels, background=False)
        foreground = foreground_l1_loss(out.foreground, batch.mask)
        total = (
            self.base_weight * base
            + self.suppressed_weight * suppressed
            + self.foreground_weight * foreground
        )
        return total, {"base": base, "suppressed": suppressed, "foreground": foreground}


def build_objective(model_name: str, config: TrainConfig) -> MilCenterObjective | BasObjective:
    """The loss that trains `model_name`, from the config (the config stops here)."""
    kind = model_entry(model_name).objective
    if kind == "mil":
        return MilCenterObjective(
            config.mil_loss,
            config.topk_divisor,
            config.mil_weight,
            config.center_weight,
            config.center_loss,
        )
    if kind == "bas":
        if config.mil_loss != "bce":
            raise ValueError(
                f"config field 'mil_loss' is {config.mil_loss!r}, but model {model_name!r} trains "
                "with BaS-Net's own losses (the bas_*_weight fields), not a MIL loss"
            )
        return BasObjective(
            config.bas_base_weight, config.bas_suppressed_weight, config.bas_foreground_weight
        )
    raise ValueError(f"model {model_name!r} asks for unknown objective {kind!r}")
