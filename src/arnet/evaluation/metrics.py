"""Frame-level metrics of video anomaly detection (SPEC §6), by scikit-learn.

A segment score stands for `frames_per_segment` frames. Rather than repeating every score 16
times, each segment enters scikit-learn's computation twice, once per class, weighted by how
many of its frames carry that label: ROC AUC, average precision and false-alarm rates are
exactly those of the expanded frame arrays (tests prove the equality), at an eighth of the
memory and time. A video with a single class (every normal video) gets its NaN AUC without a
call, so the per-video table costs one call per anomalous video.

Event-level figures (`event_metrics`): what an operator sees at the run's threshold. Frame
scores are cut into alerts by the project's one alert rule (`arnet.evaluation.alerts`, as
`arnet detect` and the live watcher cut them); an event is a contiguous range of anomalous
frames; an event is found when an alert overlaps it; its delay runs from its first frame to
the first alerting frame inside it; a false alert overlaps no anomalous frame, and false alerts
are counted per hour of normal test video.

Also here: the video-level AUC (each video's highest score against its label) and the
threshold calibrated on normal videos (`calibrate_threshold`), used by `arnet detect`, the live
watcher and the held-out videos of `--val-fraction` (arnet.training.validation).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from ..config import FRAMES_PER_SEGMENT
from ..errors import DataError
from .alerts import find_alerts, spans


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
    events: EventMetrics | None = field(default=None, repr=False)
    """Event-level figures at `threshold` (`event_metrics`)."""

    def summary(self) -> dict[str, Any]:
        """The headline figures (no per-video rows), JSON-ready; the event figures flat."""
        record = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("per_video", "events")
        }
        if self.events is not None:
            record.update(self.events.summary())
        return json_ready(record)


@dataclass
class EventMetrics:
    """Event-level figures of a scored test set at one alert threshold.

    Attributes:
        events: anomalous events (contiguous ranges of anomalous frames) in the test videos.
        events_found: events with at least one alert overlapping them.
        event_recall: events_found / events (NaN without events).
        event_delay_frames, event_delay_frames_median: over the found events, frames from an
            event's first frame to its first alerting frame (0 when an alert was already on).
        event_delay_s, event_delay_s_median: the same in seconds (NaN without a frame rate).
        alerts: alert intervals over all test videos.
        false_alerts: alerts on normal videos (every one of them is false).
        false_alerts_anomalous_videos: alerts on anomalous videos overlapping no event.
        normal_video_hours: duration of the normal test videos' scored frames (NaN without a
            frame rate).
        false_alerts_per_hour: false_alerts / normal_video_hours (NaN without a frame rate or
            without normal videos).
        fps: the frame rate the times use (None: unknown, given per video, or mixed).
        min_alert_frames, merge_gap: the alert rule's settings (`find_alerts`).
    """

    events: int
    events_found: int
    event_recall: float
    event_delay_frames: float
    event_delay_frames_median: float
    event_delay_s: float
    event_delay_s_median: float
    alerts: int
    false_alerts: int
    false_alerts_anomalous_videos: int
    normal_video_hours: float
    false_alerts_per_hour: float
    fps: float | None
    min_alert_frames: int
    merge_gap: int

    def summary(self) -> dict[str, Any]:
        """JSON-ready; `events`, `fps` and the rule's settings prefixed so that they read
        alone in a flat record."""
        record = dict(self.__dict__)
        for key in ("fps", "min_alert_frames", "merge_gap"):
            record[f"event_{key}"] = record.pop(key)
        return json_ready(record)


def anomalous_events(labels: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs of anomalous frames: [(first, last)] inclusive, 0-based."""
    starts, ends = spans(np.asarray(labels).reshape(-1) > 0)
    return [(int(s), int(e) - 1) for s, e in zip(starts, ends)]


def event_metrics(
    scores: Mapping[str, np.ndarray],
    frame_labels: Mapping[str, np.ndarray],
    video_labels: Mapping[str, int],
    threshold: float,
    fps: float | Mapping[str, float] | None = None,
    frames_per_segment: int = FRAMES_PER_SEGMENT,
    min_alert_frames: int = 1,
    merge_gap: int = 0,
) -> EventMetrics:
    """Events found, their delays and false alerts at `threshold`.

    Each video's segment scores stand for their frames; alerts are the intervals of
    `find_alerts` on those frame scores; events are the runs of anomalous frames among the
    frames the segments cover (as in `frame_metrics`).

    Args:
        scores: video -> (T,) segment scores.
        frame_labels: video -> per-frame 0/1 labels (at least frames_per_segment * T).
        video_labels: video -> 1 anomalous / 0 normal.
        threshold: the alert threshold, in [0, 1].
        fps: frames per second, one for all videos or one per video; None: figures in frames
            only (the times and the hourly rate are NaN).
        min_alert_frames, merge_gap: the alert rule's settings.

    Raises:
        DataError: a video without enough frame labels, or a frame rate that is not a
            positive number (naming the video).
        ValueError: a threshold outside [0, 1] or negative counts (the alert rule's check).
    """
    found = alerts = false_normal = false_anomalous = events = 0
    delays: list[int] = []
    delays_s: list[float] = []
    normal_seconds = 0.0
    rates: set[float] = set()
    timed = fps is not None
    for name, s in scores.items():
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        if name not in frame_labels or frame_labels[name] is None:
            raise DataError(f"no frame labels for test video {name!r}")
        pos, _ = segment_label_counts(frame_labels[name], len(s), frames_per_segment, name)
        covered = len(s) * frames_per_segment
        labels = np.asarray(frame_labels[name]).reshape(-1)[:covered] > 0
        rate = _video_fps(fps, name)
        if rate is not None:
            rates.add(rate)
        video_alerts = (
            []  # above every score in [0, 1]: nothing alerts (as no frame counts as an alarm)
            if threshold > 1
            else find_alerts(
                expand_to_frames(s, frames_per_segment),
                max(threshold, 0.0),  # below every score: every frame alerts
                rate if rate is not None else 1.0,
                min_alert_frames,
                merge_gap,
            )
        )
        alerts += len(video_alerts)
        if not int(video_labels[name]):
            false_normal += len(video_alerts)
            if rate is not None:
                normal_seconds += covered / rate
            continue
        runs = anomalous_events(labels)
        events += len(runs)
        for first, last in runs:
            starts = [
                max(a.start_frame, first)
                for a in video_alerts
                if a.start_frame <= last and a.end_frame >= first
            ]
            if starts:
                found += 1
                delays.append(min(starts) - first)
                if rate is not None:
                    delays_s.append((min(starts) - first) / rate)
        false_anomalous += sum(
            not labels[a.start_frame : a.end_frame + 1].any() for a in video_alerts
        )
    hours = normal_seconds / 3600 if timed else math.nan
    has_normal = any(not int(video_labels[n]) for n in scores)
    return EventMetrics(
        events=events,
        events_found=found,
        event_recall=found / events if events else math.nan,
        event_delay_frames=float(np.mean(delays)) if delays else math.nan,
        event_delay_frames_median=float(np.median(delays)) if delays else math.nan,
        event_delay_s=float(np.mean(delays_s)) if delays_s else math.nan,
        event_delay_s_median=float(np.median(delays_s)) if delays_s else math.nan,
        alerts=alerts,
        false_alerts=false_normal,
        false_alerts_anomalous_videos=int(false_anomalous),
        normal_video_hours=hours if has_normal else math.nan,
        false_alerts_per_hour=false_normal / hours if timed and has_normal else math.nan,
        fps=rates.pop() if len(rates) == 1 else None,
        min_alert_frames=int(min_alert_frames),
        merge_gap=int(merge_gap),
    )


def _video_fps(fps: float | Mapping[str, float] | None, name: str) -> float | None:
    if fps is None:
        return None
    if isinstance(fps, Mapping):
        if name not in fps:
            raise DataError(f"no frame rate for test video {name!r}")
        rate = fps[name]
    else:
        rate = fps
    try:
        value = float(rate)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise DataError(
            f"test video {name!r}: the frame rate must be a positive number, got {rate!r}"
        )
    return value


def json_ready(record: dict[str, Any]) -> dict[str, Any]:
    """`record` with NaN (an undefined metric) as None, which JSON can hold."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}


class _Weighted:
    """Scores with per-class frame weights: the expanded frame arrays in compact form."""

    def __init__(self, scores: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> None:
        self.scores, self.pos, self.neg = scores, pos, neg

    def samples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y = np.concatenate([np.ones(len(self.scores)), np.zeros(len(self.scores))])
        s = np.concatenate([self.scores, self.scores])
        w = np.concatenate([self.pos, self.neg]).astype(np.float64)
        keep = w > 0
        return y[keep], s[keep], w[keep]

    def auc(self) -> float:
        if self.pos.sum() == 0 or self.neg.sum() == 0:
            return math.nan
        y, s, w = self.samples()
        return float(roc_auc_score(y, s, sample_weight=w))

    def ap(self) -> float:
        if self.pos.sum() == 0:
            return math.nan
        y, s, w = self.samples()
        return float(average_precision_score(y, s, sample_weight=w))

    def false_alarm_rate(self, threshold: float) -> float:
        negatives = self.neg.sum()
        if negatives == 0:
            return math.nan
        return float(self.neg[self.scores >= threshold].sum() / negatives)


def frame_metrics(
    scores: Mapping[str, np.ndarray],
    frame_labels: Mapping[str, np.ndarray],
    video_labels: Mapping[str, int],
    frames_per_segment: int = FRAMES_PER_SEGMENT,
    threshold: float = 0.5,
    fps: float | Mapping[str, float] | None = None,
    min_alert_frames: int = 1,
    merge_gap: int = 0,
) -> Metrics:
    """Score a test set against per-frame ground truth.

    Args:
        scores: video -> (T,) segment scores.
        frame_labels: video -> per-frame 0/1 labels (at least frames_per_segment * T of them).
        video_labels: video -> 1 anomalous / 0 normal.
        frames_per_segment: frames each segment score stands for.
        threshold: decision threshold of the false-alarm rates and of the alerts.
        fps, min_alert_frames, merge_gap: for the event-level figures (`event_metrics`).
    """
    if not scores:
        raise DataError("no scored videos to evaluate")
    parts: dict[int, list[_Weighted]] = {0: [], 1: []}
    per_video = []
    for name, s in scores.items():
        if name not in frame_labels or frame_labels[name] is None:
            raise DataError(f"no frame labels for test video {name!r}")
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        pos, neg = segment_label_counts(frame_labels[name], len(s), frames_per_segment, name)
        label = int(video_labels[name])
        w = _Weighted(s, pos, neg)
        parts[label].append(w)
        per_video.append(
            VideoResult(
                name=name,
                label=label,
                segments=len(s),
                frames=len(s) * frames_per_segment,
                anomalous_frames=int(pos.sum()),
                max_score=float(s.max()),
                mean_score=float(s.mean()),
                auc=w.auc(),
                false_alarm_rate=w.false_alarm_rate(threshold),
            )
        )

    def merged(groups: list[_Weighted]) -> _Weighted:
        if not groups:
            empty = np.zeros(0)
            return _Weighted(empty, empty.astype(np.int64), empty.astype(np.int64))
        return _Weighted(
            *(np.concatenate([getattr(g, a) for g in groups]) for a in ("scores", "pos", "neg"))
        )

    everything = merged(parts[0] + parts[1])
    anomalous = merged(parts[1])
    normal = merged(parts[0])
    return Metrics(
        auc=everything.auc(),
        auc_anomalous=anomalous.auc(),
        ap=everything.ap(),
        far_all=everything.false_alarm_rate(threshold),
        far_normal=normal.false_alarm_rate(threshold),
        far_anomalous=anomalous.false_alarm_rate(threshold),
        threshold=threshold,
        videos=len(per_video),
        frames=int(everything.pos.sum() + everything.neg.sum()),
        per_video=per_video,
        events=event_metrics(
            scores,
            frame_labels,
            video_labels,
            threshold,
            fps,
            frames_per_segment,
            min_alert_frames,
            merge_gap,
        ),
    )


def video_auc(max_scores: Sequence[float], labels: Sequence[int]) -> float:
    """Video-level ROC AUC: each video's highest segment score against its video label; NaN
    when the videos hold a single class."""
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if y.size == 0 or y.min() == y.max():
        return math.nan
    return float(roc_auc_score(y, np.asarray(max_scores, dtype=np.float64).reshape(-1)))


def calibrate_threshold(normal_scores: Iterable[np.ndarray], false_alarm_rate: float) -> float:
    """The lowest threshold at which at most `false_alarm_rate` of normal frames alert.

    With n normal frames and k = floor(rate * n), the threshold sits just above the (k+1)-th
    highest score, so at most k frames score >= threshold (fewer when scores tie).

    Args:
        normal_scores: per-frame scores of videos known to hold no anomaly (NaN ignored).
        false_alarm_rate: target share of normal frames that may alert, in [0, 1).

    Raises:
        ValueError: a rate outside [0, 1), or no scored frame.
    """
    if not 0 <= false_alarm_rate < 1:
        raise ValueError(f"the false-alarm rate must be in [0, 1), got {false_alarm_rate}")
    pooled = np.concatenate([np.asarray(s, dtype=np.float64).reshape(-1) for s in normal_scores])
    pooled = pooled[np.isfinite(pooled)]
    if pooled.size == 0:
        raise ValueError("no scored frames to calibrate the threshold on")
    k = int(math.floor(false_alarm_rate * pooled.size + 1e-9))
    ranked = np.sort(pooled)[::-1]
    return float(np.nextafter(ranked[k], np.inf))
