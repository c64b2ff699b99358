"""Video inputs: video files decoded with PyAV, and folders of frame images read with OpenCV.

Both kinds yield the same thing, RGB frames as (H, W, 3) uint8 arrays in display order, so
everything downstream is indifferent to where the frames came from. Datasets such as UCSD Ped2,
Avenue and ShanghaiTech are distributed as frame folders; user footage comes as video files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, ExtractError
from ..formats.groundtruth import normalize_name
from ..formats.ped2 import LABELS_FILE, FrameDataset
from ..videoconfig import DEFAULT_FOLDER_FPS
from .optional import require

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".flv", ".ts"}
)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


@dataclass(frozen=True)
class VideoInput:
    """One video to extract: a video file or a folder of frame images.

    Attributes:
        path: the file or folder.
        name: the video's name in the dataset (file stem or folder name, AR-Net-normalised).
        kind: "video" or "frames".
        fps: frames per second of a frame folder (None: DEFAULT_FOLDER_FPS); for a video
            file it overrides the container's rate (None: the container's).
    """

    path: Path
    name: str
    kind: str
    fps: float | None = None

    def frames(self, stride: int = 1) -> Iterator[np.ndarray | None]:
        """Decode the frames in order as RGB (H, W, 3) uint8 arrays, all of one size.

        Args:
            stride: keep every `stride`-th frame (0, k, 2k, ...); the others are yielded as
                None, unread (a frame folder) or decoded but not converted (a video file,
                whose frames depend on the ones before), so frame counts stay exact.

        Raises:
            ExtractError: naming the file, when a frame cannot be read or changes size.
        """
        read = _read_folder if self.kind == "frames" else _decode_video
        return _same_size(read(self.path, max(1, stride)))

    def frame_rate(self) -> float:
        """Frames per second (container rate, or the folder's given or default rate)."""
        if self.kind == "frames":
            return float(self.fps or DEFAULT_FOLDER_FPS)
        if self.fps:
            return float(self.fps)
        av = require("av", "decoding video")
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        except (av.error.FFmpegError, IndexError) as exc:
            raise ExtractError(f"{self.path}: cannot read the frame rate ({exc})") from exc
        return float(rate) if rate else DEFAULT_FOLDER_FPS


def natural_key(name: str) -> list[object]:
    """Sort key that orders `frame2` before `frame10` (digit runs compare as numbers)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def frame_files(folder: str | Path) -> list[Path]:
    """The image files of a frame folder in natural order (hidden files skipped)."""
    folder = Path(folder)
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    ]
    return sorted(files, key=lambda p: natural_key(p.name))


def check_frame_counts(dataset: FrameDataset) -> None:
    """Check that each labelled frame count of a frame dataset equals the images in its folder.

    Raises:
        DataError: naming the folder and the two counts.
    """
    for name, folder in dataset.videos.items():
        stated = dataset.annotations[name].frames
        found = len(frame_files(folder))
        if stated is not None and stated != found:
            raise DataError(
                f"{folder}: {found} frame images, but {dataset.root / LABELS_FILE} says {stated}"
            )


def _holds_images(folder: Path) -> bool:
    return any(
        p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
        for p in folder.iterdir()
    )


def is_frame_folder(path: str | Path) -> bool:
    """A folder of frame images: it holds images, and no subfolders or video files (hidden
    entries aside); a folder with those is a folder of videos, expanded by `find_inputs`."""
    path = Path(path)
    if not path.is_dir():
        return False
    for p in path.iterdir():
        if not p.name.startswith(".") and (p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES):
            return False
    return _holds_images(path)


def find_inputs(paths: Iterable[str | Path], fps: float | None = None) -> list[VideoInput]:
    """Turn command-line paths into videos, sorted by name.

    Each path is a video file, a frame folder (a folder holding images and no subfolders or
    video files), or a folder of those (expanded one level: its video files and frame folders;
    images beside them, such as a cover picture, are not a video).

    Args:
        paths: files and folders.
        fps: frame rate to assume for frame folders (None: DEFAULT_FOLDER_FPS); video files
            keep their container's rate.

    Raises:
        ExtractError: a path that does not exist or holds no video, a folder that holds both
            frame images and subfolders but no video (ambiguous), or two videos that would get
            the same name.
    """
    found: list[VideoInput] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise ExtractError(f"{path}: no such video file or frame folder")
        if path.is_file():
            found.append(_as_input(path))
        elif is_frame_folder(path):
            found.append(VideoInput(path, normalize_name(path.name), "frames", fps))
        else:
            children = sorted(path.iterdir(), key=lambda p: natural_key(p.name))
            inner = []
            for c in children:
                if c.name.startswith("."):
                    continue
                if c.is_file() and c.suffix.lower() in VIDEO_SUFFIXES:
                    inner.append(_as_input(c))
                elif is_frame_folder(c):
                    inner.append(VideoInput(c, normalize_name(c.name), "frames", fps))
                elif c.is_dir() and _holds_images(c):
                    raise _ambiguous(c)
            if not inner:
                if _holds_images(path):
                    raise _ambiguous(path)
                raise ExtractError(
                    f"{path}: holds no video files ({', '.join(sorted(VIDEO_SUFFIXES))}) "
                    "and no frame folders"
                )
            found.extend(inner)
    by_name: dict[str, VideoInput] = {}
    for video in found:
        if video.name in by_name:
            raise ExtractError(
                f"{video.path} and {by_name[video.name].path} would both be named "
                f"{video.name!r}; rename one"
            )
        by_name[video.name] = video
    return sorted(found, key=lambda v: natural_key(v.name))


def _ambiguous(folder: Path) -> ExtractError:
    return ExtractError(
        f"{folder}: holds frame images and also subfolders or video files, so it is neither a "
        "frame folder nor a folder of videos; move the images or the rest out, or name the "
        "videos themselves"
    )


def _as_input(path: Path) -> VideoInput:
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ExtractError(
            f"{path}: not a video file (known suffixes: {', '.join(sorted(VIDEO_SUFFIXES))})"
        )
    return VideoInput(path, normalize_name(path.stem), "video")


def _same_size(
    frames: Iterator[tuple[Path, np.ndarray | None]],
) -> Iterator[np.ndarray | None]:
    """The frames of (source file, frame) pairs, checked to keep the first frame's size."""
    shape = None
    for source, frame in frames:
        if frame is None:
            pass
        elif shape is None:
            shape = frame.shape
        elif frame.shape != shape:
            raise ExtractError(
                f"{source}: frame size {frame.shape[1]}x{frame.shape[0]} differs from the "
                f"first frame's ({shape[1]}x{shape[0]})"
            )
        yield frame


def _decode_video(path: Path, stride: int = 1) -> Iterator[tuple[Path, np.ndarray | None]]:
    av = require("av", "decoding video")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise ExtractError(f"{path}: cannot open the video ({exc})") from exc
    with container:
        if not container.streams.video:
            raise ExtractError(f"{path}: holds no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame-threaded decoding: same frames, faster
        try:
            for i, frame in enumerate(container.decode(stream)):
                yield path, (frame.to_ndarray(format="rgb24") if i % stride == 0 else None)
        except av.error.FFmpegError as exc:
            raise ExtractError(f"{path}: decoding failed ({exc})") from exc


def _read_folder(folder: Path, stride: int = 1) -> Iterator[tuple[Path, np.ndarray | None]]:
    cv2 = require("cv2", "reading frame images")
    files = frame_files(folder)
    if not files:
        raise ExtractError(f"{folder}: holds no frame images")
    for i, file in enumerate(files):
        if i % stride:
            yield file, None
            continue
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if image is None:
            raise ExtractError(f"{file}: not a readable image")
        yield file, np.ascontiguousarray(image[:, :, ::-1])  # OpenCV reads BGR
