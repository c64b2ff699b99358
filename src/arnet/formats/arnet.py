"""The AR-Net on-disk layout (SPEC §1): read it, write it, and load its pickles safely.

```
ROOT/features_video/i3d/{rgb,flow,combine}/VIDEO/feature.npy   (T, D) float32
ROOT/features_video/c3d/{fc6,fc7}/rgb/VIDEO/feature.npy
ROOT/train_split.txt, ROOT/test_split.txt                        one video name per line
ROOT/GT/video_label.pickle   {video: [1.0] | [0.0]}
ROOT/GT/frame_label.pickle   {video: per-frame 0/1 array}
```
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_atomic
from ..data import DataError, FeatureDataset
from .catalog import Catalog, VideoEntry, open_catalog, read_ground_truth, to_datasets
from .groundtruth import ground_truth_from_mapping, normalize_name

FEATURE_FILE = "feature.npy"

# The only globals a ground-truth pickle may reference: what numpy arrays and scalars, and the
# bytes inside them, are rebuilt from. Everything else (os.system, eval, ...) is refused.
_SAFE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, path: Path) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise DataError(
            f"{self._path}: refused to load {module}.{name}: a label pickle may hold only "
            "containers, numbers, strings and numpy arrays"
        )


def load_pickle(path: str | Path) -> Any:
    """Load a pickle without executing code from it.

    Raises:
        DataError: the file is missing, corrupt, or references anything beyond containers,
            numbers, strings and numpy arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with path.open("rb") as f:
            return _RestrictedUnpickler(f, path).load()
    except DataError:
        raise
    except Exception as exc:  # truncated or not a pickle at all
        raise DataError(f"{path}: not a readable pickle ({exc})") from exc


def read_split(path: str | Path) -> list[str]:
    """Video names of a split file, one per line; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    names = [normalize_name(line) for line in _read_lines(path) if line.strip()]
    if not names:
        raise DataError(f"{path}: split is empty")
    return names


def feature_folder(
    root: str | Path, modal: str = "combine", backbone: str = "i3d", layer: str = "fc6"
) -> Path:
    """The folder holding one sub-folder per video, for a backbone and modality."""
    base = Path(root) / "features_video"
    if backbone == "c3d":
        return base / "c3d" / layer / modal
    return base / backbone / modal


def is_arnet_layout(path: str | Path) -> bool:
    return (Path(path) / "features_video").is_dir()


def video_label_of(value: Any, video: str, path: Path) -> int:
    """A video label as stored by the reference ([1.0], 1.0, array([1.])) as 0 or 1."""
    try:
        flat = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: label of video {video!r} is not a number: {value!r}") from exc
    if flat.size != 1 or flat[0] not in (0.0, 1.0):
        raise DataError(f"{path}: label of video {video!r} must be [0.0] or [1.0], got {value!r}")
    return int(flat[0])


def catalog_arnet(
    root: str | Path,
    *,
    modal: str = "combine",
    backbone: str = "i3d",
    layer: str = "fc6",
    ground_truth: str | Path | None = None,
) -> Catalog:
    """Index a dataset in the AR-Net layout, collecting every problem instead of stopping.

    Args:
        root: the dataset folder (reference: DATASET_PATH/DATASET_NAME).
        modal, backbone, layer: which features (see `feature_folder`).
        ground_truth: a source replacing GT/frame_label.pickle (which is then not read).

    Returns:
        A catalog to open with `open_catalog`; `ground_truth`, or else GT/frame_label.pickle
        when present, is its ground truth.

    Raises:
        DataError: the folder or its feature folder does not exist (nothing else to check).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    folder = feature_folder(root, modal, backbone, layer)
    if not folder.is_dir():
        raise DataError(
            f"{folder}: feature folder not found (modality {modal!r}, backbone {backbone!r})"
        )
    catalog = Catalog("arnet", root)
    catalog.notes.append(f"features: {folder}")
    label_file = root / "GT" / "video_label.pickle"
    frame_file = root / "GT" / "frame_label.pickle"
    video_labels: Mapping[str, Any] = {}
    try:
        video_labels = _as_mapping(load_pickle(label_file), label_file)
    except DataError as exc:
        catalog.report(
            "missing-file" if not label_file.is_file() else "unreadable", label_file, exc
        )
    video_labels = {normalize_name(k): v for k, v in video_labels.items()}
    if ground_truth:
        read_ground_truth(catalog, ground_truth)
    elif frame_file.is_file():
        try:
            frames = _as_mapping(load_pickle(frame_file), frame_file)
            catalog.ground_truth = ground_truth_from_mapping(frames, frame_file, normalize_name)
        except DataError as exc:
            catalog.report("unreadable", frame_file, exc)

    for split in ("train", "test"):
        split_file = root / f"{split}_split.txt"
        if not split_file.is_file():
            catalog.error("layout", split_file, "split file not found")
            continue
        try:
            lines = _read_lines(split_file)
        except DataError as exc:
            catalog.report("unreadable", split_file, exc)
            continue
        if not any(line.strip() for line in lines):
            catalog.error("layout", split_file, "split is empty")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            name = normalize_name(line)
            origin = f"{split_file}:{number}"
            video = VideoEntry(name, split, None, [folder / name / FEATURE_FILE], origin)
            if name not in video_labels:
                if video_labels or label_file.is_file():
                    catalog.error(
                        "unlabelled",
                        origin,
                        f"video {name!r} is in the split but not in {label_file}",
                    )
                video.broken = True
            else:
                try:
                    video.label = video_label_of(video_labels[name], name, label_file)
                except DataError as exc:
                    catalog.report("unlabelled", label_file, exc)
                    video.broken = True
            catalog.videos.append(video)
    return catalog


def load_arnet(
    root: str | Path,
    *,
    modal: str = "combine",
    backbone: str = "i3d",
    layer: str = "fc6",
    feature_dim: int | None = None,
    in_memory: bool = False,
    tail: str = "drop",
) -> tuple[FeatureDataset, FeatureDataset]:
    """Read a dataset in the AR-Net layout.

    Args:
        root: the dataset folder (reference: DATASET_PATH/DATASET_NAME).
        modal, backbone, layer: which features (see `feature_folder`).
        feature_dim: expected D; None accepts the data's own.
        in_memory: copy all features into RAM (reference --larger_mem 1); otherwise memory-map.
        tail: how frame labels meet segments (see `arnet.formats.groundtruth`).

    Returns:
        (train, test) datasets; test videos carry frame labels when GT/frame_label.pickle exists.

    Raises:
        DataError: naming the file or video, for anything missing or inconsistent.
    """
    catalog = catalog_arnet(root, modal=modal, backbone=backbone, layer=layer)
    catalog.tail = tail
    train, test = to_datasets(open_catalog(catalog), in_memory)
    if feature_dim is not None and train.dim != feature_dim:
        raise DataError(
            f"{train.sources[0]}: features have dimension {train.dim}, "
            f"but feature_dim is {feature_dim}"
        )
    return train, test


def _as_mapping(value: Any, path: Path) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DataError(f"{path}: expected a dict of video -> label, got {type(value).__name__}")
    key = next((k for k in value if not isinstance(k, str)), None)
    if key is not None:
        raise DataError(f"{path}: keys must be video names (strings), got {key!r}")
    return value


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable text file ({exc})") from exc


def write_arnet(
    root: str | Path,
    splits: Mapping[str, Iterable[tuple[str, int, np.ndarray, np.ndarray | None]]],
    *,
    modal: str = "combine",
    backbone: str = "i3d",
    layer: str = "fc6",
) -> Path:
    """Write videos in the AR-Net layout.

    Args:
        root: dataset folder to create (or add to).
        splits: split name ("train"/"test") -> iterable of (name, label, features (T, D),
            frame labels or None).

    Returns:
        The feature folder written to.
    """
    root = Path(root)
    folder = feature_folder(root, modal, backbone, layer)
    video_labels: dict[str, list[float]] = {}
    frame_labels: dict[str, np.ndarray] = {}
    for split, videos in splits.items():
        names = []
        for name, label, feats, frames in videos:
            (folder / name).mkdir(parents=True, exist_ok=True)
            np.save(folder / name / FEATURE_FILE, np.asarray(feats, dtype=np.float32))
            video_labels[name] = [float(label)]
            if frames is not None:
                frame_labels[name] = np.asarray(frames, dtype=np.uint8)
            names.append(name)
        (root / f"{split}_split.txt").write_text("".join(f"{n}\n" for n in names))
    gt = root / "GT"
    gt.mkdir(parents=True, exist_ok=True)
    _dump_pickle(gt / "video_label.pickle", video_labels)
    _dump_pickle(gt / "frame_label.pickle", frame_labels)
    return folder


def _dump_pickle(path: Path, value: Any) -> None:
    write_atomic(path, lambda f: pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL))
