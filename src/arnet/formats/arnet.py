"""The AR-Net on-disk layout (SPEC §1, paths in `formats.layout`): its catalogue reader and
its writer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .catalog import Catalog, VideoEntry
from .extraction import settings_key
from .groundtruth import ground_truth_from_mapping, normalize_name
from .gtattach import read_ground_truth
from .layout import (
    SPLITS,
    backbone_folder,
    extraction_record,
    feature_folder,
    feature_path,
    frame_label_file,
    is_arnet_layout,
    read_lines,
    recorded_settings,
    split_file,
    video_label_file,
    write_labels_and_splits,
)
from .pickles import load_pickle
from .registry import register_format


def video_label_of(value: Any, video: str, path: Path) -> int:
    """A video label as stored by the reference ([1.0], 1.0, array([1.])) as 0 or 1."""
    try:
        flat = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: label of video {video!r} is not a number: {value!r}") from exc
    if flat.size != 1 or flat[0] not in (0.0, 1.0):
        raise DataError(f"{path}: label of video {video!r} must be [0.0] or [1.0], got {value!r}")
    return int(flat[0])


@register_format(
    "arnet",
    detect=lambda path: path.is_dir() and is_arnet_layout(path),
    looks_for="features_video/ of the AR-Net layout",
    description="the AR-Net reference layout (features_video/, split files, GT pickles)",
)
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
    catalog.data_roots.append(folder)
    catalog.notes.append(f"features: {folder}")
    label_file = video_label_file(root)
    frame_file = frame_label_file(root)
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

    for split in SPLITS:
        listing = split_file(root, split)
        if not listing.is_file():
            catalog.error("layout", listing, "split file not found")
            continue
        try:
            lines = read_lines(listing)
        except DataError as exc:
            catalog.report("unreadable", listing, exc)
            continue
        if not any(line.strip() for line in lines):
            catalog.error("layout", listing, "split is empty")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            name = normalize_name(line)
            origin = f"{listing}:{number}"
            video = VideoEntry(name, split, None, [feature_path(folder, name)], origin)
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
    if backbone != "c3d":
        _check_extraction(catalog, backbone_folder(root, backbone))
    return catalog


def _check_extraction(catalog: Catalog, folder: Path) -> None:
    """Videos whose record says they were extracted with settings other than those of the
    folder's extraction.json (an `arnet extract --overwrite` of part of the dataset)."""
    record = extraction_record(folder)
    if not record.is_file():
        return
    try:
        key = settings_key(json.loads(record.read_text()))
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        catalog.error("unreadable", record, f"not a readable extraction record ({exc})")
        return
    recorded = recorded_settings(folder)
    for video in catalog.videos:
        if video.name in recorded and recorded[video.name] != key:
            catalog.error(
                "extraction",
                video.origin,
                f"video {video.name!r} was extracted with settings other than those of {record}"
                " (its features do not match the others'): re-extract it with them",
            )
            video.broken = True


def _as_mapping(value: Any, path: Path) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DataError(f"{path}: expected a dict of video -> label, got {type(value).__name__}")
    key = next((k for k in value if not isinstance(k, str)), None)
    if key is not None:
        raise DataError(f"{path}: keys must be video names (strings), got {key!r}")
    return value


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
    video_labels: dict[str, int] = {}
    frame_labels: dict[str, np.ndarray] = {}
    names: dict[str, list[str]] = {}
    for split, videos in splits.items():
        names[split] = []
        for name, label, feats, frames in videos:
            path = feature_path(folder, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, np.asarray(feats, dtype=np.float32))
            video_labels[name] = int(label)
            if frames is not None:
                frame_labels[name] = np.asarray(frames, dtype=np.uint8)
            names[split].append(name)
    write_labels_and_splits(root, video_labels, frame_labels, names)
    return folder
