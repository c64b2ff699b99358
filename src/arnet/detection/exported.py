"""A `Detector` from an `arnet export` folder, for `arnet watch --checkpoint EXPORT`.

The scores come from the export's head file (ONNX through ONNX Runtime or OpenVINO, or
TorchScript), exactly as `load_exported(...).score` gives them; the segment features are made
as the export's manifest records its run's extraction (backbone, weights checked by SHA-256,
preprocessing, flow), by the same extractor `load_detector` builds for a checkpoint. A
watcher therefore needs no run folder and no checkpoint: only the export folder, and for a
backbone with weights the weight file the manifest names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ExportError
from ..models import model_entry
from ..training.runtime import resolve_device
from .detector import Detector, recorded_extractor
from .export import MANIFEST, ExportedDetector, load_exported


def is_export(path: str | Path) -> bool:
    """Whether `path` is an export folder (it holds manifest.json)."""
    return (Path(path) / MANIFEST).is_file()


class ExportedHead(nn.Module):
    """An export's head as a model: (B, T, D) features and mask -> (B, T) scores in [0, 1].

    Each video's valid segments are scored in one call of the head, as the head is exported
    (a temporal model reads a video's segments together); padded positions score 0.
    """

    cells = 1
    has_contributions = False

    def __init__(self, exported: ExportedDetector) -> None:
        super().__init__()
        self.exported = exported
        name = exported.manifest["model"]
        try:
            independent = bool(getattr(model_entry(name).cls, "independent_segments", False))
        except (KeyError, ValueError):
            independent = False  # an unknown model: scored with its left context, the safe way
        self.independent_segments = independent and exported.manifest.get("cells") is None
        self.arnet_spec = {
            "name": f"{name} (exported)",
            "kwargs": {"feature_dim": int(exported.manifest["feature_dim"])},
        }

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = features.detach().float().cpu().numpy()
        lengths = [x.shape[1]] * x.shape[0] if mask is None else mask.sum(dim=1).cpu().tolist()
        out = np.zeros(x.shape[:2], dtype=np.float32)
        for b, n in enumerate(int(v) for v in lengths):
            if n:
                out[b, :n] = self.exported.score(x[b, :n])
        return torch.from_numpy(out).to(features.device)


def load_export_detector(
    folder: str | Path,
    *,
    backbone: str | None = None,
    weights: Mapping[str, str | Path | None] | None = None,
    backbone_options: Mapping[str, Any] | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    flow: Mapping[str, Any] | None = None,
    batch_size: int = 16,
    device: str = "auto",
    runtime: str | None = None,
) -> tuple[Detector, dict[str, Any]]:
    """A Detector scoring with the export's head on features extracted as its manifest says.

    Raises:
        ExportError: not an export folder, a file changed since export, a manifest without the
            extraction record (an export of features not made by `arnet extract`: give
            --backbone), as `load_exported`.
        ExtractError: as `load_detector` for the extraction (weights missing or different).
    """
    exported = load_exported(folder, runtime)
    manifest = exported.manifest
    meta = manifest.get("extraction")
    output = manifest.get("feature_modal") or _output(manifest, folder)
    if meta is None and backbone is None:
        raise ExportError(
            f"{Path(folder) / MANIFEST}: records no feature extraction; give --backbone (and "
            "the settings its features were extracted with)"
        )
    torch_device = resolve_device(device)
    extractor = recorded_extractor(
        meta,
        output,
        folder,
        f"{folder}/manifest.json",
        torch_device,
        backbone=backbone,
        weights=weights,
        backbone_options=backbone_options,
        preprocessing=preprocessing,
        flow=flow,
        batch_size=batch_size,
    )
    head = ExportedHead(exported)
    detector = Detector(head, extractor, output, "cpu", "mean", float(manifest["threshold"]))
    return detector, {**extractor.metadata(), "checkpoint": str(folder), "output": output}


def _output(manifest: Mapping[str, Any], folder: str | Path) -> str:
    """The features the head of an export made before manifests named them: its run's
    feature_modal, read from the checkpoint the manifest names."""
    from ..errors import CheckpointError
    from ..training.checkpoint import load_checkpoint

    try:
        payload = load_checkpoint(manifest["checkpoint"])
    except CheckpointError as exc:
        raise ExportError(
            f"{Path(folder) / MANIFEST}: does not say which features its head takes, and its "
            f"run's checkpoint cannot tell ({exc}); export the run again"
        ) from None
    return str(payload["config"].get("feature_modal", "combine"))
