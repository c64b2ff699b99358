"""Readers for the on-disk layouts of the field, behind one entry point: `open_dataset`.

Layouts (`FORMATS`), each in its own module:

- ``arnet``: the AR-Net reference layout (`formats.arnet`).
- ``list``: RTFM/MGFN/CLIP-TSA/UR-DMU text lists of feature files (`formats.lists`).
- ``csv``: ``path,label`` CSV lists (`formats.lists`).
- ``crops``: folders of per-crop ``VIDEO__K.npy`` files, XD-Violence style (`formats.crops`).
- ``packed``: the native memory-mapped store written by `arnet pack` (`formats.packed`).

Every reader builds a `catalog.Catalog`; `open_dataset` opens it into (train, test)
FeatureDatasets, `arnet inspect` reports on it (`formats.validate`), `arnet pack` writes it into
a store. Ground truth and its tail policy are in `formats.groundtruth`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, overload

from ..config import FRAMES_PER_SEGMENT
from ..data.dataset import FeatureDataset
from ..errors import DataError
from .arnet import catalog_arnet
from .catalog import Catalog
from .crops import catalog_crops, is_crops_layout
from .groundtruth import TAIL_POLICIES
from .layout import is_arnet_layout
from .lists import catalog_csv, catalog_list, is_csv_file, is_list_file
from .opening import open_catalog, select_split, to_dataset, to_datasets
from .packed import catalog_packed, is_packed

FORMATS = ("arnet", "list", "csv", "crops", "packed")


def detect_format(path: str | Path) -> str:
    """Name the layout of `path`, or raise DataError saying what was looked for."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: dataset not found")
    if path.is_dir():
        if is_packed(path):
            return "packed"
        if is_arnet_layout(path):
            return "arnet"
        if is_crops_layout(path):
            return "crops"
    elif is_csv_file(path):
        return "csv"
    elif is_list_file(path):
        return "list"
    raise DataError(
        f"{path}: unrecognised dataset layout (looked for an arnet store, features_video/ of "
        "the AR-Net layout, train/ and test/ folders of .npy files, a .list/.txt or .csv list); "
        f"name the format ({', '.join(FORMATS)})"
    )


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
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in FORMATS:
        raise DataError(f"unknown dataset format {fmt!r}; known: {', '.join(FORMATS)}")
    if tail not in TAIL_POLICIES:
        raise DataError(f"unknown tail policy {tail!r}; choose one of {TAIL_POLICIES}")
    given = {
        "test_list": test_list,
        "list_root": list_root,
        "train_anomalous": train_anomalous,
    }
    takes = {"list": set(given), "csv": {"test_list", "list_root"}}.get(fmt, set())
    wrong = sorted(k for k, v in given.items() if v is not None and k not in takes)
    if wrong:
        raise DataError(f"{path}: option(s) {', '.join(wrong)} do not apply to the {fmt} layout")
    if fmt == "arnet":
        catalog = catalog_arnet(
            path, modal=modal, backbone=backbone, layer=layer, ground_truth=ground_truth
        )
    elif fmt == "list":
        catalog = catalog_list(
            path,
            test_list=test_list,
            ground_truth=ground_truth,
            list_root=list_root,
            train_anomalous=train_anomalous,
        )
    elif fmt == "csv":
        catalog = catalog_csv(
            path, test_list=test_list, ground_truth=ground_truth, list_root=list_root
        )
    elif fmt == "crops":
        catalog = catalog_crops(path, ground_truth=ground_truth)
    else:
        catalog = catalog_packed(path, ground_truth=ground_truth, in_memory=in_memory)
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
        path: the dataset (folder, list file or store); see `FORMATS`.
        format: one of `FORMATS`, or "auto" to detect it.
        modal, backbone, layer: which features of the AR-Net layout.
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
