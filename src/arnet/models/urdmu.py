"""UR-DMU: uncertainty-regulated dual memory units (Zhou, Yu, Yang, AAAI 2023).

The network, written from the paper and from what its public code (github henrryzh1/UR-DMU)
computes, masked so that no valid score depends on a padded segment:

- an embedding: Conv1d(D, 512, k=3) + ReLU;
- a transformer of 2 layers (pre-LayerNorm), each attention of 4 heads holding two halves:
  *global* softmax self-attention over the video, and *local* attention with the fixed kernel
  exp(-|i - j| / e) over segment distance, concatenated and projected back to 512; a
  feed-forward 512 -> 512 with GELU; dropout 0.5;
- two memory units (60 slots of 512 each), one of normal and one of abnormal patterns: a
  segment reads sigmoid(x M^T / sqrt(512)) (its match with every slot) and the slots weighted
  by it (its augmented feature);
- uncertainty regulation: the normal memory's augmented feature of a normal video is encoded as
  a Gaussian (mu, log variance) and sampled in training; testing (and `forward`) takes mu;
- a classifier MLP 1024 -> 128 -> 1 + sigmoid on [x, augmented features].

Its objective (`UrdmuObjective`, registered as `urdmu`): the top-k MIL BCE of the scores,
the memory BCEs (the abnormal memory's top-k match is 1 on anomalous videos and 0 on every
normal segment, the normal memory's match is 1 on every normal segment and its top-k
mismatch 1 on anomalous videos), a triplet loss pulling an anomalous video's most normal-like
segments towards the normal videos' and away from its most abnormal-like ones, the KL term of
the Gaussian, and a margin of 100 between the norms of encoded abnormal and normal features.
Each video's top-k takes T_i // 16 + 1 segments.

Where it differs from their code, and why:

- **Local attention is normalised over each row** (each query's weights sum to 1). Their code
  divides the kernel by `attn2.sum(-1)` without keepdim, which broadcasts the sums along the
  wrong axis: entry (i, j) is divided by row j's sum, so rows near the ends of a video do not
  sum to 1 (in a 200-segment video the first row sums to 0.81, the second to 0.93).
  `compat=True` (a model argument: `--model-arg compat=true`) keeps theirs.
- **Padding and unequal classes.** Their batches are 64 normal then 64 anomalous videos of
  exactly 200 segments; their model splits the batch in halves and pairs video i of one half
  with video i of the other. Ours splits by label, masks every top-k, softmax, mean and
  BatchNorm-free reduction to the valid segments, and pairs the first min(normal, anomalous)
  videos of each class (the same pairs as theirs on their batches).
- The KL term keeps their reduction (summed over segments, averaged over videos and latent
  dimensions): with a fixed number of segments it is a constant scale of the textbook one,
  which the published weight 0.001 was tuned with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import Batch
from .losses import binary_cross_entropy
from .registry import ScoringModel, register_model, register_objective
from .temporal import mask_time

# ---------------------------------------------------------------------- shared parts


def _valid(features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return features.new_ones(features.shape[:2], dtype=torch.bool)
    return mask


def topk_counts(mask: torch.Tensor, divisor: int = 16) -> torch.Tensor:
    """UR-DMU's top-k size per video: T_i // divisor + 1 (their `t // 16 + 1`)."""
    return mask.sum(dim=1) // divisor + 1


def _topk(values: torch.Tensor, mask: torch.Tensor, counts: torch.Tensor):
    """Top-kmax values and indices of each row over valid positions, and which of them are
    taken (the first counts_i)."""
    kmax = int(min(values.shape[1], int(counts.max()) if counts.numel() else 1))
    kmax = max(kmax, 1)
    top, index = torch.topk(values.masked_fill(~mask, float("-inf")), kmax, dim=1)
    taken = torch.arange(kmax, device=values.device)[None, :] < counts.clamp(max=kmax)[:, None]
    taken = taken & torch.isfinite(top)  # never a padded position (count > valid length)
    return top, index, taken


def masked_topk_mean(values: torch.Tensor, mask: torch.Tensor, counts: torch.Tensor):
    """(B, T) values -> (B,) mean of each row's counts_i highest valid values."""
    top, _, taken = _topk(values, mask, counts)
    top = torch.where(taken, top, torch.zeros_like(top))
    return top.sum(dim=1) / taken.sum(dim=1).clamp(min=1).to(values.dtype)


def topk_feature_mean(
    ranking: torch.Tensor, features: torch.Tensor, mask: torch.Tensor, counts: torch.Tensor
) -> torch.Tensor:
    """(B, T) ranking, (B, T, C) features -> (B, C): the mean feature of each video's counts_i
    segments ranked highest."""
    _, index, taken = _topk(ranking, mask, counts)
    picked = torch.gather(features, 1, index[..., None].expand(-1, -1, features.shape[-1]))
    weights = taken.to(features.dtype)[..., None]
    return (picked * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp(min=1)


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    """x / ||x|| along the last axis (their `norm`: no epsilon)."""
    return x / torch.norm(x, p=2, dim=-1, keepdim=True)


class Embedding(nn.Module):
    """Conv1d(D, C, k=3, 'same') + ReLU on (B, T, D) features, zero at padding."""

    def __init__(self, feature_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(feature_dim, hidden_dim, 3, padding=1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = mask_time(features.transpose(1, 2), mask)
        return mask_time(F.relu(self.conv(x)), mask).transpose(1, 2)


def local_kernel(mask: torch.Tensor, compat: bool, dtype: torch.dtype) -> torch.Tensor:
    """(B, T) mask -> (B, T, T) local attention weights exp(-|i - j| / e) over valid keys.

    Ours: each row normalised to sum 1. `compat`: their code's, entry (i, j) divided by the sum
    of row j (the sums broadcast along the wrong axis).
    """
    T = mask.shape[1]
    pos = torch.arange(T, device=mask.device, dtype=dtype)
    kernel = torch.exp(-(pos[None, :] - pos[:, None]).abs() / math.e)  # (T, T)
    kernel = kernel[None] * mask[:, None, :].to(dtype)  # (B, T, T), padded keys out
    sums = kernel.sum(dim=-1)  # (B, T): row sums over valid keys
    if compat:
        return kernel / sums[:, None, :].clamp(min=1e-12)
    return kernel / sums[..., None].clamp(min=1e-12)


class DualAttention(nn.Module):
    """UR-DMU's attention: heads of global softmax attention (q, k, v) and of local attention
    (the fixed distance kernel applied to a fourth projection t), concatenated, projected."""

    def __init__(
        self, dim: int, heads: int, head_dim: int, dropout: float, compat: bool = False
    ) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.compat = compat
        inner = heads * head_dim
        self.to_qkvt = nn.Linear(dim, 4 * inner, bias=False)
        self.to_out = nn.Linear(2 * inner, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v, t = (
            part.reshape(B, T, self.heads, self.head_dim).transpose(1, 2)
            for part in self.to_qkvt(x).chunk(4, dim=-1)
        )  # each (B, H, T, d)
        dots = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        dots = dots.masked_fill(~mask[:, None, None, :], float("-inf"))
        glob = torch.matmul(torch.softmax(dots, dim=-1), v)
        local = torch.matmul(local_kernel(mask, self.compat, x.dtype)[:, None], t)
        out = torch.cat((glob, local), dim=-1).transpose(1, 2).reshape(B, T, -1)
        return self.dropout(self.to_out(out))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout2(self.fc2(self.dropout1(F.gelu(self.fc1(x)))))


class DualTransformer(nn.Module):
    """Pre-LayerNorm layers of `DualAttention` and `FeedForward`, each with a residual."""

    def __init__(
        self,
        dim: int,
        layers: int,
        heads: int,
        head_dim: int,
        mlp_dim: int,
        dropout: float,
        compat: bool = False,
    ) -> None:
        super().__init__()
        self.attn_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
        self.attns = nn.ModuleList(
            DualAttention(dim, heads, head_dim, dropout, compat) for _ in range(layers)
        )
        self.ff_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
        self.ffs = nn.ModuleList(FeedForward(dim, mlp_dim, dropout) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for an, attn, fn, ff in zip(self.attn_norms, self.attns, self.ff_norms, self.ffs):
            x = attn(an(x), mask) + x
            x = ff(fn(x)) + x
        return x


class MemoryUnit(nn.Module):
    """`slots` learned patterns; a segment reads its match sigmoid(x M^T / sqrt(C)) (B, T, K),
    the mean of its slots // 16 + 1 best matches (B, T), and the slots weighted by its match
    (B, T, C)."""

    def __init__(self, slots: int, dim: int) -> None:
        super().__init__()
        self.memory = nn.Parameter(torch.empty(slots, dim))
        bound = 1.0 / math.sqrt(dim)
        nn.init.uniform_(self.memory, -bound, bound)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dim = self.memory.shape[1]
        match = torch.sigmoid(torch.einsum("btc,kc->btk", x, self.memory) / dim**0.5)
        k = self.memory.shape[0] // 16 + 1
        temporal = torch.topk(match, k, dim=-1).values.mean(dim=-1)
        return temporal, torch.einsum("btk,kc->btc", match, self.memory)


# ---------------------------------------------------------------------- the model


@dataclass
class UrdmuOutput:
    """One training pass (n normal, a anomalous videos of the batch).

    Attributes:
        scores: (B, T) segment scores with the training features (sampled Gaussian).
        a_att, n_att: (a, T) and (n, T) matches of anomalous videos with the abnormal memory
            and of normal videos with the normal memory.
        a_natt, n_aatt: (n, T) normal videos' match with the abnormal memory, (a, T)
            anomalous videos' match with the normal memory.
        triplet, kl, distance: the scalar terms computed inside the network.
        normal, anomalous: (B,) bool, which videos are which.
    """

    scores: torch.Tensor
    a_att: torch.Tensor
    n_att: torch.Tensor
    a_natt: torch.Tensor
    n_aatt: torch.Tensor
    triplet: torch.Tensor
    kl: torch.Tensor
    distance: torch.Tensor
    normal: torch.Tensor
    anomalous: torch.Tensor


@register_model(
    "urdmu",
    "UR-DMU: global/local self-attention, dual memory units, uncertainty regulation",
    objective="urdmu",
    example={
        "hidden_dim": 16,
        "heads": 2,
        "head_dim": 8,
        "mlp_dim": 16,
        "memory_slots": 8,
        "classifier_dim": 8,
    },
    # Their code (ucf_main.py / xd_main.py): 64 normal + 64 anomalous videos of 200 uniform
    # segments per step, Adam lr 1e-4, weight decay 5e-5, 3000 steps; each crop file is its
    # own training video (a random crop here), scores averaged over the crops in testing.
    train_defaults={
        "videos_per_class": 64,
        "uniform_segments": 200,
        "lr": 1e-4,
        "weight_decay": 5e-5,
        "iterations": 3000,
        "train_crop": "random",
        "test_crop": "per_crop",
    },
    citation='Zhou, Yu, Yang, "Dual Memory Units with Uncertainty Regulation for Weakly '
    'Supervised Video Anomaly Detection", AAAI 2023',
)
class Urdmu(ScoringModel):
    """UR-DMU (see the module's docstring).

    Args:
        feature_dim: D.
        hidden_dim: width of the embedding, transformer and memories (512).
        layers, heads, head_dim, mlp_dim: the transformer's (2, 4, 128, 512).
        dropout: of the transformer (0.5).
        memory_slots: slots of each memory unit (60).
        classifier_dim: hidden width of the classifier (128).
        compat: their local attention normalisation (see the module's docstring).
    """

    def __init__(
        self,
        feature_dim: int,
        hidden_dim: int = 512,
        layers: int = 2,
        heads: int = 4,
        head_dim: int = 128,
        mlp_dim: int = 512,
        dropout: float = 0.5,
        memory_slots: int = 60,
        classifier_dim: int = 128,
        compat: bool = False,
    ) -> None:
        super().__init__()
        if memory_slots < 1 or layers < 1 or heads < 1:
            raise ValueError("urdmu: memory_slots, layers and heads must be >= 1")
        self.embedding = Embedding(feature_dim, hidden_dim)
        self.transformer = DualTransformer(
            hidden_dim, layers, heads, head_dim, mlp_dim, dropout, bool(compat)
        )
        self.abnormal_memory = MemoryUnit(memory_slots, hidden_dim)
        self.normal_memory = MemoryUnit(memory_slots, hidden_dim)
        self.encoder_mu = nn.Linear(hidden_dim, hidden_dim)
        self.encoder_var = nn.Linear(hidden_dim, hidden_dim)
        self.classifier = nn.Sequential(
            nn.Linear(2 * hidden_dim, classifier_dim),
            nn.ReLU(),
            nn.Linear(classifier_dim, 1),
            nn.Sigmoid(),
        )

    def encode(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, C) embedded and attended features."""
        features = features.masked_fill(~mask[..., None], 0.0)
        return self.transformer(self.embedding(features, mask), mask)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Segment scores (B, T) in [0, 1], 0 at padding: the classifier on the features and
        both memories' encoded (mean) augmentations, as their test path."""
        mask = _valid(features, mask)
        x = self.encode(features, mask)
        _, a_aug = self.abnormal_memory(x)
        _, n_aug = self.normal_memory(x)
        aug = self.encoder_mu(a_aug) + self.encoder_mu(n_aug)
        scores = self.classifier(torch.cat((x, aug), dim=-1)).squeeze(-1)
        return scores.masked_fill(~mask, 0.0)

    def training_pass(
        self, features: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor
    ) -> UrdmuOutput:
        """Everything the objective needs from one batch (their `flag == "Train"` path)."""
        x = self.encode(features, mask)
        normal, anomalous = labels == 0, labels == 1
        n_x, a_x = x[normal], x[anomalous]
        n_mask, a_mask = mask[normal], mask[anomalous]
        a_att, a_aug = self.abnormal_memory(a_x)
        n_aatt, n_aaug = self.normal_memory(a_x)
        a_natt, a_naug = self.abnormal_memory(n_x)
        n_att, n_aug = self.normal_memory(n_x)
        a_k, n_k = topk_counts(a_mask), topk_counts(n_mask)

        pairs = min(len(n_x), len(a_x))
        negative = topk_feature_mean(a_att, a_x, a_mask, a_k)
        anchor = topk_feature_mean(n_att, n_x, n_mask, n_k)
        positive = topk_feature_mean(n_aatt, a_x, a_mask, a_k)
        if pairs:
            triplet = F.triplet_margin_loss(
                l2_normalise(anchor[:pairs]),
                l2_normalise(positive[:pairs]),
                l2_normalise(negative[:pairs]),
                margin=1.0,
            )
        else:
            triplet = x.new_zeros(())

        n_mu, n_logvar = self.encoder_mu(n_aug), self.encoder_var(n_aug)
        n_aug_new = n_mu + torch.randn_like(n_logvar) * torch.exp(n_logvar).sqrt()
        anchor_new = topk_feature_mean(n_att, n_aug_new, n_mask, n_k)
        a_aug_new = self.encoder_mu(a_aug)
        negative_new = topk_feature_mean(a_att, a_aug_new, a_mask, a_k)
        kl = kl_term(n_mu, n_logvar, n_mask)
        if pairs:
            distance = F.relu(
                100.0
                - torch.norm(negative_new[:pairs], p=2, dim=-1)
                + torch.norm(anchor_new[:pairs], p=2, dim=-1)
            ).mean()
        else:
            distance = x.new_zeros(())

        aug = torch.zeros_like(x)
        aug[normal] = n_aug_new + self.encoder_mu(a_naug)
        aug[anomalous] = a_aug_new + self.encoder_mu(n_aaug)
        scores = self.classifier(torch.cat((x, aug), dim=-1)).squeeze(-1).masked_fill(~mask, 0.0)
        return UrdmuOutput(
            scores, a_att, n_att, a_natt, n_aatt, triplet, kl, distance, normal, anomalous
        )


def kl_term(mu: torch.Tensor, logvar: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Their KL reduction: -0.5 (1 + logvar - mu^2 - e^logvar) summed over each video's valid
    segments, averaged over videos and latent dimensions; 0 without a video."""
    if mu.shape[0] == 0:
        return mu.new_zeros(())
    per = -0.5 * (1 + logvar - mu**2 - logvar.exp())  # (n, T, C)
    per = per.masked_fill(~mask[..., None], 0.0)
    return per.sum(dim=1).mean()


# ---------------------------------------------------------------------- its objective


def _bce_mean(p: torch.Tensor, target: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    if p.numel() == 0:
        return p.new_zeros(())
    per = binary_cross_entropy(p, torch.full_like(p, target))
    return per.mean() if mask is None else masked_mean(per, mask)


class UrdmuObjective:
    """UR-DMU's loss: BCE(top-k mean score, label) + memory_weight * (the four memory BCEs)
    + triplet_weight * triplet + kl_weight * KL + distance_weight * margin distance (their
    `AD_Loss`: 1, 0.1, 0.1, 0.001, 0.0001).
    """

    def __init__(
        self,
        memory_weight: float = 0.1,
        triplet_weight: float = 0.1,
        kl_weight: float = 0.001,
        distance_weight: float = 0.0001,
    ) -> None:
        self.memory_weight = memory_weight
        self.triplet_weight = triplet_weight
        self.kl_weight = kl_weight
        self.distance_weight = distance_weight

    def __call__(
        self, model: nn.Module, batch: Batch
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not callable(getattr(type(model), "training_pass", None)):
            raise ValueError(
                f"the UR-DMU objective needs a UR-DMU model, not {type(model).__name__}"
            )
        urdmu: Urdmu = model  # type: ignore[assignment]  # checked just above
        out = urdmu.training_pass(batch.features, batch.mask, batch.labels)
        return urdmu_loss(out, batch, self)


def urdmu_loss(
    out: UrdmuOutput, batch: Batch, weights: UrdmuObjective
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of one training pass (see UrdmuObjective)."""
    mask = batch.mask
    a_mask, n_mask = mask[out.anomalous], mask[out.normal]
    top = masked_topk_mean(out.scores, mask, topk_counts(mask))
    mil = binary_cross_entropy(top, batch.labels.to(top.dtype)).mean()
    a_k = topk_counts(a_mask)
    panomaly = _bce_mean(masked_topk_mean(1 - out.n_aatt, a_mask, a_k), 1.0)
    a_loss = _bce_mean(masked_topk_mean(out.a_att, a_mask, a_k), 1.0)
    n_loss = _bce_mean(out.n_att, 1.0, n_mask)
    a_nloss = _bce_mean(out.a_natt, 0.0, n_mask)
    memory = a_loss + panomaly + n_loss + a_nloss
    total = (
        mil
        + weights.memory_weight * memory
        + weights.triplet_weight * out.triplet
        + weights.kl_weight * out.kl
        + weights.distance_weight * out.distance
    )
    return total, {
        "mil": mil,
        "a_memory": a_loss,
        "a_normal_memory": panomaly,
        "n_memory": n_loss,
        "n_abnormal_memory": a_nloss,
        "triplet": out.triplet,
        "kl": out.kl,
        "distance": out.distance,
    }


@dataclass
class UrdmuArgs:
    """Options of the `urdmu` objective (`--objective-arg NAME=VALUE`), their code's values."""

    memory_weight: float = 0.1
    triplet_weight: float = 0.1
    kl_weight: float = 0.001
    distance_weight: float = 0.0001


@register_objective("urdmu", args=UrdmuArgs, refuses={"mil_loss": "bce"}, scores_only=False)
def urdmu_objective(
    memory_weight: float, triplet_weight: float, kl_weight: float, distance_weight: float
) -> UrdmuObjective:
    """UR-DMU's objective from its options (`UrdmuArgs`)."""
    return UrdmuObjective(memory_weight, triplet_weight, kl_weight, distance_weight)
