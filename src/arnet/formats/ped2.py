"""Frame datasets in the layout of the UCSD Ped2 folder: frames, `labels.json`, split files.

```
ROOT/frames/VIDEO/000.jpg, 001.jpg, ...       one folder of frame images per video
ROOT/labels.json     {VIDEO: {"frames": F, "anomalous_frames": [[first, last], ...]}}
ROOT/splits/weak_train.txt, weak_test.txt     one video name per line
```

Anomalous frame ranges are 1-based and inclusive, as in the dataset's own `UCSDped2.m`; a
video is anomalous iff it has a range. The same `labels.json` format serves any dataset:
`arnet extract --labels FILE` reads it to write the AR-Net ground truth.

`catalog_ped2` joins such a folder with features extracted from it (`arnet extract ROOT --out
DATA`) into a catalogue like every other layout's; `load_ped2` opens it into the (train, test)
FeatureDatasets that training and evaluation take.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import FRAMES_PER_SEGMENT
from ..data.dataset import FeatureDataset
from ..errors import DataError
from .catalog import SPLITS, Catalog, VideoEntry
from .groundtruth import GroundTruth, normalize_name
from .layout import backbone_folder, extraction_record, feature_folder, feature_path, read_split
from .opening import open_catalog, to_datasets

LABELS_FILE = "labels.json"
FRAMES_DIR = "frames"
SPLITS_DIR = "splits"
WEAK_SPLITS = {"train": "weak_train", "test": "weak_test"}


@dataclass(frozen=True)
class FrameAnnotation:
    """Ground truth of one video.

    Attributes:
        frames: frame count F, or None when the file does not state it.
        anomalous: anomalous frame ranges (first, last), 1-based, inclusive.
    """

    frames: int | None
    anomalous: tuple[tuple[int, int], ...] = ()

    @property
    def label(self) -> int:
        """Video label: 1 when any frame is anomalous."""
        return int(bool(self.anomalous))

    def frame_labels(self, frames: int | None = None) -> np.ndarray:
        """Per-frame 0/1 labels, (F,) uint8.

        Args:
            frames: F when the annotation does not state it (e.g. counted while decoding).

        Raises:
            DataError: when F is unknown, or a range ends after frame F.
        """
        n = self.frames if self.frames is not None else frames
        if n is None:
            raise DataError("the frame count is unknown: give it, or state it in labels.json")
        labels = np.zeros(n, dtype=np.uint8)
        for first, last in self.anomalous:
            if last > n:
                raise DataError(f"anomalous range [{first}, {last}] ends after frame {n}")
            labels[first - 1 : last] = 1
        return labels


def read_annotations(path: str | Path) -> dict[str, FrameAnnotation]:
    """Read a `labels.json` (format in the module docstring), names AR-Net-normalised.

    Raises:
        DataError: naming the file and video, for anything malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: labels file not found")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected an object of video -> annotation")
    return {normalize_name(name): _annotation(value, name, path) for name, value in raw.items()}


def _annotation(value: Any, video: str, path: Path) -> FrameAnnotation:
    where = f"{path}: video {video!r}"
    if not isinstance(value, Mapping):
        raise DataError(f"{where}: expected an object with 'anomalous_frames'")
    frames = value.get("frames")
    if frames is not None and (
        isinstance(frames, bool) or not isinstance(frames, int) or frames < 1
    ):
        raise DataError(f"{where}: 'frames' must be a positive integer, got {frames!r}")
    ranges = value.get("anomalous_frames", [])
    if not isinstance(ranges, list):
        raise DataError(f"{where}: 'anomalous_frames' must be a list of [first, last] pairs")
    out = []
    for item in ranges:
        if (
            not isinstance(item, (list, tuple))
            or len(item) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in item)
        ):
            raise DataError(f"{where}: anomalous range {item!r} is not a [first, last] pair")
        first, last = item
        if not 1 <= first <= last or (frames is not None and last > frames):
            raise DataError(
                f"{where}: anomalous range {item!r} must satisfy 1 <= first <= last"
                + (f" <= frames ({frames})" if frames is not None else "")
            )
        out.append((first, last))
    return FrameAnnotation(frames, tuple(sorted(out)))


@dataclass
class FrameDataset:
    """A dataset of frame folders with ground truth and splits (the Ped2 folder layout).

    Attributes:
        root: the dataset folder.
        videos: video name -> its frame folder.
        annotations: video name -> ground truth.
        splits: split name ("train", "test") -> video names.
    """

    root: Path
    videos: dict[str, Path]
    annotations: dict[str, FrameAnnotation]
    splits: dict[str, list[str]] = field(default_factory=dict)


def is_frame_dataset(path: str | Path) -> bool:
    """A folder with `frames/` and `labels.json` (the Ped2 layout)."""
    path = Path(path)
    return (path / FRAMES_DIR).is_dir() and (path / LABELS_FILE).is_file()


def read_frame_dataset(root: str | Path, splits: Mapping[str, str] | None = None) -> FrameDataset:
    """Read a frame dataset folder (Ped2 layout).

    Args:
        root: the folder.
        splits: split name -> split file stem under `splits/` (default: the weakly supervised
            split, weak_train / weak_test); splits whose file is absent are left out.

    Raises:
        DataError: naming the file, when the layout is incomplete or inconsistent (a split or
            labelled video without frames, a video without labels, frame counts that differ).
    """
    root = Path(root)
    if not is_frame_dataset(root):
        raise DataError(f"{root}: not a frame dataset (needs {FRAMES_DIR}/ and {LABELS_FILE})")
    annotations = read_annotations(root / LABELS_FILE)
    videos = {
        normalize_name(p.name): p for p in sorted((root / FRAMES_DIR).iterdir()) if p.is_dir()
    }
    unlabelled = sorted(set(videos) - set(annotations))
    if unlabelled:
        raise DataError(f"{root / LABELS_FILE}: no labels for video(s) {', '.join(unlabelled)}")
    without_frames = sorted(set(annotations) - set(videos))
    if without_frames:
        raise DataError(
            f"{root / FRAMES_DIR}: no frame folder for labelled video(s) "
            f"{', '.join(without_frames)}"
        )
    chosen: dict[str, list[str]] = {}
    for split, stem in (splits or WEAK_SPLITS).items():
        path = root / SPLITS_DIR / f"{stem}.txt"
        if not path.is_file():
            continue
        names = read_split(path)
        unknown = [n for n in names if n not in videos]
        if unknown:
            raise DataError(f"{path}: video(s) {', '.join(unknown)} have no frame folder")
        chosen[split] = names
    return FrameDataset(root, videos, annotations, chosen)


def expand_frame_datasets(
    inputs: Sequence[str], annotations: Mapping[str, FrameAnnotation] | None = None
) -> tuple[list[str], dict[str, FrameAnnotation] | None, dict[str, list[str]]]:
    """Inputs of `arnet extract` with each frame dataset folder (Ped2 layout) replaced by its
    videos' frame folders; such a folder also brings its labels (unless `annotations` are
    given) and its weak splits.

    Returns:
        (inputs, annotations, splits): the video paths, the labels (None when none were given
        or found), split name -> video names.
    """
    expanded: list[str] = []
    labels = None if annotations is None else dict(annotations)
    splits: dict[str, list[str]] = {}
    for raw in inputs:
        if not is_frame_dataset(raw):
            expanded.append(raw)
            continue
        dataset = read_frame_dataset(raw)
        expanded += [str(p) for p in dataset.videos.values()]
        if labels is None:
            labels = dict(dataset.annotations)
        splits.update(dataset.splits)
    return expanded, labels, splits


def catalog_ped2(
    root: str | Path,
    features: str | Path,
    *,
    backbone: str = "efficientnet-lite0",
    modal: str = "rgb",
    tail: str | None = None,
) -> Catalog:
    """Index a frame dataset joined with the features extracted from it, as a catalogue.

    Labels come from ROOT/labels.json, splits from ROOT/splits (weakly supervised split); the
    features from FEATURES/features_video/BACKBONE/MODAL/VIDEO/feature.npy (`arnet extract`).
    The frame labels are the catalogue's ground truth, checked against the segment counts under
    the extraction's tail policy when the catalogue is opened.

    Args:
        root: the frame dataset folder.
        features: the folder `arnet extract` wrote (its --out).
        backbone, modal: which features.
        tail: the extraction's tail policy; None reads it from its extraction.json ("drop" when
            there is none).

    Raises:
        DataError: the frame dataset is incomplete, or a weak split file is missing.
    """
    dataset = read_frame_dataset(root)
    missing = [s for s in WEAK_SPLITS if s not in dataset.splits]
    if missing:
        raise DataError(f"{Path(root) / SPLITS_DIR}: no {' / '.join(missing)} split file")
    frames_per_segment, recorded_tail = _extraction_segments(features, backbone)
    folder = feature_folder(features, modal, backbone)
    catalog = Catalog("ped2", Path(root))
    catalog.tail = tail or recorded_tail
    catalog.frames_per_segment = frames_per_segment
    catalog.notes.append(f"features: {folder}")
    labels_file = dataset.root / LABELS_FILE
    gt = GroundTruth(str(labels_file), frames={})
    assert gt.frames is not None
    for name, annotation in dataset.annotations.items():
        try:
            gt.frames[name] = annotation.frame_labels()
        except DataError as exc:
            gt.problems.append((f"{labels_file}[{name}]", str(exc)))
    catalog.ground_truth = gt
    for split in SPLITS:
        split_path = dataset.root / SPLITS_DIR / f"{WEAK_SPLITS[split]}.txt"
        for number, name in enumerate(dataset.splits[split], 1):
            catalog.videos.append(
                VideoEntry(
                    name,
                    split,
                    dataset.annotations[name].label,
                    [feature_path(folder, name)],
                    f"{split_path}:{number}",
                )
            )
    return catalog


def load_ped2(
    root: str | Path,
    features: str | Path,
    *,
    backbone: str = "efficientnet-lite0",
    modal: str = "rgb",
    tail: str | None = None,
    in_memory: bool = True,
) -> tuple[FeatureDataset, FeatureDataset]:
    """The (train, test) datasets of a frame dataset, from features extracted out of it
    (`catalog_ped2`, opened and checked as every layout is).

    Args:
        root, features, backbone, modal, tail: as in `catalog_ped2`.
        in_memory: copy the features into one block in RAM.

    Raises:
        DataError: a missing feature file, or a segment count that does not fit the video's
            frame count under the tail policy (the features and labels disagree).
    """
    catalog = catalog_ped2(root, features, backbone=backbone, modal=modal, tail=tail)
    return to_datasets(open_catalog(catalog), in_memory)


def _extraction_segments(features: str | Path, backbone: str) -> tuple[int, str]:
    """Frames per segment and tail policy recorded by `arnet extract` (16 and "drop" without)."""
    path = extraction_record(backbone_folder(features, backbone))
    recorded: dict[str, Any] = {}
    if path.is_file():
        try:
            recorded = json.loads(path.read_text()).get("preprocessing", {})
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from exc
    frames_per_segment = int(recorded.get("frames_per_segment", FRAMES_PER_SEGMENT))
    return frames_per_segment, recorded.get("tail", "drop")
