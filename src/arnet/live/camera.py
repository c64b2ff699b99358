"""One thread per camera: read frames, reconnect with backoff, cut them into segments.

A worker turns its source's frames into the segments the checkpoint's extractor expects
(frames resized as `extract` does, flow fields paired when the backbone takes flow,
`frames_per_segment` frames each) and hands them to the scorer's queue. A segment cut short by
the end of a file, a dropped connection or the watcher stopping follows the extractor's tail
policy (`pad` in detection: the last `frames_per_segment` frames of the connection, real ones
overlapping the segment before, scored for the new frames only), so every frame is scored as
`detect` scores it.

Frames and segments are numbered per camera across connections and restarts; the wall time
of each frame is when it was decoded. A reconnection records the gap (its length in seconds
and in frames at the source's rate) as a camera event.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..extract.flow import with_flow
from ..extract.pipeline import ExtractConfig
from ..extract.preprocess import Segmenter, kept_frames, resize_short_side
from .sources import Reader, Source, SourceError

log = logging.getLogger("arnet.watch")


@dataclass
class Segment:
    """A segment ready to score.

    Attributes:
        camera: the camera's name.
        index: segment number of the camera.
        start_frame, end_frame: its first and last real frame (inclusive).
        start_time, end_time: wall times (epoch seconds) those frames were decoded.
        items: (resized frame, flow or None) pairs, as many as the backbone takes.
        first_frame: the segment's first frame as decoded (for the alert's picture).
        gap_frames: frames missed just before this segment (a reconnection), at the
            source's rate; 0 when it follows the previous segment directly.
        fps: the source's frame rate.
        cells: where the segment is anomalous, (rows, cols) cell values, once scored by a
            checkpoint that maps cells (`SegmentScorer.score_and_locate`); else None.
    """

    camera: str
    index: int
    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    items: list[tuple[np.ndarray, np.ndarray | None]]
    first_frame: np.ndarray
    gap_frames: int = 0
    fps: float = 25.0
    cells: np.ndarray | None = None


@dataclass
class SourceEnded:
    """Put on the queue when a camera will deliver no more segments (file done, stopped)."""

    camera: str


@dataclass
class Backoff:
    """Reconnection delays: first, doubled after each failure, at most `maximum` seconds."""

    first: float = 0.5
    maximum: float = 30.0
    current: float = field(init=False, default=0.0)

    def next(self) -> float:
        self.current = self.first if self.current == 0 else min(self.current * 2, self.maximum)
        return self.current

    def reset(self) -> None:
        self.current = 0.0


StateCallback = Callable[[str, str, str | None, str | None, int | None], None]


class CameraWorker(threading.Thread):
    """Reads one source until it ends (files) or the watcher stops.

    Args:
        source: the camera.
        config: the extractor's settings (preprocessing, flow).
        with_flow_fields: pair frames with flow fields (a flow backbone is present).
        out: the scorer's queue (bounded: a slow scorer slows the reader, never loses data).
        stopping: set when the watcher stops.
        on_state: callback(camera, state, detail, event, frame) for the store.
        next_frame, next_segment: where the camera's numbering continues.
        resume: frames of this file or folder already scored (a restart reads on from there).
        last_seen: wall time of the camera's last scored frame (a restart's gap), or None.
        frame_stride: feed every k-th frame of a segment to the backbone.
        realtime: pace files at their frame rate.
        backoff: reconnection delays.
    """

    def __init__(
        self,
        source: Source,
        config: ExtractConfig,
        with_flow_fields: bool,
        out: queue.Queue,
        stopping: threading.Event,
        on_state: StateCallback,
        next_frame: int = 0,
        next_segment: int = 0,
        resume: int = 0,
        last_seen: float | None = None,
        frame_stride: int = 1,
        realtime: bool = False,
        backoff: Backoff | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(name=f"camera-{source.name}", daemon=True)
        self.source, self.config, self.with_flow = source, config, with_flow_fields
        self.out, self.stopping, self.on_state = out, stopping, on_state
        self.frame, self.segment = next_frame, next_segment
        self.resume, self.frame_base = resume, next_frame
        self.last_time = last_seen
        self.stride, self.realtime = frame_stride, realtime
        self.backoff = backoff or Backoff()
        self.timeout = timeout
        self.reader: Reader | None = None
        self.first_error: str | None = None
        self.connected_once = threading.Event()

    # ------------------------------------------------------------------ thread
    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001  (a bug in one camera must not stop the rest)
            log.exception("camera %s failed", self.source.name)
            self.on_state(
                self.source.name, "failed", f"{type(exc).__name__}: {exc}", "failed", self.frame
            )
        finally:
            self._put(SourceEnded(self.source.name), force=True)
            self.connected_once.set()

    def _run(self) -> None:
        name = self.source.name
        while not self.stopping.is_set():
            # a file or folder is read on after the frames already scored; a stream from now
            skip = 0
            if self.source.kind in ("file", "folder"):
                skip = self.resume + self.frame - self.frame_base
            try:
                self.reader = self.source.open(skip, self.realtime, self.timeout, self.stopping)
            except SourceError as exc:
                self.first_error = self.first_error or str(exc)
                if not self.source.live:
                    self.on_state(name, "failed", str(exc), "failed", self.frame)
                    return
                first_failure = self.backoff.current == 0  # an event per outage, not per try
                delay = self.backoff.next()
                self.on_state(
                    name,
                    "reconnecting",
                    f"{exc}; retrying in {delay:.1f} s",
                    "unreachable" if first_failure else None,
                    self.frame,
                )
                self.connected_once.set()
                if self.stopping.wait(delay):
                    return
                continue
            gap_s = None if self.last_time is None else max(0.0, time.time() - self.last_time)
            gap_frames = (
                0 if gap_s is None or not self.source.live else round(gap_s * self.reader.fps)
            )
            detail = f"{self.reader.fps:g} fps"
            if gap_s is not None and self.source.live:
                detail += f"; gap of {gap_s:.1f} s (~{gap_frames} frames)"
            self.on_state(name, "streaming", detail, "connected", self.frame)
            self.connected_once.set()
            frames_before = self.frame
            try:
                self._segments(self.reader, gap_frames)
            finally:
                self.reader.close()
            if self.frame > frames_before:
                self.backoff.reset()
            if self.stopping.is_set():
                return
            reason = self.reader.error
            if not self.source.live:
                if reason:
                    self.on_state(name, "failed", reason, "failed", self.frame)
                else:
                    self.on_state(name, "stopped", "the file ended", "stopped", self.frame)
                return
            delay = self.backoff.next()
            why = reason or "the stream ended"
            self.on_state(
                name,
                "reconnecting",
                f"{why}; retrying in {delay:.1f} s",
                "disconnected",
                self.frame,
            )
            if self.stopping.wait(delay):
                return

    # ------------------------------------------------------------------ segments
    def _segments(self, reader: Reader, gap_frames: int) -> None:
        """Cut the reader's frames into segments and queue them (this connection only)."""
        pp = self.config.preprocessing
        length = pp.frames_per_segment
        raw: deque[tuple[np.ndarray, float]] = deque()

        def frames() -> Iterator[np.ndarray | None]:
            position = 0  # of the connection: a frame the stride skips is None, as in extract
            for frame in reader:
                if self.stopping.is_set():
                    return
                raw.append((frame, time.time()))
                keep = self.with_flow or position % self.stride == 0
                position = (position + 1) % length
                yield resize_short_side(frame, pp.short_side) if keep else None

        items: Iterator = (
            with_flow(frames(), self.config.flow)
            if self.with_flow
            else ((f, None) for f in frames())
        )
        segmenter = Segmenter(length, pp.tail, pp.tail_fill)
        for segment in segmenter(items):
            real = segmenter.fresh  # a tail's window holds frames of the segment before too
            taken = [raw.popleft() for _ in range(real)]
            first_frame, start_time = taken[0]
            end_time = taken[-1][1]
            chosen = segment
            if self.stride > 1:  # the frames extract encodes: the stride's, of the connection
                chosen = [
                    (f, None) for f in kept_frames([f for f, _ in segment], length, self.stride)
                ]
            item = Segment(
                camera=self.source.name,
                index=self.segment,
                start_frame=self.frame,
                end_frame=self.frame + real - 1,
                start_time=start_time,
                end_time=end_time,
                items=list(chosen),
                first_frame=first_frame,
                gap_frames=gap_frames,
                fps=reader.fps,
            )
            gap_frames = 0
            if not self._put(item):
                return
            self.segment += 1
            self.frame += real
            self.last_time = end_time

    def _put(self, item: object, force: bool = False) -> bool:
        """Queue an item, waiting while the queue is full; False when the watcher stops
        first (`force`: wait for room regardless, for the end marker)."""
        while True:
            try:
                self.out.put(item, timeout=0.2)
                return True
            except queue.Full:
                if self.stopping.is_set() and not force:
                    return False
