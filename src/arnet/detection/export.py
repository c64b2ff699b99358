"""`arnet export`: a trained run as files other programs can run, and a loader for them.

```
arnet export RUN --format onnx          # RUN/export-onnx/{head.onnx, backbone.onnx, manifest.json}
arnet export RUN --format torchscript   # RUN/export-torchscript/{head.pt, backbone.pt, ...}
```

- `head`: the scoring model. Input `features` (T, D) float32, the segment features of one
  video in order; output `scores` (T,) in [0, 1]. T is free. A run that scored cells
  (`--instances cells`) exports its whole cell model: D is then cells x per-cell numbers and
  each score is the segment's highest cell score.
- `backbone` (when the run's features are EfficientNet-Lite0's): input `frames` (M, H, W, 3)
  uint8 RGB, already resized (and cropped) as the manifest says; output `features` (M, 1280),
  one per frame before the segment pooling ((M, cells x 1280) with `--grid`, cell-major). M is
  free; H and W are the export's input size (EfficientNet's "same" padding is fixed at export,
  so one file serves one frame size).
- `manifest.json`: what the files take and how features were made (backbone options, segment
  pooling, preprocessing, frame stride, threshold), with each file's SHA-256.

`load_exported(folder)` runs an export (ONNX through ONNX Runtime or OpenVINO, TorchScript
through torch) behind a small interface: `frame_features(frames)`, `segment_features(...)`
(a video's, its tail cut as `arnet detect` cuts it) or `segment_feature(...)`,
`score(features)`; see `ExportedDetector`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..atomic import write_json_atomic
from ..errors import ExportError, FolderError
from ..extract.backbones import create_backbone
from ..extract.image import FrameBackbone, pool_frames
from ..extract.preprocess import crop_windows, kept_frames, resize_short_side, segment_frames
from ..extract.runtimes import CompiledNetwork, onnx_bytes, require_runtime
from ..folders import (
    claim_folder,
    contents,
    fresh_folder,
    remove_stale_temporaries,
    removed_if_left_empty,
    require_free,
    same_or_inside,
    stale_temporaries,
    temporary_name,
)
from ..models.cells import CellInstances, input_dim
from ..training.checkpoint import Checkpoint, load_checkpoint
from ..versions import refuse_newer

EXPORT_FORMAT = "arnet-export"
EXPORT_VERSION = 1
FORMATS = ("onnx", "torchscript")
MANIFEST = "manifest.json"
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
EXPORTABLE_BACKBONES = ("efficientnet-lite0",)
# The largest frame side a backbone is exported for (8K video; beyond, tracing alone would
# need tens of GiB).
MAX_SIDE = 8192


# ---------------------------------------------------------------------- modules to export


class HeadForExport(nn.Module):
    """(T, D) features of one video -> (T,) scores, every segment valid."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features[None]  # (1, T, D)
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return self.model(x, mask)[0]


class FramesForExport(nn.Module):
    """(M, H, W, 3) uint8 RGB -> (M, D): the pipeline's scaling to [-1, 1], then the network."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network.eval()

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return self.network(x)


# ---------------------------------------------------------------------- writing


def parse_size(text: str) -> tuple[int, int]:
    """`WxH` -> (H, W)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ExportError(f"--input-size takes WIDTHxHEIGHT (e.g. 336x224), got {text!r}") from None
    if not (32 <= width <= MAX_SIDE and 32 <= height <= MAX_SIDE):  # traced with two frames
        raise ExportError(f"--input-size {text}: both sides must be 32 to {MAX_SIDE} pixels")
    return height, width


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_module(
    module: nn.Module,
    example: torch.Tensor,
    path: Path,
    fmt: str,
    names: tuple[str, str],
    free_axis: str,
) -> None:
    if fmt == "onnx":
        require_runtime("onnx", "exporting to ONNX")
        data = onnx_bytes(
            module,
            (example,),
            [names[0]],
            [names[1]],
            {names[0]: {0: free_axis}, names[1]: {0: free_axis}},
        )
        path.write_bytes(data)
    else:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer notes on shape arithmetic, fixed by design
            traced = torch.jit.trace(module.eval(), example, check_trace=False)
        traced.save(str(path))


def export_run(
    run: str | Path,
    fmt: str,
    out: str | Path | None = None,
    input_size: tuple[int, int] | None = None,
    overwrite: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Export a run's scoring head (and its EfficientNet-Lite0 backbone) to `out`.

    Args:
        run: run folder or checkpoint file.
        fmt: `onnx` or `torchscript`.
        out: a new or empty folder to write (default: a fresh RUN/export-FORMAT, numbered
            -2, -3, ... when taken). Each file is written under a temporary name and renamed
            once whole, the manifest last.
        input_size: (H, W) of the backbone's frames (default: from the extraction record).
        overwrite: `out` (default RUN/export-FORMAT) may hold an earlier export, recognised by
            its manifest and holding nothing else; its files are replaced.

    Returns:
        The folder and its manifest.

    Raises:
        ExportError, CheckpointError: naming the run, folder or option. FolderError: `out`
            is the run or holds it, is in use, or holds anything but an earlier export.
    """
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    payload = load_checkpoint(run)
    checkpoint = payload.path
    model = payload.model("cpu").eval()
    feature_dim = int(input_dim(model) or payload["model"]["kwargs"]["feature_dim"])
    run_folder = payload.run_folder.path if payload.run_folder is not None else None
    default_parent = run_folder or checkpoint.parent
    sources = [checkpoint, *([run_folder] if run_folder else [])]
    if out is None and not overwrite:
        out, created = fresh_folder(default_parent, f"export-{fmt}"), True
    else:
        out = Path(out) if out is not None else default_parent / f"export-{fmt}"
        replaceable_files(out, overwrite, sources)  # refused before anything is written
        created = not out.exists()
    # a folder this export made is taken back when the export fails
    guard = removed_if_left_empty(out) if created else contextlib.nullcontext()
    with guard, claim_folder(out, "arnet export"):
        old = replaceable_files(out, overwrite, sources)  # again, now that it is held
        remove_stale_temporaries(out)
        manifest = _write_export(payload, model, feature_dim, fmt, out, input_size)
        kept = {MANIFEST, manifest["head"]["file"], (manifest["backbone"] or {}).get("file")}
        for name in old - kept:  # the earlier export's files that this one has not replaced
            (out / name).unlink(missing_ok=True)
    return out, manifest


def replaceable_files(out: Path, overwrite: bool, sources: list[Path]) -> set[str]:
    """The files of an earlier export in `out` that this export may replace (none when `out`
    is new or empty); anything else is refused, and so is a folder holding the run.

    Raises:
        FolderError: `out` is the run (or holds it), is not a folder, is held by a running
            process, or holds something other than one earlier export (`overwrite`) or
            anything at all (without it).
    """
    if any(same_or_inside(source, out) for source in sources):
        raise FolderError(
            f"{out}: is the run being exported ({sources[-1]}) or holds it; choose an --out "
            "outside it"
        )
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise FolderError(f"{out}: exists and is not a folder; choose a new or empty --out")
    if out.is_dir():
        require_free(out)
    # a killed export's temporaries are not the user's: removed once the folder is held
    names = set(contents(out)) - {p.name for p in stale_temporaries(out)}
    if not names:
        return set()
    shown = ", ".join(sorted(names)[:4]) + (", ..." if len(names) > 4 else "")
    if not overwrite:
        raise FolderError(
            f"{out} is not empty (holds {shown}); export into a new or empty --out, or "
            "--overwrite an earlier export"
        )
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise FolderError(
            f"{out}: holds no arnet export ({MANIFEST}); --overwrite replaces only an earlier "
            "export: choose a new or empty --out"
        )
    own = {MANIFEST}
    for part in ("head", "backbone"):
        entry = manifest.get(part)
        name = entry.get("file") if isinstance(entry, dict) else None
        if isinstance(name, str) and name and Path(name).name == name and name not in ("..", "."):
            own.add(name)
    others = sorted(names - own)
    if others:
        raise FolderError(
            f"{out}: holds {', '.join(others[:4])} besides the export; --overwrite replaces only "
            "a folder holding nothing but an earlier export: choose a new or empty --out"
        )
    return names


def _write_export(
    payload: Checkpoint,
    model: nn.Module,
    feature_dim: int,
    fmt: str,
    out: Path,
    input_size: tuple[int, int] | None,
) -> dict[str, Any]:
    """Write the export's files into `out` (held by this process): each under a temporary name
    first, renamed once whole, the manifest last; returns the manifest."""
    checkpoint, config, record = payload.path, payload.config, payload.extraction
    meta = None if record is None else dict(record.data)
    output = config.feature_modal
    manifest: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "arnet_version": __version__,
        "files_format": fmt,
        "checkpoint": str(checkpoint),
        "model": payload["model"]["name"],
        "feature_dim": feature_dim,
        "feature_modal": output,  # which features the head takes (rgb, flow, combine)
        # a cell model's head takes the whole grid feature and returns its highest cell score
        "instances": config.instances,
        "cells": model.cells if isinstance(model, CellInstances) else None,
        "threshold": payload.threshold,
        "head": {"file": f"head{SUFFIX[fmt]}", "input": "features", "output": "scores"},
        "backbone": None,
        "extraction": meta,
    }
    written: list[Path] = []  # temporaries, renamed once every file is whole
    try:
        with torch.no_grad():
            _write_module(
                HeadForExport(model),
                torch.zeros(8, feature_dim),
                _temporary(out / manifest["head"]["file"], written),
                fmt,
                ("features", "scores"),
                "segments",
            )
        manifest["head"]["sha256"] = _sha256(written[-1])
        backbone_name = (meta or {}).get("backbone")
        if record is not None and backbone_name in EXPORTABLE_BACKBONES and output == "rgb":
            size = input_size or record.input_size
            if size is None:
                raise ExportError(
                    f"{record.where}: no extracted video records the frame size; give "
                    "--input-size WxH"
                )
            assert meta is not None  # read from the record
            recorded = meta["backbones"]["rgb"]
            options = dict(recorded.get("options", {}))
            pool = options.pop("pool", "mean")
            backbone = create_backbone(backbone_name, "rgb", recorded.get("weights"), **options)
            assert isinstance(backbone, FrameBackbone)  # every exportable backbone is one
            if backbone.sha256 != recorded.get("sha256"):
                raise ExportError(
                    f"{record.where}: the {backbone_name} weights found differ from "
                    "the recorded ones (SHA-256)"
                )
            file = f"backbone{SUFFIX[fmt]}"
            _write_module(
                # Module.to takes memory_format; torch's overloads omit it
                FramesForExport(backbone.reference.to(memory_format=torch.contiguous_format)),  # type: ignore[call-overload]
                torch.zeros(2, size[0], size[1], 3, dtype=torch.uint8),
                _temporary(out / file, written),
                fmt,
                ("frames", "features"),
                "frames",
            )
            manifest["backbone"] = {
                "file": file,
                "name": backbone_name,
                "input": "frames",
                "output": "features",
                "height": size[0],
                "width": size[1],
                "frame_dim": backbone.frame_dim,
                "cells": backbone.cells,
                "pool": pool,
                "options": options,
                "sha256": _sha256(written[-1]),
            }
        for path in written:
            os.replace(path, out / path.name[1:].rsplit(".", 2)[0])
        write_json_atomic(out / MANIFEST, manifest)
    finally:
        for path in written:
            path.unlink(missing_ok=True)
    return manifest


def _temporary(path: Path, written: list[Path]) -> Path:
    """The hidden temporary `path` is written under (remembered in `written`)."""
    written.append(temporary_name(path))
    return written[-1]


# ---------------------------------------------------------------------- loading


RUNTIMES_FOR = {"onnx": ("onnxruntime", "openvino"), "torchscript": ("torch",)}


class _Runner:
    """One exported file behind `run(array) -> array`.

    `whole`: the input is one sequence (the head's segments of a video, which a temporal
    model reads together), run in one request; otherwise rows (frames) may be run apart.
    """

    def __init__(
        self, path: Path, fmt: str, runtime: str, threads: int | None, whole: bool = False
    ) -> None:
        self.fmt = fmt
        if fmt == "torchscript":
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    self.module = torch.jit.load(str(path), map_location="cpu").eval()
            except (RuntimeError, ValueError) as exc:
                raise ExportError(f"{path}: not a loadable TorchScript file ({exc})") from exc
            return
        try:
            self.compiled = CompiledNetwork(
                path.read_bytes(),
                runtime,
                threads or torch.get_num_threads(),
                request_frames=None if whole else 1,
            )
        except ExportError:
            raise
        except Exception as exc:  # the runtimes raise their own types for a bad model file
            raise ExportError(f"{path}: {runtime} cannot load it ({exc})") from exc

    def run(self, x: np.ndarray) -> np.ndarray:
        if self.fmt == "torchscript":
            with torch.inference_mode():
                return self.module(torch.from_numpy(np.ascontiguousarray(x))).numpy()
        return self.compiled.run(x)


@dataclass
class ExportedDetector:
    """A run exported by `arnet export`, ready to score frames or features.

    Attributes:
        folder: the export folder.
        manifest: its manifest.json.
        runtime: what runs the files (`onnxruntime` or `openvino` for ONNX, `torch` for
            TorchScript).
    """

    folder: Path
    manifest: dict[str, Any]
    runtime: str
    _head: _Runner
    _backbone: _Runner | None

    @property
    def has_backbone(self) -> bool:
        return self._backbone is not None

    @property
    def frames_per_segment(self) -> int:
        extraction = self.manifest.get("extraction") or {}
        return int(extraction.get("preprocessing", {}).get("frames_per_segment", 16))

    @property
    def frame_stride(self) -> int:
        extraction = self.manifest.get("extraction") or {}
        return int(extraction.get("preprocessing", {}).get("frame_stride", 1))

    def score(self, features: np.ndarray) -> np.ndarray:
        """(T, D) segment features (or (T, V, D) multi-crop, averaged over crops) -> (T,)."""
        x = np.asarray(features, dtype=np.float32)
        if x.ndim == 3:
            x = x.mean(axis=1)
        if x.ndim != 2 or x.shape[1] != self.manifest["feature_dim"]:
            raise ExportError(
                f"{self.folder}: the head takes (T, {self.manifest['feature_dim']}) features, "
                f"got {tuple(np.shape(features))}"
            )
        return self._head.run(x).astype(np.float32)

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        """A decoded RGB frame (H, W, 3) uint8 -> the backbone's input: resized to the short
        side and cropped as the features were (`full` or `center` crop)."""
        backbone = self._need_backbone()
        pp = self.manifest["extraction"]["preprocessing"]
        frame = resize_short_side(frame, pp["short_side"])
        if pp["crop"] == "ten":
            raise ExportError(f"{self.folder}: ten-crop features are not supported by the loader")
        top, left, h, w, _ = crop_windows(
            frame.shape[0], frame.shape[1], pp["crop_size"], pp["crop"]
        )[0]
        frame = frame[top : top + h, left : left + w]
        if frame.shape[:2] != (backbone["height"], backbone["width"]):
            raise ExportError(
                f"{self.folder}: the backbone was exported for {backbone['width']}x"
                f"{backbone['height']} frames, this one becomes {frame.shape[1]}x{frame.shape[0]}; "
                "export again with --input-size"
            )
        return np.ascontiguousarray(frame)

    def frame_features(self, frames: np.ndarray) -> np.ndarray:
        """(M, H, W, 3) uint8 RGB frames from `prepare` -> (M, frame_dim) features."""
        backbone = self._need_backbone()
        x = np.ascontiguousarray(frames, dtype=np.uint8)
        if x.ndim != 4 or x.shape[1:] != (backbone["height"], backbone["width"], 3):
            raise ExportError(
                f"{self.folder}: the backbone takes (M, {backbone['height']}, "
                f"{backbone['width']}, 3) uint8 frames, got {tuple(x.shape)}"
            )
        return self._backbone.run(x).astype(np.float32)  # type: ignore[union-attr]

    def video_segments(self, frames: int) -> list[list[int]]:
        """The frames (0-based) whose features make each segment feature of a video of
        `frames` frames, as `arnet detect` cuts it: consecutive segments of
        `frames_per_segment`, every `frame_stride`-th frame encoded; the frames after the last
        full segment are scored by the video's last frames_per_segment frames (a window
        overlapping the segment before: a short tail is no reason to score higher), a video
        shorter than one segment by its frames and the last one repeated."""
        length, stride = self.frames_per_segment, self.frame_stride
        return [
            kept_frames([i if i % stride == 0 else None for i in chosen], length, stride)
            for chosen in segment_frames(frames, length, "pad", "window")
        ]

    def segment_features(self, frame_features: np.ndarray) -> np.ndarray:
        """(F, frame_dim) features of every frame of a video (rows of frames the stride skips
        are not read) -> its (T, D) segment features, T = ceil(F / frames_per_segment), cut as
        `video_segments` says."""
        x = np.asarray(frame_features)
        segments = self.video_segments(len(x))
        if not segments:
            raise ExportError(f"{self.folder}: no frame features to make segments of")
        return np.stack([self.segment_feature(x[chosen]) for chosen in segments])

    def segment_feature(self, frame_features: np.ndarray) -> np.ndarray:
        """(L, frame_dim) features of one segment's frames -> its (D,) feature, pooled as the
        training features were (a video's segments, its tail's too: `video_segments`)."""
        cells = int(self._need_backbone().get("cells") or 1)  # a grid: pooled per cell
        x = torch.from_numpy(np.asarray(frame_features))[None]
        return pool_frames(x, self._pool(), cells)[0].numpy()

    def _pool(self) -> str:
        return self._need_backbone()["pool"]

    def _need_backbone(self) -> dict[str, Any]:
        if self._backbone is None:
            raise ExportError(f"{self.folder}: holds no backbone (only the scoring head)")
        return self.manifest["backbone"]


def load_exported(
    folder: str | Path, runtime: str | None = None, threads: int | None = None
) -> ExportedDetector:
    """Load an `arnet export` folder.

    Args:
        folder: the export folder (holding manifest.json).
        runtime: for ONNX files `onnxruntime` (default) or `openvino`; for TorchScript `torch`.
        threads: CPU threads of the runtime (None: torch's thread count).

    Raises:
        ExportError: no manifest, a file missing or changed since export (SHA-256), a runtime
            that does not run this format. MissingExtraError: the runtime is not installed.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(f"{path}: not found (not an arnet export folder)") from None
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{path}: not an arnet export manifest")
    refuse_newer(path, "export", manifest, EXPORT_VERSION, ExportError)
    fmt = manifest.get("files_format")
    if fmt not in FORMATS:
        raise ExportError(f"{path}: unknown files_format {fmt!r}")
    runtime = runtime or RUNTIMES_FOR[fmt][0]
    if runtime not in RUNTIMES_FOR[fmt]:
        raise ExportError(
            f"{folder}: {fmt} files run with {' or '.join(RUNTIMES_FOR[fmt])}, not {runtime}"
        )
    runners = {}
    for part in ("head", "backbone"):
        entry = manifest.get(part)
        if entry is None:
            continue
        file = folder / entry["file"]
        if not file.is_file():
            raise ExportError(f"{file}: missing from the export")
        if _sha256(file) != entry.get("sha256"):
            raise ExportError(f"{file}: changed since export (SHA-256 differs from {MANIFEST})")
        runners[part] = _Runner(file, fmt, runtime, threads, whole=part == "head")
    if "head" not in runners:
        raise ExportError(f"{path}: names no head")
    return ExportedDetector(folder, manifest, runtime, runners["head"], runners.get("backbone"))
