"""Scoring many videos at once: the one core that testing, `arnet detect`, the live scorer and
causal scoring call.

`score_arrays(model, arrays)` scores (T, D) or (T, C, D) arrays, each one video (or a live
window); `predict(model, dataset)` scores a `FeatureDataset`'s videos through the same core,
reading its rows without a copy where it can. Both score in inference mode, many videos per
forward pass:

- a model whose scores depend on each segment alone (`independent_segments`) gets the segments
  of consecutive videos packed into one row, without padding;
- other models get videos sorted by length, padded and masked, so padding stays small.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..data.dataset import FeatureDataset, pad_videos, require_finite
from ..models.registry import declared

# Upper bound on B x T of one scoring forward pass: big enough to keep the matmuls efficient,
# small enough that a conv model's (B, T, 2048) activations stay around a gigabyte.
MAX_BATCH_SEGMENTS = 1 << 16

CROP_MODES = ("mean", "per_crop")


def crop_rows(features: np.ndarray, crop_mode: str) -> list[np.ndarray]:
    """The (T, D) inputs that score one video: itself, or its crops' mean, or one per crop
    with "per_crop" (whose scores are then averaged)."""
    if features.ndim == 2:
        return [features]
    if crop_mode == "mean":
        return [features.mean(axis=1)]
    if crop_mode == "per_crop":
        return [features[:, c] for c in range(features.shape[1])]
    raise ValueError(f"unknown test crop mode {crop_mode!r}; choose mean or per_crop")


@torch.inference_mode()
def score_arrays(
    model: nn.Module,
    arrays: Sequence[np.ndarray],
    device: torch.device | str = "cpu",
    crop_mode: str = "mean",
    max_batch_segments: int = MAX_BATCH_SEGMENTS,
) -> list[np.ndarray]:
    """Score each array whole (no sampling, no dropout).

    Args:
        model: a registry model.
        arrays: (T_i, D) features, or (T_i, C, D) multi-crop features.
        device: where the model lives.
        crop_mode: multi-crop features: "mean" features, or "per_crop" scores averaged.
        max_batch_segments: bound on B x T per forward pass (B x T x cells for a cell model).

    Returns:
        (T_i,) float32 scores for each array, in order.
    """
    inputs = [np.asarray(a, dtype=np.float32) for a in arrays]
    crops = [a.shape[1] for a in inputs if a.ndim == 3 and crop_mode == "per_crop"]
    return _score(
        model,
        np.array([len(a) for a in inputs], dtype=np.int64),
        lambda i: crop_rows(inputs[i], crop_mode),
        None,
        max(crops, default=1),
        device,
        max_batch_segments,
    )


def _dataset_rows(dataset: FeatureDataset, crop_mode: str) -> Callable[[int], list[np.ndarray]]:
    def rows(i: int) -> list[np.ndarray]:
        with np.errstate(over="ignore"):  # values beyond float32 are reported by require_finite
            feats = np.asarray(dataset.features(i), dtype=np.float32)
        if not dataset.checked:  # an in-memory block was checked when it was made
            require_finite(feats, dataset.names[i], dataset.sources[i], dataset.features(i))
        return crop_rows(feats, crop_mode)

    return rows


@torch.inference_mode()
def predict(
    model: nn.Module,
    dataset: FeatureDataset,
    device: torch.device | str = "cpu",
    crop_mode: str = "mean",
    max_batch_segments: int = MAX_BATCH_SEGMENTS,
) -> dict[str, np.ndarray]:
    """Score every video of `dataset` whole: `score_arrays` on its videos, its rows read
    lazily (from a checked contiguous block, a packed row is a view of the block, not a copy).

    Returns:
        video name -> (T,) float32 scores, in dataset order.
    """
    block = dataset.block_rows if dataset.crops is None and dataset.checked else None
    per_video = dataset.crops if (dataset.crops and crop_mode == "per_crop") else 1
    scores = _score(
        model,
        np.asarray(dataset.lengths, dtype=np.int64),
        _dataset_rows(dataset, crop_mode),
        block,
        per_video,
        device,
        max_batch_segments,
    )
    return dict(zip(dataset.names, scores))


def _score(
    model: nn.Module,
    lengths: np.ndarray,
    rows: Callable[[int], list[np.ndarray]],
    block: Callable[[list[int]], np.ndarray | None] | None,
    per_video: int,
    device: torch.device | str,
    max_batch_segments: int,
) -> list[np.ndarray]:
    """The core: `rows(i)` gives video i's (T, D) inputs (one per crop with per_crop),
    `block(chunk)` their rows in one contiguous array when there is one; `per_video` is the
    most inputs a video has (to size the forward passes)."""
    was_training = model.training
    model.eval()
    # a cell model (--instances cells) scores every cell of a segment: bound those instead
    max_batch_segments = max(1, max_batch_segments // int(declared(model, "cells")))
    try:
        if declared(model, "independent_segments"):
            return _score_packed(model, lengths, rows, block, per_video, device, max_batch_segments)
        return _score_padded(model, lengths, rows, per_video, device, max_batch_segments)
    finally:
        model.train(was_training)


def _score_padded(
    model: nn.Module,
    lengths: np.ndarray,
    rows: Callable[[int], list[np.ndarray]],
    per_video: int,
    device: torch.device | str,
    max_batch_segments: int,
) -> list[np.ndarray]:
    """Videos sorted by length, padded and masked, several per forward pass."""
    order = np.argsort(lengths, kind="stable")
    scores: list[np.ndarray | None] = [None] * len(lengths)
    chunk: list[int] = []

    def flush() -> None:
        inputs: list[np.ndarray] = []
        spans = []
        for i in chunk:
            video_rows = rows(i)
            spans.append((i, len(inputs), len(inputs) + len(video_rows)))
            inputs += video_rows
        features, mask = pad_videos(inputs)
        out = model(features.to(device), mask.to(device)).float().cpu().numpy()
        for i, first, last in spans:
            scores[i] = out[first:last, : lengths[i]].mean(axis=0)
        chunk.clear()

    for i in order:
        longest = int(lengths[i])  # sorted: the newest video is the longest
        if chunk and (len(chunk) + 1) * per_video * longest > max_batch_segments:
            flush()
        chunk.append(int(i))
    if chunk:
        flush()
    return scores  # type: ignore[return-value]


def _score_packed(
    model: nn.Module,
    lengths: np.ndarray,
    rows: Callable[[int], list[np.ndarray]],
    block: Callable[[list[int]], np.ndarray | None] | None,
    per_video: int,
    device: torch.device | str,
    max_rows: int,
) -> list[np.ndarray]:
    """For models with independent segments: (1, N, D) rows of many videos, no padding."""
    scores: list[np.ndarray] = []

    def flush(chunk: list[int]) -> None:
        packed = block(chunk) if block is not None else None
        counts = [1] * len(chunk)  # inputs per video: one, or one per crop
        if packed is None:
            parts = [rows(i) for i in chunk]
            counts = [len(p) for p in parts]
            packed = np.concatenate([r for p in parts for r in p])
        with warnings.catch_warnings():  # a read-only store: the model only reads its input
            warnings.simplefilter("ignore", UserWarning)
            features = torch.from_numpy(packed).to(device).float()[None]  # (1, N, D)
        mask = torch.ones(features.shape[:2], dtype=torch.bool, device=device)
        out = model(features, mask)[0].float().cpu().numpy()  # (N,)
        start = 0
        for i, count in zip(chunk, counts):
            n = int(lengths[i]) * count
            scores.append(out[start : start + n].reshape(count, -1).mean(axis=0))
            start += n

    chunk: list[int] = []
    taken = 0  # rows in the chunk
    for i in range(len(lengths)):
        n = int(lengths[i]) * per_video
        if chunk and taken + n > max_rows:
            flush(chunk)
            chunk, taken = [], 0
        chunk.append(i)
        taken += n
    if chunk:
        flush(chunk)
    return scores
