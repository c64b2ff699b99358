"""Readers for the on-disk layouts of the field, behind one entry point: `open_dataset`.

Layouts, each in its own module and registered in `formats.registry` (`list_formats()`):

- ``packed``: the native memory-mapped store written by `arnet pack` (`formats.packed`).
- ``arnet``: the AR-Net reference layout (`formats.arnet`).
- ``crops``: folders of per-crop ``VIDEO__K.npy`` files, XD-Violence style (`formats.crops`).
- ``list``: RTFM/MGFN/CLIP-TSA/UR-DMU text lists of feature files (`formats.lists`).
- ``csv``: ``path,label`` CSV lists (`formats.lists`).

Every reader builds a `catalog.Catalog`; `open_dataset` opens it into (train, test)
FeatureDatasets, `arnet inspect` reports on it (`formats.validate`), `arnet pack` writes it into
a store. Ground truth and its tail policy are in `formats.groundtruth`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from ..config import FRAMES_PER_SEGMENT
from ..errors import DataError
from ..videoconfig import TAIL_POLICIES
from .registry import (
    FormatEntry,
    detect_format,
    format_entry,
    format_names,
    list_formats,
    register_format,
)

if TYPE_CHECKING:
    from ..data.dataset import FeatureDataset
    from .catalog import Catalog

# Options that only some layouts take: given to another layout, they are refused by name.
LAYOUT_OPTIONS = ("test_list", "list_root", "train_anomalous")


def build_catalog(
    path: str | Path,
    format: str = "auto",
    *,
    modal: str = "combine",
    backbone: str = "i3d",
    layer: str = "fc6",
    test_list: str | Path | None = None,
    ground_truth: str | Path | None = None,
    list_root: str | None = None,
    train_anomalous: int | None = None,
    tail: str = "drop",
    frames_per_segment: int = FRAMES_PER_SEGMENT,
    in_memory: bool = False,
    strict: bool = False,
) -> Catalog:
    """A layout's catalog (not yet opened): the common first step of loading, inspecting and
    packing. Arguments as in `open_dataset`.

    Raises:
        DataError: unknown format, an option the layout does not take, or a dataset whose
            root is missing.
    """
    entry = format_entry(detect_format(path) if format == "auto" else format)
    if tail not in TAIL_POLICIES:
        raise DataError(f"unknown tail policy {tail!r}; choose one of {TAIL_POLICIES}")
    options = {
        "modal": modal,
        "backbone": backbone,
        "layer": layer,
        "test_list": test_list,
        "ground_truth": ground_truth,
        "list_root": list_root,
        "train_anomalous": train_anomalous,
        "in_memory": in_memory,
    }
    wrong = [k for k in LAYOUT_OPTIONS if options[k] is not None and k not in entry.options]
    if wrong:
        raise DataError(
            f"{path}: option(s) {', '.join(wrong)} do not apply to the {entry.name} layout"
        )
    catalog = entry.catalog(path, **{k: v for k, v in options.items() if k in entry.options})
    catalog.tail = tail
    catalog.frames_per_segment = frames_per_segment
    catalog.strict = strict
    return catalog


@overload
def open_dataset(
    path: str | Path,
    format: str = "auto",
    *,
    modal: str = "combine",
    backbone: str = "i3d",
    layer: str = "fc6",
    feature_dim: int | None = None,
    in_memory: bool = False,
    test_list: str | Path | None = None,
    ground_truth: str | Path | None = None,
    list_root: str | None = None,
    train_anomalous: int | None = None,
    tail: str = "drop",
    frames_per_segment: int = FRAMES_PER_SEGMENT,
    strict: bool = False,
    split: None = None,
) -> tuple[FeatureDataset, FeatureDataset]: ...


@overload
def open_dataset(
    path: str | Path,
    format: str = "auto",
    *,
    modal: str = "combine",
    backbone: str = "i3d",
    layer: str = "fc6",
    feature_dim: int | None = None,
    in_memory: bool = False,
    test_list: str | Path | None = None,
    ground_truth: str | Path | None = None,
    list_root: str | None = None,
    train_anomalous: int | None = None,
    tail: str = "drop",
    frames_per_segment: int = FRAMES_PER_SEGMENT,
    strict: bool = False,
    split: Literal["train", "test"],
) -> FeatureDataset: ...


def open_dataset(
    path: str | Path,
    format: str = "auto",
    *,
    modal: str = "combine",
    backbone: str = "i3d",
    layer: str = "fc6",
    feature_dim: int | None = None,
    in_memory: bool = False,
    test_list: str | Path | None = None,
    ground_truth: str | Path | None = None,
    list_root: str | None = None,
    train_anomalous: int | None = None,
    tail: str = "drop",
    frames_per_segment: int = FRAMES_PER_SEGMENT,
    strict: bool = False,
    split: str | None = None,
) -> tuple[FeatureDataset, FeatureDataset] | FeatureDataset:
    """Open a dataset in any supported layout as (train, test) FeatureDatasets, or one split.

    Args:
        path: the dataset (folder, list file or store); see `list_formats()`.
        format: a registered layout's name, or "auto" to detect it.
        modal: the AR-Net layout's modality folder (rgb, flow, combine).
        backbone: the AR-Net layout's backbone folder (`features_video/BACKBONE`).
        layer: C3D's layer folder (fc6, fc7); other backbones have none.
        feature_dim: expected D; None accepts the data's own.
        in_memory: copy all features into RAM; otherwise they are memory-mapped.
        test_list: list layouts: the test list (default: found next to the train list).
        ground_truth: a frame ground-truth source replacing the layout's own
            (`groundtruth.load_ground_truth`).
        list_root: list layouts: re-root listed paths (``NEW`` or ``OLD=NEW``).
        train_anomalous: text lists: the number of leading anomalous lines of the train list.
        tail: how frame labels meet segments: "drop" or "pad" (`formats.groundtruth`).
        frames_per_segment: frames behind each segment feature.
        strict: refuse entries that read feature files outside the dataset's folders (a
            split entry with `../`, a list line with an absolute path elsewhere) instead of
            warning about them.
        split: "train" or "test" to open, check and return that split only; None for both.

    Raises:
        DataError: naming the file, for anything missing or inconsistent (the first problem,
            with a count of the rest; `arnet inspect` lists them all).
    """
    catalog = build_catalog(
        path,
        format,
        modal=modal,
        backbone=backbone,
        layer=layer,
        test_list=test_list,
        ground_truth=ground_truth,
        list_root=list_root,
        train_anomalous=train_anomalous,
        tail=tail,
        frames_per_segment=frames_per_segment,
        in_memory=in_memory,
        strict=strict,
    )
    from .opening import open_catalog, select_split, to_dataset, to_datasets  # numpy, torch

    if split is not None:
        dataset = to_dataset(open_catalog(select_split(catalog, split)), split, in_memory)
        _check_dim(dataset, feature_dim)
        return dataset
    train, test = to_datasets(open_catalog(catalog), in_memory)
    _check_dim(train, feature_dim)
    return train, test


def _check_dim(dataset: FeatureDataset, feature_dim: int | None) -> None:
    if feature_dim is not None and dataset.dim != feature_dim:
        raise DataError(
            f"{dataset.sources[0]}: features have dimension {dataset.dim}, "
            f"but feature_dim is {feature_dim}"
        )


# Loaded on first use: this package's import stays free of numpy and torch (`--help`).
_LAZY = {"Catalog": "arnet.formats.catalog", "open_catalog": "arnet.formats.opening"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'arnet.formats' has no attribute {name!r}")


__all__ = [
    "LAYOUT_OPTIONS",
    "Catalog",
    "FormatEntry",
    "build_catalog",
    "detect_format",
    "format_entry",
    "format_names",
    "list_formats",
    "open_catalog",
    "open_dataset",
    "register_format",
]
