"""Scoring whole test videos in large batches, and evaluating the scores (SPEC §6)."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from .config import FRAMES_PER_SEGMENT
from .data import FeatureDataset, pad_videos, require_finite
from .errors import DataError
from .metrics import Metrics, frame_metrics

# Upper bound on B x T of one scoring forward pass: big enough to keep the matmuls efficient,
# small enough that a conv model's (B, T, 2048) activations stay around a gigabyte.
MAX_BATCH_SEGMENTS = 1 << 16


def _video_rows(dataset: FeatureDataset, i: int, crop_mode: str) -> list[np.ndarray]:
    """The (T, D) inputs that score video i: one, or one per crop with "per_crop"."""
    feats = np.asarray(dataset.features(i), dtype=np.float32)
    if not dataset.contiguous:  # a block was checked when it was made
        require_finite(feats, dataset.names[i], dataset.sources[i])
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
        max_batch_segments: bound on B x T per forward pass.

    Returns:
        video name -> (T,) float32 scores, in dataset order.
    """
    was_training = model.training
    model.eval()
    if getattr(model, "independent_segments", False):
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
        rows = dataset.block_rows(chunk) if dataset.crops is None else None
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
