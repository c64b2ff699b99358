"""The native `arnet` store: every segment of every video in one memory-mapped array.

```
OUT/arnet-store.json     the index: per video its name, split, label, first row, segment count,
                         source, and where its frame labels are (JSON, no pickle)
OUT/features.npy         (S, D) or (S, C, D) float16 or float32: the videos' segments, one
                         after another, train videos first
OUT/frame_labels.npy     (F,) uint8: the frame labels of all videos that have them, concatenated
```

Reading maps `features.npy` into memory without loading it: every video is a view of the one
array, and a training batch is gathered from it with a single vectorised take
(`FeatureDataset` with `block` and `offsets`), so a dataset larger than RAM trains while the
operating system keeps only the touched pages cached. Packing validates the source first (no
store is written from a dataset with errors) and checks every value, so reading trusts them.

float16 halves the size; features are rounded to it once, at packing (values beyond
float16's range, 65504, are refused). float32 keeps them exactly: packing then reading gives
the same arrays, labels and frame labels.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..folders import (
    notice,
    remove_stale_temporaries,
    same_or_inside,
    stale_temporaries,
    temporary_name,
)
from .catalog import SPLITS, Catalog, VideoEntry
from .groundtruth import ground_truth_from_mapping
from .gtattach import read_ground_truth
from .opening import raise_on_errors
from .registry import register_format

STORE_FORMAT = "arnet-store"
STORE_VERSION = 1
INDEX_FILE = "arnet-store.json"
FEATURES_FILE = "features.npy"
FRAMES_FILE = "frame_labels.npy"
DTYPES = ("float16", "float32")
_STORE_FILES = (INDEX_FILE, FEATURES_FILE, FRAMES_FILE)
_INDEX_COLUMNS = ("names", "splits", "labels", "offsets", "lengths", "frame_offsets", "frames")


def is_packed(path: Path) -> bool:
    """Whether `path` is a store folder (holds the index)."""
    return (path / INDEX_FILE).is_file()


@dataclass
class PackedVideo:
    """One video to write into a store.

    Attributes:
        name, split, label: as in the dataset.
        features: (T, D) or (T, C, D), anything sliceable along T (a memmap, a `CropStack`).
        frame_labels: (F,) 0/1 or None.
        source: the file it came from.
    """

    name: str
    split: str
    label: int
    features: Any
    frame_labels: np.ndarray | None = None
    source: str = ""


def write_packed(
    out: str | Path,
    videos: Sequence[PackedVideo],
    dtype: str = "float16",
    overwrite: bool = False,
    rows_per_copy: int = 4096,
) -> Path:
    """Write videos into a store at `out`, streaming (never more than `rows_per_copy` segments
    of one video in memory), into a temporary folder renamed into place at the end.

    Args:
        out: the store folder to create.
        videos: train and test videos, in the order to store them.
        dtype: "float16" or "float32".
        overwrite: replace an existing store at `out`.
        rows_per_copy: segments read and converted at a time.

    Returns:
        `out`.

    Raises:
        DataError: `out` exists (without `overwrite`), videos differ in shape per segment, or a
            video holds NaN/Inf or values beyond the dtype's range; naming the source.
    """
    out = Path(out)
    if dtype not in DTYPES:
        raise DataError(f"store dtype must be one of {DTYPES}, got {dtype!r}")
    require_replaceable(out, overwrite)
    if not videos:
        raise DataError(f"{out}: nothing to pack (no videos)")
    shape = tuple(videos[0].features.shape[1:])
    for video in videos:
        if tuple(video.features.shape[1:]) != shape:
            raise DataError(
                f"{video.source}: video {video.name!r} has {tuple(video.features.shape[1:])} "
                f"features per segment, the first video {shape}: one store holds one shape "
                "(pack train and test features of the same kind)"
            )
    lengths = np.array([v.features.shape[0] for v in videos], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    frames = [None if v.frame_labels is None else np.asarray(v.frame_labels) for v in videos]
    frame_counts = [-1 if f is None else int(f.size) for f in frames]
    frame_offsets = np.concatenate([[0], np.cumsum(np.maximum(frame_counts, 0))[:-1]])

    out.parent.mkdir(parents=True, exist_ok=True)
    _recover(out)
    tmp = temporary_name(out)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        block = np.lib.format.open_memmap(
            tmp / FEATURES_FILE, mode="w+", dtype=dtype, shape=(int(lengths.sum()), *shape)
        )
        for video, start in zip(videos, offsets):
            _copy_video(block, int(start), video, np.dtype(dtype), rows_per_copy)
        block.flush()
        del block
        labels = [f for f in frames if f is not None]
        joined = np.concatenate(labels) if labels else np.zeros(0)
        if joined.size and not np.isin(joined, (0, 1)).all():
            raise DataError(f"{out}: frame labels must be 0 or 1")
        np.save(tmp / FRAMES_FILE, joined.astype(np.uint8))
        index = {
            "format": STORE_FORMAT,
            "version": STORE_VERSION,
            "dtype": dtype,
            "segment_shape": list(shape),
            "segments": int(lengths.sum()),
            "names": [v.name for v in videos],
            "splits": [v.split for v in videos],
            "labels": [int(v.label) for v in videos],
            "offsets": offsets.tolist(),
            "lengths": lengths.tolist(),
            "frame_offsets": [int(x) for x in frame_offsets],
            "frames": frame_counts,
            "sources": [v.source for v in videos],
        }
        (tmp / INDEX_FILE).write_text(json.dumps(index) + "\n")
        _move_into_place(tmp, out, overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def require_replaceable(out: Path, overwrite: bool) -> None:
    """Refuse `out` unless it is new, or (with `overwrite`) an earlier store holding nothing but
    the store's own files: `--overwrite` never deletes a dataset or a folder of other work."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise DataError(f"{out}: exists and is not a store folder; choose a new OUT")
    if not out.exists():
        return
    if not overwrite:
        raise DataError(f"{out}: already exists (pass overwrite=True to replace it)")
    if not is_packed(out):
        raise DataError(
            f"{out}: not an arnet store (no {INDEX_FILE}); overwrite replaces only an earlier "
            "store: choose a new OUT"
        )
    others = sorted(p.name for p in out.iterdir() if p.name not in _STORE_FILES)
    if others:
        raise DataError(
            f"{out}: holds {', '.join(others[:4])} besides the store; overwrite replaces only a "
            "folder holding nothing but a store: choose a new OUT"
        )


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished store `tmp` to `out`; an earlier store there is moved aside first
    and deleted only once the new one is in place (a crash in between leaves one of them)."""
    if not out.exists():
        os.replace(tmp, out)
        return
    require_replaceable(out, overwrite)  # checked again: it may have changed while packing
    old = out.with_name(f".{out.name}.old.{os.getpid()}.tmp")
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old)


def _copy_video(
    block: np.ndarray, start: int, video: PackedVideo, dtype: np.dtype, rows: int
) -> None:
    length = int(video.features.shape[0])
    for first in range(0, length, rows):
        chunk = np.asarray(video.features[first : first + rows], dtype=np.float32)
        if not np.isfinite(chunk).all():
            bad = first + int(np.flatnonzero(~np.isfinite(chunk).reshape(len(chunk), -1).all(1))[0])
            raise DataError(
                f"{video.source}: features of video {video.name!r} hold NaN or Inf "
                f"(first at segment {bad}); fix them before packing"
            )
        with np.errstate(over="ignore"):  # overflow is checked for, and reported, below
            converted = chunk.astype(dtype)
        if not np.isfinite(converted).all():
            raise DataError(
                f"{video.source}: features of video {video.name!r} exceed the {dtype} range "
                f"(largest magnitude {np.abs(chunk).max():.4g}); pack with dtype float32"
            )
        block[start + first : start + first + len(chunk)] = converted


def pack_catalog(
    catalog: Catalog, out: str | Path, dtype: str = "float16", overwrite: bool = False
) -> Path:
    """Write an opened, error-free catalog into a store (train videos first, then test).

    Raises:
        DataError: the catalog holds errors (listed), or see `write_packed`.
    """
    raise_on_errors(catalog)
    out = Path(out)
    sources = [Path(catalog.root), *(Path(f) for v in catalog.videos for f in v.files)]
    if same_or_inside(out, Path(catalog.root)) or any(same_or_inside(p, out) for p in sources):
        raise DataError(
            f"{out}: is the dataset being packed ({catalog.root}) or holds it; choose an OUT "
            "outside it"
        )
    videos = []
    for split in SPLITS:
        for v in catalog.split(split):
            assert v.label is not None  # an error-free catalog labels every video
            videos.append(
                PackedVideo(v.name, v.split, int(v.label), v.features, v.frame_labels, v.source)
            )
    return write_packed(out, videos, dtype, overwrite)


def _recover(out: Path) -> None:
    """Tidy what a `pack` killed while writing `out` left: its temporary store is deleted; an
    earlier store it had moved aside is put back when `out` is missing, else deleted."""
    for old in stale_temporaries(out.parent, [f"{out.name}.old"]):
        if not out.exists():
            os.replace(old, out)
            notice(f"{out}: put back the store a killed `pack` had moved aside ({old.name})")
    remove_stale_temporaries(out.parent, [out.name, f"{out.name}.old"])


# ---------------------------------------------------------------------- reading


def _read_index(root: Path) -> dict[str, Any]:
    path = root / INDEX_FILE
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable store index ({exc})") from exc
    if not isinstance(index, dict) or index.get("format") != STORE_FORMAT:
        raise DataError(f"{path}: not an arnet store index (no format {STORE_FORMAT!r})")
    if index.get("version") != STORE_VERSION:
        raise DataError(
            f"{path}: store version {index.get('version')!r}; this arnet reads {STORE_VERSION}"
        )
    missing = [k for k in (*_INDEX_COLUMNS, "sources") if not isinstance(index.get(k), list)]
    if missing:
        raise DataError(f"{path}: index field(s) {', '.join(missing)} missing or not lists")
    n = len(index["names"])
    uneven = [k for k in (*_INDEX_COLUMNS, "sources") if len(index[k]) != n]
    if uneven:
        raise DataError(f"{path}: index field(s) {', '.join(uneven)} do not have {n} entries")
    for key in ("offsets", "lengths", "frame_offsets", "frames"):
        bad = next((i for i, x in enumerate(index[key]) if type(x) is not int), None)
        if bad is not None:
            raise DataError(
                f"{path}: index field {key}[{bad}] is {index[key][bad]!r}, not an integer"
            )
    return index


@register_format(
    "packed",
    detect=lambda path: path.is_dir() and is_packed(path),
    looks_for="an arnet store",
    description="the memory-mapped store written by `arnet pack`",
)
def catalog_packed(
    root: str | Path, *, ground_truth: str | Path | None = None, in_memory: bool = False
) -> Catalog:
    """Index a store: its videos are views of the mapped `features.npy`.

    Args:
        root: the store folder.
        ground_truth: a source replacing the stored frame labels.
        in_memory: read `features.npy` into memory instead of mapping it.

    Raises:
        DataError: the index or the arrays are unreadable or inconsistent with each other.
    """
    root = Path(root)
    if not is_packed(root):
        raise DataError(f"{root}: not an arnet store (no {INDEX_FILE})")
    index = _read_index(root)
    index_path = root / INDEX_FILE
    features_path = root / FEATURES_FILE
    try:
        block = np.load(features_path, mmap_mode=None if in_memory else "r", allow_pickle=False)
        frames = np.load(root / FRAMES_FILE, mmap_mode="r", allow_pickle=False)
    except MemoryError:  # in_memory and too large: not a broken store
        raise
    except Exception as exc:
        raise DataError(f"{root}: store arrays unreadable ({exc})") from exc
    if block.dtype.name not in DTYPES:
        raise DataError(f"{features_path}: dtype {block.dtype}, not one of {DTYPES}")
    if frames.ndim != 1:
        raise DataError(f"{root / FRAMES_FILE}: shape {frames.shape}, expected (frames,)")
    if list(block.shape[1:]) != index.get("segment_shape"):
        raise DataError(
            f"{features_path}: shape {block.shape} does not match the index's segment shape "
            f"{index.get('segment_shape')}"
        )
    catalog = Catalog("packed", root)
    catalog.notes.append(f"features: {features_path} ({block.dtype}, {block.shape})")
    stored: dict[str, np.ndarray] = {}
    for i, name in enumerate(index["names"]):
        origin = f"{index_path}[{i}]"
        split, label = index["splits"][i], index["labels"][i]
        start, length = int(index["offsets"][i]), int(index["lengths"][i])
        video = VideoEntry(str(name), split, label, [features_path], origin, offset=start)
        video.where = f"{features_path}[{start}:{start + length}]"
        if split not in SPLITS or label not in (0, 1):
            catalog.error(
                "layout", origin, f"video {name!r}: split {split!r} / label {label!r} invalid"
            )
            video.broken = True
        elif length < 1 or start < 0 or start + length > block.shape[0]:
            catalog.error(
                "layout",
                origin,
                f"video {name!r}: rows [{start}, {start + length}) outside the "
                f"{block.shape[0]} rows of {FEATURES_FILE}",
            )
            video.broken = True
        else:
            video.features = block[start : start + length]
        first, count = int(index["frame_offsets"][i]), int(index["frames"][i])
        if count >= 0:
            if first < 0 or first + count > frames.shape[0]:
                catalog.error(
                    "layout", origin, f"video {name!r}: frame labels outside {FRAMES_FILE}"
                )
            else:
                stored[str(name)] = np.asarray(frames[first : first + count])
        catalog.videos.append(video)
    catalog.block = block
    if ground_truth:
        read_ground_truth(catalog, ground_truth)
    elif stored:
        # Checked as strictly as a frame_label.pickle: values other than 0/1 are errors.
        catalog.ground_truth = ground_truth_from_mapping(stored, root / FRAMES_FILE, str)
    return catalog
