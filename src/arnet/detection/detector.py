"""Anomaly alerts for a video: per-frame scores, alert intervals and a plot, from a checkpoint.

```
video --FeatureExtractor--> features (T, D) --model--> segment scores (T,)
  --repeat 16x--> frame scores (F,) --threshold--> alert intervals (start, end, peak)
```

The threshold is given directly, or calibrated on videos known to be normal: the lowest
threshold at which at most a target share of their frames would raise an alert.

Every frame gets a score under the `pad` tail policy (detect's default: the frames after the
last full segment get the score of the video's last 16 frames, a window overlapping the segment
before); under `drop`, the trailing frames that fill no segment have no score (NaN, never part
of an alert).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from ..atomic import csv_row, write_atomic, write_json_atomic
from ..data.dataset import require_finite
from ..errors import DataError, ExtractError
from ..evaluation.metrics import calibrate_threshold, expand_to_frames
from ..evaluation.plots import file_stem, plt
from ..evaluation.scoring import score_arrays
from ..extract.backbones import create_backbone
from ..extract.flow import FlowSettings
from ..extract.pipeline import ExtractConfig, FeatureExtractor, VideoFeatures
from ..extract.preprocess import Preprocessing
from ..extract.video import VideoInput
from ..extract.weights import file_sha256
from ..formats.layout import backbone_folder
from ..models import ScoringModel
from ..models.cells import input_dim
from ..training.checkpoint import load_checkpoint
from ..training.runtime import resolve_device
from .alerts import Alert, find_alerts
from .heatmaps import write_heat_maps


@dataclass
class Detection:
    """The scores and alerts of one video.

    Attributes:
        name, source: the video.
        fps: frame rate used for times.
        segment_scores: (T,) model scores in [0, 1].
        frame_scores: (F,) scores per decoded frame; NaN where no segment covers the frame.
        threshold: alert threshold.
        alerts: alert intervals in time order.
        frames_per_segment: frames per segment score.
    """

    name: str
    source: str
    fps: float
    segment_scores: np.ndarray
    frame_scores: np.ndarray
    threshold: float
    alerts: list[Alert] = field(default_factory=list)
    frames_per_segment: int = 16
    cell_maps: np.ndarray | None = None
    """(T, rows, cols): where each segment is anomalous (grid backbones with a model that can
    tell: a cell model's cell scores, nearest-normal's share of the distance), else None."""

    def summary(self) -> dict[str, Any]:
        scored = self.frame_scores[np.isfinite(self.frame_scores)]
        return {
            "name": self.name,
            "source": self.source,
            "fps": self.fps,
            "frames": int(self.frame_scores.size),
            "segments": int(self.segment_scores.size),
            "threshold": self.threshold,
            "max_score": float(scored.max()) if scored.size else None,
            "alert_frames": int(sum(a.end_frame - a.start_frame + 1 for a in self.alerts)),
            "alerts": [{**asdict(a), "duration_s": a.duration_s} for a in self.alerts],
        }


def frame_scores(
    segment_scores: np.ndarray, frames: int, frames_per_segment: int = 16
) -> np.ndarray:
    """Segment scores (T,) -> scores of the F decoded frames (F,).

    Each segment score stands for its frames_per_segment frames; frames past the last segment
    (the `drop` tail) get NaN, and padded frames past the video's end (the `pad` tail) are cut.
    """
    out = np.full(frames, np.nan, dtype=np.float64)
    expanded = expand_to_frames(np.asarray(segment_scores, dtype=np.float64), frames_per_segment)
    n = min(frames, expanded.size)
    out[:n] = expanded[:n]
    return out


class Detector:
    """Scores videos with a trained model on features from an extractor.

    Args:
        model: a registry model (`model(features, mask) -> scores`).
        extractor: the extractor that made the model's training features (same settings).
        output: which features the model takes: "rgb", "flow" or "combine".
        device: where the model runs.
        crop_mode: ten-crop features: "mean" features, or "per_crop" scores averaged.
        threshold: the default alert threshold (the checkpoint's).
    """

    def __init__(
        self,
        model: nn.Module,
        extractor: FeatureExtractor,
        output: str,
        device: torch.device | str = "cpu",
        crop_mode: str = "mean",
        threshold: float = 0.5,
    ) -> None:
        if output not in extractor.outputs:
            raise ExtractError(
                f"the model takes {output} features, but the extractor makes "
                f"{', '.join(extractor.outputs)}"
            )
        expected = input_dim(model)
        if expected is not None and expected != extractor.dims[output]:
            raise ExtractError(
                f"the model takes {expected}-d features, but {extractor.name} {output} "
                f"features are {extractor.dims[output]}-d: use the backbone and settings the "
                "training features were extracted with"
            )
        # a registry model: its capabilities typed as ScoringModel's (nn.Module's __getattr__
        # stub types every attribute Tensor | Module)
        self.model = cast(ScoringModel, model.to(device).eval())
        self.extractor = extractor
        self.output = output
        self.device = device
        self.crop_mode = crop_mode
        self.threshold = threshold

    def score(self, video: VideoInput) -> tuple[VideoFeatures, np.ndarray]:
        """Extract and score one video: its features and (T,) segment scores."""
        result = self.extractor.extract(video)
        features = result.features[self.output]
        require_finite(features, video.name, str(video.path))
        scores = score_arrays(self.model, [features], self.device, self.crop_mode)[0]
        return result, scores

    def detect(
        self,
        video: VideoInput,
        threshold: float,
        min_frames: int = 1,
        merge_gap: int = 0,
    ) -> Detection:
        """Scores, frame scores and alerts of one video at `threshold`."""
        result, scores = self.score(video)
        length = self.extractor.config.preprocessing.frames_per_segment
        per_frame = frame_scores(scores, result.frames, length)
        maps = self.cell_maps(result.features[self.output])
        return Detection(
            name=video.name,
            source=str(video.path),
            fps=result.fps,
            segment_scores=np.asarray(scores, dtype=np.float64),
            frame_scores=per_frame,
            threshold=threshold,
            alerts=find_alerts(per_frame, threshold, result.fps, min_frames, merge_gap),
            frames_per_segment=length,
            cell_maps=maps,
        )

    @property
    def cell_grid(self) -> tuple[int, int] | None:
        """(rows, cols) of the cells `cell_maps` maps: when the model scores cells (--instances
        cells) or gives per-feature contributions (nearest-normal), every backbone lays its
        features out on one grid and the whole frame is kept (--crop full); None otherwise."""
        parts = ["rgb", "flow"] if self.output == "combine" else [self.output]
        grids = [getattr(self.extractor.backbones.get(m), "grid", None) for m in parts]
        if None in grids or len(set(grids)) > 1:
            return None
        if self.extractor.config.preprocessing.crop != "full":  # cells would not fit the frame
            return None
        assert grids[0] is not None  # no grid is None (above)
        rows, cols = grids[0]
        if self.model.cells > 1:
            return (rows, cols) if self.model.cells == rows * cols else None
        return (rows, cols) if self.model.has_contributions else None

    def cell_maps(self, features: np.ndarray) -> np.ndarray | None:
        """(T, rows, cols): each cell's score for a model that scores cells (--instances
        cells), or its share of the segment's distance from normal for a model that gives
        per-feature contributions (nearest-normal); None where there is no `cell_grid` or the
        features hold several views."""
        grid = self.cell_grid
        if features.ndim != 2 or grid is None:
            return None
        rows, cols = grid
        parts = ["rgb", "flow"] if self.output == "combine" else [self.output]
        x = torch.from_numpy(np.asarray(features, np.float32)).to(self.device)
        if self.model.cells > 1:
            mask = torch.ones(1, len(features), dtype=torch.bool, device=self.device)
            with torch.no_grad():
                scores = self.model.cell_scores(x[None], mask)[0]  # (T, cells), row by row
            return scores.float().cpu().numpy().reshape(len(features), rows, cols)
        with torch.no_grad():
            share = self.model.contributions(x).cpu().numpy()
        maps, start = np.zeros((len(features), rows, cols)), 0
        for m in parts:
            width = self.extractor.backbones[m].dim
            maps += share[:, start : start + width].reshape(len(features), rows, cols, -1).sum(-1)
            start += width
        return maps

    def calibrate(self, videos: Sequence[VideoInput], false_alarm_rate: float) -> float:
        """Threshold from normal videos (see `calibrate_threshold`)."""
        if not videos:
            raise DataError("no normal videos to calibrate the threshold on")
        length = self.extractor.config.preprocessing.frames_per_segment
        pooled = []
        for video in videos:
            result, scores = self.score(video)
            pooled.append(frame_scores(scores, result.frames, length))
        return calibrate_threshold(pooled, false_alarm_rate)


# ---------------------------------------------------------------------- output files


def write_detection(folder: str | Path, detection: Detection) -> dict[str, Path]:
    """Write NAME.scores.csv, NAME.alerts.csv and NAME.png into `folder`; returns the paths.

    scores.csv: frame (0-based), time_s, score (empty where the frame has no score).
    alerts.csv: start_frame, end_frame (inclusive), start_s, end_s, duration_s, peak_score,
    peak_frame.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = file_stem(detection.name)
    paths = {
        "scores": folder / f"{stem}.scores.csv",
        "alerts": folder / f"{stem}.alerts.csv",
        "plot": folder / f"{stem}.png",
    }
    scores = io.StringIO(newline="")
    writer = csv.writer(scores)
    writer.writerow(["frame", "time_s", "score"])
    for i, s in enumerate(detection.frame_scores):
        writer.writerow(
            csv_row([i, f"{i / detection.fps:.3f}", "" if math.isnan(s) else f"{s:.6f}"])
        )
    alerts = io.StringIO(newline="")
    writer = csv.writer(alerts)
    writer.writerow(
        [
            "start_frame",
            "end_frame",
            "start_s",
            "end_s",
            "duration_s",
            "peak_score",
            "peak_frame",
        ]
    )
    for a in detection.alerts:
        writer.writerow(
            csv_row(
                [
                    a.start_frame,
                    a.end_frame,
                    f"{a.start_s:.3f}",
                    f"{a.end_s:.3f}",
                    f"{a.duration_s:.3f}",
                    f"{a.peak_score:.6f}",
                    a.peak_frame,
                ]
            )
        )
    for key, text in (("scores", scores), ("alerts", alerts)):
        data = text.getvalue().encode()
        # mypy cannot type a lambda with a default argument (python/mypy#15459)
        write_atomic(paths[key], lambda f, data=data: f.write(data))  # type: ignore[misc]
    plot_detection(paths["plot"], detection)
    if detection.cell_maps is not None and detection.alerts:
        paths.update(
            write_heat_maps(
                folder,
                stem,
                detection.source,
                detection.alerts,
                detection.cell_maps,
                detection.frames_per_segment,
            )
        )
    return paths


def plot_detection(path: str | Path, detection: Detection) -> Path:
    """Frame scores over time, the threshold, and the alert intervals shaded."""
    times = np.arange(detection.frame_scores.size) / detection.fps
    fig, ax = plt.subplots(figsize=(9, 3), dpi=80)
    try:
        for i, a in enumerate(detection.alerts):
            ax.axvspan(
                a.start_s,
                a.end_s,
                color="tab:red",
                alpha=0.2,
                linewidth=0,
                label="alert" if i == 0 else None,
            )
        ax.plot(times, detection.frame_scores, color="tab:blue", linewidth=1.2, label="score")
        ax.axhline(
            detection.threshold,
            color="gray",
            linestyle="--",
            linewidth=0.8,
            label=f"threshold {detection.threshold:.3f}",
        )
        ax.set_xlim(0, max(times[-1] if times.size else 0, 1 / detection.fps))
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("anomaly score")
        ax.set_title(f"{detection.name}: {len(detection.alerts)} alert(s)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
        fig.tight_layout()
        write_atomic(path, lambda f: fig.savefig(f, format=Path(path).suffix[1:] or "png"))
    finally:
        plt.close(fig)
    return Path(path)


def write_summary(
    folder: str | Path,
    detections: Sequence[Detection],
    extra: Mapping[str, Any],
    files: Sequence[Mapping[str, Path]] | None = None,
) -> Path:
    """detect.json: the settings (`extra`) and every video's alerts; with `files` (each
    video's `write_detection` paths), the names of the files written for it, its heat maps
    (`alertN`) included."""
    videos = [d.summary() for d in detections]
    for video, written in zip(videos, files or ()):
        video["files"] = {kind: Path(path).name for kind, path in written.items()}
    payload = {**extra, "videos": videos}
    return write_json_atomic(Path(folder) / "detect.json", payload)


# ---------------------------------------------------------------------- from a checkpoint


def recorded_extractor(
    meta: Mapping[str, Any] | None,
    output: str,
    source: str | Path,
    recorded_at: str | Path | None,
    torch_device: torch.device,
    *,
    backbone: str | None = None,
    weights: Mapping[str, str | Path | None] | None = None,
    backbone_options: Mapping[str, Any] | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    flow: Mapping[str, Any] | None = None,
    batch_size: int = 16,
) -> FeatureExtractor:
    """The extractor of `output` features as an extraction record (`meta`, the data of an
    extraction.json found at `recorded_at`) says, explicit arguments overriding it (see
    `load_detector`); `source` names the checkpoint or export in messages, `recorded_at` where
    its record is (or was looked for)."""
    name = backbone or (meta or {}).get("backbone")
    if name is None:
        where = f" (looked for {recorded_at})" if recorded_at else ""
        raise ExtractError(
            f"{source}: no record of how its training features were extracted{where}; "
            "give the backbone (and its weights) used for them"
        )
    same = meta is not None and meta.get("backbone") == name
    recorded = (meta or {}).get("backbones", {}) if same else {}
    weights = dict(weights or {})
    modalities = ["rgb", "flow"] if output == "combine" else [output]
    backbones = {}
    for modality in modalities:
        entry = recorded.get(modality, {})
        path = weights.get(modality) or entry.get("weights")
        if path is not None and entry.get("sha256"):
            if not Path(path).is_file():
                raise ExtractError(
                    f"{path}: {modality} weight file not found"
                    + (
                        ""
                        if weights.get(modality)
                        else f" (recorded in {recorded_at}; give the {modality} weights)"
                    )
                )
            if file_sha256(path) != entry["sha256"]:
                raise ExtractError(
                    f"{path}: not the {modality} weights the training features were extracted "
                    f"with (SHA-256 differs from {recorded_at})"
                )
        options = {**entry.get("options", {}), **(backbone_options or {})}
        if entry.get("precision", "f32") != "f32":  # features computed in another precision
            options.setdefault("precision", entry["precision"])
        backbones[modality] = create_backbone(name, modality, path, **options)
    base_pp = (meta or {})["preprocessing"] if same else {}
    # Every frame scored: the tail's segment is the video's last frames (real ones), so a
    # short tail scores as those frames do, whatever the training data's tail policy.
    pp = {**base_pp, "tail": "pad", "tail_fill": "window", **(preprocessing or {})}
    base_flow = ((meta or {}).get("flow") or {}) if same else {}
    extract_config = ExtractConfig(
        Preprocessing(**pp), FlowSettings(**{**base_flow, **(flow or {})}), batch_size
    )
    extractor = FeatureExtractor(backbones, extract_config, torch_device)
    return extractor


def load_detector(
    checkpoint: str | Path,
    *,
    backbone: str | None = None,
    weights: Mapping[str, str | Path | None] | None = None,
    backbone_options: Mapping[str, Any] | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    flow: Mapping[str, Any] | None = None,
    batch_size: int = 16,
    device: str = "auto",
) -> tuple[Detector, dict[str, Any]]:
    """A Detector for a checkpoint, extracting features the way its training features were.

    The checkpoint's config names its training data and feature folder; when that folder's
    extraction.json is reachable, the backbone, weights, options and preprocessing recorded
    there are used, so nothing has to be repeated. Explicit arguments override them. Detection
    uses the `pad` tail policy unless `preprocessing` says otherwise, so every frame is scored:
    the frames after the last full segment get the score of the video's last 16 frames
    (`tail_fill` `window`; a video shorter than one segment is completed by repeating its last
    frame).
    A weight file, recorded or given, is used only when its SHA-256 matches the recorded one.
    The detector's default threshold is the checkpoint's (`checkpoint_threshold`: the one
    chosen on held-out videos with `--val-fraction`, else its config's). A run folder stands
    for its selected snapshot when it has one (`load_checkpoint`).

    Args:
        checkpoint: checkpoint file or run folder.
        backbone: backbone name (default: the recorded one).
        weights: modality -> weight file (default: the recorded files).
        backbone_options: options for the backbone factory (e.g. pool, random_init).
        preprocessing: Preprocessing fields to override.
        flow: FlowSettings fields to override.
        batch_size: segments per forward pass.
        device: auto, cpu, cuda, cuda:N.

    Returns:
        The detector, and the extraction metadata it uses (for the record).

    Raises:
        ExtractError: no recorded extraction and no backbone given, a weight file that is missing
            or differs from the recorded one, or features that do not fit the model.
    """

    payload = load_checkpoint(checkpoint)
    config = payload.config
    output = config.feature_modal
    record = payload.extraction
    meta = None if record is None else dict(record.data)
    if record is not None:
        recorded_at = record.where
    elif config.data:
        recorded_at = f"{backbone_folder(config.data, config.feature_backbone)}/extraction.json"
    else:
        recorded_at = None
    torch_device = resolve_device(device)
    extractor = recorded_extractor(
        meta,
        output,
        payload.path,
        recorded_at,
        torch_device,
        backbone=backbone,
        weights=weights,
        backbone_options=backbone_options,
        preprocessing=preprocessing,
        flow=flow,
        batch_size=batch_size,
    )
    model = payload.model(torch_device)
    crop_mode = config.test_crop
    threshold = payload.threshold
    detector = Detector(model, extractor, output, torch_device, crop_mode, threshold)
    return detector, {**extractor.metadata(), "checkpoint": payload["path"], "output": output}
