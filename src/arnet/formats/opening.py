"""The steps shared by every layout once its reader has built a catalogue: open the feature
files and check what can be checked without reading values (`open_catalog`), read every value
(`scan_values`), and turn the catalogue into datasets (`to_datasets`)."""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import FeatureDataset
from ..errors import DataError
from .arrays import CropStack, NpyFile
from .catalog import ERROR, SPLITS, WARNING, Catalog, DataWarning, Problem, VideoEntry
from .gtattach import apply_ground_truth

# ---------------------------------------------------------------------- opening


def _open_array(catalog: Catalog, path: Path, video: VideoEntry) -> Any:
    """A feature file as an `NpyFile` (an array in memory where it cannot be mapped), or None
    when it cannot be read (reported)."""
    if not path.is_file():
        catalog.error("missing-file", path, f"feature file of video {video.name!r} not found")
        return None
    not_npy = _not_npy(path)
    if not_npy:
        catalog.error(
            "unreadable", path, f"features of video {video.name!r}: not a .npy array ({not_npy})"
        )
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


_NPY_MAGIC = b"\x93NUMPY"


def _not_npy(path: Path) -> str:
    """What a file that does not start as a .npy array is instead ('' when it does): numpy
    would call any of them a pickle."""
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as exc:
        return f"cannot read it: {exc}"
    if head.startswith(_NPY_MAGIC):
        return ""
    if not head:
        return "the file is empty"
    if head.startswith(b"PK"):
        return "a .npz archive (a zip), not one .npy array; save one array with np.save"
    if head[:1] == b"\x80":
        return "a Python pickle; arnet never unpickles feature files: re-save it with np.save"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"unknown content starting with {head[:8]!r}"
    first = text.splitlines()[0][:40] if text.strip() else text[:40]
    return f"a text file starting {first!r}; save the array with np.save"


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
    check_containment(catalog)
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


def _lexical(path: Path) -> Path:
    """An absolute path with `..` resolved by name, links left alone: a feature folder may
    well be a link to another disk; an entry climbing out of the dataset by name may not."""
    return Path(os.path.normpath(os.path.abspath(path)))


def _within(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def check_containment(catalog: Catalog) -> None:
    """Report entries whose feature files lie outside `catalog.data_roots` (a split entry
    `../../x`, a list line with an absolute path elsewhere): one problem per declaring file,
    a warning, or with `catalog.strict` an error that keeps those files unread."""
    if not catalog.data_roots:
        return
    # By name, and with links resolved (a list written through /tmp may name /private/tmp).
    lexical = [_lexical(r) for r in catalog.data_roots]
    resolved = [r.resolve() for r in catalog.data_roots]
    found: dict[str, list[tuple[VideoEntry, Path]]] = {}
    for video in catalog.videos:
        for path in video.files:
            if not (_within(_lexical(path), lexical) or _within(path.resolve(), resolved)):
                declared = video.origin.rsplit(":", 1)[0]
                found.setdefault(declared, []).append((video, path))
                if catalog.strict:
                    video.broken = True
                break
    for entries in found.values():
        video, path = entries[0]
        others = f" and {len(entries) - 1} more" if len(entries) > 1 else ""
        folders = ", ".join(str(r) for r in catalog.data_roots)
        message = (
            f"video {video.name!r} reads {_lexical(path)}, outside the dataset ({folders})"
            f"{others}; "
            + ("refused (--strict)" if catalog.strict else "--strict refuses such entries")
        )
        catalog.add(ERROR if catalog.strict else WARNING, "outside", video.origin, message)


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


# ---------------------------------------------------------------------- values


def scan_values(catalog: Catalog, rows_per_read: int = 4096) -> None:
    """Read every feature value once and report videos holding NaN or Inf, or values that
    become infinite in float32, the dtype training and scoring compute in."""
    for video in catalog.usable():
        bad, first, huge, largest = 0, None, 0, 0.0
        for start in range(0, video.segments, rows_per_read):
            chunk = np.asarray(video.features[start : start + rows_per_read])
            stored = np.isfinite(chunk)
            with np.errstate(over="ignore"):
                used = np.isfinite(chunk.astype(np.float32))
            rows = used.reshape(chunk.shape[0], -1).all(axis=1)
            if not rows.all() and first is None:
                first = start + int(np.flatnonzero(~rows)[0])
            bad += int((~stored).sum())
            overflow = stored & ~used
            if overflow.any():
                huge += int(overflow.sum())
                largest = max(largest, float(np.abs(chunk[overflow]).max()))
        if bad:
            catalog.error(
                "non-finite",
                video.source,
                f"video {video.name!r} holds {bad} NaN/Inf value(s), first at segment {first}",
            )
            video.broken = True
        elif huge:
            catalog.error(
                "non-finite",
                video.source,
                f"video {video.name!r} holds {huge} value(s) beyond the float32 range (largest "
                f"magnitude {largest:.3g}, first at segment {first}); arnet computes in float32",
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


def select_split(catalog: Catalog, split: str) -> Catalog:
    """Keep only the videos of one split, before `open_catalog`: the other split's files are
    then neither opened nor checked (`arnet test` reads only the test split)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    catalog.videos = catalog.split(split)
    return catalog


def to_dataset(catalog: Catalog, split: str, in_memory: bool = False) -> FeatureDataset:
    """One split of an opened catalog as a FeatureDataset (see `to_datasets`).

    Raises:
        DataError: when the catalog holds errors, or the split has no video.
    """
    raise_on_errors(catalog)
    return _dataset(catalog, split, in_memory)


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
    train, test = (_dataset(catalog, split, in_memory) for split in SPLITS)
    return train, test


def _dataset(catalog: Catalog, split: str, in_memory: bool) -> FeatureDataset:
    videos = catalog.split(split)
    if not videos:
        raise DataError(f"{catalog.root}: the {split} split has no videos")
    # an error-free catalog labels every video and, packed, places each in its block
    labels: list[int] = []
    offsets: list[int] | None = None if catalog.block is None else []
    for v in videos:
        assert v.label is not None
        labels.append(v.label)
        if offsets is not None:
            assert v.offset is not None
            offsets.append(v.offset)
    dataset = FeatureDataset(
        [v.name for v in videos],
        labels,
        [v.features for v in videos],
        [v.frame_labels for v in videos],
        [v.source for v in videos],
        block=catalog.block,
        offsets=offsets,
    )
    if in_memory and catalog.block is None:
        dataset = dataset.to_memory()
    return dataset
