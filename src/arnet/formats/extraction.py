"""How a dataset's features were made: the extraction record (`extraction.json`), one reader.

`arnet extract` writes `features_video/BACKBONE/extraction.json` (preprocessing, flow, each
modality's backbone with its weights, options and grid); training copies it into the run's
checkpoints (`Checkpoint.extraction`), so that `detect`, `watch` and `export` rebuild the same
extractor from the run alone, and reads the grid of cell features from it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from .layout import backbone_folder, extraction_record


def extraction_settings(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of extraction.json that decide feature values (not paths or versions)."""
    out = {k: v for k, v in meta.items() if k != "arnet_version"}
    pp = meta.get("preprocessing")
    if isinstance(pp, Mapping) and "tail_fill" in pp:
        # Records without it: their `pad` tails were `repeat`ed; a `drop` has no tail to fill.
        if pp.get("tail") != "pad" or pp["tail_fill"] == "repeat":
            out["preprocessing"] = {k: v for k, v in pp.items() if k != "tail_fill"}
    out["backbones"] = {  # where the weights lie and which runtime ran them change no value
        m: {
            k: v
            for k, v in b.items()
            # f32 is what records without a precision were computed in (PyTorch's values)
            if k not in ("weights", "runtime") and not (k == "precision" and v == "f32")
        }
        for m, b in meta.get("backbones", {}).items()
    }
    return out


def settings_key(meta: Mapping[str, Any]) -> str:
    """A short fingerprint of `extraction_settings(meta)`, stored with each video's features:
    a video counts as done only when it was extracted with the folder's current settings."""
    text = json.dumps(extraction_settings(meta), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _parts(modal: str) -> list[str]:
    """The backbone outputs a `--feature-modal` reads, in feature order (rgb before flow)."""
    return ["rgb", "flow"] if modal == "combine" else [modal]


def cell_layout(backbones: Mapping[str, Any], modal: str) -> tuple[int, list[int]] | None:
    """How grid features restore their cells, from extraction.json's "backbones" entry.

    A grid backbone describes `grid` ([rows, cols]) and its numbers per cell: `stats`
    (motion-grid, one per statistic) or `cell_dim` (efficientnet-lite0 with a grid). Each
    backbone's vector is cell-major (cell after cell, row by row); `--modal combine` puts the
    rgb vector before the flow one.

    Returns:
        (cells, per-cell width of each part: rgb then flow), or None when a part has no grid
        or the parts' grids differ.
    """
    grids, widths = set(), []
    for part in _parts(modal):
        described = backbones.get(part) or {}
        try:
            grid = tuple(int(v) for v in described.get("grid") or ())
            stats = described.get("stats")
            width = len(stats) if stats else int(described.get("cell_dim") or 0)
        except (TypeError, ValueError):
            return None
        if len(grid) != 2 or min(grid) < 1 or width < 1:
            return None
        grids.add(grid)
        widths.append(width)
    if len(grids) != 1:
        return None
    rows, cols = grids.pop()
    return rows * cols, widths


def feature_groups(backbones: Mapping[str, Any], modal: str) -> list[int] | None:
    """Which statistic each feature of a grid backbone's `modal` output is (rgb statistics
    first, then flow ones, as `--modal combine` lays them out), from extraction.json's
    "backbones" entry; None when the features carry no grid layout."""
    groups: list[int] = []
    offset = 0
    for part in _parts(modal):
        described = backbones.get(part) or {}
        grid, stats = described.get("grid"), described.get("stats")
        if not grid or not stats:
            return None
        groups += [
            offset + s for _ in range(int(grid[0]) * int(grid[1])) for s in range(len(stats))
        ]
        offset += len(stats)
    return groups


def network_input_size(meta: Mapping[str, Any], folder: Path) -> tuple[int, int] | None:
    """(H, W) the backbone saw, from the preprocessing and the first extracted video's size."""
    pp = meta["preprocessing"]
    if pp["crop"] != "full":
        return pp["crop_size"], pp["crop_size"]
    for info in sorted((folder / "videos").glob("*.json")):
        try:
            video = json.loads(info.read_text())
            width, height = int(video["width"]), int(video["height"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        short = pp["short_side"]
        if not short or min(width, height) == short:
            return height, width
        scale = short / min(width, height)
        return max(round(height * scale), short), max(round(width * scale), short)
    return None


@dataclass(frozen=True)
class ExtractionRecord:
    """An extraction record: what `arnet extract` wrote in extraction.json.

    Attributes:
        data: the record as written (backbone, backbones, preprocessing, flow, ...).
        path: the file it was read from; None for a record carried by a checkpoint.
    """

    data: Mapping[str, Any]
    path: Path | None = None

    @classmethod
    def read(cls, folder: str | Path) -> ExtractionRecord | None:
        """The record of a `features_video/BACKBONE` folder; None when it has none.

        Raises:
            DataError: the file is not valid JSON or not a JSON object, naming it.
        """
        path = extraction_record(folder)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable extraction record ({exc})") from exc
        if not isinstance(data, dict):
            raise DataError(f"{path}: not an extraction record (a JSON object)")
        return cls(data, path)

    @classmethod
    def of_dataset(cls, root: str | Path, backbone: str) -> ExtractionRecord | None:
        """The record of a dataset's `backbone` features (None when there is none)."""
        return cls.read(backbone_folder(root, backbone))

    @property
    def backbone(self) -> str | None:
        return self.data.get("backbone")

    @property
    def backbones(self) -> Mapping[str, Any]:
        """modality -> its backbone's description (name, weights, sha256, options, grid)."""
        return self.data.get("backbones") or {}

    @property
    def preprocessing(self) -> Mapping[str, Any]:
        return self.data.get("preprocessing") or {}

    @property
    def flow(self) -> Mapping[str, Any]:
        return self.data.get("flow") or {}

    @property
    def where(self) -> str:
        """How to name the record in messages."""
        return str(self.path) if self.path is not None else "the run's extraction record"

    def settings(self) -> dict[str, Any]:
        return extraction_settings(self.data)

    def key(self) -> str:
        return settings_key(self.data)

    def cell_layout(self, modal: str) -> tuple[int, list[int]] | None:
        return cell_layout(self.backbones, modal)

    def feature_groups(self, modal: str) -> list[int] | None:
        return feature_groups(self.backbones, modal)

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(H, W) of the frames the backbone saw: recorded in a checkpoint's copy, else read off
        the dataset's first extracted video (`network_input_size`); None when unknown."""
        size = self.data.get("input_size")
        if isinstance(size, (list, tuple)) and len(size) == 2:
            return int(size[0]), int(size[1])
        if self.path is None or not self.preprocessing:
            return None
        return network_input_size(self.data, self.path.parent)

    def carried(self) -> dict[str, Any]:
        """The copy a run's checkpoints carry: the record with the frame size it implies, so
        that the run needs its dataset no more."""
        data = self.to_dict()
        size = self.input_size
        if size is not None:
            data["input_size"] = list(size)
        return data

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.data))  # a plain copy, safe to store
