"""Alerts from a stream of segment scores: hysteresis, minimum length, merging.

An alert starts at a segment scoring at or above the start threshold and lasts while
segments score at or above the stop threshold (at most the start threshold). Quiet segments
(below the stop threshold) end it once they add up to more than `merge_gap` frames; a segment
at or above the stop threshold before that continues it, the quiet ones in between included
(as `detect` merges alerts). An alert is written to the store once it spans `min_frames`
frames, then updated as it grows, and closed when it ends; shorter bursts are never written.

With equal thresholds this gives the alerts `detect` finds on the whole video
(`arnet.detection.alerts.find_alerts` on frame scores repeated 16 times), at segment granularity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..detection.alerts import check_alert_settings
from ..store.events import ALERT_FIELDS
from .camera import Segment


@dataclass
class Thresholds:
    """Start and stop thresholds (hysteresis), minimum alert length and merge gap (frames)."""

    start: float
    stop: float
    min_frames: int = 1
    merge_gap: int = 0

    def validate(self) -> None:
        """Refuse what `detect` refuses (`check_alert_settings`: thresholds in [0, 1], NaN
        never), a stop threshold above the start threshold and alerts shorter than a frame."""
        for option, value in (("--threshold", self.start), ("--stop-threshold", self.stop)):
            try:
                check_alert_settings(value)
            except ValueError as exc:
                raise ValueError(f"{option}: {exc}") from None
        if self.stop > self.start:
            raise ValueError(
                f"--stop-threshold {self.stop:g} is above the start threshold {self.start:g}"
            )
        if self.min_frames < 1:
            raise ValueError(f"--min-alert-frames must be >= 1, got {self.min_frames}")
        if self.merge_gap < 0:
            raise ValueError(f"--merge-gap must be >= 0, got {self.merge_gap}")


class AlertTracker:
    """The alert state of one camera.

    Args:
        thresholds: the alert rule.
        picture: segment -> JPEG bytes of its first frame (called when a peak is found).
        resume: the camera's open alert in the store (fields of `EventStore.alerts`), which
            this tracker continues after a restart.
        quiet: frames scored after the resumed alert's last one (all below the stop
            threshold, or the alert would have grown): counted towards the merge gap, as an
            uninterrupted watcher counts them.
    """

    def __init__(
        self,
        thresholds: Thresholds,
        picture: Callable[[Segment], bytes | None],
        resume: Mapping[str, Any] | None = None,
        quiet: int = 0,
    ) -> None:
        self.t = thresholds
        self.picture = picture
        self.alert: dict[str, Any] | None = None
        self.committed = False
        self.quiet = 0
        if resume is not None:
            self.alert = {k: resume[k] for k in ALERT_FIELDS if k != "state"}
            self.committed = True
            self.quiet = max(0, quiet)

    def update(self, segment: Segment, score: float) -> list[dict[str, Any]]:
        """Take one scored segment; returns the alert rows to write (open, updated, closed)."""
        rows: list[dict[str, Any]] = []
        if segment.gap_frames and self.alert is not None:
            self.quiet += segment.gap_frames
            if self.quiet > self.t.merge_gap:
                rows += self.close()
        frames = segment.end_frame - segment.start_frame + 1
        if self.alert is None:
            if score >= self.t.start:
                self.alert = {
                    "start_segment": segment.index,
                    "start_frame": segment.start_frame,
                    "start_time": segment.start_time,
                    "threshold": self.t.start,
                    "peak_score": -1.0,
                }
                self.committed = False
                self._extend(segment, score)
                rows += self._written()
            return rows
        if score >= self.t.stop:
            self.quiet = 0
            self._extend(segment, score)
            rows += self._written()
            return rows
        self.quiet += frames
        if self.quiet > self.t.merge_gap:
            rows += self.close()
        return rows

    def close(self) -> list[dict[str, Any]]:
        """End the current alert (the stream ended, the watcher stops, or it went quiet);
        the closed row when it had been written, else nothing."""
        alert, committed = self.alert, self.committed
        self.alert, self.committed, self.quiet = None, False, 0
        if alert is None or not committed:
            return []
        return [{**alert, "state": "closed"}]

    def _extend(self, segment: Segment, score: float) -> None:
        a = self.alert
        assert a is not None
        a["end_segment"] = segment.index
        a["end_frame"] = segment.end_frame
        a["end_time"] = segment.end_time
        if score > a["peak_score"]:
            a["peak_score"] = float(score)
            a["peak_frame"] = segment.start_frame
            a["peak_time"] = segment.start_time
            a["peak_image"] = self.picture(segment)

    def _written(self) -> list[dict[str, Any]]:
        """The row to write now: once the alert is long enough, and at every change after."""
        a = self.alert
        assert a is not None
        if not self.committed and a["end_frame"] - a["start_frame"] + 1 < self.t.min_frames:
            return []
        row = {**a, "state": "open"}
        a.pop("peak_image", None)  # written with the peak that made it, not with every update
        self.committed = True
        return [row]
