"""`nearest-normal`: a segment's distance to the nearest segment of the normal training videos.

No gradient training: the model keeps the normal training segments (its bank) and scores a
segment by its Euclidean distance d to the nearest of them (`neighbours` k > 1: the mean
distance to the k nearest), after scaling the features (`scaling`):

- "group": each group of features divided by the spread the normal segments show (a group is
  one statistic of a grid backbone over every cell, e.g. motion-grid's flow speed; without a
  grid, all features form one group);
- "feature": each feature divided by its own spread over the normal segments;
- "plain": the plain Euclidean distance on the features as they are.

The score is d / (d + t), so 0.5 is the alert threshold t, which is chosen on the training
videos with video labels only:

- tau: the largest distance of a normal training segment to the *other* normal training
  videos (leave one video out), i.e. how far normal footage strays from the rest of normal
  footage;
- a: the smallest, over anomalous training videos, of the video's largest distance, i.e. how
  far the least striking anomaly the labels vouch for lies;
- t = sqrt(tau * a) when a > tau (halfway between, on a log scale), else tau.

Nothing of the test split is used. On UCSD Ped2 with motion-grid features this training-free
detector is the strongest of every method measured (docs/ped2.md, benchmarks/ped2.py); its
defaults (`DEFAULT_SCALING`, `DEFAULT_NEIGHBOURS`) were chosen there over 20 random weak
splits by leave-one-split-out, every other choice kept in the table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .registry import ScoringModel, register_fitted_objective, register_model

SCALINGS = ("group", "feature", "plain")
DEFAULT_SCALING = "group"
"""What `fit_bank` (so `arnet train --model nearest-normal`) uses unless told otherwise."""
DEFAULT_NEIGHBOURS = 20
"""k of `fit_bank` unless told otherwise, lowered to the normal segments a left-out video
leaves when there are fewer (docs/ped2.md: chosen by leave-one-split-out over 20 random Ped2
splits among k = 1, 3, 5, 10, 20 and the three scalings). The model's own constructor default
stays 1: a checkpoint saved before `neighbours` existed was fitted and is scored with k = 1."""

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
        scaling: how the fit scaled the features (`SCALINGS`; the scale itself is a buffer:
            recorded here so that a checkpoint says what it holds).
        neighbours: k, the distance is the mean over the k nearest bank segments.
    """

    bank: torch.Tensor  # registered buffers
    center: torch.Tensor
    scale: torch.Tensor
    threshold: torch.Tensor
    examples: torch.Tensor
    independent_segments = True
    has_contributions = True

    def __init__(
        self,
        feature_dim: int,
        bank_size: int = 1,
        groups: Sequence[int] | None = None,
        chunk: int = 4096,
        scaling: str = "group",
        neighbours: int = 1,
    ) -> None:
        super().__init__()
        check_options(scaling, neighbours)
        if neighbours > int(bank_size):
            raise ValueError(
                f"neighbours = {neighbours} exceeds the {int(bank_size)} normal segments kept"
            )
        self.chunk = int(chunk)
        self.scaling = scaling
        self.neighbours = int(neighbours)
        self.register_buffer("bank", torch.zeros(int(bank_size), feature_dim))
        self.register_buffer("center", torch.zeros(feature_dim))
        self.register_buffer("scale", torch.ones(feature_dim))
        self.register_buffer("threshold", torch.ones(()))
        # Operators' normal examples (false alarms' segments, `training.feedback`): a segment
        # as close to one of them as the threshold is normal, whatever `neighbours` says of the
        # bank (a handful of examples would move a mean over k neighbours little). Not saved
        # with the weights: a run's versions keep them.
        self.register_buffer("examples", torch.zeros(0, feature_dim), persistent=False)
        self.groups = None if groups is None else [int(g) for g in groups]
        if self.groups is not None and len(self.groups) != feature_dim:
            raise ValueError(f"groups has {len(self.groups)} entries for {feature_dim} features")

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (...,) distance to the nearest bank segment (the mean over the
        `neighbours` nearest), in scaled units."""
        lead = features.shape[:-1]
        x = ((features.float() - self.center) / self.scale).reshape(-1, features.shape[-1])
        bank = (self.bank - self.center) / self.scale
        d = nearest_distances(x, bank, self.neighbours, self.chunk)
        if len(self.examples):  # an operator's normal example: its own nearest distance
            examples = (self.examples - self.center) / self.scale
            d = torch.minimum(d, nearest_distances(x, examples, 1, self.chunk))
        return d.reshape(lead)

    def contributions(self, features: torch.Tensor) -> torch.Tensor:
        """(T, D) -> (T, D): each feature's share of the squared distance to the segment's
        nearest bank segment (summing a row gives the squared distance; with `neighbours`
        k > 1, to the nearest of the k): where it differs."""
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
    scaling: str = DEFAULT_SCALING
    neighbours: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check_options(scaling: str, neighbours: int) -> None:
    """Refuse an unknown scaling or a k that is not an integer >= 1 (ValueError)."""
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {', '.join(SCALINGS)}, got {scaling!r}")
    if isinstance(neighbours, bool) or not isinstance(neighbours, int) or neighbours < 1:
        raise ValueError(f"neighbours must be an integer >= 1, got {neighbours!r}")


def nearest_distances(
    x: torch.Tensor, bank: torch.Tensor, k: int = 1, chunk: int = 4096
) -> torch.Tensor:
    """(N, D) rows against (M, D) bank rows -> (N,): the mean Euclidean distance to the k
    nearest bank rows (k = 1: the nearest), `chunk` bank rows compared at a time."""
    best = torch.full((x.shape[0], k), math.inf, device=x.device)
    for start in range(0, bank.shape[0], chunk):
        d = torch.cdist(x, bank[start : start + chunk])
        best = torch.cat([best, d], dim=1).topk(k, dim=1, largest=False).values
    return best.mean(dim=1)


def feature_scale(
    normal: np.ndarray, groups: Sequence[int] | None, scaling: str = "group"
) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature centre and scale of a `scaling` (`SCALINGS`): "group" as `group_scale`;
    "feature": each feature's own standard deviation (1 where it is constant); "plain": 1."""
    if scaling == "group":
        return group_scale(normal, groups)
    center = normal.mean(axis=0).astype(np.float32)
    if scaling == "plain":
        return center, np.ones(normal.shape[1], dtype=np.float32)
    if scaling != "feature":
        raise ValueError(f"scaling must be one of {', '.join(SCALINGS)}, got {scaling!r}")
    sd = normal.std(axis=0)
    return center, np.where(sd > 0, sd, 1.0).astype(np.float32)


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
    videos: Sequence[np.ndarray],
    labels: Sequence[int],
    groups: Sequence[int] | None = None,
    scaling: str = DEFAULT_SCALING,
    neighbours: int | None = None,
) -> tuple[NearestNormal, BankFit]:
    """Build a nearest-normal model from training videos ((T, D) arrays) and video labels.

    Args:
        videos, labels: the training videos and their video labels (0 normal).
        groups: the feature groups of `scaling="group"` (None: one group).
        scaling: how features are scaled before the distance (`SCALINGS`).
        neighbours: k: a segment's distance is the mean over its k nearest normal segments;
            None: `DEFAULT_NEIGHBOURS`, or the normal segments a left-out normal video
            leaves when they are fewer.

    Raises:
        ValueError: fewer than two normal videos (the threshold needs one left out), an
            unknown scaling, or more neighbours than a left-out video's other normal segments.
    """
    from .registry import create_model

    normal = [np.array(v, dtype=np.float32) for v, y in zip(videos, labels) if not y]
    anomalous = [np.array(v, dtype=np.float32) for v, y in zip(videos, labels) if y]
    if len(normal) < 2:
        raise ValueError(
            f"nearest-normal needs at least two normal training videos, got {len(normal)}"
        )
    stacked = np.concatenate(normal)
    fewest = min(len(stacked) - len(v) for v in normal)  # a left-out video's other segments
    if neighbours is None:
        neighbours = max(1, min(DEFAULT_NEIGHBOURS, fewest))
    check_options(scaling, neighbours)
    if neighbours > fewest:
        raise ValueError(
            f"neighbours = {neighbours}, but leaving one normal training video out keeps only "
            f"{fewest} normal segments"
        )
    model = create_model(
        "nearest-normal",
        int(stacked.shape[1]),
        bank_size=int(stacked.shape[0]),
        groups=None if groups is None else [int(g) for g in groups],
        scaling=scaling,
        neighbours=neighbours,
    )
    assert isinstance(model, NearestNormal)
    center, scale = feature_scale(stacked, groups, scaling)
    with torch.no_grad():
        model.bank.copy_(torch.from_numpy(stacked))
        model.center.copy_(torch.from_numpy(center))
        model.scale.copy_(torch.from_numpy(scale))
    # leave-one-video-out distances of the normal videos; anomalous videos against the bank
    normal_max = []
    for j, video in enumerate(normal):
        others = np.concatenate([v for k, v in enumerate(normal) if k != j])
        loo = _scaled_min_distance(video, others, center, scale, model.neighbours)
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
    fit = BankFit(
        len(normal),
        len(anomalous),
        int(stacked.shape[0]),
        tau,
        a,
        threshold,
        rule,
        auc,
        scaling,
        model.neighbours,
    )
    return model.eval(), fit


def _scaled_min_distance(
    x: np.ndarray, bank: np.ndarray, center: np.ndarray, scale: np.ndarray, k: int = 1
) -> np.ndarray:
    q = torch.from_numpy((x - center) / scale)
    b = torch.from_numpy((bank - center) / scale)
    return nearest_distances(q, b, k).numpy()


def _video_auc(normal: Sequence[float], anomalous: Sequence[float]) -> float | None:
    """Video-level AUC of max distances on the training videos (normal ones left out)."""
    if not normal or not anomalous:
        return None
    wins = sum((a > n) + 0.5 * (a == n) for a in anomalous for n in normal)
    return float(wins / (len(normal) * len(anomalous)))
