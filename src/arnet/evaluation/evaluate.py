"""Scoring whole test videos (`predict`, on `scoring.score_arrays`'s core) and evaluating the
scores (SPEC §6)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import FRAMES_PER_SEGMENT
from ..data.dataset import FeatureDataset
from ..errors import DataError
from .metrics import Metrics, frame_metrics
from .report import write_evaluation
from .scoring import predict


def evaluate(
    scores: dict[str, np.ndarray],
    dataset: FeatureDataset,
    frames_per_segment: int = FRAMES_PER_SEGMENT,
    threshold: float = 0.5,
    fps: float | Mapping[str, float] | None = None,
    min_alert_frames: int = 1,
    merge_gap: int = 0,
) -> Metrics:
    """Frame-level and event-level metrics of `scores` against the dataset's frame labels
    (`fps`: one frame rate or one per video, for the event figures' times; None: frames)."""
    missing = [n for n, f in zip(dataset.names, dataset.frame_labels) if f is None]
    if missing:
        raise DataError(f"test video {missing[0]!r} has no frame labels: cannot evaluate")
    return frame_metrics(
        scores,
        # every video has frame labels (checked above)
        {n: f for n, f in zip(dataset.names, dataset.frame_labels) if f is not None},
        dict(zip(dataset.names, dataset.labels.tolist())),
        frames_per_segment,
        threshold,
        fps,
        min_alert_frames,
        merge_gap,
    )


@dataclass
class Evaluation:
    """What one evaluation produced: every test video's segment scores, and their metrics
    (None when the videos lack frame labels and the evaluation did not require them)."""

    scores: dict[str, np.ndarray]
    metrics: Metrics | None


def evaluate_model(
    model: nn.Module,
    dataset: FeatureDataset,
    device: torch.device | str = "cpu",
    *,
    crop_mode: str = "mean",
    frames_per_segment: int = FRAMES_PER_SEGMENT,
    threshold: float = 0.5,
    out_dir: str | Path | None = None,
    plot: bool = True,
    iteration: int | None = None,
    require_labels: bool = True,
    snapshot: str | None = None,
    fps: float | Mapping[str, float] | None = None,
    min_alert_frames: int = 1,
    merge_gap: int = 0,
) -> Evaluation:
    """Score `dataset` with `model`, evaluate the scores and write the results: the one path
    from a model to its figures, taken by training snapshots, `arnet test` and the benchmarks.

    Args:
        model: the model, ready to run (prepared for its device and precision).
        dataset: the test videos.
        device: where the model lives.
        crop_mode: multi-crop features: "mean" features, or "per_crop" scores averaged.
        frames_per_segment: frames each segment score stands for.
        threshold: threshold of the false-alarm rates (and of the plots).
        out_dir: where to write scores.npz, metrics.json, per_video.csv, plots/ and
            report.html (arnet.evaluation.report.write_evaluation); None writes nothing.
        plot: with `out_dir`, one score plot per video.
        iteration: the training iteration the model is at, for the record.
        require_labels: a video without frame labels is an error (DataError); otherwise the
            scores are still written, without metrics.
        snapshot: with `out_dir`, how the snapshot was chosen, for metrics.json.
        fps: frames per second (one, or per video) of the event figures' times and hourly
            false alerts; None: the event figures count frames only.
        min_alert_frames: the alert rule of the event figures (`find_alerts`): shortest alert.
        merge_gap: the same rule's gap below which two alerts are one.
    """
    scores = predict(model, dataset, device, crop_mode)
    metrics = None
    if require_labels or all(f is not None for f in dataset.frame_labels):
        metrics = evaluate(
            scores, dataset, frames_per_segment, threshold, fps, min_alert_frames, merge_gap
        )
    if out_dir is not None:
        write_evaluation(
            out_dir,
            scores,
            dataset,
            metrics,
            iteration=iteration,
            plot=plot,
            frames_per_segment=frames_per_segment,
            threshold=threshold,
            snapshot=snapshot,
        )
    return Evaluation(scores, metrics)


@dataclass
class TrainResult:
    """What a finished run (trained, or fitted in one go) leaves: where, how far, its reported
    checkpoint and that snapshot's test evaluation (the last snapshot's, or with
    `--val-fraction` the selected one's)."""

    out_dir: Path
    iterations: int
    checkpoint: Path
    metrics: Metrics | None
    history: list[dict[str, Any]] = field(default_factory=list)
    snapshot: int | None = None
    """The iteration of the snapshot `checkpoint` and `metrics` come from."""
    validation: dict[str, Any] | None = None
    """With `--val-fraction`: the selected snapshot's held-out figures (training.validation)."""
