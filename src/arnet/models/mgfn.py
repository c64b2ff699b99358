"""MGFN, the Magnitude-Contrastive Glance-and-Focus Network (Chen et al., AAAI 2023), and its
objective.

The network (`MgfnNet`, registered as `mgfn`): feature amplification first, each segment's
feature L2 norm (its magnitude) through a kernel-3 convolution added, scaled by `mag_ratio`,
to a kernel-3 convolution of the features; then three stages of blocks (glance, focus, focus),
each block a kernel-3 convolution, a relation aggregator and a feed-forward layer, each with a
residual. A glance block is multi-head self-attention over the whole video; a focus block a
depthwise kernel-5 convolution per head over batch-normed values. Channel layer norm and a
1x1 convolution widen the features between stages (64, 128, 1024); a layer norm and a linear
layer give each segment's score.

Its objective (`MgfnObjective`, registered as `mgfn`) chooses each video's top-k segments by
feature magnitude as RTFM does (`rtfm.split_classes`) and adds the magnitude contrastive loss
on the L1 norms of the chosen features: anomalous and normal videos pushed apart beyond a
margin, two of one class pulled together:

    total = BCE(mean top-k score, label)
          + contrast_weight * (between_weight * L(a, n, push) + L(n, n', pull) + L(a, a', pull))
          + smooth_weight * smoothness of all videos + sparsity_weight * L2 of normal scores

with L the contrastive loss on the distance of the k chosen L1 norms (Hadsell et al. 2006:
d^2 to pull, max(0, margin - d)^2 to push). This is the authors' code (github
carolchenyx/MGFN., train.py after its PR #18: sparsity on normal scores, smoothness within
each video). The "same class" pairs of the pull terms are their code's by default
(`pairs=crops`): the first and second half of the chosen features in crop-major order, so
with ten crops each pair is two crops of one video (crops 0-4 against 5-9). `pairs=videos`
pairs two different videos of the class instead (the first half of the class's videos against
the second, crop by crop), what their code does on single-crop features and the paper's
reading; it lost to `crops` on a selection set apart from the reported ones (docs/methods.md).
One thing differs from their code, behind `compat=True`: as in `rtfm`, the push term pairs
every anomalous with every normal video (theirs: i-th with i-th, which needs as many of each).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import Batch
from .registry import ScoringModel, register_model, register_objective
from .rtfm import (
    MaskedBatchNorm1d,
    TopMagnitudes,
    check_options,
    smoothness,
    sparsity,
    split_classes,
    top_k_bce,
)
from .temporal import mask_time

CITATION = (
    'Chen, Lei, Qian, Kang, Ma, "MGFN: Magnitude-Contrastive Glance-and-Focus Network for '
    'Weakly-Supervised Video Anomaly Detection", AAAI 2023'
)
BLOCKS = ("glance", "focus")


class ChannelNorm(nn.Module):
    """Layer norm over the channels of (B, C, T), MGFN's form: (x - mean) / (std + eps)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, dim, 1))
        self.bias = nn.Parameter(torch.zeros(1, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        std = torch.var(x, dim=1, unbiased=False, keepdim=True).sqrt()
        mean = torch.mean(x, dim=1, keepdim=True)
        return (x - mean) / (std + self.eps) * self.weight + self.bias


class Glance(nn.Module):
    """Multi-head self-attention over a video's valid segments (MGFN's glance block)."""

    def __init__(self, dim: int, heads: int, dim_head: int = 64) -> None:
        super().__init__()
        self.heads, self.scale = heads, dim_head**-0.5
        inner = dim_head * heads
        self.norm = ChannelNorm(dim)
        self.to_qkv = nn.Conv1d(dim, inner * 3, 1, bias=False)
        self.to_out = nn.Conv1d(inner, dim, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, _, T = x.shape
        q, k, v = self.to_qkv(self.norm(x)).chunk(3, dim=1)  # (B, h d, T) each
        q, k, v = (t.reshape(B, self.heads, -1, T).transpose(2, 3) for t in (q, k, v))
        sim = torch.matmul(q * self.scale, k.transpose(2, 3))  # (B, h, T, T)
        sim = sim.masked_fill(~mask[:, None, None, :], float("-inf"))
        out = torch.matmul(sim.softmax(dim=-1), v)  # (B, h, T, d)
        return self.to_out(out.transpose(2, 3).reshape(B, -1, T))


class Focus(nn.Module):
    """A depthwise kernel-`kernel` convolution over each head's batch-normed values (MGFN's
    focus block): channel c * heads + h of the values convolves with head h's kernel."""

    def __init__(self, dim: int, heads: int, dim_head: int = 64, kernel: int = 5) -> None:
        super().__init__()
        self.heads = heads
        inner = dim_head * heads
        self.norm = MaskedBatchNorm1d(dim)
        self.to_v = nn.Conv1d(dim, inner, 1, bias=False)
        self.rel_pos = nn.Conv1d(heads, heads, kernel, padding=kernel // 2, groups=heads)
        self.to_out = nn.Conv1d(inner, dim, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, _, T = x.shape
        v = mask_time(self.to_v(self.norm(x, mask)), mask)  # (B, c h, T)
        out = self.rel_pos(v.reshape(-1, self.heads, T))  # (B c, h, T)
        return self.to_out(out.reshape(B, -1, T))


class Block(nn.Module):
    """x + conv3(x), then + aggregator(x), then + feed-forward(x) (MGFN's backbone layer)."""

    def __init__(self, dim: int, kind: str, heads: int, dim_head: int, ff_mult: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, 3, padding=1)
        if kind == "glance":
            self.aggregate: nn.Module = Glance(dim, heads, dim_head)
        else:
            self.aggregate = Focus(dim, heads, dim_head, kernel)
        self.ff = nn.Sequential(
            ChannelNorm(dim),
            nn.Conv1d(dim, dim * ff_mult, 1),
            nn.GELU(),
            nn.Conv1d(dim * ff_mult, dim, 1),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.conv(mask_time(x, mask)) + x
        x = self.aggregate(x, mask) + x
        return self.ff(x) + x


def _widths(value: Any, name: str) -> tuple[int, ...]:
    out = tuple(int(v) for v in value)
    if len(out) != 3 or min(out) < 1:
        raise ValueError(f"mgfn: {name} takes three positive integers, got {value!r}")
    return out


@register_model(
    "mgfn",
    "MGFN: feature amplification, glance (attention) and focus (local conv) blocks, "
    "magnitude contrastive loss",
    objective="mgfn",
    example={"dims": [8, 16, 16], "depths": [1, 1, 1], "dim_head": 8},
    train_defaults={
        # carolchenyx/MGFN. option.py / main.py: Adam lr 1e-3, weight decay 5e-4, 16 anomalous
        # + 16 normal videos per step, 32 uniform segments, every crop a sample; 1000 passes
        # over UCF-Crime's normal list (50 steps each): 50,000 steps; tested on the crops' mean
        "lr": 1e-3,
        "weight_decay": 5e-4,
        "iterations": 50000,
        "videos_per_class": 16,
        "uniform_segments": 32,
        "train_crop": "all",
        "test_crop": "per_crop",
    },
    citation=CITATION,
)
class MgfnNet(ScoringModel):
    """MGFN's network.

    Args:
        feature_dim: D (MGFN: 2048, I3D).
        dims: widths of the three stages (MGFN: 64, 128, 1024).
        depths: blocks per stage (MGFN: 3, 3, 2).
        blocks: the kind of each stage's blocks (MGFN: glance, focus, focus).
        dim_head: channels per attention head; a stage of width w has w // dim_head heads.
        ff_mult: feed-forward expansion (MGFN: 4).
        kernel: the focus blocks' kernel (MGFN: 5).
        mag_ratio: weight of the magnitude branch in the feature amplification (MGFN: 0.1).
        dropout: the rate at which segments are left out when choosing the top-k in training
            (MGFN: 0.7; the network itself has no dropout).
    """

    def __init__(
        self,
        feature_dim: int,
        dims: tuple[int, ...] | list[int] = (64, 128, 1024),
        depths: tuple[int, ...] | list[int] = (3, 3, 2),
        blocks: tuple[str, ...] | list[str] = ("glance", "focus", "focus"),
        dim_head: int = 64,
        ff_mult: int = 4,
        kernel: int = 5,
        mag_ratio: float = 0.1,
        dropout: float = 0.7,
    ) -> None:
        super().__init__()
        dims, depths = _widths(dims, "dims"), _widths(depths, "depths")
        blocks = tuple(str(b).lower() for b in blocks)
        if len(blocks) != 3 or any(b not in BLOCKS for b in blocks):
            raise ValueError(f"mgfn: blocks takes three of {BLOCKS}, got {blocks!r}")
        if any(d < dim_head for d in dims):
            raise ValueError(f"mgfn: every stage width must be >= dim_head {dim_head}: {dims}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"mgfn: dropout must be in [0, 1), got {dropout}")
        self.mag_ratio = float(mag_ratio)
        self.to_tokens = nn.Conv1d(feature_dim, dims[0], 3, padding=1)
        self.to_mag = nn.Conv1d(1, dims[0], 3, padding=1)
        self.stages = nn.ModuleList()
        self.widen = nn.ModuleList()
        for i, (dim, depth, kind) in enumerate(zip(dims, depths, blocks)):
            heads = dim // dim_head
            self.stages.append(
                nn.ModuleList(
                    Block(dim, kind, heads, dim_head, ff_mult, kernel) for _ in range(depth)
                )
            )
            if i < 2:
                self.widen.append(nn.Sequential(ChannelNorm(dim), nn.Conv1d(dim, dims[i + 1], 1)))
        self.norm = nn.LayerNorm(dims[-1])
        self.fc = nn.Linear(dims[-1], 1)
        self.dropout = nn.Dropout(dropout)

    def embed(
        self, features: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, T, D), mask (B, T) -> scores (B, T) in [0, 1] and the last stage's
        layer-normed features (B, T, F), whose norms are the feature magnitudes; 0 at padding."""
        x = features.masked_fill(~mask[..., None], 0.0)
        magnitude = x.norm(p=2, dim=-1)[:, None, :]  # (B, 1, T)
        x = x.transpose(1, 2)
        x = self.to_tokens(x) + self.mag_ratio * self.to_mag(magnitude)
        for i, stage in enumerate(self.stages):
            for block in stage:  # type: ignore[attr-defined]
                x = block(x, mask)
            if i < len(self.widen):
                x = self.widen[i](x)
        feats = self.norm(x.transpose(1, 2)).masked_fill(~mask[..., None], 0.0)
        scores = torch.sigmoid(self.fc(feats)).squeeze(-1)
        return scores.masked_fill(~mask, 0.0), feats

    def keep_mask(self, like: torch.Tensor) -> torch.Tensor:
        """Which segments may be chosen: dropout of ones (0 or 1 / (1 - p)) in training."""
        return self.dropout(torch.ones_like(like))

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """features (B, T, D), mask (B, T) -> segment anomaly scores (B, T), 0 at padding."""
        return self.embed(features, mask)[0]


# ---------------------------------------------------------------------- its objective


def contrastive(x1: torch.Tensor, x2: torch.Tensor, push: bool, margin: float) -> torch.Tensor:
    """Hadsell et al.'s contrastive loss over rows (..., k): d = ||x1 - x2 + 1e-6|| (torch's
    pairwise distance); mean of max(0, margin - d)^2 to push apart, of d^2 to pull together."""
    d = F.pairwise_distance(x1, x2, eps=1e-6)
    return (torch.clamp(margin - d, min=0.0) ** 2 if push else d**2).mean()


def chosen_l1(t: TopMagnitudes) -> torch.Tensor:
    """(V, C, k) the L1 norm of each crop's chosen features (0 where not taken)."""
    return t.features.abs().sum(dim=-1)


PAIRS = ("videos", "crops")
"""The "same class" pairs of MGFN's pull terms: two videos of the class, crop by crop, or (as
MGFN's code makes them) the two halves of the chosen features in crop-major order."""


def halves(x: torch.Tensor, crop_halves: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The two sides of a class's "pull together" pairs, from (V, C, k): the first and second
    half of the videos, crop by crop; with `crop_halves`, MGFN's code: the first and second
    half of the rows in crop-major order (V x C rows: with C > 1, crops of the same videos)."""
    if crop_halves:
        rows = x.transpose(0, 1).reshape(-1, x.shape[-1])  # crop-major, as their code holds it
        h = len(rows) // 2
        return rows[h : 2 * h], rows[:h]
    h = x.shape[0] // 2
    return x[h : 2 * h], x[:h]


def magnitude_contrast(
    a: TopMagnitudes, n: TopMagnitudes, margin: float, compat: bool, pairs: str = "crops"
) -> dict[str, torch.Tensor]:
    """MGFN's three contrastive terms on the chosen features' L1 norms (see the module);
    `pairs` makes the pull terms' pairs (`PAIRS`; `compat` makes them as MGFN's code does)."""
    la, ln = chosen_l1(a), chosen_l1(n)  # (V, C, k)
    if compat:
        if la.shape != ln.shape:
            raise ValueError(
                "compat: MGFN's code pairs the i-th anomalous with the i-th normal video and "
                f"needs as many of each; this batch has {la.shape[0]} and {ln.shape[0]}"
            )
        between = contrastive(la, ln, True, margin)
    else:  # every anomalous video against every normal one, crop by crop
        between = contrastive(la[:, None], ln[None, :], True, margin)
    parts = {"between": between}
    for name, x in (("normal", ln), ("anomalous", la)):
        second, first = halves(x, compat or pairs == "crops")
        parts[name] = contrastive(second, first, False, margin) if len(first) else x.sum() * 0
    return parts


class MgfnObjective:
    """MGFN's training loss (see the module docstring); `objective(model, batch) -> (total,
    parts)` for a model with `embed` and `keep_mask` (`MgfnNet`).

    Args:
        margin: of the contrastive push term (MGFN: 200).
        k: top-k segments per video (MGFN: 3).
        contrast_weight: weight of the three contrastive terms (MGFN: 1e-3).
        between_weight: weight of the push term inside them (MGFN: 1e-3).
        smooth_weight: of the smoothness term, all videos (MGFN: 8e-4).
        sparsity_weight: of the L2 norm of the normal videos' scores (MGFN: 8e-3).
        compat: MGFN's code where it differs (same-class pairs from crop halves, i-th with
            i-th push pairs).
        pairs: the pull terms' pairs, "crops" (their code's) or "videos" (`PAIRS`); compat
            implies "crops".
    """

    def __init__(
        self,
        margin: float = 200.0,
        k: int = 3,
        contrast_weight: float = 1e-3,
        between_weight: float = 1e-3,
        smooth_weight: float = 8e-4,
        sparsity_weight: float = 8e-3,
        compat: bool = False,
        pairs: str = "crops",
    ) -> None:
        if pairs not in PAIRS:
            raise ValueError(f"mgfn: pairs must be one of {', '.join(PAIRS)}, got {pairs!r}")
        check_options("mgfn", margin=margin, k=k, contrast_weight=contrast_weight,
                      between_weight=between_weight, smooth_weight=smooth_weight,
                      sparsity_weight=sparsity_weight)  # fmt: skip
        self.margin, self.k = float(margin), int(k)
        self.contrast_weight, self.between_weight = float(contrast_weight), float(between_weight)
        self.smooth_weight, self.sparsity_weight = float(smooth_weight), float(sparsity_weight)
        self.compat, self.pairs = bool(compat), pairs

    def __call__(
        self, model: nn.Module, batch: Batch
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        a, n = split_classes(model, batch, self.k)
        bce = top_k_bce(a, n)
        c = magnitude_contrast(a, n, self.margin, self.compat, self.pairs)
        contrast = self.between_weight * c["between"] + c["normal"] + c["anomalous"]
        smooth = smoothness(a.scores, a.mask) + smoothness(n.scores, n.mask)
        sparse = sparsity(n.scores, n.mask)
        total = (
            bce
            + self.contrast_weight * contrast
            + self.smooth_weight * smooth
            + self.sparsity_weight * sparse
        )
        return total, {"bce": bce, **c, "smooth": smooth, "sparsity": sparse}


@dataclass
class MgfnArgs:
    """Options of the `mgfn` objective (`--objective-arg NAME=VALUE`), MGFN's values."""

    margin: float = 200.0
    k: int = 3
    contrast_weight: float = 1e-3
    between_weight: float = 1e-3
    smooth_weight: float = 8e-4
    sparsity_weight: float = 8e-3
    compat: bool = False
    pairs: str = "crops"


@register_objective("mgfn", args=MgfnArgs, refuses={"mil_loss": "bce"}, scores_only=False)
def mgfn_objective(**options: Any) -> MgfnObjective:
    """MGFN's objective from its options (`MgfnArgs`)."""
    return MgfnObjective(**options)
