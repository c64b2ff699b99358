"""Per-frame ground truth: read it from the field's annotation sources, and fit it to features.

A video of F frames cut into 16-frame segments yields T segment features. Ground truth comes
per frame, features per segment, and the two disagree more often than anything else in this
field (an extractor that pads the last clip, a ground truth built at another frame rate, a
feature file from a different cut of the video). This module makes the agreement explicit.

Tail policy (frames that do not fill a last segment), `tail=`:

- ``"drop"`` (default; SPEC §1): the extractor drops the last F mod 16 frames, so
  T = floor(F / 16). A video agrees when 16T <= F <= 16T + 15. The trailing frames carry no
  score and are left out of every metric (the metrics cut frame labels to 16T).
- ``"pad"``: the extractor pads the last, partial clip into one more segment, so
  T = ceil(F / 16). A video agrees when 16T - 15 <= F <= 16T. Its labels are extended to
  16T frames by repeating the label of its last frame, so the padded segment is scored against
  the frames it was cut from.

Anything outside that range is a ground-truth length mismatch, an error.

Sources (`load_ground_truth`):

- a folder of per-video ``VIDEO.npy`` 0/1 arrays (ShanghaiTech ``test_frame_mask/``);
- ``.npz``: one 0/1 array per video, keyed by name (``np.savez``; read without pickle);
- ``.npy`` (1-D): the RTFM/MGFN ``gt-*.npy``: the labels of all test videos concatenated in
  test-list order, 16 per segment; it can only be split given the list's segment counts;
- ``.pickle``/``.pkl``: the AR-Net ``frame_label.pickle`` (read without executing code);
- ``.json``: ``{video: {"frames": F, "anomalous_frames": [[first, last], ...]}}``, 1-based
  inclusive ranges (the UCSD datasets' own convention, as in ``ucsd-ped2/labels.json``);
- a text file of events, either UCF-Crime's ``Temporal_Anomaly_Annotation.txt``
  (``VIDEO.mp4 CLASS s1 e1 s2 e2``, -1 for no event; frames [s, e] inclusive, 0-based, as
  the RTFM ground truth of UCF-Crime was built) or XD-Violence's ``annotations.txt``
  (``VIDEO s1 e1 [s2 e2 ...]``; frames [s, e) half-open, 0-based, as XD-Violence's own
  ``make_gt.py`` builds it). Event files carry no frame count: a video's labels span the 16T
  frames its features cover, and a video missing from the file is normal only when its video
  label says so. An event that starts after the last frame the features can stand for
  (frame 16T + 14 under "drop", 16T - 1 under "pad") is a length mismatch, an error; one that
  only ends past it is clipped, with a warning.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import FRAMES_PER_SEGMENT
from ..errors import DataError
from .pickles import load_pickle

TAIL_POLICIES = ("drop", "pad")

# A crop suffix (`VIDEO__3.npy`) and a backbone tag (`01_0014_i3d.npy`) are not part of the
# video's name: the same video is `01_0014` in a ground-truth file.
_CROP = re.compile(r"^(?P<video>.+)__(?P<crop>\d+)$")
_BACKBONE_TAG = re.compile(r"_(i3d|c3d|clip|rgb|flow)$", re.IGNORECASE)
_VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".npy")


def normalize_name(name: str) -> str:
    """Video names as the reference keys them: UCSD's `Ped` prefix becomes `ped`."""
    return name.strip().replace("Ped", "ped")


def split_crop(stem: str) -> tuple[str, int | None]:
    """`NAME__K` -> (NAME, K); any other stem -> (stem, None)."""
    match = _CROP.match(stem)
    if match is None:
        return stem, None
    return match["video"], int(match["crop"])


def video_name(text: str) -> str:
    """The name a video is known by in every source: file name without folder, extension,
    crop suffix (`__K`) or backbone tag (`_i3d`), with UCSD's `Ped` as `ped`.

    >>> video_name("/data/SH_Test_ten_crop_i3d/01_0014_i3d.npy")
    '01_0014'
    >>> video_name("Abuse028_x264.mp4")
    'Abuse028_x264'
    """
    name = text.strip().replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in _VIDEO_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    name, _ = split_crop(name)
    name = _BACKBONE_TAG.sub("", name)
    return normalize_name(name)


def label_from_name(name: str) -> int | None:
    """A video label from the naming conventions of the public datasets, or None.

    - XD-Violence: ``..._label_A`` is normal, any other ``_label_X`` anomalous.
    - UCF-Crime: ``Normal_Videos...`` is normal, ``<Class><NNN>_x264`` anomalous.
    - ShanghaiTech: ``SS_NNN`` (3 digits) is normal, ``SS_NNNN`` (4 digits) anomalous.
    """
    xd = re.search(r"_label_([A-Za-z0-9]+)", name)
    if xd:
        return 0 if xd.group(1) == "A" else 1
    if name.startswith("Normal_Videos") or name.startswith("Normal_videos"):
        return 0
    if re.fullmatch(r"[A-Za-z]+\d+_x264", name):
        return 1
    if re.fullmatch(r"\d{2}_\d{3}", name):
        return 0
    if re.fullmatch(r"\d{2}_\d{4}", name):
        return 1
    return None


def frame_range(
    n_segments: int, tail: str, frames_per_segment: int = FRAMES_PER_SEGMENT
) -> tuple[int, int]:
    """The frame counts F (inclusive bounds) that agree with T segments under a tail policy."""
    covered = frames_per_segment * n_segments
    if tail == "drop":
        return covered, covered + frames_per_segment - 1
    if tail == "pad":
        return max(covered - frames_per_segment + 1, 1), covered
    raise ValueError(f"unknown tail policy {tail!r}; choose one of {TAIL_POLICIES}")


def frame_count_mismatch(
    n_frames: int, n_segments: int, tail: str = "drop", frames_per_segment: int = FRAMES_PER_SEGMENT
) -> str | None:
    """None when F frames agree with T segments under the tail policy, else why not."""
    lo, hi = frame_range(n_segments, tail, frames_per_segment)
    if lo <= n_frames <= hi:
        return None
    return (
        f"has {n_frames} frame labels, but its {n_segments} segments need {lo}..{hi} under "
        f"the {tail!r} tail policy ({frames_per_segment} frames per segment)"
    )


def fit_frame_labels(
    labels: np.ndarray,
    n_segments: int,
    tail: str = "drop",
    frames_per_segment: int = FRAMES_PER_SEGMENT,
    video: str = "?",
    source: str = "?",
) -> np.ndarray:
    """Check a video's frame labels against its segment count and apply the tail policy.

    Args:
        labels: (F,) 0/1 labels of the video's frames.
        n_segments: T, the video's segment features.
        tail: "drop" or "pad" (module docstring).
        frames_per_segment: frames behind each segment.
        video, source: for the error message.

    Returns:
        (F,) uint8 labels ("drop": unchanged, the metrics use the first 16T), or (16T,) with
        the last label repeated ("pad").

    Raises:
        DataError: F outside the range the policy allows, naming the source and the video.
    """
    labels = np.asarray(labels).reshape(-1).astype(np.uint8)
    mismatch = frame_count_mismatch(labels.size, n_segments, tail, frames_per_segment)
    if mismatch:
        raise DataError(f"{source}: video {video!r} {mismatch}")
    if tail == "pad" and labels.size < frames_per_segment * n_segments:
        labels = np.concatenate(
            [labels, np.full(frames_per_segment * n_segments - labels.size, labels[-1], np.uint8)]
        )
    return labels


@dataclass
class GroundTruth:
    """Frame ground truth as read from one source, before it meets the features.

    Exactly one of `frames`, `concatenated` and `events` is set.

    Attributes:
        source: the file or folder it came from.
        frames: video -> (F,) 0/1 labels with the video's true frame count F.
        concatenated: (sum 16 T_i,) labels of the test videos in list order.
        events: video -> half-open [start, end) frame spans of its anomalies.
        problems: (line, message) of entries that could not be read.
    """

    source: str
    frames: dict[str, np.ndarray] | None = None
    concatenated: np.ndarray | None = None
    events: dict[str, list[tuple[int, int]]] | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    """video -> the file its labels come from, where that is not `source` (a masks folder)."""

    def origin(self, video: str) -> str:
        """The file to name in a message about `video`'s ground truth."""
        return self.files.get(video, self.source)

    @property
    def kind(self) -> str:
        if self.frames is not None:
            return "per-video"
        return "concatenated" if self.concatenated is not None else "events"

    def names(self) -> set[str]:
        """Videos the source names (empty for a concatenated source)."""
        return set(self.frames or self.events or {})


def _check_binary(labels: np.ndarray, where: str) -> np.ndarray:
    flat = np.asarray(labels).reshape(-1)
    if flat.size and not np.isin(flat, (0, 1)).all():
        first = int(np.flatnonzero(~np.isin(flat, (0, 1)))[0])
        raise DataError(
            f"{where}: frame labels must be 0 or 1, found {flat[first].item()!r} at frame {first}"
        )
    return flat.astype(np.uint8)


def ground_truth_from_mapping(
    mapping: Mapping[Any, Any], source: str | Path, rename: Callable[[str], str] = video_name
) -> GroundTruth:
    """Per-video ground truth from a dict of video -> 0/1 frame labels.

    Args:
        mapping: video name -> (F,) labels.
        source: where it was read from, for messages.
        rename: how keys become video names (default `video_name`).
    """
    gt = GroundTruth(str(source), frames={})
    assert gt.frames is not None
    for key, value in mapping.items():
        name = rename(str(key))
        try:
            gt.frames[name] = _check_binary(np.asarray(value), f"{source}[{key}]")
        except (DataError, ValueError, TypeError) as exc:
            gt.problems.append((f"{source}[{key}]", str(exc)))
    return gt


def _from_folder(folder: Path) -> GroundTruth:
    gt = GroundTruth(str(folder), frames={})
    assert gt.frames is not None
    files = sorted(folder.glob("*.npy"))
    if not files:
        raise DataError(f"{folder}: no per-video .npy frame masks in this folder")
    for path in files:
        try:
            labels = np.load(path, allow_pickle=False)
            name = video_name(path.name)
            gt.frames[name] = _check_binary(labels, str(path))
            gt.files[name] = str(path)
        except Exception as exc:
            gt.problems.append((str(path), f"cannot read frame mask ({exc})"))
    return gt


def _from_json(path: Path) -> GroundTruth:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected an object of video -> {{frames, anomalous_frames}}")
    gt = GroundTruth(str(path), frames={})
    assert gt.frames is not None
    for key, entry in data.items():
        where = f"{path}[{key}]"
        try:
            frames = int(entry["frames"])
            labels = np.zeros(frames, np.uint8)
            for first, last in entry.get("anomalous_frames", []):
                if not 1 <= int(first) <= int(last) <= frames:
                    raise ValueError(f"range [{first}, {last}] outside frames 1..{frames}")
                labels[int(first) - 1 : int(last)] = 1
        except (KeyError, TypeError, ValueError) as exc:
            gt.problems.append((where, f"expected {{frames, anomalous_frames}}: {exc}"))
            continue
        gt.frames[video_name(str(key))] = labels
    return gt


def _from_events(path: Path) -> GroundTruth:
    """UCF-Crime or XD-Violence event annotations (module docstring)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: not a text file of events, nor of a known ground-truth suffix "
            f"(.npy, .npz, .pickle, .pkl, .json, or a folder of masks) ({exc})"
        ) from exc
    gt = GroundTruth(str(path), events={})
    assert gt.events is not None
    for number, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        where = f"{path}:{number}"
        name, rest = video_name(tokens[0]), tokens[1:]
        ucf = bool(rest) and not _is_int(rest[0])
        numbers = rest[1:] if ucf else rest
        if not numbers or not all(_is_int(x) for x in numbers) or len(numbers) % 2:
            gt.problems.append((where, f"expected VIDEO [CLASS] START END ..., got {line!r}"))
            continue
        spans: list[tuple[int, int]] = []
        for start, end in zip(numbers[::2], numbers[1::2]):
            s, e = int(start), int(end)
            if s == -1 and e == -1:
                continue
            e = e + 1 if ucf else e  # UCF-Crime ends are inclusive
            if s < 0 or e <= s:
                gt.problems.append((where, f"event [{start}, {end}] of {name!r} is empty"))
                continue
            spans.append((s, e))
        if name in gt.events:
            gt.problems.append((where, f"video {name!r} is annotated twice"))
        gt.events[name] = spans
    return gt


def _is_int(text: str) -> bool:
    return re.fullmatch(r"-?\d+", text) is not None


def load_ground_truth(path: str | Path) -> GroundTruth:
    """Read frame ground truth from any supported source (module docstring).

    Raises:
        DataError: the source is missing or cannot be read at all. Entries that cannot be read
            are collected in `GroundTruth.problems` instead.
    """
    path = Path(path)
    if path.is_dir():
        return _from_folder(path)
    if not path.is_file():
        raise DataError(f"{path}: ground truth not found")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                return ground_truth_from_mapping({k: data[k] for k in data.files}, path)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{path}: not a readable .npz of frame labels ({exc})") from exc
    if suffix == ".npy":
        try:
            labels = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise DataError(f"{path}: not a readable .npy of frame labels ({exc})") from exc
        if labels.ndim != 1:
            raise DataError(f"{path}: concatenated frame labels must be 1-D, got {labels.shape}")
        return GroundTruth(str(path), concatenated=_check_binary(labels, str(path)))
    if suffix in (".pickle", ".pkl"):
        value = load_pickle(path)
        if not isinstance(value, Mapping):
            raise DataError(f"{path}: expected a dict of video -> frame labels")
        return ground_truth_from_mapping(value, path)
    if suffix == ".json":
        return _from_json(path)
    return _from_events(path)


def event_labels(
    spans: list[tuple[int, int]],
    n_segments: int,
    tail: str = "drop",
    frames_per_segment: int = FRAMES_PER_SEGMENT,
) -> tuple[np.ndarray, list[tuple[bool, str]]]:
    """Frame labels of the 16T frames T segments cover, from half-open event spans.

    Returns:
        (16T,) uint8 labels, and (is_error, message) notes on spans reaching past the last frame
        the features can stand for under the tail policy: an error when a span starts there
        (the features are shorter than the annotated video), a warning when only its end does
        (the span is clipped).
    """
    covered = frames_per_segment * n_segments
    _, most = frame_range(n_segments, tail, frames_per_segment)
    last = most - 1  # the last frame index of a video with the most frames T segments allow
    labels = np.zeros(covered, np.uint8)
    notes = []
    for start, end in spans:
        if start > last:
            notes.append(
                (
                    True,
                    f"event at frames [{start}, {end}) starts after frame {last}, the last one "
                    f"{n_segments} segments can stand for under the {tail!r} tail policy",
                )
            )
            continue
        if end > last + 1:
            notes.append(
                (
                    False,
                    f"event at frames [{start}, {end}) runs past frame {last}, the last one "
                    f"{n_segments} segments can stand for; clipped",
                )
            )
        labels[start : min(end, covered)] = 1
    return labels, notes
