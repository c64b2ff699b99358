"""A clip per alert: the frames from `before` seconds ahead of the alert to `after` seconds past
its end, as an H.264 MP4 beside the store.

```
CameraWorker --every decoded frame--> FrameRing (per camera, bounded)
Watcher: scored up to frame N --> ring keeps from N - before      (the pre-roll)
Watcher: alert ID opened / grown / closed --> ClipJob --> writer thread (PyAV, libx264)
   --> CLIPS/CAMERA/.alert-ID.mp4.PID.tmp --rename--> CLIPS/CAMERA/alert-ID.mp4 --> alert_clips row
```

Memory: each camera's ring holds the frames scaled down to `short_side` (360 pixels by
default: 640x360, 0.69 MB a frame) and at most `memory_mb` of them (128 MB by default: 185 such
frames, 7.4 s at 25 fps). A camera read faster than it is scored (a file) waits for room for up
to `wait` seconds, then the ring drops its oldest frame (the clip then has a jump, said once).

The clips are encoded by one thread of their own, never by the scoring loop. A clip is written
under a temporary name and renamed when whole; only then is its row stored: a watcher killed
mid-clip leaves a temporary that the next watcher removes, never a half file claimed as a clip.
A clip that cannot be written (a full disk, a folder made read-only) is said in one line; the
alert is kept without a clip, and scoring goes on.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..folders import notice, remove_stale_temporaries_under, temporary_name

log = logging.getLogger("arnet.watch")


@dataclass
class ClipSettings:
    """How clips are made (`arnet watch --clip-before/--clip-after/--clips`).

    Attributes:
        folder: where clips go, one folder per camera.
        before, after: seconds of pre- and post-roll.
        longest: a clip is ended after this many seconds (an alert that never closes).
        short_side: frames are scaled down to at most this short side (0: as decoded).
        memory_mb: frames each camera's ring holds at most, in megabytes.
        wait: seconds a camera read ahead of its scoring waits for room in its ring.
        crf, preset: libx264's quality (lower: better, larger) and speed.
    """

    folder: Path
    before: float = 5.0
    after: float = 5.0
    longest: float = 300.0
    short_side: int = 360
    memory_mb: float = 128.0
    wait: float = 2.0
    crf: int = 26
    preset: str = "veryfast"

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        for option, value in (("--clip-before", self.before), ("--clip-after", self.after)):
            if not (math.isfinite(value) and 0 <= value <= 3600):
                raise DataError(f"{option}: seconds from 0 to 3600, got {value!r}")
        if not (math.isfinite(self.longest) and self.longest > 0):
            raise DataError(f"the longest clip must be seconds > 0, got {self.longest!r}")
        if self.short_side < 0 or (0 < self.short_side < 16):
            raise DataError(f"--clip-short-side: 0 or at least 16 pixels, got {self.short_side}")
        if not (math.isfinite(self.memory_mb) and self.memory_mb > 0):
            raise DataError(f"--clip-memory: megabytes > 0, got {self.memory_mb!r}")


def parse_seconds(text: str) -> float:
    """'5', '5s', '1.5 s', '500ms', '2m', '1h' -> seconds."""
    value = text.strip().lower()
    scale = 1.0
    if value.endswith("ms"):
        value, scale = value[:-2], 0.001
    elif value.endswith("s"):
        value = value[:-1]
    elif value.endswith("m"):
        value, scale = value[:-1], 60.0
    elif value.endswith("h"):
        value, scale = value[:-1], 3600.0
    try:
        seconds = float(value.strip()) * scale
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (e.g. 5s, 2.5, 1m)") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {text!r} (seconds >= 0)")
    return seconds


def default_folder(store: str) -> Path | None:
    """The clips folder beside a SQLite store (`events.db` -> `events-clips/`); None for a
    database URL (a server's store has no folder: give --clips DIR)."""
    if "://" in store and not store.startswith("sqlite:"):
        return None
    path = Path(store.split("sqlite:///", 1)[-1]).expanduser().absolute()
    return path.with_name(path.stem + "-clips")


def check_folder(folder: Path) -> None:
    """Make the clips folder, and refuse one that cannot be written (DataError naming it)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = temporary_name(folder / "probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DataError(f"--clips {folder}: cannot write clips there ({exc.strerror})") from None


def _scaled(frame: np.ndarray, short_side: int) -> np.ndarray:
    """The frame scaled down to at most `short_side` (never up), cut to even sizes (H.264)."""
    h, w = frame.shape[:2]
    if short_side and min(h, w) > short_side:
        import cv2

        ratio = short_side / min(h, w)
        size = (max(2, round(w * ratio)), max(2, round(h * ratio)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = frame[: h - h % 2, : w - w % 2]
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    return np.ascontiguousarray(frame[:, :, :3])


class FrameRing:
    """One camera's recent frames, by frame number, held within a byte budget."""

    def __init__(self, settings: ClipSettings, changed: threading.Condition) -> None:
        self.s = settings
        self.frames: deque[tuple[int, float, np.ndarray]] = deque()
        self.bytes = 0
        self.fps = 25.0
        self.keep_from = 0  # frames before this are needed by no clip (scored, past pre-roll)
        self.changed = changed
        self.ended = False
        self.dropped = 0  # frames dropped for room while still needed
        self.said_dropped = False

    def add(self, index: int, when: float, frame: np.ndarray, fps: float, stopping: Any) -> None:
        """Add a decoded frame (the camera's thread); waits up to `wait` seconds while the ring
        is full of frames still needed, then drops the oldest."""
        small = _scaled(frame, self.s.short_side)
        budget = self.s.memory_mb * 1e6
        deadline = time.monotonic() + self.s.wait
        with self.changed:
            self.fps = fps if fps and math.isfinite(fps) and fps > 0 else 25.0
            self.ended = False
            while self.frames and self.frames[-1][0] >= index:  # a connection's unscored tail
                self.bytes -= self.frames.pop()[2].nbytes
            while self.frames and self.bytes + small.nbytes > budget:
                first = self.frames[0][0]
                if first < self.keep_from:
                    self._pop()
                    continue
                left = deadline - time.monotonic()
                if left > 0 and not (stopping is not None and stopping.is_set()):
                    self.changed.wait(min(left, 0.1))
                    continue
                self._pop()
                self.dropped += 1
            self.frames.append((index, when, small))
            self.bytes += small.nbytes
            self.changed.notify_all()

    def _pop(self) -> None:
        _, _, frame = self.frames.popleft()
        self.bytes -= frame.nbytes

    def release(self, keep_from: int) -> None:
        """Frames before `keep_from` are needed no more (called under the condition)."""
        self.keep_from = max(self.keep_from, keep_from)
        while self.frames and self.frames[0][0] < self.keep_from:
            self._pop()
        self.changed.notify_all()

    def after(self, index: int, last: int) -> list[tuple[int, float, np.ndarray]]:
        """The frames numbered from `index` to `last` held now (under the condition)."""
        return [f for f in self.frames if index <= f[0] <= last]


@dataclass
class ClipJob:
    """One alert's clip being written."""

    camera: str
    alert_id: int
    start_frame: int  # the alert's first frame
    end_frame: int  # its last frame so far
    first: int  # the clip's first frame (pre-roll)
    closed: bool = False
    camera_ended: bool = False
    next_frame: int = -1  # the next frame to encode
    written: int = 0
    start_time: float | None = None
    size: tuple[int, int] | None = None  # (width, height)
    fps: float = 25.0
    container: Any = None
    stream: Any = None
    path: Path | None = None
    tmp: Path | None = None
    failed: str | None = None
    clip_first: int = 0  # the first frame encoded
    started: float = field(default_factory=time.monotonic)

    def last_wanted(self, after_frames: int) -> int:
        """The last frame this clip shows (while open: the alert's last frame so far)."""
        return self.end_frame + after_frames if self.closed else self.end_frame


class ClipRecorder:
    """Rings of every camera and the clips of their alerts, written by a thread of its own.

    Args:
        settings: how clips are made.
        store: the event store (clips are recorded with `store.media.record_clip`).
        say: prints a line for people (the watcher's `_say`).
    """

    def __init__(
        self, settings: ClipSettings, store: Any, say: Callable[[str], None] | None = None
    ) -> None:
        self.s = settings
        self.store = store
        self.say = say or (lambda _text: None)
        self.changed = threading.Condition()
        self.rings: dict[str, FrameRing] = {}
        self.jobs: dict[int, ClipJob] = {}
        self.seen: set[int] = set()  # alert ids that have (had) a job
        self.stopping = threading.Event()
        self.written = 0
        self.failures = 0
        self._failing = False
        self.thread = threading.Thread(target=self._run, name="clip-writer", daemon=True)

    # ------------------------------------------------------------------ set up
    def start(self, cameras: list[str]) -> None:
        check_folder(self.s.folder)
        remove_stale_temporaries_under(self.s.folder)
        for name in cameras:
            self.rings[name] = FrameRing(self.s, self.changed)
        self.thread.start()

    def add_camera(self, camera: str) -> None:
        """A camera added while watching (SIGHUP): its frames are kept for clips from now on
        (a camera removed and added again starts a new buffer)."""
        with self.changed:
            ring = self.rings.get(camera)
            if ring is None or ring.ended:
                self.rings[camera] = FrameRing(self.s, self.changed)

    def folder_of(self, camera: str) -> Path:
        """The clips of one camera: a folder named after it (characters a path cannot hold
        replaced)."""
        safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in camera).lstrip(".")
        return self.s.folder / (safe or "camera")

    # ------------------------------------------------------------------ hooks
    def frame(
        self, camera: str, index: int, when: float, frame: np.ndarray, fps: float, stopping: Any
    ) -> None:
        """A camera decoded frame `index` (its thread)."""
        ring = self.rings.get(camera)
        if ring is not None:
            ring.add(index, when, frame, fps, stopping)
            if ring.dropped and not ring.said_dropped:
                ring.said_dropped = True
                log.warning(
                    "camera %s: the clip buffer (--clip-memory %g MB) was full; the oldest "
                    "frames were dropped, clips may jump",
                    camera,
                    self.s.memory_mb,
                )

    def scored(self, camera: str, next_frame: int) -> None:
        """Frames of `camera` before `next_frame` are scored: those older than the pre-roll
        and needed by no open clip may go."""
        ring = self.rings.get(camera)
        if ring is None:
            return
        with self.changed:
            keep = next_frame - int(math.ceil(self.s.before * ring.fps))
            for job in self.jobs.values():
                if job.camera == camera:
                    keep = min(keep, job.next_frame if job.next_frame >= 0 else job.first)
            ring.release(keep)

    def alert(self, camera: str, alert_id: int, row: dict[str, Any]) -> None:
        """An alert row of `camera` is in the store (opened, grown or closed)."""
        ring = self.rings.get(camera)
        if ring is None:
            return
        with self.changed:
            job = self.jobs.get(alert_id)
            if job is None:
                if alert_id in self.seen:
                    return  # its clip is written (or given up) already
                self.seen.add(alert_id)
                before = int(math.ceil(self.s.before * ring.fps))
                oldest = ring.frames[0][0] if ring.frames else row["start_frame"]
                first = max(0, row["start_frame"] - before, oldest)
                job = ClipJob(camera, alert_id, row["start_frame"], row["end_frame"], first)
                self.jobs[alert_id] = job
            job.end_frame = max(job.end_frame, int(row["end_frame"]))
            job.closed = job.closed or row["state"] == "closed"
            self.changed.notify_all()

    def camera_ended(self, camera: str) -> None:
        """The camera delivers no more frames: its clips end with what they have."""
        with self.changed:
            ring = self.rings.get(camera)
            if ring is not None:
                ring.ended = True
            for job in self.jobs.values():
                if job.camera == camera:
                    job.camera_ended = True
            self.changed.notify_all()

    def close(self, timeout: float | None = None) -> None:
        """Finish every clip with the frames it has and stop the writer thread."""
        with self.changed:
            for ring in self.rings.values():
                ring.ended = True
            for job in self.jobs.values():
                job.camera_ended = True
            self.stopping.set()
            self.changed.notify_all()
        if self.thread.is_alive():
            self.thread.join(timeout)

    # ------------------------------------------------------------------ writer thread
    def _run(self) -> None:
        while True:
            work: list[tuple[ClipJob, list[tuple[int, float, np.ndarray]], bool]] = []
            with self.changed:
                for job in list(self.jobs.values()):
                    ring = self.rings[job.camera]
                    after = int(math.ceil(self.s.after * ring.fps))
                    start = job.first if job.next_frame < 0 else job.next_frame
                    last = job.last_wanted(after)
                    longest = job.first + int(self.s.longest * ring.fps) - 1
                    last = min(last, longest)
                    frames = ring.after(start, last)
                    newest = ring.frames[-1][0] if ring.frames else -1
                    done = (
                        (job.closed and newest >= last)
                        or newest >= longest
                        or job.camera_ended
                        or (job.closed and ring.ended)
                    )
                    if frames or done:
                        work.append((job, frames, done))
                if not work:
                    if self.stopping.is_set() and not self.jobs:
                        return
                    self.changed.wait(0.5)
                    continue
            for job, frames, done in work:
                self._encode(job, frames, done)
            with self.changed:
                for job, _frames, done in work:
                    if done:
                        self.jobs.pop(job.alert_id, None)
                self.changed.notify_all()

    def _encode(
        self, job: ClipJob, frames: list[tuple[int, float, np.ndarray]], done: bool
    ) -> None:
        """Encode frames of a clip (outside the lock); finish it when `done`."""
        try:
            if job.failed is None:
                for index, when, image in frames:
                    if job.container is None:
                        self._open(job, index, when, image)
                    if (image.shape[1], image.shape[0]) != job.size:
                        continue  # the camera's size changed: the clip keeps its first size
                    import av

                    picture = av.VideoFrame.from_ndarray(image, format="rgb24")
                    for packet in job.stream.encode(picture):
                        job.container.mux(packet)
                    job.written += 1
                if frames:
                    job.next_frame = frames[-1][0] + 1
        except Exception as exc:  # noqa: BLE001  (a disk that fills, a codec error)
            self._fail(job, exc)
        if done:
            self._finish(job)

    def _open(self, job: ClipJob, index: int, when: float, image: np.ndarray) -> None:
        import av

        ring = self.rings[job.camera]
        folder = self.folder_of(job.camera)
        folder.mkdir(parents=True, exist_ok=True)
        job.path = folder / f"alert-{job.alert_id}.mp4"
        job.tmp = temporary_name(job.path)
        job.fps = ring.fps
        job.start_time = when
        job.clip_first = index
        job.size = (image.shape[1], image.shape[0])
        job.container = av.open(str(job.tmp), "w", format="mp4", options={"movflags": "+faststart"})
        rate = Fraction(job.fps).limit_denominator(1001)
        job.stream = job.container.add_stream("libx264", rate=rate)
        job.stream.width, job.stream.height = job.size
        job.stream.pix_fmt = "yuv420p"
        job.stream.options = {"crf": str(self.s.crf), "preset": self.s.preset}

    def _fail(self, job: ClipJob, exc: BaseException) -> None:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        job.failed = reason
        self._discard(job)
        self.failures += 1
        notice(
            f"arnet watch: camera {job.camera!r}: alert {job.alert_id} is kept without a clip: "
            f"cannot write {job.path or self.folder_of(job.camera)} ({reason})"
        )
        self._failing = True

    def _discard(self, job: ClipJob) -> None:
        if job.container is not None:
            with contextlib.suppress(Exception):
                job.container.close()
            job.container = None
        if job.tmp is not None:
            with contextlib.suppress(OSError):
                job.tmp.unlink()

    def _finish(self, job: ClipJob) -> None:
        """Flush the encoder, put the file in place and record it with the alert."""
        if job.failed is not None or job.container is None:
            return
        try:
            for packet in job.stream.encode():
                job.container.mux(packet)
            job.container.close()
            job.container = None
            assert job.tmp is not None and job.path is not None  # set with the container
            with open(job.tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(job.tmp, job.path)
        except Exception as exc:  # noqa: BLE001
            self._fail(job, exc)
            return
        assert job.path is not None and job.size is not None and job.start_time is not None
        clip = {
            "path": str(job.path.absolute()),
            "start_frame": job.clip_first,
            "end_frame": job.next_frame - 1,
            "start_time": job.start_time,
            "fps": job.fps,
            "width": job.size[0],
            "height": job.size[1],
            "bytes": job.path.stat().st_size,
        }
        from ..store.media import record_clip

        try:
            record_clip(self.store, job.alert_id, clip)
        except KeyError:  # the alert was pruned meanwhile: its clip goes too
            job.path.unlink(missing_ok=True)
            return
        except Exception as exc:  # noqa: BLE001  (the store away: the clip stays on disk)
            notice(
                f"arnet watch: camera {job.camera!r}: alert {job.alert_id}'s clip {job.path} "
                f"was written but not recorded in the store ({exc})"
            )
            return
        self.written += 1
        if self._failing:
            self._failing = False
            notice(f"arnet watch: clips are written again ({job.path})")
        self.say(f"{job.camera}: alert {job.alert_id} clip {job.path} ({job.written} frames)")
