"""Where things live in the AR-Net layout (SPEC §1), and how its labels and splits are written.

```
ROOT/features_video/BACKBONE/MODAL/VIDEO/feature.npy          (T, D) or (T, C, D) float32
ROOT/features_video/c3d/{fc6,fc7}/MODAL/VIDEO/feature.npy       the reference's C3D features
ROOT/features_video/BACKBONE/extraction.json                    how `arnet extract` made them
ROOT/features_video/BACKBONE/videos/VIDEO.json                  per video: frames, segments
ROOT/train_split.txt, ROOT/test_split.txt                         one video name per line
ROOT/GT/video_label.pickle   {video: [1.0] | [0.0]}
ROOT/GT/frame_label.pickle   {video: per-frame 0/1 array}
```

Every module that reads or writes this layout (the AR-Net and Ped2 readers, `extract`,
`detect`, `synth`) takes its paths from here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ..atomic import write_atomic
from ..errors import DataError
from .groundtruth import normalize_name
from .pickles import dump_pickle

FEATURES_DIR = "features_video"
FEATURE_FILE = "feature.npy"
GT_DIR = "GT"
VIDEO_LABEL_FILE = "video_label.pickle"
FRAME_LABEL_FILE = "frame_label.pickle"
EXTRACTION_FILE = "extraction.json"
VIDEOS_DIR = "videos"
SPLITS = ("train", "test")


def is_arnet_layout(path: str | Path) -> bool:
    return (Path(path) / FEATURES_DIR).is_dir()


def backbone_folder(root: str | Path, backbone: str = "i3d") -> Path:
    """ROOT/features_video/BACKBONE: one backbone's features and extraction record."""
    return Path(root) / FEATURES_DIR / backbone


def feature_folder(
    root: str | Path, modal: str = "combine", backbone: str = "i3d", layer: str = "fc6"
) -> Path:
    """The folder holding one sub-folder per video, for a backbone and modality."""
    if backbone == "c3d":
        return backbone_folder(root, "c3d") / layer / modal
    return backbone_folder(root, backbone) / modal


def feature_path(folder: str | Path, video: str) -> Path:
    """The feature file of `video` in a `feature_folder`."""
    return Path(folder) / video / FEATURE_FILE


def extraction_record(folder: str | Path) -> Path:
    """extraction.json of a `backbone_folder`."""
    return Path(folder) / EXTRACTION_FILE


def video_record(folder: str | Path, video: str) -> Path:
    """The per-video record (frames, segments, settings) in a `backbone_folder`."""
    return Path(folder) / VIDEOS_DIR / f"{video}.json"


def recorded_settings(folder: str | Path) -> dict[str, str | None]:
    """video -> the settings fingerprint its record holds (None when unreadable or absent),
    for every per-video record in a `backbone_folder`."""
    out: dict[str, str | None] = {}
    records = Path(folder) / VIDEOS_DIR
    for path in sorted(records.glob("*.json")) if records.is_dir() else []:
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            info = None
        out[path.name[: -len(".json")]] = info.get("settings") if isinstance(info, dict) else None
    return out


def split_file(root: str | Path, split: str) -> Path:
    return Path(root) / f"{split}_split.txt"


def video_label_file(root: str | Path) -> Path:
    return Path(root) / GT_DIR / VIDEO_LABEL_FILE


def frame_label_file(root: str | Path) -> Path:
    return Path(root) / GT_DIR / FRAME_LABEL_FILE


def read_lines(path: Path) -> list[str]:
    """The lines of a text file, or DataError naming it."""
    try:
        return path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable text file ({exc})") from exc


def read_split(path: str | Path) -> list[str]:
    """Video names of a split file, one per line; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    names = [normalize_name(line) for line in read_lines(path) if line.strip()]
    if not names:
        raise DataError(f"{path}: split is empty")
    return names


def write_labels_and_splits(
    root: str | Path,
    video_labels: Mapping[str, int],
    frame_labels: Mapping[str, np.ndarray],
    splits: Mapping[str, Iterable[str]],
) -> None:
    """Write GT/video_label.pickle, GT/frame_label.pickle and the split files, each atomically.

    Args:
        root: the dataset folder.
        video_labels: video -> 1 anomalous or 0 normal (stored as the reference does, [1.0]).
        frame_labels: video -> its per-frame 0/1 labels (stored as uint8).
        splits: split name ("train"/"test") -> video names in order.
    """
    root = Path(root)
    dump_pickle(video_label_file(root), {n: [float(v)] for n, v in video_labels.items()})
    dump_pickle(
        frame_label_file(root),
        {n: np.asarray(v, dtype=np.uint8) for n, v in frame_labels.items()},
    )
    for split, members in splits.items():
        text = "".join(f"{n}\n" for n in members).encode()
        # mypy cannot type a lambda with a default argument (python/mypy#15459)
        write_atomic(split_file(root, split), lambda f, t=text: f.write(t))  # type: ignore[misc]
