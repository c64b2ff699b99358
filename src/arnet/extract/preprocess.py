"""The preprocessing of the field's I3D features, each step a named, recorded setting.

Per frame: resize so the short side is `short_side` pixels (bilinear, aspect kept); then one
view (`center`: the central `crop_size` square), ten views (`ten`: the four corner squares and
the centre, then the same five mirrored left-right), or the whole resized frame (`full`).
RGB pixels map to [-1, 1] as x / 127.5 - 1. Frames are grouped into non-overlapping
`frames_per_segment`-frame segments; the frames after the last full segment follow `tail`:

- `drop` (default, the reference's rule, SPEC §1): they get no segment. A video of F frames
  has floor(F / 16) segments and evaluation cuts its frame labels to 16 T.
- `pad`: they get a last segment of their own, so every frame is covered: ceil(F / 16)
  segments. Its feature is that of the video's last 16 frames (`tail_fill` `window`: real
  frames, overlapping the segment before), and its score stands for the tail frames only. A
  segment completed by repeating its last frame (`repeat`, arnet before; still what a video
  shorter than one segment gets) is no footage the backbone ever saw: motion stops, frame
  differences vanish, one flow field counts sixteen times; its score could stand far above
  those of every real segment (alerts at the end of videos that had none).

With `frame_stride` k > 1 (frame backbones only, for live use) a segment still spans 16
frames, but only every k-th frame of the video is read, resized and encoded: the segment's
feature pools its 16 / k frames. Segments, frame counts and labels are those of k = 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..config import FRAMES_PER_SEGMENT
from ..errors import ExtractError
from ..videoconfig import CROP_MODES, CROP_SIZE, SHORT_SIDE, TAIL_POLICIES
from .optional import require

# How `pad` completes the last partial segment; records without `tail_fill` were `repeat`.
TAIL_FILLS = ("window", "repeat")


@dataclass(frozen=True)
class Preprocessing:
    """Frame preprocessing and segmenting. Defaults are the field's I3D settings.

    Attributes:
        short_side: the short side after resizing, in pixels; 0 keeps the decoded size.
        crop_size: side of the square crops (`center`, `ten`).
        crop: `center`, `ten` or `full` (the whole resized frame, no crop).
        frames_per_segment: frames per segment (16, the I3D/C3D clip length).
        tail: `drop` or `pad`, the policy for frames after the last full segment.
        frame_stride: encode every k-th frame only (frame backbones); must divide
            frames_per_segment so every segment holds the same number of frames.
        tail_fill: with `pad`, what the last partial segment is made of: `window` (the
            video's last frames_per_segment frames) or `repeat` (its own frames, the last one
            repeated); a video shorter than one segment is always repeated (`segment_frames`).
    """

    short_side: int = SHORT_SIDE
    crop_size: int = CROP_SIZE
    crop: str = CROP_MODES[0]
    frames_per_segment: int = FRAMES_PER_SEGMENT
    tail: str = TAIL_POLICIES[0]
    frame_stride: int = 1
    tail_fill: str = "window"

    def validate(self) -> None:
        """Raise ExtractError naming the first setting that cannot work."""
        if self.crop not in CROP_MODES:
            raise ExtractError(f"crop must be one of {CROP_MODES}, got {self.crop!r}")
        if self.tail not in TAIL_POLICIES:
            raise ExtractError(f"tail must be one of {TAIL_POLICIES}, got {self.tail!r}")
        if self.tail_fill not in TAIL_FILLS:
            raise ExtractError(f"tail_fill must be one of {TAIL_FILLS}, got {self.tail_fill!r}")
        if self.short_side < 0:
            raise ExtractError(f"short_side must be >= 0, got {self.short_side}")
        if self.crop != "full" and self.crop_size < 1:
            raise ExtractError(f"crop_size must be >= 1, got {self.crop_size}")
        if self.short_side and self.crop != "full" and self.crop_size > self.short_side:
            raise ExtractError(
                f"crop_size {self.crop_size} is larger than short_side {self.short_side}"
            )
        if self.frames_per_segment < 1:
            raise ExtractError(f"frames_per_segment must be >= 1, got {self.frames_per_segment}")
        if self.frame_stride < 1 or self.frames_per_segment % self.frame_stride:
            raise ExtractError(
                f"frame_stride must be a divisor of frames_per_segment "
                f"({self.frames_per_segment}), got {self.frame_stride}"
            )

    @property
    def views(self) -> int:
        """Crops per segment: 10 for `ten`, else 1."""
        return 10 if self.crop == "ten" else 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def segment_count(
    frames: int, frames_per_segment: int = FRAMES_PER_SEGMENT, tail: str = "drop"
) -> int:
    """floor(F / L) segments with `drop`, ceil(F / L) with `pad`."""
    if tail == "pad":
        return math.ceil(frames / frames_per_segment)
    return frames // frames_per_segment


def segment_frames(
    frames: int,
    frames_per_segment: int = FRAMES_PER_SEGMENT,
    tail: str = "drop",
    fill: str = "window",
) -> list[list[int]]:
    """The frames (0-based) each segment of a video of `frames` frames is made of.

    Consecutive segments of `frames_per_segment`; then, with `pad` and frames left over, a last
    segment standing for those: the video's last frames_per_segment frames with `fill`
    `window`, or the frames left over and the last one repeated with `repeat` and for a video
    shorter than one segment (it has no other frames).
    """
    length = frames_per_segment
    segments = [list(range(s, s + length)) for s in range(0, frames - length + 1, length)]
    rest = frames - length * len(segments)
    if tail == "pad" and rest:
        if fill == "window" and segments:
            segments.append(list(range(frames - length, frames)))
        else:
            segments.append(list(range(frames - rest, frames)) + [frames - 1] * (length - rest))
    return segments


def kept_frames(frames: Sequence[Any], frames_per_segment: int, stride: int) -> list[Any]:
    """The frames of a segment that the frame stride encodes: those not None (a frame the
    stride skips is None), completed to frames_per_segment / stride by repeating the last one
    (a video shorter than one segment has fewer)."""
    kept = [frame for frame in frames if frame is not None]
    want = frames_per_segment // stride
    return kept + [kept[-1]] * (want - len(kept))


def resize_short_side(frame: np.ndarray, short_side: int) -> np.ndarray:
    """Resize (H, W, C) so that min(H, W) == short_side, keeping the aspect ratio (bilinear).

    Returns the frame itself when short_side is 0 or already met.
    """
    h, w = frame.shape[:2]
    if not short_side or min(h, w) == short_side:
        return frame
    cv2 = require("cv2", "resizing frames")
    scale = short_side / min(h, w)
    size = (max(round(w * scale), short_side), max(round(h * scale), short_side))  # (W, H)
    return cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)


def crop_windows(
    height: int, width: int, crop_size: int, mode: str
) -> list[tuple[int, int, int, int, bool]]:
    """The views of a frame as (top, left, height, width, mirrored) windows.

    `ten` follows torchvision's TenCrop order: top-left, top-right, bottom-left, bottom-right,
    centre, then the same five mirrored.
    """
    if mode == "full":
        return [(0, 0, height, width, False)]
    if crop_size > min(height, width):
        raise ExtractError(
            f"crop_size {crop_size} does not fit a {width}x{height} frame; lower crop_size "
            "or raise short_side"
        )
    c = crop_size
    center = ((height - c) // 2, (width - c) // 2, c, c, False)
    if mode == "center":
        return [center]
    five = [
        (0, 0, c, c, False),
        (0, width - c, c, c, False),
        (height - c, 0, c, c, False),
        (height - c, width - c, c, c, False),
        center,
    ]
    return five + [(t, left, h, w, True) for t, left, h, w, _ in five]


def crop_clips(
    frames: np.ndarray, windows: list[tuple[int, int, int, int, bool]], flow: bool = False
) -> np.ndarray:
    """Cut every window out of a stack of frames.

    Args:
        frames: (N, L, H, W, C) frames of N segments.
        windows: from `crop_windows`.
        flow: the channels are (dx, dy) flow; mirroring a flow field also negates dx, because
            motion to the right becomes motion to the left.

    Returns:
        (N, V, L, h, w, C), V = len(windows).
    """
    views = []
    for top, left, h, w, mirrored in windows:
        view = frames[:, :, top : top + h, left : left + w]
        if mirrored:
            view = view[:, :, :, ::-1]
            if flow:
                view = view * np.array([-1.0, 1.0], dtype=view.dtype)
        views.append(view)
    return np.ascontiguousarray(np.stack(views, axis=1))


def scale_rgb(frames: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [-1, 1] (x / 127.5 - 1), the I3D input range."""
    return frames.astype(np.float32) / 127.5 - 1.0


class Segmenter:
    """Group a stream of per-frame items into segments of L items, per the tail policy
    (`segment_frames`: the same segments as a video of that many frames gets).

    `fresh` holds how many items of the segment just yielded no earlier segment held (L, and
    for a last partial segment its own frames). After iteration, `frames` holds the stream's
    length, `segments` the segments yielded, `overlap` how many items of the last segment the
    one before held too (`pad`, `window`), `padded` how many repeated items completed it
    (`pad`, `repeat`, or a stream shorter than one segment) and `dropped` how many trailing
    items had no segment (`drop`).
    """

    def __init__(self, frames_per_segment: int, tail: str, fill: str = "window") -> None:
        self.length = frames_per_segment
        self.tail = tail
        self.fill = fill
        self.frames = 0
        self.segments = 0
        self.fresh = 0
        self.overlap = 0
        self.padded = 0
        self.dropped = 0

    def __call__(self, items: Iterable[Any]) -> Iterator[list[Any]]:
        current: list[Any] = []
        previous: list[Any] = []
        for item in items:
            self.frames += 1
            current.append(item)
            if len(current) == self.length:
                self.segments += 1
                self.fresh = self.length
                yield current
                previous, current = current, []
        if not current:
            return
        if self.tail != "pad":
            self.dropped = len(current)
            return
        # The last full segment and the rest: a short video of its own, whose last segment
        # this is (what `segment_frames` makes of a video of that many frames).
        window = previous + current
        chosen = segment_frames(len(window), self.length, self.tail, self.fill)[-1]
        self.overlap = sum(1 for i in chosen if i < len(previous))
        self.padded = self.length - len(set(chosen))
        self.fresh = len(current)
        self.segments += 1
        yield [window[i] for i in chosen]
