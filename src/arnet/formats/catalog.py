"""The index of a dataset on disk that every reader builds, and that `arnet inspect` reports on.

A reader turns its layout into a `Catalog`: one `VideoEntry` per video (name, split, label,
feature files, where it was declared) and every `Problem` it met, without stopping at the
first. The shared steps then run on any catalog:

    open_catalog(catalog)                       open feature files (their headers only),
                                                check shapes, attach and check ground truth
                                                (under `catalog.tail`, the tail policy)
    scan_values(catalog)                        read every value, report NaN/Inf (inspect, pack)
    to_datasets(catalog, in_memory)             (train, test) FeatureDatasets, or DataError
                                                listing the problems

A video with an error is marked broken and left out of the checks that depend on it, so one
missing file does not hide the next problem.
"""

from __future__ import annotations

import threading
import warnings
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import FRAMES_PER_SEGMENT
from ..data import DataError, FeatureDataset
from .groundtruth import (
    GroundTruth,
    event_labels,
    fit_frame_labels,
    frame_count_mismatch,
    load_ground_truth,
    split_crop,
    video_name,
)

ERROR, WARNING = "error", "warning"
SPLITS = ("train", "test")

# Problem kinds, stable names that tests and `--json` output rely on.
KINDS = {
    "missing-file": "a listed or expected file does not exist",
    "unreadable": "a file exists but cannot be read as what it should be",
    "dimension": "a video's feature shape differs from the others'",
    "non-finite": "features hold NaN or Inf",
    "empty": "a video has 0 segments",
    "gt-length": "ground truth and feature lengths disagree beyond the tail policy",
    "gt-missing": "test videos without frame labels",
    "gt-label": "a video label and its ground truth disagree",
    "duplicate": "two entries have the same video name",
    "unlabelled": "a video in a split has no video label",
    "label-conflict": "a video's label from the list order contradicts its file name",
    "crops": "a video's per-crop files are incomplete or inconsistent",
    "layout": "the layout itself is incomplete (no split, no list, ...)",
}


class DataWarning(UserWarning):
    """Something in a dataset looks wrong but does not stop it from loading."""


@dataclass
class Problem:
    """One thing wrong with a dataset.

    Attributes:
        severity: "error" (the dataset cannot be used as is) or "warning".
        kind: one of `KINDS`.
        source: the file (or file:line) at fault.
        message: what is wrong, naming the video.
    """

    severity: str
    kind: str
    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity} [{self.kind}] {self.source}: {self.message}"


@dataclass
class VideoEntry:
    """One video as a layout declares it.

    Attributes:
        name: the video's name (see `groundtruth.video_name`).
        split: "train" or "test".
        label: 1 anomalous, 0 normal, None when the layout gives none.
        files: its feature file, or one file per crop in crop order.
        origin: where the video is declared (a list line, a folder) for messages.
        features: after `open_catalog`, (T, D) or (T, C, D), read lazily (`NpyFile`).
        frame_labels: after `open_catalog`, its frame labels or None.
        broken: an error was found; the video is left out of later checks.
        offset: its first row in `Catalog.block`, when the catalog has one.
        where: how to name its features in messages, when not by its files.
    """

    name: str
    split: str
    label: int | None
    files: list[Path]
    origin: str
    features: Any = None
    frame_labels: np.ndarray | None = None
    broken: bool = False
    offset: int | None = None
    where: str | None = None

    @property
    def source(self) -> str:
        """The feature file(s), as one string for messages."""
        if self.where is not None:
            return self.where
        if len(self.files) == 1:
            return str(self.files[0])
        stem, _ = split_crop(self.files[0].stem)
        return str(self.files[0].with_name(f"{stem}__{{0..{len(self.files) - 1}}}.npy"))

    @property
    def segments(self) -> int:
        """T, once opened (0 before)."""
        return 0 if self.features is None else int(self.features.shape[0])


@dataclass
class Catalog:
    """Everything a reader found: videos, problems, and notes on what it looked at."""

    format: str
    root: Path
    videos: list[VideoEntry] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ground_truth: GroundTruth | None = None
    tail: str = "drop"
    frames_per_segment: int = FRAMES_PER_SEGMENT
    labels_from_gt: set[str] = field(default_factory=set)
    """Splits whose unlabelled videos take their label from the ground truth."""
    label_hint: str = ""
    """How to give the labels this layout lacks, appended to `unlabelled` errors."""
    block: np.ndarray | None = None
    """The one array every video is a view of (a packed store), else None."""

    def add(self, severity: str, kind: str, source: str | Path, message: str) -> None:
        """Record a problem of a known kind."""
        if kind not in KINDS:
            raise ValueError(f"unknown problem kind {kind!r}")
        self.problems.append(Problem(severity, kind, str(source), message))

    def report(self, kind: str, source: str | Path, exc: Exception) -> None:
        """Record an exception as an error, without repeating its leading `source: `."""
        message = str(exc)
        prefix = f"{source}: "
        self.error(kind, source, message[len(prefix) :] if message.startswith(prefix) else message)

    def error(self, kind: str, source: str | Path, message: str) -> None:
        self.add(ERROR, kind, source, message)

    def warn(self, kind: str, source: str | Path, message: str) -> None:
        self.add(WARNING, kind, source, message)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    def split(self, split: str) -> list[VideoEntry]:
        """The videos of a split, in declaration order."""
        return [v for v in self.videos if v.split == split]

    def usable(self) -> list[VideoEntry]:
        """The videos without errors."""
        return [v for v in self.videos if not v.broken]


# ---------------------------------------------------------------------- crops as one array


class CropStack:
    """Per-crop (T, D) arrays seen as one (T, C, D) array, without copying them.

    Per-crop layouts keep each crop of a video in its own file. Stacking them would read every
    file into memory; this view reads only the rows asked for. It supports what the data path
    uses: `shape`, `ndim`, `dtype`, `len()`, `x[rows]`, `x[rows, crop]` and `np.asarray(x)`.
    """

    def __init__(self, crops: Sequence[np.ndarray]) -> None:
        self.crops = list(crops)
        length, dim = self.crops[0].shape
        self.shape = (length, len(self.crops), dim)
        self.ndim = 3
        self.dtype = self.crops[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple) and len(key) == 2 and isinstance(key[1], (int, np.integer)):
            return np.asarray(self.crops[int(key[1])][key[0]])
        if isinstance(key, tuple):
            return np.asarray(self)[key]
        parts = [np.asarray(c[key]) for c in self.crops]
        return np.stack(parts, axis=parts[0].ndim - 1)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.stack([np.asarray(c) for c in self.crops], axis=1)
        return out if dtype is None else out.astype(dtype, copy=False)


# ---------------------------------------------------------------------- feature files


def _map_budget() -> int:
    """A quarter of the open files the process may have, within [16, 4096]."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # no `resource` on Windows
        return 256
    return 4096 if soft == resource.RLIM_INFINITY else max(16, min(4096, soft // 4))


MAX_MAPPED = _map_budget()
"""Feature files kept memory-mapped at a time, over all `NpyFile`s (each map holds a file open)."""
_mapped: OrderedDict[NpyFile, np.memmap] = OrderedDict()
_mapped_lock = threading.Lock()


class NpyFile:
    """A `.npy` feature file, read lazily, without holding the file open between reads.

    A memory map keeps its file open, so mapping every video's file when a catalog is opened
    takes one file descriptor per video: the per-crop folders of UCF-Crime or XD-Violence
    exceed the usual limit of 1024. An NpyFile keeps the header (shape, dtype, where the data
    starts) and maps the file when read, through a cache of the `MAX_MAPPED` most recently
    read files; reads return copies, so no map outlives its place in the cache. Mapping a file
    again costs about 0.1 ms: a dataset of many more files than that trains faster packed
    (`arnet pack`) or in memory. It supports what `CropStack` does.
    """

    def __init__(self, path: Path, mapped: np.memmap) -> None:
        self.path = path
        self.shape = mapped.shape
        self.ndim = mapped.ndim
        self.dtype = mapped.dtype
        self._offset = mapped.offset
        self._order = "C" if mapped.flags.c_contiguous else "F"

    def __len__(self) -> int:
        return self.shape[0]

    def _map(self) -> np.memmap:
        with _mapped_lock:
            mapped = _mapped.pop(self, None)
            if mapped is None:
                try:
                    mapped = np.memmap(
                        self.path, self.dtype, "r", self._offset, self.shape, self._order
                    )
                except (OSError, ValueError) as exc:
                    raise DataError(f"{self.path}: cannot read features ({exc})") from exc
            _mapped[self] = mapped
            while len(_mapped) > MAX_MAPPED:
                _mapped.popitem(last=False)
        return mapped

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.array(self._map()[key])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.array(self._map(), dtype=dtype)


# ---------------------------------------------------------------------- declaring videos


def group_crops(
    catalog: Catalog, files: Iterable[tuple[Path, str]]
) -> list[tuple[str, list[Path], str]]:
    """Group feature files into videos: `NAME__K.npy` files are the crops of video NAME.

    Args:
        catalog: where problems go.
        files: (path, origin) pairs in declaration order.

    Returns:
        (video name, files in crop order, origin of its first file), in order of first
        appearance. A video whose crop indices are not 0..C-1 is reported and left out.
    """
    videos: dict[str, dict[int | None, tuple[Path, str]]] = {}
    for path, origin in files:
        name = video_name(path.name)
        _, crop = split_crop(path.stem)
        crops = videos.setdefault(name, {})
        if crop in crops:
            catalog.error(
                "duplicate",
                origin,
                f"video {name!r}{'' if crop is None else f' crop {crop}'} is also declared at "
                f"{crops[crop][1]}",
            )
            continue
        crops[crop] = (path, origin)
    out = []
    for name, crops in videos.items():
        first_origin = next(iter(crops.values()))[1]
        if None in crops:
            if len(crops) > 1:
                catalog.error(
                    "crops", first_origin, f"video {name!r} has both a whole file and crop files"
                )
                continue
            out.append((name, [crops[None][0]], first_origin))
            continue
        indices = sorted(crops)  # type: ignore[type-var]
        if indices != list(range(len(indices))):
            missing = sorted(set(range(max(indices) + 1)) - set(indices))  # type: ignore[arg-type]
            catalog.error(
                "crops",
                first_origin,
                f"video {name!r} has crop files {indices}: crop(s) {missing} missing",
            )
            continue
        out.append((name, [crops[i][0] for i in indices], first_origin))
    # A video short of its last crop files still numbers them 0..C'-1: compare with the others.
    counts = Counter(len(files) for _, files, _ in out if split_crop(files[0].stem)[1] is not None)
    if len(counts) > 1:
        usual = counts.most_common(1)[0][0]
        kept = []
        for name, files, origin in out:
            if split_crop(files[0].stem)[1] is not None and len(files) < usual:
                catalog.error(
                    "crops",
                    origin,
                    f"video {name!r} has crop files 0..{len(files) - 1}, but most videos have "
                    f"{usual} crops: crop(s) {list(range(len(files), usual))} missing",
                )
                continue
            kept.append((name, files, origin))
        out = kept
    return out


# ---------------------------------------------------------------------- opening


def _open_array(catalog: Catalog, path: Path, video: VideoEntry) -> Any:
    """A feature file as an `NpyFile` (an array in memory where it cannot be mapped), or None
    when it cannot be read (reported)."""
    if not path.is_file():
        catalog.error("missing-file", path, f"feature file of video {video.name!r} not found")
        return None
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError:
        # Object arrays and 0-byte arrays cannot be memory-mapped: load to tell them apart.
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            if "allow_pickle" not in str(exc):
                catalog.error("unreadable", path, f"cannot read features of {video.name!r} ({exc})")
                return None
            catalog.error(
                "unreadable",
                path,
                f"features of video {video.name!r} are a pickled object array; arnet never "
                "unpickles feature files: re-save them as a numeric array "
                "(np.save(path, np.asarray(features, dtype=np.float32)))",
            )
            return None
        except Exception as exc:
            catalog.error("unreadable", path, f"cannot read features of {video.name!r} ({exc})")
            return None
    except Exception as exc:
        catalog.error("unreadable", path, f"cannot read features of {video.name!r} ({exc})")
        return None
    if not isinstance(array, np.ndarray):  # a .npz archive under a .npy name: an NpzFile
        array.close()
        catalog.error(
            "unreadable",
            path,
            f"features of {video.name!r} are a .npz archive, not one .npy array",
        )
        return None
    if array.dtype.kind != "f":
        catalog.error(
            "unreadable", path, f"features of {video.name!r} have dtype {array.dtype}, not float"
        )
        return None
    # Keep the header, not the map: a map holds its file open (one descriptor per video).
    return NpyFile(path, array) if isinstance(array, np.memmap) else array


def _open_video(catalog: Catalog, video: VideoEntry) -> Any:
    arrays = [_open_array(catalog, p, video) for p in video.files]
    if any(a is None for a in arrays):
        return None
    if len(arrays) == 1:
        array = arrays[0]
        if array.ndim not in (2, 3):
            catalog.error(
                "dimension",
                video.files[0],
                f"features of video {video.name!r} have shape {array.shape}; expected "
                "(segments, dim) or (segments, crops, dim)",
            )
            return None
        return array
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1 or arrays[0].ndim != 2:
        catalog.error(
            "crops",
            video.source,
            f"the crops of video {video.name!r} have shapes {[a.shape for a in arrays]}; "
            "each crop file must be (segments, dim) and all of one shape",
        )
        return None
    return CropStack(arrays)


def open_catalog(catalog: Catalog) -> Catalog:
    """Open every video's features and check what can be checked without reading values.

    Reports duplicates, unlabelled videos, missing/unreadable files, empty videos, feature
    shapes that differ from the rest, and ground truth that does not fit (see
    `apply_ground_truth`).

    Args:
        catalog: a reader's catalog, modified in place.

    Returns:
        The same catalog.
    """
    seen: dict[str, VideoEntry] = {}
    for video in catalog.videos:
        if video.name in seen:
            other = seen[video.name]
            where = (
                "in both splits"
                if other.split != video.split
                else f"twice in the {video.split} split"
            )
            catalog.error(
                "duplicate",
                video.origin,
                f"video {video.name!r} appears {where} (also at {other.origin})",
            )
            video.broken = True
            continue
        seen[video.name] = video
        if video.label is None and not video.broken and video.split not in catalog.labels_from_gt:
            _unlabelled(catalog, video)

    for video in catalog.videos:
        if video.broken or video.features is not None:  # a packed store opens its own
            continue
        video.features = _open_video(catalog, video)
        if video.features is None:
            video.broken = True
        elif video.features.shape[0] == 0:
            catalog.error("empty", video.source, f"video {video.name!r} has 0 segments")
            video.broken = True
    _check_shapes(catalog)
    apply_ground_truth(catalog)
    for video in catalog.videos:
        if video.label is None and not video.broken:
            if video.frame_labels is None:
                _unlabelled(catalog, video)
            else:  # e.g. an RTFM test list: a video is anomalous when any frame it covers is
                covered = video.frame_labels[: catalog.frames_per_segment * video.segments]
                video.label = int(covered.any())
    return catalog


def _unlabelled(catalog: Catalog, video: VideoEntry) -> None:
    hint = f" ({catalog.label_hint})" if catalog.label_hint else ""
    catalog.error(
        "unlabelled",
        video.origin,
        f"video {video.name!r} is in the {video.split} split but has no video label{hint}",
    )
    video.broken = True


def _check_shapes(catalog: Catalog) -> None:
    """All videos share the feature dimension D; within a split, the crop count C."""
    opened = [v for v in catalog.videos if v.features is not None and not v.broken]
    if not opened:
        return
    dims = Counter(int(v.features.shape[-1]) for v in opened)
    dim = dims.most_common(1)[0][0]
    for split in SPLITS:
        in_split = [v for v in opened if v.split == split]
        kinds = Counter(tuple(v.features.shape[1:-1]) for v in in_split)
        crops = kinds.most_common(1)[0][0] if kinds else ()
        for video in in_split:
            shape = tuple(video.features.shape[1:])
            if shape[-1] != dim or shape[:-1] != crops:
                expected = (*crops, dim)
                catalog.error(
                    "dimension",
                    video.source,
                    f"video {video.name!r} has {shape} features per segment, but most "
                    f"{split} videos have {expected}",
                )
                video.broken = True


def read_ground_truth(catalog: Catalog, path: str | Path) -> None:
    """Make the source at `path` the catalog's ground truth (`groundtruth.load_ground_truth`),
    or report it missing or unreadable."""
    path = Path(path)
    try:
        catalog.ground_truth = load_ground_truth(path)
    except DataError as exc:
        catalog.report("missing-file" if not path.exists() else "unreadable", path, exc)
        return
    catalog.notes.append(f"ground truth: {path} ({catalog.ground_truth.kind})")


def apply_ground_truth(catalog: Catalog) -> None:
    """Attach frame labels to the videos and check each against its segment count.

    Per-video labels with a frame count are checked with `fit_frame_labels`; event annotations
    become labels over the covered frames; a concatenated array is split in test-list order
    at 16 T_i labels per video. Test videos the source does not cover are reported.
    """
    gt = catalog.ground_truth
    fps, tail = catalog.frames_per_segment, catalog.tail
    tests = catalog.split("test")
    if gt is None:
        if tests:
            catalog.warn(
                "gt-missing",
                catalog.root,
                f"no frame ground truth: the {len(tests)} test videos cannot be evaluated "
                "(give one with --gt)",
            )
        return
    for where, message in gt.problems:
        catalog.error("unreadable", where, message)
    if gt.concatenated is not None and not _split_concatenated(catalog, gt):
        return
    for video in catalog.videos:
        if video.broken:
            continue
        T = video.segments
        if gt.concatenated is not None:
            pass  # the test videos got their slices above, each exactly 16 T long
        elif gt.frames is not None and video.name in gt.frames:
            labels = gt.frames[video.name]
            mismatch = frame_count_mismatch(labels.size, T, tail, fps)
            if mismatch:
                catalog.error(
                    "gt-length",
                    gt.origin(video.name),
                    f"video {video.name!r} ({video.source}) {mismatch}",
                )
                video.broken = True
                continue
            video.frame_labels = fit_frame_labels(labels, T, tail, fps)
        elif gt.events is not None and (video.name in gt.events or video.split == "test"):
            spans = gt.events.get(video.name)
            if spans is None:
                if video.label != 0:
                    catalog.error(
                        "gt-missing",
                        gt.source,
                        f"test video {video.name!r} has no annotation (only videos labelled "
                        "normal may be left out of an event list)",
                    )
                    video.broken = True
                    continue
                spans = []  # XD-Violence lists only the videos with events
            labels, notes = event_labels(spans, T, tail, fps)
            for is_error, text in notes:
                catalog.add(
                    ERROR if is_error else WARNING,
                    "gt-length",
                    gt.source,
                    f"video {video.name!r}: {text}",
                )
                video.broken = video.broken or is_error
            video.frame_labels = labels
        if video.frame_labels is not None:
            _check_label_agreement(catalog, video, gt.origin(video.name))
    missing = [v for v in tests if v.frame_labels is None and not v.broken]
    for video in missing:
        catalog.error(
            "gt-missing",
            gt.source,
            f"test video {video.name!r} ({video.source}) has no frame labels in it",
        )
        video.broken = True
    if gt.frames is not None:
        # A ground truth of a larger set than the splits use is normal (a subset split): a note
        # for `arnet inspect`, not a problem.
        extra = sorted(gt.names() - {v.name for v in catalog.videos})
        if extra:
            shown = ", ".join(repr(n) for n in extra[:5])
            catalog.notes.append(
                f"{len(extra)} video(s) of the ground truth are in no split: {shown}"
                + (" ..." if len(extra) > 5 else "")
            )


def _split_concatenated(catalog: Catalog, gt: GroundTruth) -> bool:
    """Cut a concatenated ground truth into the test videos' frame labels; False when it
    cannot be (reported)."""
    fps = catalog.frames_per_segment
    tests = catalog.split("test")
    if any(v.broken for v in tests):
        catalog.warn(
            "gt-length",
            gt.source,
            "not checked: a concatenated ground truth is cut by the segment counts of all test "
            "videos in list order, and some test videos are unreadable",
        )
        return False
    need = fps * sum(v.segments for v in tests)
    labels = gt.concatenated
    if labels.size != need:
        catalog.error(
            "gt-length",
            gt.source,
            f"holds {labels.size} frame labels, but the {len(tests)} test videos' segments "
            f"cover {need} frames ({fps} per segment, in test-list order)",
        )
        for video in tests:
            video.broken = True
        return False
    start = 0
    for video in tests:
        end = start + fps * video.segments
        video.frame_labels = labels[start:end]
        start = end
    return True


def _check_label_agreement(catalog: Catalog, video: VideoEntry, source: str) -> None:
    covered = video.frame_labels[: catalog.frames_per_segment * video.segments]
    anomalous_frames = int(covered.sum())
    if video.label == 1 and anomalous_frames == 0 and video.split == "test":
        catalog.warn(
            "gt-label",
            source,
            f"video {video.name!r} is labelled anomalous, but no frame it covers is anomalous",
        )
    elif video.label == 0 and anomalous_frames:
        catalog.warn(
            "gt-label",
            source,
            f"video {video.name!r} is labelled normal, but {anomalous_frames} of its frames are "
            "anomalous",
        )


# ---------------------------------------------------------------------- values


def scan_values(catalog: Catalog, rows_per_read: int = 4096) -> None:
    """Read every feature value once and report videos holding NaN or Inf."""
    for video in catalog.usable():
        bad, first = 0, None
        for start in range(0, video.segments, rows_per_read):
            chunk = np.asarray(video.features[start : start + rows_per_read])
            finite = np.isfinite(chunk).reshape(chunk.shape[0], -1).all(axis=1)
            if not finite.all():
                if first is None:
                    first = start + int(np.flatnonzero(~finite)[0])
                bad += int((~np.isfinite(chunk)).sum())
        if bad:
            catalog.error(
                "non-finite",
                video.source,
                f"video {video.name!r} holds {bad} NaN/Inf value(s), first at segment {first}",
            )
            video.broken = True


# ---------------------------------------------------------------------- datasets


def describe_problems(problems: Sequence[Problem], limit: int = 5) -> str:
    """Problems as lines, at most `limit` of them."""
    lines = [str(p) for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit} more")
    return "\n".join(lines)


def raise_on_errors(catalog: Catalog) -> None:
    """Raise DataError listing the catalog's errors; issue its warnings as DataWarning."""
    for problem in catalog.warnings:
        warnings.warn(str(problem), DataWarning, stacklevel=3)
    errors = catalog.errors
    if errors:
        head = errors[0]
        raise DataError(
            f"{head.source}: {head.message}"
            + (
                f"\n{len(errors)} problems in {catalog.root} ({catalog.format} layout):\n"
                f"{describe_problems(errors)}\n(`arnet inspect` lists them all)"
                if len(errors) > 1
                else ""
            )
        )


def to_datasets(catalog: Catalog, in_memory: bool = False) -> tuple[FeatureDataset, FeatureDataset]:
    """(train, test) FeatureDatasets of an opened catalog.

    Videos of a catalog with a `block` (a packed store) stay views of it, gathered from with
    one vectorised take per batch.

    Args:
        catalog: opened with `open_catalog`.
        in_memory: copy the features into one in-memory block (checks NaN/Inf once); a
            catalog with a `block` is left as its reader opened it.

    Raises:
        DataError: when the catalog holds errors (the first, with a summary of the rest), or a
            split has no video.
    """
    raise_on_errors(catalog)
    out = []
    for split in SPLITS:
        videos = catalog.split(split)
        if not videos:
            raise DataError(f"{catalog.root}: the {split} split has no videos")
        dataset = FeatureDataset(
            [v.name for v in videos],
            [v.label for v in videos],
            [v.features for v in videos],
            [v.frame_labels for v in videos],
            [v.source for v in videos],
            block=catalog.block,
            offsets=None if catalog.block is None else [v.offset for v in videos],
        )
        if in_memory and catalog.block is None:
            dataset = dataset.to_memory()
        out.append(dataset)
    return out[0], out[1]
