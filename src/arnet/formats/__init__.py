"""Readers for the on-disk layouts of the field, behind one entry point: `open_dataset`."""

from __future__ import annotations

from pathlib import Path

from ..data import DataError, FeatureDataset
from .arnet import is_arnet_layout, load_arnet

FORMATS = ("arnet",)


def detect_format(path: str | Path) -> str:
    """Name the layout of `path`, or raise DataError saying what was looked for."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: dataset not found")
    if is_arnet_layout(path):
        return "arnet"
    raise DataError(
        f"{path}: unrecognised dataset layout (looked for features_video/ of the AR-Net layout); "
        "name it with --format"
    )


def open_dataset(
    path: str | Path,
    format: str = "auto",
    *,
    modal: str = "combine",
    backbone: str = "i3d",
    layer: str = "fc6",
    feature_dim: int | None = None,
    in_memory: bool = False,
) -> tuple[FeatureDataset, FeatureDataset]:
    """Open a dataset in any supported layout as (train, test) FeatureDatasets."""
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "arnet":
        return load_arnet(
            path,
            modal=modal,
            backbone=backbone,
            layer=layer,
            feature_dim=feature_dim,
            in_memory=in_memory,
        )
    raise DataError(f"unknown dataset format {fmt!r}; known: {', '.join(FORMATS)}")
