"""BN-WVAD: BatchNorm-based weakly supervised video anomaly detection (Zhou, Li, Xu, Ma,
Yang, arXiv 2311.15367, 2023).

UR-DMU's embedding and dual-attention transformer (dropout 0, no memory units), then a
normal head of three 1x1 convolutions 512 -> 32 -> 16 -> 1 with BatchNorm + ReLU after the
first two and a sigmoid at the end. The divergence of a segment's feature from the BatchNorm
mean vector (DFM) is its Mahalanobis distance to the layer's running mean under the running
variance, sqrt(sum_c (f_c - mu_c)^2 / var_c), on each BatchNorm layer's input.

Training (their `WSAD` and `LossComputer`):

- normal loss: the L2 norm over time of each normal video's scores, averaged over videos;
- mean-pulling-pushing (MPP) loss, per BatchNorm layer (weights 5 and 20): a triplet loss
  with the Mahalanobis distance, anchor the running mean, positives the normal videos' most
  divergent segments, negatives the anomalous segments selected by DFM: each anomalous
  video's top 20% by divergence, together with the top 40% of all anomalous segments of the
  batch (the batch-level selection); the normal videos give as many positives, int(M / n) + 1
  of each, rank by rank.

Testing: score = (the sum of both layers' divergences) x the head's sigmoid output. Their code
returns that product, which is unbounded; a registry model scores in [0, 1], so `forward`
returns z / (1 + z) of it, a monotone map: every ranking figure (AUC, AP) is theirs exactly,
and a threshold of 0.5 means a product of 1.

Where ours differs from their code, and why:

- **BatchNorm over valid segments only** (`MaskedBatchNorm1d`): statistics and running
  averages from the valid segments of a padded batch, so padding changes no score. On their
  batches (no padding) it is torch's BatchNorm1d.
- **Local attention normalised over rows**, as in `urdmu` (their transformer is UR-DMU's,
  with the same axis bug); `compat=True` keeps theirs.
- Unequal classes: the batch-level count is 40% of the anomalous videos' valid segments (theirs:
  of (batch / 2) x T, the same on their batches); pairs are cut to the shorter side.
- Their training clips the gradient norm at 1 (`clip_grad_norm_`): so does ours, through the
  `max_grad_norm` training default (`--max-grad-norm`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import Batch
from .registry import ScoringModel, register_model, register_objective
from .temporal import mask_time
from .urdmu import DualTransformer, Embedding, _valid


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d on (B, C, T) whose training statistics (and running averages) come from
    the valid positions of `mask` only; in eval mode it is torch's (running statistics)."""

    def _statistics(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The running mean, variance and batch count (always tracked here)."""
        mean, var, tracked = self.running_mean, self.running_var, self.num_batches_tracked
        assert mean is not None and var is not None and tracked is not None
        return mean, var, tracked

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if not self.training or mask is None:
            return super().forward(x)
        valid = mask[:, None, :]
        n = valid.sum()
        mean = torch.where(valid, x, torch.zeros_like(x)).sum(dim=(0, 2)) / n.clamp(min=1)
        centred = x - mean[None, :, None]
        sq = torch.where(valid, centred**2, torch.zeros_like(x)).sum(dim=(0, 2))
        var = sq / n.clamp(min=1)
        running_mean, running_var, tracked = self._statistics()
        with torch.no_grad():
            m = self.momentum if self.momentum is not None else 0.1
            running_mean.mul_(1 - m).add_(m * mean.detach())
            unbiased = sq.detach() / (n - 1).clamp(min=1)
            running_var.mul_(1 - m).add_(m * unbiased)
            tracked.add_(1)
        out = centred / torch.sqrt(var + self.eps)[None, :, None]
        return out * self.weight[None, :, None] + self.bias[None, :, None]


class NormalHead(nn.Module):
    """Conv (C -> C/r1) -> BN -> ReLU -> conv (-> C/r2) -> BN -> ReLU -> conv (-> 1) -> sigmoid;
    returns both BatchNorm layers' inputs and the scores."""

    def __init__(self, dim: int, ratios: tuple[int, int], kernel_size: int) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"bnwvad: kernel_size must be odd and >= 1, got {kernel_size}")
        c1, c2 = dim // ratios[0], dim // ratios[1]
        if c1 < 1 or c2 < 1:
            raise ValueError(f"bnwvad: ratios {ratios} leave no channel of {dim}")
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(dim, c1, kernel_size, padding=pad)
        self.bn1 = MaskedBatchNorm1d(c1)
        self.conv2 = nn.Conv1d(c1, c2, kernel_size, padding=pad)
        self.bn2 = MaskedBatchNorm1d(c2)
        self.conv3 = nn.Conv1d(c2, 1, kernel_size, padding=pad)

    @property
    def norms(self) -> tuple[MaskedBatchNorm1d, MaskedBatchNorm1d]:
        return self.bn1, self.bn2

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """x (B, C, T) -> ([(B, C1, T), (B, C2, T)] pre-BatchNorm features, scores (B, T))."""
        f1 = self.conv1(mask_time(x, mask))
        h = F.relu(self.bn1(f1, mask))
        f2 = self.conv2(mask_time(h, mask))
        h = F.relu(self.bn2(f2, mask))
        scores = torch.sigmoid(self.conv3(mask_time(h, mask))).squeeze(1)
        return [f1, f2], scores


def divergence(features: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """(B, C, T) features -> (B, T) Mahalanobis distance to `mean` under diagonal `var`."""
    return torch.sqrt(((features - mean[None, :, None]) ** 2 / var[None, :, None]).sum(dim=1))


@dataclass
class BnwvadOutput:
    """One training pass.

    Attributes:
        scores: (B, T) head scores (sigmoid), 0 at padding.
        features: per BatchNorm layer, (B, C_l, T) its input features.
        means, variances: per layer, the running statistics after this pass's update.
        distances: per layer, (B, T) divergences.
    """

    scores: torch.Tensor
    features: list[torch.Tensor]
    means: list[torch.Tensor]
    variances: list[torch.Tensor]
    distances: list[torch.Tensor]


@register_model(
    "bnwvad",
    "BN-WVAD: UR-DMU's transformer, BatchNorm mean divergence (DFM) x normal-head score",
    objective="bnwvad",
    example={"hidden_dim": 32, "heads": 2, "head_dim": 8, "mlp_dim": 16, "ratios": (4, 8)},
    # Their code (main.py, options.py): 64 normal + 64 anomalous videos of 200 uniform
    # segments, Adam lr 1e-4, weight decay 5e-5, 1000 steps, gradient norm clipped at 1; a
    # random crop file per video.
    train_defaults={
        "videos_per_class": 64,
        "uniform_segments": 200,
        "lr": 1e-4,
        "weight_decay": 5e-5,
        "iterations": 1000,
        "train_crop": "random",
        "test_crop": "per_crop",
        "max_grad_norm": 1.0,
    },
    citation='Zhou, Li, Xu, Ma, Yang, "BatchNorm-based Weakly Supervised Video Anomaly '
    'Detection", arXiv 2311.15367, 2023',
)
class Bnwvad(ScoringModel):
    """BN-WVAD (see the module's docstring).

    Args:
        feature_dim: D.
        hidden_dim, layers, heads, head_dim, mlp_dim, dropout: the transformer's (512, 2, 4,
            128, 512, 0).
        ratios: channel divisors of the normal head's two BatchNorm layers (16, 32).
        kernel_size: of the head's convolutions (1).
        compat: their local attention normalisation.
    """

    def __init__(
        self,
        feature_dim: int,
        hidden_dim: int = 512,
        layers: int = 2,
        heads: int = 4,
        head_dim: int = 128,
        mlp_dim: int = 512,
        dropout: float = 0.0,
        ratios: tuple[int, int] | list[int] = (16, 32),
        kernel_size: int = 1,
        compat: bool = False,
    ) -> None:
        super().__init__()
        widths = tuple(int(r) for r in ratios)
        if len(widths) != 2:
            raise ValueError(f"bnwvad: ratios must be two numbers, got {ratios}")
        self.embedding = Embedding(feature_dim, hidden_dim)
        self.transformer = DualTransformer(
            hidden_dim, layers, heads, head_dim, mlp_dim, dropout, bool(compat)
        )
        self.head = NormalHead(hidden_dim, (widths[0], widths[1]), int(kernel_size))

    def head_pass(self, features: torch.Tensor, mask: torch.Tensor) -> BnwvadOutput:
        features = features.masked_fill(~mask[..., None], 0.0)
        x = self.transformer(self.embedding(features, mask), mask)
        feats, scores = self.head(x.transpose(1, 2), mask)
        stats = [bn._statistics() for bn in self.head.norms]
        means, variances = [s[0] for s in stats], [s[1] for s in stats]
        distances = [divergence(f, m, v) for f, m, v in zip(feats, means, variances)]
        return BnwvadOutput(scores.masked_fill(~mask, 0.0), feats, means, variances, distances)

    def raw_scores(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T) their test score: summed divergence x head score (unbounded), 0 at padding."""
        mask = _valid(features, mask)
        out = self.head_pass(features, mask)
        return (sum(out.distances) * out.scores).masked_fill(~mask, 0.0)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Segment scores (B, T) in [0, 1): z / (1 + z) of their score z; 0 at padding."""
        z = self.raw_scores(features, mask)
        return z / (1.0 + z)


# ---------------------------------------------------------------------- its objective


def select_segments(
    features: torch.Tensor,
    distance: torch.Tensor,
    mask: torch.Tensor,
    labels: torch.Tensor,
    ratio_sample: float = 0.2,
    ratio_batch: float = 0.4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BN-WVAD's selection of one layer: (positives (M, C), negatives (M, C)).

    Negatives: the anomalous segments in the top int(T_i * ratio_sample) of their video by
    divergence, or in the top int(N * ratio_batch) of all N valid anomalous segments of the
    batch. Positives: each normal video's int(M / n) + 1 most divergent segments (at most as
    many as the shortest normal video has), rank by rank (every video's first, then every
    video's second, ...), the first M of them; pairs are cut to the shorter side.
    """
    C = features.shape[1]
    feats = features.transpose(1, 2)  # (B, T, C)
    normal, anomalous = labels == 0, labels == 1
    a_feats, a_dist, a_mask = feats[anomalous], distance[anomalous], mask[anomalous]
    n_feats, n_dist, n_mask = feats[normal], distance[normal], mask[normal]
    empty = features.new_zeros((0, C))
    if len(a_feats) == 0 or len(n_feats) == 0:
        return empty, empty
    ranked = a_dist.masked_fill(~a_mask, float("-inf"))
    T = ranked.shape[1]
    per_video = (a_mask.sum(dim=1).to(torch.float64) * ratio_sample).floor().long()  # (a,)
    order = torch.argsort(ranked, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(T, device=rank.device).expand_as(order))
    chosen = (rank < per_video[:, None]) & a_mask
    flat = ranked.reshape(-1)
    in_batch = int(int(a_mask.sum()) * ratio_batch)
    if in_batch > 0:
        top = torch.topk(flat, in_batch).indices
        batch_mask = torch.zeros_like(flat, dtype=torch.bool)
        batch_mask[top] = True
        chosen = chosen | batch_mask.view_as(chosen)
    negatives = a_feats[chosen]  # (M, C), video-major then time
    M = negatives.shape[0]
    k = min(M // len(n_feats) + 1, int(n_mask.sum(dim=1).min()))
    idx = torch.topk(n_dist.masked_fill(~n_mask, float("-inf")), k, dim=1).indices  # (n, k)
    picked = torch.gather(n_feats, 1, idx[..., None].expand(-1, -1, C))  # (n, k, C)
    positives = picked.transpose(0, 1).reshape(-1, C)
    pairs = min(M, positives.shape[0])
    return positives[:pairs], negatives[:pairs]


def mahalanobis_triplet(
    mean: torch.Tensor,
    var: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    margin: float = 1.0,
) -> torch.Tensor:
    """mean over pairs of relu(d(mu, p) - d(mu, n) + margin), d the Mahalanobis distance."""
    if positives.shape[0] == 0:
        return positives.new_zeros(())
    dp = torch.sqrt(((positives - mean) ** 2 / var).sum(dim=-1))
    dn = torch.sqrt(((negatives - mean) ** 2 / var).sum(dim=-1))
    return F.relu(dp - dn + margin).mean()


def normal_loss(scores: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over normal videos of the L2 norm of their valid scores; 0 without one."""
    normal = labels == 0
    if not bool(normal.any()):
        return (scores * 0).sum()  # zero, on the graph: a batch of one class still steps
    s = scores[normal].masked_fill(~mask[normal], 0.0)
    return torch.norm(s, p=2, dim=1).mean()


class BnwvadObjective:
    """BN-WVAD's loss: normal_weight * normal loss + mpp_weight * sum over BatchNorm layers of
    layer_weight_l * Mahalanobis triplet (their `LossComputer`: 1, 1, weights 5 and 20)."""

    def __init__(
        self,
        normal_weight: float = 1.0,
        mpp_weight: float = 1.0,
        layer_weights: tuple[float, ...] = (5.0, 20.0),
        ratio_sample: float = 0.2,
        ratio_batch: float = 0.4,
        margin: float = 1.0,
    ) -> None:
        self.normal_weight = normal_weight
        self.mpp_weight = mpp_weight
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.ratio_sample = ratio_sample
        self.ratio_batch = ratio_batch
        self.margin = margin

    def __call__(
        self, model: nn.Module, batch: Batch
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not callable(getattr(type(model), "head_pass", None)):
            raise ValueError(
                f"the BN-WVAD objective needs a BN-WVAD model, not {type(model).__name__}"
            )
        bnwvad: Bnwvad = model  # type: ignore[assignment]  # checked just above
        out = bnwvad.head_pass(batch.features, batch.mask)
        return bnwvad_loss(out, batch, self)


def bnwvad_loss(
    out: BnwvadOutput, batch: Batch, objective: BnwvadObjective
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of one training pass (see BnwvadObjective)."""
    norm = normal_loss(out.scores, batch.mask, batch.labels)
    parts: dict[str, torch.Tensor] = {"normal": norm}
    mpp = out.scores.new_zeros(())
    for layer, (f, m, v, d, w) in enumerate(
        zip(out.features, out.means, out.variances, out.distances, objective.layer_weights)
    ):
        pos, neg = select_segments(
            f, d, batch.mask, batch.labels, objective.ratio_sample, objective.ratio_batch
        )
        term = mahalanobis_triplet(m, v, pos, neg, objective.margin)
        parts[f"mpp{layer + 1}"] = term
        mpp = mpp + w * term
    parts["mpp"] = mpp
    total = objective.normal_weight * norm + objective.mpp_weight * mpp
    return total, parts


@dataclass
class BnwvadArgs:
    """Options of the `bnwvad` objective (`--objective-arg NAME=VALUE`), their code's values."""

    normal_weight: float = 1.0
    mpp_weight: float = 1.0
    ratio_sample: float = 0.2
    ratio_batch: float = 0.4
    first_layer_weight: float = 5.0
    second_layer_weight: float = 20.0


@register_objective("bnwvad", args=BnwvadArgs, refuses={"mil_loss": "bce"}, scores_only=False)
def bnwvad_objective(
    normal_weight: float,
    mpp_weight: float,
    ratio_sample: float,
    ratio_batch: float,
    first_layer_weight: float,
    second_layer_weight: float,
) -> BnwvadObjective:
    """BN-WVAD's objective from its options (`BnwvadArgs`)."""
    for name, value in (("ratio_sample", ratio_sample), ("ratio_batch", ratio_batch)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"objective 'bnwvad': {name} must be in [0, 1], got {value}")
    return BnwvadObjective(
        normal_weight,
        mpp_weight,
        (first_layer_weight, second_layer_weight),
        ratio_sample,
        ratio_batch,
    )
