"""The index of a dataset on disk that every reader builds, and that `arnet inspect` reports on.

A reader turns its layout into a `Catalog`: one `VideoEntry` per video (name, split, label,
feature files, where it was declared) and every `Problem` it met, without stopping at the
first. The shared steps then run on any catalog (`formats.opening`):

    open_catalog(catalog)                       open feature files (their headers only,
                                                `formats.arrays`), check shapes, attach and
                                                check ground truth (`formats.gtattach`)
    scan_values(catalog)                        read every value, report NaN/Inf (inspect, pack)
    to_datasets(catalog, in_memory)             (train, test) FeatureDatasets, or DataError
                                                listing the problems

A video with an error is marked broken and left out of the checks that depend on it, so one
missing file does not hide the next problem.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import FRAMES_PER_SEGMENT
from .groundtruth import GroundTruth, split_crop, video_name
from .layout import SPLITS

__all__ = [
    "ERROR",
    "KINDS",
    "SPLITS",
    "WARNING",
    "Catalog",
    "DataWarning",
    "Problem",
    "VideoEntry",
    "group_crops",
]

ERROR, WARNING = "error", "warning"

# Problem kinds, stable names that tests and `--json` output rely on.
KINDS = {
    "missing-file": "a listed or expected file does not exist",
    "unreadable": "a file exists but cannot be read as what it should be",
    "dimension": "a video's feature shape differs from the others'",
    "non-finite": "features hold NaN or Inf, or values beyond the float32 range",
    "empty": "a video has 0 segments",
    "gt-length": "ground truth and feature lengths disagree beyond the tail policy",
    "gt-missing": "test videos without frame labels",
    "gt-label": "a video label and its ground truth disagree",
    "duplicate": "two entries have the same video name",
    "unlabelled": "a video in a split has no video label",
    "label-conflict": "a video's label from the list order contradicts its file name",
    "crops": "a video's per-crop files are incomplete or inconsistent",
    "layout": "the layout itself is incomplete (no split, no list, ...)",
    "extraction": "a video's features were extracted with settings other than the dataset's",
    "outside": "an entry (../, an absolute path) reads files outside the dataset's folders",
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
    data_roots: list[Path] = field(default_factory=list)
    """Folders the videos' feature files belong in; an entry reading a file elsewhere is
    reported (`opening.open_catalog`). Empty: the layout names no files (a store)."""
    strict: bool = False
    """Entries reading files outside `data_roots` are errors (and not read), not warnings."""

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
    out: list[tuple[str, list[Path], str]] = []
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
        indices = sorted(i for i in crops if i is not None)  # None is handled above
        if indices != list(range(len(indices))):
            missing = sorted(set(range(max(indices) + 1)) - set(indices))
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
        for name, video_files, origin in out:
            if split_crop(video_files[0].stem)[1] is not None and len(video_files) < usual:
                catalog.error(
                    "crops",
                    origin,
                    f"video {name!r} has crop files 0..{len(video_files) - 1}, but most videos "
                    f"have {usual} crops: crop(s) {list(range(len(video_files), usual))} missing",
                )
                continue
            kept.append((name, video_files, origin))
        out = kept
    return out
