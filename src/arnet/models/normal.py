"""`nearest-normal`: a segment's distance to the nearest segment of the normal training videos.

No gradient training: the model keeps the normal training segments (its bank) and scores a
segment by its Euclidean distance d to the nearest of them, after scaling each group of
features by the spread the normal segments show (a group is one statistic of a grid backbone
over every cell, e.g. motion-grid's flow speed; without a grid, all features form one group).
The score is d / (d + t), so 0.5 is the alert threshold t, which is chosen on the training
videos with video labels only:

- tau: the largest distance of a normal training segment to the *other* normal training
  videos (leave one video out), i.e. how far normal footage strays from the rest of normal
  footage;
- a: the smallest, over anomalous training videos, of the video's largest distance, i.e. how
  far the least striking anomaly the labels vouch for lies;
- t = sqrt(tau * a) when a > tau (halfway between, on a log scale), else tau.

Nothing of the test split is used. On UCSD Ped2 with motion-grid features this training-free
detector is the strongest of every method measured (README, benchmarks/ped2.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .registry import ScoringModel, register_fitted_objective, register_model

register_fitted_objective("normal-bank")  # fitted in one go by training.bank.fit_run


@register_model(
    "nearest-normal",
    "distance to the nearest normal training segment (no gradient training; the alert "
    "threshold chosen on the training videos' labels)",
    objective="normal-bank",
)
class NearestNormal(ScoringModel):
    """Scores (B, T, D) segments by their distance to a bank of normal segments.

    Args:
        feature_dim: D.
        bank_size: number of normal segments kept (fixed so a checkpoint can be rebuilt).
        groups: D group ids (features scaled together), or None: one group.
        chunk: bank rows compared at a time (bounds memory on long videos).
    """

    bank: torch.Tensor  # registered buffers
    center: torch.Tensor
    scale: torch.Tensor
    threshold: torch.Tensor
    independent_segments = True
    has_contributions = True

    def __init__(
        self,
        feature_dim: int,
        bank_size: int = 1,
        groups: Sequence[int] | None = None,
        chunk: int = 4096,
    ) -> None:
        super().__init__()
        self.chunk = int(chunk)
        self.register_buffer("bank", torch.zeros(int(bank_size), feature_dim))
        self.register_buffer("center", torch.zeros(feature_dim))
        self.register_buffer("scale", torch.ones(feature_dim))
        self.register_buffer("threshold", torch.ones(()))
        self.groups = None if groups is None else [int(g) for g in groups]
        if self.groups is not None and len(self.groups) != feature_dim:
            raise ValueError(f"groups has {len(self.groups)} entries for {feature_dim} features")

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (...,) distance to the nearest bank segment, in scaled units."""
        lead = features.shape[:-1]
        x = ((features.float() - self.center) / self.scale).reshape(-1, features.shape[-1])
        bank = (self.bank - self.center) / self.scale
        best = torch.full((x.shape[0],), math.inf, device=x.device)
        for start in range(0, bank.shape[0], self.chunk):
            d = torch.cdist(x, bank[start : start + self.chunk]).min(dim=1).values
            best = torch.minimum(best, d)
        return best.reshape(lead)

    def contributions(self, features: torch.Tensor) -> torch.Tensor:
        """(T, D) -> (T, D): each feature's share of the squared distance to the segment's
        nearest bank segment (summing a row gives the squared distance): where it differs."""
        x = ((features.float() - self.center) / self.scale).reshape(-1, features.shape[-1])
        bank = (self.bank - self.center) / self.scale
        nearest = torch.cdist(x, bank).argmin(dim=1)
        return ((x - bank[nearest]) ** 2).reshape(features.shape)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """features (B, T, D) (mask (B, T) ignored: a segment's score is its own) -> (B, T)."""
        d = self.distances(features)
        # padding (NaN or anything) reaches no real segment: each row is scored alone
        return d / (d + self.threshold)


@dataclass
class BankFit:
    """What fitting a bank chose, and from what (JSON-ready through `to_dict`)."""

    normal_videos: int
    anomalous_videos: int
    bank_segments: int
    tau: float
    anomalous_min_max: float | None
    threshold: float
    rule: str
    train_video_auc: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def group_scale(normal: np.ndarray, groups: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature centre and scale: the normal segments' mean per feature, and per group the
    standard deviation of all the group's values (so a quiet cell is not magnified, and a
    statistic that varies across cells keeps that variation)."""
    center = normal.mean(axis=0)
    ids = np.zeros(normal.shape[1], dtype=np.int64) if groups is None else np.asarray(groups)
    scale = np.ones(normal.shape[1], dtype=np.float64)
    for g in np.unique(ids):
        cols = ids == g
        sd = float(normal[:, cols].std())
        scale[cols] = sd if sd > 0 else 1.0
    return center.astype(np.float32), scale.astype(np.float32)


def fit_bank(
    videos: Sequence[np.ndarray], labels: Sequence[int], groups: Sequence[int] | None = None
) -> tuple[NearestNormal, BankFit]:
    """Build a nearest-normal model from training videos ((T, D) arrays) and video labels.

    Raises:
        ValueError: fewer than two normal videos (the threshold needs one left out).
    """
    from .registry import create_model

    normal = [np.array(v, dtype=np.float32) for v, y in zip(videos, labels) if not y]
    anomalous = [np.array(v, dtype=np.float32) for v, y in zip(videos, labels) if y]
    if len(normal) < 2:
        raise ValueError(
            f"nearest-normal needs at least two normal training videos, got {len(normal)}"
        )
    stacked = np.concatenate(normal)
    model = create_model(
        "nearest-normal",
        int(stacked.shape[1]),
        bank_size=int(stacked.shape[0]),
        groups=None if groups is None else [int(g) for g in groups],
    )
    assert isinstance(model, NearestNormal)
    center, scale = group_scale(stacked, groups)
    with torch.no_grad():
        model.bank.copy_(torch.from_numpy(stacked))
        model.center.copy_(torch.from_numpy(center))
        model.scale.copy_(torch.from_numpy(scale))
    # leave-one-video-out distances of the normal videos; anomalous videos against the bank
    normal_max = []
    for j, video in enumerate(normal):
        others = np.concatenate([v for k, v in enumerate(normal) if k != j])
        loo = _scaled_min_distance(video, others, center, scale)
        normal_max.append(float(loo.max()))
    tau = max(normal_max)
    anomalous_max = [float(model.distances(torch.from_numpy(v)).max()) for v in anomalous]
    a = min(anomalous_max) if anomalous_max else None
    if a is not None and a > tau:
        threshold, rule = math.sqrt(tau * a), "sqrt(tau * a): between normal and anomalous"
    else:
        threshold, rule = tau, "tau: the largest leave-one-out normal distance"
    with torch.no_grad():
        model.threshold.fill_(threshold)
    auc = _video_auc(normal_max, anomalous_max)
    fit = BankFit(len(normal), len(anomalous), int(stacked.shape[0]), tau, a, threshold, rule, auc)
    return model.eval(), fit


def _scaled_min_distance(
    x: np.ndarray, bank: np.ndarray, center: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    q = torch.from_numpy((x - center) / scale)
    b = torch.from_numpy((bank - center) / scale)
    return torch.cdist(q, b).min(dim=1).values.numpy()


def _video_auc(normal: Sequence[float], anomalous: Sequence[float]) -> float | None:
    """Video-level AUC of max distances on the training videos (normal ones left out)."""
    if not normal or not anomalous:
        return None
    wins = sum((a > n) + 0.5 * (a == n) for a in anomalous for n in normal)
    return float(wins / (len(normal) * len(anomalous)))
