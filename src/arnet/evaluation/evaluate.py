"""Scoring whole test videos in large batches, and evaluating the scores (SPEC §6)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import FRAMES_PER_SEGMENT
from ..data.dataset import FeatureDataset, pad_videos, require_finite
from ..errors import DataError
from .metrics import Metrics, frame_metrics
from .report import write_evaluation

# Upper bound on B x T of one scoring forward pass: big enough to keep the matmuls efficient,
# small enough that a conv model's (B, T, 2048) activations stay around a gigabyte.
MAX_BATCH_SEGMENTS = 1 << 16


def _video_rows(dataset: FeatureDataset, i: int, crop_mode: str) -> list[np.ndarray]:
    """The (T, D) inputs that score video i: one, or one per crop with "per_crop"."""
    with np.errstate(over="ignore"):  # values beyond float32 are reported by require_finite
        feats = np.asarray(dataset.features(i), dtype=np.float32)
    if not dataset.checked:  # an in-memory block was checked when it was made
        require_finite(feats, dataset.names[i], dataset.sources[i], dataset.features(i))
    if feats.ndim == 2:
        return [feats]
    if crop_mode == "mean":
        return [feats.mean(axis=1)]
    if crop_mode == "per_crop":
        return [feats[:, c] for c in range(feats.shape[1])]
    raise ValueError(f"unknown test crop mode {crop_mode!r}; choose mean or per_crop")


@torch.inference_mode()
def predict(
    model: nn.Module,
    dataset: FeatureDataset,
    device: torch.device | str = "cpu",
    crop_mode: str = "mean",
    max_batch_segments: int = MAX_BATCH_SEGMENTS,
) -> dict[str, np.ndarray]:
    """Score every video of `dataset` whole (no sampling, no dropout).

    Videos are scored many at a time. For a model whose scores depend on each segment alone
    (`independent_segments`), the segments of consecutive videos are packed into one row
    without padding; from a contiguous dataset that row is a view of its block, not a copy.
    Other models get videos sorted by length, padded and masked, so padding stays small.

    Args:
        model: a registry model.
        dataset: the videos to score.
        device: where the model lives.
        crop_mode: multi-crop features: "mean" features, or "per_crop" scores averaged.
        max_batch_segments: bound on B x T per forward pass (B x T x cells for a cell
            model).

    Returns:
        video name -> (T,) float32 scores, in dataset order.
    """
    was_training = model.training
    model.eval()
    # a cell model (--instances cells) scores every cell of a segment: bound those instead
    max_batch_segments = max(1, max_batch_segments // int(model.cells))
    if model.independent_segments:
        scores = _predict_packed(model, dataset, device, crop_mode, max_batch_segments)
        model.train(was_training)
        return scores
    order = np.argsort(dataset.lengths, kind="stable")
    scores: dict[str, np.ndarray] = {}
    chunk: list[int] = []

    def flush() -> None:
        rows: list[np.ndarray] = []
        spans = []
        for i in chunk:
            video_rows = _video_rows(dataset, i, crop_mode)
            spans.append((i, len(rows), len(rows) + len(video_rows)))
            rows += video_rows
        features, mask = pad_videos(rows)
        out = model(features.to(device), mask.to(device)).float().cpu().numpy()
        for i, first, last in spans:
            scores[dataset.names[i]] = out[first:last, : dataset.lengths[i]].mean(axis=0)
        chunk.clear()

    per_video = dataset.crops if (dataset.crops and crop_mode == "per_crop") else 1
    for i in order:
        longest = int(dataset.lengths[i])  # sorted: the newest video is the longest
        if chunk and (len(chunk) + 1) * per_video * longest > max_batch_segments:
            flush()
        chunk.append(int(i))
    if chunk:
        flush()
    model.train(was_training)
    return {name: scores[name] for name in dataset.names}


def _predict_packed(
    model: nn.Module,
    dataset: FeatureDataset,
    device: torch.device | str,
    crop_mode: str,
    max_rows: int,
) -> dict[str, np.ndarray]:
    """`predict` for models with independent segments: (1, N, D) rows, no padding."""
    per_video = dataset.crops if (dataset.crops and crop_mode == "per_crop") else 1
    scores: dict[str, np.ndarray] = {}

    def flush(chunk: list[int]) -> None:
        # A block's rows are used as they are only once checked; otherwise video by video.
        rows = dataset.block_rows(chunk) if dataset.crops is None and dataset.checked else None
        if rows is None:
            rows = np.concatenate([r for i in chunk for r in _video_rows(dataset, i, crop_mode)])
        with warnings.catch_warnings():  # a read-only store: the model only reads its input
            warnings.simplefilter("ignore", UserWarning)
            features = torch.from_numpy(rows).to(device).float()[None]  # (1, N, D)
        mask = torch.ones(features.shape[:2], dtype=torch.bool, device=device)
        out = model(features, mask)[0].float().cpu().numpy()  # (N,)
        start = 0
        for i in chunk:
            n = int(dataset.lengths[i]) * per_video
            scores[dataset.names[i]] = out[start : start + n].reshape(per_video, -1).mean(axis=0)
            start += n

    chunk: list[int] = []
    taken = 0  # rows in the chunk
    for i in range(len(dataset)):
        n = int(dataset.lengths[i]) * per_video
        if chunk and taken + n > max_rows:
            flush(chunk)
            chunk, taken = [], 0
        chunk.append(i)
        taken += n
    if chunk:
        flush(chunk)
    return scores


def evaluate(
    scores: dict[str, np.ndarray],
    dataset: FeatureDataset,
    frames_per_segment: int = FRAMES_PER_SEGMENT,
    threshold: float = 0.5,
) -> Metrics:
    """Frame-level metrics of `scores` against the dataset's frame labels."""
    missing = [n for n, f in zip(dataset.names, dataset.frame_labels) if f is None]
    if missing:
        raise DataError(f"test video {missing[0]!r} has no frame labels: cannot evaluate")
    return frame_metrics(
        scores,
        dict(zip(dataset.names, dataset.frame_labels)),
        dict(zip(dataset.names, dataset.labels.tolist())),
        frames_per_segment,
        threshold,
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
    """
    scores = predict(model, dataset, device, crop_mode)
    metrics = None
    if require_labels or all(f is not None for f in dataset.frame_labels):
        metrics = evaluate(scores, dataset, frames_per_segment, threshold)
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
