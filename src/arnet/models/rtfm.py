"""RTFM, Robust Temporal Feature Magnitude learning (Tian et al., ICCV 2021), and its objective.

The network (`RtfmNet`, registered as `rtfm`): a multi-scale temporal network (MTN) over the
segment features, three dilated convolutions (dilation 1, 2, 4) beside a non-local block on a
1x1 reduction, fused by a kernel-3 convolution and added back to the input; then dropout and a
three-layer classifier scoring each segment in [0, 1].

Its objective (`RtfmObjective`, registered as `rtfm`): per video, the k segments of largest
feature magnitude (the L2 norm of the MTN's output, averaged over crops, each segment kept
with probability 1 - dropout when choosing) are the video's top-k; then

    total = BCE(mean top-k score, video label)
          + alpha * mean (|margin - ||mean top-k feature of an anomalous video||
                          + ||mean top-k feature of a normal video||)^2
          + smooth_weight * sum of squared score differences of consecutive segments
          + sparsity_weight * L2 norm of the anomalous videos' scores

This is what the authors' code (github tianyu0207/RTFM, train.py and model.py) computes, which
the published figures come from; it differs from the paper's formula (a hinge on the
difference of the two magnitudes, an L1 sparsity term), as the repository's issues #23 and #67
point out. Ten-crop features train with every crop its own row (`--train-crop all`):
scores and magnitudes are averaged over a video's crops before choosing its top-k, and each
crop's top-k features enter the magnitude term. Two things differ from their code, each
behind `compat=True` (`--objective-arg compat=true` restores theirs):

- smoothness: their code flattens the batch's anomalous scores into one sequence, so the last
  segment of each video is smoothed against the first of the next; here only consecutive
  segments of one video are (the same fix went into MGFN's copy of this code, its PR #18).
- the magnitude term pairs the i-th anomalous with the i-th normal video in their code (which
  needs as many of each); here every anomalous video is paired with every normal one, the
  same expectation with less variance, defined for unequal counts (Ped2: 6 and 4 videos).

Padding: convolutions see zeros at padded positions, the non-local block attends to valid
segments only and divides by their number, batch norm takes its statistics over valid
segments only: a padded video scores as it would alone (RTFM itself trains on 32 uniform
segments per video, `--uniform-segments 32`, where nothing is padded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import Batch
from .losses import binary_cross_entropy
from .registry import ScoringModel, init_weights, register_model, register_objective
from .temporal import mask_time

CITATION = (
    'Tian, Pang, Chen, Singh, Verjans, Carneiro, "Weakly-supervised Video Anomaly Detection '
    'with Robust Temporal Feature Magnitude Learning", ICCV 2021'
)


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over (N, C, T) whose training statistics are those of the valid positions
    only; with no padding (or in evaluation) exactly `nn.BatchNorm1d`."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None or not self.training or bool(mask.all()):
            return super().forward(x)
        valid = mask[:, None, :]
        w = valid.to(x.dtype)
        x = x.masked_fill(~valid, 0.0)
        n = w.sum()
        mean = x.sum(dim=(0, 2)) / n
        centred = (x - mean[None, :, None]).masked_fill(~valid, 0.0)
        var = (centred**2).sum(dim=(0, 2)) / n
        running = (self.running_mean, self.running_var, self.num_batches_tracked)
        if self.track_running_stats and None not in running:
            with torch.no_grad():
                running_mean, running_var, tracked = running
                tracked.add_(1)  # type: ignore[union-attr]
                m = self.momentum if self.momentum is not None else 0.1
                unbiased = var * n / (n - 1).clamp(min=1)
                running_mean.mul_(1 - m).add_(m * mean)  # type: ignore[union-attr]
                running_var.mul_(1 - m).add_(m * unbiased)  # type: ignore[union-attr]
        out = centred / torch.sqrt(var[None, :, None] + self.eps)
        if self.affine:
            out = out * self.weight[None, :, None] + self.bias[None, :, None]
        return out


class NonLocal1d(nn.Module):
    """The non-local block of RTFM's MTN (dot-product form, Wang et al. 2018): y_i = sum_j
    (theta_i . phi_j) g_j / N over the N valid segments j; z = BN(W y) + x, the batch norm's
    scale starting at 0 (the block starts as the identity) unless `identity_start` is False.

    Args:
        channels: C of its (B, C, T) input.
        inner: channels of theta, phi and g (RTFM: C // 2).
        identity_start: start the output batch norm's scale and shift at 0 (RTFM's).
    """

    def __init__(self, channels: int, inner: int | None = None, identity_start: bool = True):
        super().__init__()
        inner = inner or max(1, channels // 2)
        self.g = nn.Conv1d(channels, inner, 1)
        self.theta = nn.Conv1d(channels, inner, 1)
        self.phi = nn.Conv1d(channels, inner, 1)
        self.out = nn.Conv1d(inner, channels, 1)
        self.out_bn = MaskedBatchNorm1d(channels)
        if identity_start:
            nn.init.zeros_(self.out_bn.weight)
            nn.init.zeros_(self.out_bn.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, C, T), zero at padding; mask (B, T) -> (B, C, T)."""
        g = mask_time(self.g(x), mask)  # padded segments give nothing
        phi = mask_time(self.phi(x), mask)
        theta = self.theta(x)
        affinity = torch.matmul(theta.transpose(1, 2), phi)  # (B, T, T)
        count = mask.sum(dim=1).clamp(min=1).to(x.dtype)
        y = torch.matmul(affinity / count[:, None, None], g.transpose(1, 2))  # (B, T, inner)
        return self.out_bn(self.out(y.transpose(1, 2)), mask) + x


class MultiScaleTemporal(nn.Module):
    """RTFM's multi-scale temporal network: three dilated kernel-3 convolutions (dilation 1,
    2, 4; each ReLU then batch norm) and a 1x1 reduction through the non-local block,
    concatenated, fused by a kernel-3 convolution (ReLU, batch norm) back to the input width,
    and added to the input.

    Args:
        dim: D, the feature width (in and out).
        hidden: width of each branch (RTFM: 512).
        identity_start: the non-local block starts as the identity (RTFM's).
    """

    def __init__(self, dim: int, hidden: int = 512, identity_start: bool = True) -> None:
        super().__init__()
        self.dilated = nn.ModuleList(
            nn.Conv1d(dim, hidden, 3, dilation=d, padding=d) for d in (1, 2, 4)
        )
        self.dilated_bn = nn.ModuleList(MaskedBatchNorm1d(hidden) for _ in range(3))
        self.reduce = nn.Conv1d(dim, hidden, 1, bias=False)
        self.non_local = NonLocal1d(hidden, hidden // 2, identity_start)
        self.fuse = nn.Conv1d(4 * hidden, dim, 3, padding=1, bias=False)
        self.fuse_bn = MaskedBatchNorm1d(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, D, T), zero at padding; mask (B, T) -> (B, D, T)."""
        parts = [bn(F.relu(conv(x)), mask) for conv, bn in zip(self.dilated, self.dilated_bn)]
        parts.append(self.non_local(F.relu(self.reduce(x)), mask))
        fused = self.fuse(mask_time(torch.cat(parts, dim=1), mask))
        return self.fuse_bn(F.relu(fused), mask) + x


@register_model(
    "rtfm",
    "RTFM: multi-scale temporal network (dilated convs + non-local), top-k feature magnitudes",
    objective="rtfm",
    example={"hidden_dim": 16, "classifier_dims": [16, 8], "identity_start": False},
    train_defaults={
        # tianyu0207/RTFM option.py / main.py: Adam lr 1e-3, weight decay 5e-3, 15,000
        # iterations of 32 anomalous + 32 normal videos, each seen as 32 uniform segments,
        # every one of its ten crops a sample; tested on the crops' mean score
        "lr": 1e-3,
        "weight_decay": 5e-3,
        "iterations": 15000,
        "videos_per_class": 32,
        "uniform_segments": 32,
        "train_crop": "all",
        "test_crop": "per_crop",
    },
    citation=CITATION,
)
class RtfmNet(ScoringModel):
    """RTFM's network.

    Args:
        feature_dim: D (RTFM: 2048, I3D).
        hidden_dim: width of each MTN branch (RTFM: 512).
        classifier_dims: hidden widths of the classifier (RTFM: 512, 128).
        dropout: dropout rate on the MTN's output and between classifier layers in training,
            and the rate at which segments are left out when choosing the top-k (RTFM: 0.7).
        identity_start: the non-local block starts as the identity (RTFM's; False starts it
            with random weights, which the registry sweep uses to see every gradient).
    """

    def __init__(
        self,
        feature_dim: int,
        hidden_dim: int = 512,
        classifier_dims: tuple[int, int] | list[int] = (512, 128),
        dropout: float = 0.7,
        identity_start: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"rtfm: dropout must be in [0, 1), got {dropout}")
        if len(classifier_dims) != 2:
            raise ValueError(f"rtfm: classifier_dims takes two widths, got {classifier_dims}")
        h1, h2 = (int(d) for d in classifier_dims)
        self.temporal = MultiScaleTemporal(feature_dim, hidden_dim, identity_start)
        self.fc1 = nn.Linear(feature_dim, h1)
        self.fc2 = nn.Linear(h1, h2)
        self.fc3 = nn.Linear(h2, 1)
        self.dropout = nn.Dropout(dropout)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d)):
                init_weights(module)
        if identity_start:  # init_weights must not undo the identity start
            nn.init.zeros_(self.temporal.non_local.out_bn.weight)

    def embed(
        self, features: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, T, D), mask (B, T) -> scores (B, T) in [0, 1] and the MTN's output
        after dropout (B, T, D), whose L2 norms are the feature magnitudes; 0 at padding."""
        x = features.masked_fill(~mask[..., None], 0.0).transpose(1, 2)
        feats = self.dropout(self.temporal(x, mask).transpose(1, 2))  # (B, T, D)
        feats = feats.masked_fill(~mask[..., None], 0.0)
        h = self.dropout(F.relu(self.fc1(feats)))
        h = self.dropout(F.relu(self.fc2(h)))
        scores = torch.sigmoid(self.fc3(h)).squeeze(-1)
        return scores.masked_fill(~mask, 0.0), feats

    def keep_mask(self, like: torch.Tensor) -> torch.Tensor:
        """Which segments may be chosen: dropout of ones (0 or 1 / (1 - p)) in training."""
        return self.dropout(torch.ones_like(like))

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """features (B, T, D), mask (B, T) -> segment anomaly scores (B, T), 0 at padding."""
        return self.embed(features, mask)[0]


# ---------------------------------------------------------------------- top-k selection


@dataclass
class TopMagnitudes:
    """The top-k segments of each video by feature magnitude, one class of videos.

    Attributes:
        video_scores: (V,) mean score of each video's top-k segments (crop-averaged scores).
        features: (V, C, k, F) each crop's features at those segments, 0 where not taken.
        taken: (V, k) bool, False for the places of a video shorter than k.
        scores: (V, T) crop-averaged segment scores, 0 at padding.
        mask: (V, T) bool.
    """

    video_scores: torch.Tensor
    features: torch.Tensor
    taken: torch.Tensor
    scores: torch.Tensor
    mask: torch.Tensor


def per_video(batch: Batch, scores: torch.Tensor, feats: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rows of a batch (video-major, `batch.crops` per video) folded into videos: crop-averaged
    scores (V, T) and magnitudes (V, T), features (V, C, T, F), mask (V, T) and labels (V,)."""
    C = batch.crops
    V, T = scores.shape[0] // C, scores.shape[1]
    f = feats.view(V, C, T, -1)
    return {
        "scores": scores.view(V, C, T).mean(dim=1),
        "magnitudes": feats.norm(p=2, dim=-1).view(V, C, T).mean(dim=1),
        "features": f,
        "mask": batch.mask.view(V, C, T)[:, 0],
        "labels": batch.labels.view(V, C)[:, 0],
    }


def top_magnitudes(
    model: Any, videos: dict[str, torch.Tensor], which: torch.Tensor, k: int
) -> TopMagnitudes:
    """The top-k segments by magnitude of the videos `which` (bool (V,)), each segment kept
    for the choice with the model's dropout (`model.keep_mask`)."""
    mags = videos["magnitudes"][which]
    mask = videos["mask"][which]
    kept = mags * model.keep_mask(mags)
    k = min(k, mags.shape[1])
    idx = torch.topk(kept.masked_fill(~mask, float("-inf")), k, dim=1).indices  # (V, k)
    taken = torch.arange(k, device=mags.device)[None, :] < mask.sum(dim=1, keepdim=True)
    scores = videos["scores"][which]
    picked = torch.gather(scores, 1, idx).masked_fill(~taken, 0.0)
    video_scores = picked.sum(dim=1) / taken.sum(dim=1).clamp(min=1)
    f = videos["features"][which]  # (V, C, T, F)
    V, C, _, D = f.shape
    gathered = torch.gather(f, 2, idx[:, None, :, None].expand(V, C, k, D))
    gathered = gathered.masked_fill(~taken[:, None, :, None], 0.0)
    return TopMagnitudes(video_scores, gathered, taken, scores, mask)


def split_classes(model: Any, batch: Batch, k: int) -> tuple[TopMagnitudes, TopMagnitudes]:
    """Score a batch and choose the top-k of its anomalous videos, then of its normal ones
    (the order in which RTFM's and MGFN's code draw their dropout masks).

    Raises:
        ValueError: a batch without both classes.
    """
    if not callable(getattr(model, "embed", None)):
        raise ValueError(
            f"this objective needs a model with embed() (rtfm, mgfn), not {type(model).__name__}"
        )
    scores, feats = model.embed(batch.features, batch.mask)
    videos = per_video(batch, scores, feats)
    anomalous = videos["labels"] > 0.5
    if not anomalous.any() or anomalous.all():
        raise ValueError("a batch needs anomalous and normal videos (the sampler draws both)")
    return top_magnitudes(model, videos, anomalous, k), top_magnitudes(model, videos, ~anomalous, k)


def top_k_bce(a: TopMagnitudes, n: TopMagnitudes) -> torch.Tensor:
    """Binary cross-entropy of the videos' top-k scores against their labels, over videos."""
    scores = torch.cat((a.video_scores, n.video_scores))
    labels = torch.cat((torch.ones_like(a.video_scores), torch.zeros_like(n.video_scores)))
    return binary_cross_entropy(scores, labels).mean()


def smoothness(
    scores: torch.Tensor, mask: torch.Tensor, across_videos: bool = False
) -> torch.Tensor:
    """Sum of squared differences of consecutive segment scores.

    Args:
        scores: (V, T).
        mask: (V, T) bool.
        across_videos: RTFM's code: the videos' valid scores flattened into one sequence, so
            each video's last segment is compared with the next video's first.
    """
    if across_videos:
        flat = scores[mask]
        return ((flat[1:] - flat[:-1]) ** 2).sum()
    both = mask[:, 1:] & mask[:, :-1]
    return (((scores[:, 1:] - scores[:, :-1]) ** 2) * both).sum()


def sparsity(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L2 norm of the valid scores of a set of videos (RTFM's and MGFN's code)."""
    return torch.linalg.vector_norm(scores[mask])


def magnitude_margin_loss(
    a: TopMagnitudes, n: TopMagnitudes, margin: float, compat: bool = False
) -> torch.Tensor:
    """RTFM's feature magnitude term: mean over pairs of (|margin - ||a||| + ||n||)^2, with
    ||a||, ||n|| the norms of each crop's mean top-k feature of an anomalous and a normal
    video, pairs of the same crop; every anomalous with every normal video, or with `compat`
    the i-th with the i-th (RTFM's code; needs as many of each)."""
    mean_a = a.features.sum(dim=2) / a.taken.sum(dim=1).clamp(min=1)[:, None, None]
    mean_n = n.features.sum(dim=2) / n.taken.sum(dim=1).clamp(min=1)[:, None, None]
    loss_a = (margin - mean_a.norm(p=2, dim=-1)).abs()  # (Va, C)
    loss_n = mean_n.norm(p=2, dim=-1)  # (Vn, C)
    if compat:
        if loss_a.shape != loss_n.shape:
            raise ValueError(
                "compat: RTFM's code pairs the i-th anomalous with the i-th normal video and "
                f"needs as many of each; this batch has {len(loss_a)} and {len(loss_n)}"
            )
        return ((loss_a + loss_n) ** 2).mean()
    return ((loss_a[:, None, :] + loss_n[None, :, :]) ** 2).mean()


class RtfmObjective:
    """RTFM's training loss (see the module docstring); `objective(model, batch) -> (total,
    parts)` for a model with `embed` and `keep_mask` (`RtfmNet`).

    Args:
        margin: m of the magnitude term (RTFM: 100).
        k: top-k segments per video (RTFM: 3, 32 segments // 10).
        alpha: weight of the magnitude term (RTFM: 1e-4).
        smooth_weight: lambda_1 of the smoothness term (RTFM: 8e-4).
        sparsity_weight: lambda_2 of the sparsity term (RTFM: 8e-3).
        compat: RTFM's code where it differs (smoothness across videos, i-th with i-th pairs).
    """

    def __init__(
        self,
        margin: float = 100.0,
        k: int = 3,
        alpha: float = 1e-4,
        smooth_weight: float = 8e-4,
        sparsity_weight: float = 8e-3,
        compat: bool = False,
    ) -> None:
        check_options("rtfm", margin=margin, k=k, alpha=alpha, smooth_weight=smooth_weight,
                      sparsity_weight=sparsity_weight)  # fmt: skip
        self.margin, self.k, self.alpha = float(margin), int(k), float(alpha)
        self.smooth_weight, self.sparsity_weight = float(smooth_weight), float(sparsity_weight)
        self.compat = bool(compat)

    def __call__(
        self, model: nn.Module, batch: Batch
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        a, n = split_classes(model, batch, self.k)
        bce = top_k_bce(a, n)
        magnitude = magnitude_margin_loss(a, n, self.margin, self.compat)
        smooth = smoothness(a.scores, a.mask, across_videos=self.compat)
        sparse = sparsity(a.scores, a.mask)
        total = (
            bce
            + self.alpha * magnitude
            + self.smooth_weight * smooth
            + self.sparsity_weight * sparse
        )
        return total, {"bce": bce, "magnitude": magnitude, "smooth": smooth, "sparsity": sparse}


def check_options(objective: str, **values: float) -> None:
    """ValueError naming an objective option out of range (k >= 1, the others >= 0)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"objective {objective!r}: {name} must be a number, got {value!r}")
        if name == "k" and (value < 1 or int(value) != value):
            raise ValueError(f"objective {objective!r}: k must be a positive integer, got {value}")
        if value < 0 or value != value:
            raise ValueError(f"objective {objective!r}: {name} must be >= 0, got {value}")


@dataclass
class RtfmArgs:
    """Options of the `rtfm` objective (`--objective-arg NAME=VALUE`), RTFM's values."""

    margin: float = 100.0
    k: int = 3
    alpha: float = 1e-4
    smooth_weight: float = 8e-4
    sparsity_weight: float = 8e-3
    compat: bool = False


@register_objective("rtfm", args=RtfmArgs, refuses={"mil_loss": "bce"}, scores_only=False)
def rtfm_objective(**options: Any) -> RtfmObjective:
    """RTFM's objective from its options (`RtfmArgs`)."""
    return RtfmObjective(**options)
