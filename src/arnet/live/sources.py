"""Camera sources: network streams, video files, webcams and growing frame folders.

A source is named on the command line as `NAME=URL` or just `URL` (the name is then derived
from it). Each kind opens a `Reader`, an iterator of RGB (H, W, 3) uint8 frames:

| source | kind | when it ends |
|---|---|---|
| `rtsp(s)://`, `rtmp://`, `http(s)://`, `udp://`, `tcp://`, `srt://` | stream | reconnects |
| a video file (or `file://`) | file | stops (replay at its own rate with `--realtime`) |
| `/dev/videoN`, `device:N` | device | reconnects with backoff |
| a folder (frames written into it) | folder | waits for frames (`idle_stop`: S s without, ends) |

Streams, files and devices are decoded by PyAV (FFmpeg); frame images by OpenCV.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from ..errors import ExtractError
from ..extract.optional import require
from ..extract.video import (
    DEFAULT_FOLDER_FPS,
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    frame_files,
)

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
KINDS = ("stream", "file", "device", "folder")
# Consecutive undecodable packets after which a stream counts as broken (and is reopened).
MAX_CORRUPT_PACKETS = 50
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.\-]{0,99})=(.+)$")


class SourceError(ExtractError):
    """A source cannot be opened or read; the message names it."""


@dataclass(frozen=True)
class Source:
    """One camera: a name and where its frames come from.

    Attributes:
        name: the camera's name in the event store.
        url: the stream URL, file, device or folder as given.
        kind: stream, file, device or folder.
        fps: frame rate to assume when the source has none (folders), or to override.
        idle_stop: a folder that gets no new frame for this many seconds has ended (None:
            it waits for ever).
    """

    name: str
    url: str
    kind: str
    fps: float | None = None
    idle_stop: float | None = None

    @property
    def live(self) -> bool:
        """Whether an end or error means "reconnect" (streams, devices, folders), not "done"."""
        return self.kind != "file"

    @property
    def exact(self) -> bool:
        """Whether its frames are read by position (files, folders): none is missed while it
        is not read, and a restart reads on exactly where the last one stopped."""
        return self.kind in ("file", "folder")

    def open(
        self,
        skip: int = 0,
        realtime: bool = False,
        timeout: float = 10.0,
        stopping: threading.Event | None = None,
    ) -> Reader:
        """Open the source for reading.

        Args:
            skip: frames to pass over first (a file resumed where an earlier watcher stopped,
                or a folder's frames already scored).
            realtime: pace a file at its own frame rate (as a camera would deliver it).
            timeout: seconds to wait for a network stream to open or to deliver data.
            stopping: set when the watcher stops (a folder stops waiting for frames).

        Raises:
            SourceError: naming the source, when it cannot be opened.
        """
        if self.kind == "folder":
            return FolderReader(self, skip, stopping=stopping)
        return AvReader(self, skip, realtime and self.kind == "file", timeout)


def parse_source(text: str, fps: float | None = None, idle_stop: float | None = None) -> Source:
    """`NAME=URL` or `URL` -> Source.

    Raises:
        SourceError: an unsupported URL scheme, a missing file or folder, or a file that is
            not a video.
    """
    match = _NAME.match(text)
    name, url = (match.group(1), match.group(2)) if match else (None, text)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if len(scheme) > 1 and scheme != "file":  # one letter: a Windows drive, not a scheme
        if scheme == "device":
            kind, url = "device", f"/dev/video{parts.netloc or parts.path}"
        elif scheme in STREAM_SCHEMES:
            kind = "stream"
        else:
            raise SourceError(
                f"{url}: unsupported URL scheme {scheme!r} (streams: "
                f"{', '.join(STREAM_SCHEMES)}; or a video file, frame folder, /dev/videoN)"
            )
        default = (parts.hostname or "") + parts.path if kind == "stream" else Path(url).name
    else:
        path = Path(parts.path if scheme == "file" else url).expanduser()
        if str(path).startswith("/dev/video"):
            kind = "device"
        elif path.is_dir():
            kind = "folder"
        elif path.is_file():
            if path.suffix.lower() not in VIDEO_SUFFIXES:
                raise SourceError(
                    f"{path}: not a video file (known suffixes: "
                    f"{', '.join(sorted(VIDEO_SUFFIXES))})"
                )
            kind = "file"
        else:
            raise SourceError(f"{path}: no such video file, frame folder or device")
        url = str(path.resolve()) if kind != "device" else str(path)
        default = path.stem if kind == "file" else path.name
    if kind == "device" and not Path(url).exists():
        raise SourceError(f"{url}: no such video device")
    if name is None:
        name = re.sub(r"[^A-Za-z0-9_.\-]+", "_", default).strip("_.-") or "camera"
    return Source(name=name, url=url, kind=kind, fps=fps, idle_stop=idle_stop)


def parse_sources(
    texts: list[str], fps: float | None = None, idle_stop: float | None = None
) -> list[Source]:
    """Every source, with names checked to be unique."""
    sources = [parse_source(t, fps, idle_stop) for t in texts]
    seen: dict[str, Source] = {}
    for s in sources:
        if s.name in seen:
            raise SourceError(
                f"{s.url} and {seen[s.name].url} would both be camera {s.name!r}; name them "
                "with NAME=URL"
            )
        seen[s.name] = s
    return sources


class Reader:
    """An open source: iterate for frames; `fps` is its frame rate; `close()` releases it.
    `error` holds why iteration ended early (None: the source ended normally). `position`:
    how many of the source's frames (decoded frames of a file, frame files of a folder,
    skipped ones included) have been read, the one just yielded included."""

    fps: float = DEFAULT_FOLDER_FPS
    error: str | None = None
    position: int = 0
    idle: bool = False  # a folder ended for getting no new frame for `Source.idle_stop` s

    def __iter__(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class AvReader(Reader):
    """Streams, files and devices through PyAV. Undecodable packets are skipped (a glitch
    on the wire costs a frame, not the stream) until MAX_CORRUPT_PACKETS in a row."""

    def __init__(self, source: Source, skip: int, realtime: bool, timeout: float) -> None:
        av = require("av", "reading video streams")
        self.av, self.source, self.skip, self.realtime = av, source, skip, realtime
        self.position = skip
        options: dict[str, str] = {}
        fmt = None
        if source.kind == "stream":
            # probe briefly: a camera's first frames are scored at once, not after seconds of
            # stream analysis (the frame rate, when the container has none, defaults to 25)
            options.update(probesize="65536", analyzeduration="500000")
        if source.url.startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = "tcp"
        if source.kind == "device":
            fmt = "v4l2"
        try:
            self.container = av.open(
                source.url,
                format=fmt,
                options=options,
                timeout=None if source.kind == "file" else (timeout, timeout),
            )
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(
                f"{source.name} ({source.url}): cannot open ({_reason(exc)})"
            ) from None
        if not self.container.streams.video:
            self.container.close()
            raise SourceError(f"{source.name} ({source.url}): holds no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate
        self.fps = float(source.fps or (rate if rate else DEFAULT_FOLDER_FPS))

    def __iter__(self) -> Iterator[np.ndarray]:
        av = self.av
        started = time.monotonic()
        index = 0
        corrupt = 0
        try:
            for packet in self.container.demux(self.stream):
                try:
                    frames = packet.decode()
                    corrupt = 0
                except av.error.InvalidDataError as exc:
                    corrupt += 1
                    if corrupt >= MAX_CORRUPT_PACKETS:
                        self.error = f"{corrupt} undecodable packets in a row ({_reason(exc)})"
                        return
                    continue
                for frame in frames:
                    index += 1
                    if index > self.skip:
                        if self.realtime:
                            wait = started + (index - 1 - self.skip) / self.fps - time.monotonic()
                            if wait > 0:
                                time.sleep(wait)
                        self.position = index
                        yield frame.to_ndarray(format="rgb24")
        except (av.error.FFmpegError, OSError) as exc:
            self.error = f"read failed ({_reason(exc)})"

    def close(self) -> None:
        self.container.close()


class FolderReader(Reader):
    """A folder of frame images that is still being written, read in natural name order.

    A frame is read once a later one exists or it has not changed for `settle` seconds (a
    writer may be half-way through it); write frames under a temporary name and rename
    them, or in name order, and every frame is read exactly once. Frames are never deleted.
    """

    def __init__(
        self,
        source: Source,
        skip: int,
        poll: float = 0.1,
        settle: float = 1.0,
        stopping: threading.Event | None = None,
    ) -> None:
        self.cv2 = require("cv2", "reading frame images")
        self.source, self.done, self.poll, self.settle = source, skip, poll, settle
        self.position = skip
        self.fps = float(source.fps or DEFAULT_FOLDER_FPS)
        self.stopping = stopping or threading.Event()
        if not Path(source.url).is_dir():
            raise SourceError(f"{source.name} ({source.url}): the frame folder is gone")

    def __iter__(self) -> Iterator[np.ndarray]:
        idle_stop = self.source.idle_stop
        last_new = time.monotonic()
        final = False  # idle long enough: the last frame is read without waiting to settle
        while not self.stopping.is_set():
            try:
                files = frame_files(self.source.url)
            except OSError as exc:
                self.error = f"cannot list the folder ({exc})"
                return
            fresh = files[self.done :]
            progressed = False
            for i, file in enumerate(fresh):
                last = i == len(fresh) - 1
                if last and not final:
                    try:
                        age = time.time() - file.stat().st_mtime
                    except OSError:
                        break
                    if age < self.settle:
                        break
                image = self.cv2.imread(str(file), self.cv2.IMREAD_COLOR)
                self.done += 1
                self.position = self.done
                progressed = True
                if image is None:
                    continue  # not an image after all: skipped, never retried
                yield np.ascontiguousarray(image[:, :, ::-1])
            if progressed:
                last_new = time.monotonic()
            elif final:
                self.idle = True
                return
            else:
                if idle_stop is not None and time.monotonic() - last_new >= idle_stop:
                    final = True  # one more look, reading whatever is there, then the end
                    continue
                self.stopping.wait(self.poll)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


__all__ = ["IMAGE_SUFFIXES", "KINDS", "Reader", "Source", "SourceError", "parse_source"]
