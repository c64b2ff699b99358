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
and in frames at the source's rate) as a camera event. A file or frame folder is exact: a
restart or a reopening reads on at the position after the last frame put into a segment
(`Segment.end_position`), so no frame is lost or scored twice, and no gap is counted.

A frame of another size than the camera's (a thumbnail dropped into a frame folder, a glitch)
is skipped and recorded as a `skipped` camera event. When a whole segment's worth of frames in
a row have one new size, the camera's size has changed: the segment being cut is completed
(as at the end of a connection), and the source is read on at that size from the first of
those frames (a stream: from a new connection), recorded as a `resized` event.
"""

from __future__ import annotations

import logging
import math
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
        end_position: the source's read position after the segment's last real frame
            (`Reader.position`: where a restart of a file or frame folder reads on).
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
    end_position: int = 0


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

    def __post_init__(self) -> None:
        delays = (("the first reconnection delay", self.first), ("--reconnect-max", self.maximum))
        for what, value in delays:
            if not math.isfinite(value) or value <= 0:  # 0 or less: a busy loop of reconnections
                raise ValueError(f"{what} must be seconds > 0, got {value!r}")
        self.first = min(self.first, self.maximum)

    def next(self) -> float:
        self.current = self.first if self.current == 0 else min(self.current * 2, self.maximum)
        return self.current

    def reset(self) -> None:
        self.current = 0.0


StateCallback = Callable[[str, str, str | None, str | None, int | None], None]
EventCallback = Callable[[str, str, str, int | None], None]
# camera, frame number, wall time, decoded frame, frame rate, the worker's stop event
FrameCallback = Callable[[str, int, float, np.ndarray, float, threading.Event], None]


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
        resume: the read position of this file or folder already scored (a restart reads on
            from there: `Segment.end_position` of its last segment).
        last_seen: wall time of the camera's last scored frame (a restart's gap), or None.
        frame_stride: feed every k-th frame of a segment to the backbone.
        realtime: pace files at their frame rate.
        backoff: reconnection delays.
        timeout: seconds to open or read a stream.
        on_event: callback(camera, kind, detail, frame) for a camera event that changes no
            state (`skipped`, `resized`).
        on_frame: callback(camera, frame number, time, frame, fps, stopping) for every frame
            put into a segment (the clips' ring buffer), in the camera's thread.
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
        on_event: EventCallback | None = None,
        on_frame: FrameCallback | None = None,
    ) -> None:
        super().__init__(name=f"camera-{source.name}", daemon=True)
        self.source, self.config, self.with_flow = source, config, with_flow_fields
        self.out, self.stopping, self.on_state = out, stopping, on_state
        self.frame, self.segment = next_frame, next_segment
        self.position = resume  # of a file or folder: where its next frame is read
        self.on_event = on_event
        self.on_frame = on_frame
        self.resized = False  # the last connection ended on a change of the frame size
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
            skip = self.position if self.source.exact else 0
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
            # a file or folder misses no frame while it is not read: no gap
            counted = self.source.live and not self.source.exact
            gap_s = None if self.last_time is None else max(0.0, time.time() - self.last_time)
            gap_frames = 0 if gap_s is None or not counted else round(gap_s * self.reader.fps)
            detail = f"{self.reader.fps:g} fps"
            if gap_s is not None and counted:
                detail += f"; gap of {gap_s:.1f} s (~{gap_frames} frames)"
            self.on_state(name, "streaming", detail, "connected", self.frame)
            self.connected_once.set()
            frames_before = self.frame
            self.resized = False
            try:
                self._segments(self.reader, gap_frames)
            finally:
                self.reader.close()
            if self.frame > frames_before:
                self.backoff.reset()
            if self.stopping.is_set():
                return
            if self.resized:  # read on at once, at the new size
                continue
            reason = self.reader.error
            if self.reader.idle:
                idle = f"no new frame for {self.source.idle_stop:g} s (--idle-stop)"
                self.on_state(name, "stopped", idle, "stopped", self.frame)
                return
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
        raw: deque[tuple[np.ndarray, float, int]] = deque()
        odd: list[int] = []  # read positions of a run of frames of one other size
        odd_shape: list[tuple[int, ...]] = [()]

        def skipped(shape: tuple[int, ...]) -> None:
            """Record the run of frames of another size that has just ended."""
            if odd:
                self._event(
                    "skipped",
                    f"{len(odd)} frame(s) from read position {odd[0]} skipped: "
                    f"{_size(odd_shape[0])}, not the camera's {_size(shape)}",
                )
                odd.clear()

        def frames() -> Iterator[np.ndarray | None]:
            shape = None
            position = 0  # of the connection: a frame the stride skips is None, as in extract
            for frame in reader:
                if self.stopping.is_set():
                    return
                if shape is None:
                    shape = frame.shape
                elif frame.shape != shape:
                    if frame.shape != odd_shape[0]:
                        skipped(shape)
                        odd_shape[0] = frame.shape
                    odd.append(reader.position - 1)
                    if len(odd) >= length:  # not a stray frame: the camera's size changed
                        self._event(
                            "resized",
                            f"frames are {_size(frame.shape)} from read position {odd[0]} "
                            f"on, were {_size(shape)}",
                        )
                        if self.source.exact:
                            self.position = odd[0]
                        odd.clear()
                        self.resized = True
                        return
                    continue
                skipped(shape)
                raw.append((frame, time.time(), reader.position))
                if self.on_frame is not None:  # the clips' ring: numbered as segments count
                    index = self.frame + len(raw) - 1
                    self.on_frame(
                        self.source.name, index, raw[-1][1], frame, reader.fps, self.stopping
                    )
                keep = self.with_flow or position % self.stride == 0
                position = (position + 1) % length
                yield resize_short_side(frame, pp.short_side) if keep else None
            if shape is not None:
                skipped(shape)

        items: Iterator = (
            # with flow every frame is kept: none is None
            with_flow(frames(), self.config.flow)  # type: ignore[arg-type]
            if self.with_flow
            else ((f, None) for f in frames())
        )
        segmenter = Segmenter(length, pp.tail, pp.tail_fill)
        for segment in segmenter(items):
            real = segmenter.fresh  # a tail's window holds frames of the segment before too
            taken = [raw.popleft() for _ in range(real)]
            first_frame, start_time, _ = taken[0]
            _, end_time, end_position = taken[-1]
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
                end_position=end_position,
            )
            gap_frames = 0
            if not self._put(item):
                return
            self.segment += 1
            self.frame += real
            self.last_time = end_time
            self.position = max(self.position, end_position)

    def _event(self, kind: str, detail: str) -> None:
        log.warning("camera %s: %s", self.source.name, detail)
        if self.on_event is not None:
            self.on_event(self.source.name, kind, detail, self.frame)

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


def _size(shape: tuple[int, ...]) -> str:
    """(H, W, ...) -> "WxH"."""
    return f"{shape[1]}x{shape[0]}"
