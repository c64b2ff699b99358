"""Frame-level metrics of video anomaly detection (SPEC §6).

A segment score stands for `frames_per_segment` frames. Rather than repeating every score 16
times, each segment enters the computation once with two weights: how many of its frames are
anomalous and how many normal. ROC AUC (ties counting one half), average precision and
false-alarm rates are exactly scikit-learn's on the expanded frame arrays (tests prove the
equality), at a sixteenth of the memory; every per-video AUC of a test set comes out of one
sort, so the metrics of UCF-Crime's 290 test videos take milliseconds (benchmarks/speed.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .config import FRAMES_PER_SEGMENT
from .data import DataError


def expand_to_frames(
    scores: np.ndarray, frames_per_segment: int = FRAMES_PER_SEGMENT
) -> np.ndarray:
    """(T,) segment scores -> (frames_per_segment * T,) frame scores."""
    return np.repeat(np.asarray(scores), frames_per_segment)


def segment_label_counts(
    frame_labels: np.ndarray,
    n_segments: int,
    frames_per_segment: int = FRAMES_PER_SEGMENT,
    video: str = "?",
) -> tuple[np.ndarray, np.ndarray]:
    """Anomalous and normal frame counts per segment, each (T,).

    Frame labels are cut to the frames_per_segment * T frames the segments cover: trailing
    frames that fill no segment have no score (SPEC §1).

    Raises:
        DataError: when the video has fewer frame labels than its segments cover.
    """
    covered = n_segments * frames_per_segment
    labels = np.asarray(frame_labels).reshape(-1)
    if labels.size < covered:
        raise DataError(
            f"video {video!r} has {labels.size} frame labels, but its {n_segments} segments "
            f"cover {covered} frames"
        )
    pos = labels[:covered].reshape(n_segments, frames_per_segment).sum(axis=1, dtype=np.int64)
    return pos, frames_per_segment - pos


@dataclass
class VideoResult:
    """Per-video figures: the rows of the per-video table."""

    name: str
    label: int
    segments: int
    frames: int
    anomalous_frames: int
    max_score: float
    mean_score: float
    auc: float
    """Frame AUC inside the video; NaN when it holds a single class."""
    false_alarm_rate: float
    """Share of its normal frames scored >= threshold; NaN when it has none."""


@dataclass
class Metrics:
    """Frame-level figures of a scored test set.

    Attributes:
        auc: ROC AUC over the frames of all test videos.
        auc_anomalous: ROC AUC over the frames of anomalous videos only.
        ap: average precision over all frames.
        far_all, far_normal, far_anomalous: false-alarm rates fp / (fp + tn) at `threshold`,
            over all, normal, and anomalous videos.
    """

    auc: float
    auc_anomalous: float
    ap: float
    far_all: float
    far_normal: float
    far_anomalous: float
    threshold: float
    videos: int
    frames: int
    per_video: list[VideoResult] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        """The headline figures (no per-video rows), JSON-ready."""
        out = asdict(self)
        out.pop("per_video")
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


def _group_dtype(n_groups: int) -> type:
    """The smallest unsigned type for group ids: numpy radix-sorts 8- and 16-bit keys."""
    return np.uint8 if n_groups <= 1 << 8 else np.uint16 if n_groups <= 1 << 16 else np.int64


def _tie_blocks(
    scores: np.ndarray, groups: np.ndarray | None, n_groups: int, order: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Sort entries by (group, score) ascending and cut them into blocks of tied scores.

    Args:
        scores: (N,); groups: (N,) ids in [0, n_groups) or None (one group).
        order: (N,) an argsort of `scores`, when the caller has one to share.

    Returns:
        order (N,) sorting the entries, and starts (K,) where each block of equal (group,
        score) begins in that order.
    """
    if order is None:
        order = np.argsort(scores)
    if groups is not None and n_groups > 1:
        # A stable sort by group keeps the score order inside each group.
        keys = groups.astype(_group_dtype(n_groups))[order]
        order = order[np.argsort(keys, kind="stable")]
    s = scores[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = s[1:] != s[:-1]
    if groups is not None and n_groups > 1:
        g = groups[order]
        new[1:] |= g[1:] != g[:-1]
    return order, np.flatnonzero(new)


def weighted_auc(
    scores: np.ndarray,
    pos: np.ndarray,
    neg: np.ndarray,
    groups: np.ndarray | None = None,
    n_groups: int = 1,
    order: np.ndarray | None = None,
) -> np.ndarray:
    """ROC AUC of weighted entries, for every group at once (one sort for all of them).

    Entry i stands for pos[i] positive and neg[i] negative samples that all score scores[i];
    the AUC is the probability that a random positive outscores a random negative, ties
    counting one half: exactly the AUC of the expanded samples (scikit-learn's, with ties).

    Args:
        scores: (N,) float.
        pos, neg: (N,) non-negative weights (frame counts).
        groups: (N,) int in [0, n_groups), or None for one group.
        n_groups: G.
        order: (N,) an argsort of `scores` to reuse (computed when None).

    Returns:
        (G,) float64 AUC per group; NaN where a group lacks positives or negatives.
    """
    order, starts = _tie_blocks(scores, groups, n_groups, order)
    a = np.add.reduceat(pos[order].astype(np.float64), starts) if len(starts) else np.zeros(0)
    b = np.add.reduceat(neg[order].astype(np.float64), starts) if len(starts) else np.zeros(0)
    if groups is None or n_groups == 1:
        g = np.zeros(len(starts), dtype=np.int64)
    else:
        g = groups[order][starts]  # (K,) group of each tie block, blocks sorted by (group, score)
    below = np.cumsum(b) - b  # negatives in earlier blocks, all groups so far
    first = np.searchsorted(g, g)  # first block of each block's group
    below -= below[first]  # ... of this group only
    wins = np.bincount(g, weights=a * (below + 0.5 * b), minlength=n_groups)
    total_pos = np.bincount(g, weights=a, minlength=n_groups)
    total_neg = np.bincount(g, weights=b, minlength=n_groups)
    pairs = total_pos * total_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / pairs, math.nan)


def weighted_average_precision(
    scores: np.ndarray, pos: np.ndarray, neg: np.ndarray, order: np.ndarray | None = None
) -> float:
    """Average precision of weighted entries (see `weighted_auc`), as scikit-learn defines it:
    the sum over distinct thresholds, from the highest, of precision x recall gained.

    Args:
        scores, pos, neg: (N,) as in `weighted_auc`.
        order: (N,) an argsort of `scores` to reuse (computed when None).

    Returns:
        AP, or NaN when there are no positives.
    """
    if pos.sum() == 0:
        return math.nan
    order, starts = _tie_blocks(scores, None, 1, order)
    # Thresholds from the highest score down: the ascending tie blocks, reversed.
    tp = np.cumsum(np.add.reduceat(pos[order].astype(np.float64), starts)[::-1])
    fp = np.cumsum(np.add.reduceat(neg[order].astype(np.float64), starts)[::-1])
    recall_gain = np.diff(tp, prepend=0.0) / tp[-1]
    taken = tp + fp
    precision = np.divide(tp, taken, out=np.zeros_like(tp), where=taken > 0)
    return float(np.sum(recall_gain * precision))


def _false_alarm_rate(scores: np.ndarray, neg: np.ndarray, threshold: float) -> float:
    negatives = neg.sum()
    if negatives == 0:
        return math.nan
    return float(neg[scores >= threshold].sum() / negatives)


def frame_metrics(
    scores: Mapping[str, np.ndarray],
    frame_labels: Mapping[str, np.ndarray],
    video_labels: Mapping[str, int],
    frames_per_segment: int = FRAMES_PER_SEGMENT,
    threshold: float = 0.5,
) -> Metrics:
    """Score a test set against per-frame ground truth.

    Args:
        scores: video -> (T,) segment scores.
        frame_labels: video -> per-frame 0/1 labels (at least frames_per_segment * T of them).
        video_labels: video -> 1 anomalous / 0 normal.
        frames_per_segment: frames each segment score stands for.
        threshold: decision threshold of the false-alarm rates.
    """
    if not scores:
        raise DataError("no scored videos to evaluate")
    names = list(scores)
    flat, pos, neg, labels = [], [], [], []
    for name in names:
        if name not in frame_labels or frame_labels[name] is None:
            raise DataError(f"no frame labels for test video {name!r}")
        s = np.asarray(scores[name], dtype=np.float64).reshape(-1)
        p, n = segment_label_counts(frame_labels[name], len(s), frames_per_segment, name)
        flat.append(s)
        pos.append(p)
        neg.append(n)
        labels.append(int(video_labels[name]))
    lengths = np.array([len(s) for s in flat], dtype=np.int64)
    s, a, b = np.concatenate(flat), np.concatenate(pos), np.concatenate(neg)
    video = np.repeat(np.arange(len(names)), lengths)  # (S,) video of each segment
    label = np.repeat(np.asarray(labels, dtype=np.int64), lengths)  # (S,)

    # One sort of all scores; per video and per class, a radix sort by group keeps its order.
    order = np.argsort(s)
    video_auc = weighted_auc(s, a, b, video, len(names), order)
    class_auc = weighted_auc(s, a, b, label, 2, order)
    alarms = b * (s >= threshold)
    video_neg = np.bincount(video, weights=b, minlength=len(names))
    with np.errstate(invalid="ignore", divide="ignore"):
        video_far = np.where(
            video_neg > 0,
            np.bincount(video, weights=alarms, minlength=len(names)) / video_neg,
            math.nan,
        )
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    video_max = np.maximum.reduceat(s, starts)
    video_mean = np.add.reduceat(s, starts) / lengths
    video_pos = np.bincount(video, weights=a, minlength=len(names))
    per_video = [
        VideoResult(
            name=name,
            label=labels[i],
            segments=int(lengths[i]),
            frames=int(lengths[i]) * frames_per_segment,
            anomalous_frames=int(video_pos[i]),
            max_score=float(video_max[i]),
            mean_score=float(video_mean[i]),
            auc=float(video_auc[i]),
            false_alarm_rate=float(video_far[i]),
        )
        for i, name in enumerate(names)
    ]
    anomalous = label == 1
    return Metrics(
        auc=float(weighted_auc(s, a, b, order=order)[0]),
        auc_anomalous=float(class_auc[1]),
        ap=weighted_average_precision(s, a, b, order),
        far_all=_false_alarm_rate(s, b, threshold),
        far_normal=_false_alarm_rate(s[~anomalous], b[~anomalous], threshold),
        far_anomalous=_false_alarm_rate(s[anomalous], b[anomalous], threshold),
        threshold=threshold,
        videos=len(per_video),
        frames=int(a.sum() + b.sum()),
        per_video=per_video,
    )
