"""Alert intervals of per-frame anomaly scores, and the threshold they are cut at.

A frame alerts when its score is at or above the threshold; consecutive alerting frames make
one interval (close ones merged, short ones dropped). The threshold is given directly, or
calibrated on videos known to be normal (`arnet.evaluation.metrics.calibrate_threshold`: the lowest
threshold at which at most a target share of their frames would raise an alert). Used by
`arnet detect` (arnet.detection.detector), frame by frame by the live watcher (arnet.live), and
by the event-level figures of every evaluation (`arnet.evaluation.metrics.event_metrics`): the
one alert rule, here in the measuring layer so that evaluation can apply it
(`arnet.detection.alerts` re-exports it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def spans(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of True in a 1-D mask: (starts, ends), ends exclusive."""
    edges = np.diff(np.concatenate([[0], np.asarray(mask, dtype=np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


@dataclass
class Alert:
    """One alert interval: consecutive frames at or above the threshold.

    Attributes:
        start_frame, end_frame: first and last frame, 0-based, inclusive.
        start_s, end_s: start of the first frame and end of the last frame, in seconds.
        peak_score: the highest frame score inside; peak_frame: where (first if tied).
    """

    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    peak_score: float
    peak_frame: int

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def find_alerts(
    scores: np.ndarray,
    threshold: float,
    fps: float,
    min_frames: int = 1,
    merge_gap: int = 0,
) -> list[Alert]:
    """Alert intervals of per-frame scores.

    Args:
        scores: (F,) frame scores; NaN frames never alert.
        threshold: a frame alerts when its score is >= threshold.
        fps: frames per second, for the times.
        min_frames: intervals shorter than this many frames are dropped (after merging).
        merge_gap: intervals separated by at most this many quiet frames become one.

    Returns:
        Alerts in time order.

    Raises:
        ValueError: a threshold outside [0, 1] (NaN included), or a negative count.
    """
    check_alert_settings(threshold, min_frames, merge_gap)
    scores = np.asarray(scores, dtype=np.float64)
    starts, stops = spans(np.nan_to_num(scores, nan=-np.inf) >= threshold)
    ends = stops - 1  # inclusive
    runs: list[list[int]] = []
    for s, e in zip(starts.tolist(), ends.tolist()):
        if runs and s - runs[-1][1] - 1 <= merge_gap:
            runs[-1][1] = e
        else:
            runs.append([s, e])
    alerts = []
    for s, e in runs:
        if e - s + 1 < min_frames:
            continue
        window = np.nan_to_num(scores[s : e + 1], nan=-np.inf)
        peak = s + int(np.argmax(window))
        alerts.append(Alert(s, e, s / fps, (e + 1) / fps, float(scores[peak]), peak))
    return alerts


def check_alert_settings(threshold: float, min_frames: int = 1, merge_gap: int = 0) -> None:
    """Scores lie in [0, 1]: a threshold above 1 never alerts, one below 0 alerts on every
    frame, and NaN compares false with everything; each is refused, as are negative counts."""
    if not 0.0 <= float(threshold) <= 1.0:  # NaN fails the comparison
        raise ValueError(f"the alert threshold must be a number in [0, 1], got {threshold!r}")
    if min_frames < 0:
        raise ValueError(f"the minimum alert length must be >= 0 frames, got {min_frames}")
    if merge_gap < 0:
        raise ValueError(f"the merge gap must be >= 0 frames, got {merge_gap}")
