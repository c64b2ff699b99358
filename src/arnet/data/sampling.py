"""AR-Net's balanced batch sampler (SPEC §2): which videos and which of their segments form
each training batch. `FeatureDataset.batch` (or `batch_from` on a device) then assembles them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from .dataset import ANOMALOUS, NORMAL, Batch, Draw, FeatureDataset
from .reference import SAMPLING_BEHAVIOURS, sample_positions_compat


def sample_positions(
    lengths: np.ndarray,
    anomalous: np.ndarray,
    max_segments: int,
    rng: np.random.Generator,
    sample_step: int = 1,
) -> np.ndarray:
    """Segment positions for a batch of videos, per SPEC §2; -1 marks padding.

    - T <= max_segments: all T segments in order, then padding.
    - anomalous, T > max_segments: perturbed uniform sampling; [0, T) is cut into max_segments
      equal bins [floor(jT/L), floor((j+1)T/L)) and one random index is drawn in each bin.
    - normal, T > max_segments: a random contiguous window of max_segments segments; with
      sample_step s > 1 the window is strided (start, start+s, ...), and when T is shorter than
      a full strided window, start is drawn in [0, s) and the window holds what fits.

    Args:
        lengths: (B,) segments per video.
        anomalous: (B,) bool.
        max_segments: L, the most segments a video contributes.
        rng: random generator (advanced by exactly one (B, L) and one (B,) draw).
        sample_step: stride s of the normal-video window.

    Returns:
        (B, L') int64 positions, L' = the longest valid length in the batch.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    anomalous = np.asarray(anomalous, dtype=bool)
    L, s = int(max_segments), int(sample_step)
    u = rng.random((len(lengths), L))
    u_start = rng.random(len(lengths))
    j = np.arange(L)
    T = lengths[:, None]
    positions = np.where(j < T, j, -1)  # short videos: all segments, padded

    long_ = lengths > L
    bins = anomalous & long_
    if bins.any():
        lo = (j * T[bins]) // L
        hi = ((j + 1) * T[bins]) // L
        positions[bins] = lo + np.floor(u[bins] * (hi - lo)).astype(np.int64)

    window = ~anomalous & long_
    if window.any():
        Tw = lengths[window]
        span = s * (L - 1) + 1
        fits = Tw >= span
        n_starts = np.where(fits, Tw - span + 1, np.minimum(s, Tw))
        start = np.floor(u_start[window] * n_starts).astype(np.int64)
        pos = start[:, None] + s * j
        positions[window] = np.where(pos < Tw[:, None], pos, -1)

    valid = (positions >= 0).sum(axis=1)
    return positions[:, : int(valid.max()) if len(valid) else 0]


class BalancedBatchSampler:
    """Draws AR-Net's balanced training batches from a dataset's labels and lengths.

    Each draw takes `videos_per_class` distinct anomalous and as many distinct normal videos,
    uniformly without replacement (anomalous first). A class with fewer videos than that
    contributes all of its videos, once each: with Ped2's 6 anomalous and 4 normal training
    videos, a batch is those 10 videos. `draws` balanced draws are stacked per batch.
    `reference_sampling` names behaviours of the reference code's segment sampling to
    reproduce (`arnet.data.reference.SAMPLING_BEHAVIOURS`).

    The sampler owns its random generator; `state_dict()` / `load_state_dict()` make a resumed
    run draw exactly the batches the uninterrupted run would have drawn.

    With `device`, the features are copied there once (`FeatureDataset.device_block`) and each
    batch is gathered on that device; without, batches are assembled in host memory, and with
    `reuse_buffer` always into the same buffer (sized for the largest batch): then a batch's
    features are valid until the next call only, as in a training loop.
    """

    def __init__(
        self,
        dataset: FeatureDataset,
        videos_per_class: int = 30,
        max_segments: int = 300,
        sample_step: int = 1,
        draws: int = 1,
        crop_mode: str = "random",
        seed: int | None = None,
        device: torch.device | str | None = None,
        reuse_buffer: bool = False,
        reference_sampling: Sequence[str] = (),
    ) -> None:
        self.dataset = dataset
        # the reference code's sampling behaviours to reproduce (arnet.data.reference)
        self.reference_sampling = {name: True for name in reference_sampling}
        unknown = sorted(set(self.reference_sampling) - set(SAMPLING_BEHAVIOURS))
        if unknown:
            raise ValueError(f"unknown reference sampling behaviour {unknown[0]!r}")
        self.videos_per_class = videos_per_class
        self.max_segments = max_segments
        self.sample_step = sample_step
        self.draws = draws
        self.crop_mode = crop_mode
        self.rng = np.random.default_rng(seed)
        self.anomalous = dataset.indices_of(ANOMALOUS)
        self.normal = dataset.indices_of(NORMAL)
        for pool, what in ((self.anomalous, "anomalous"), (self.normal, "normal")):
            if len(pool) == 0:
                raise DataError(
                    f"the training split has no {what} videos: AR-Net needs both classes "
                    f"({len(dataset)} training videos)"
                )
        self.block = None if device is None else dataset.device_block(device)
        # A buffer in use every step stays resident: a fresh batch array of a size not seen
        # before costs page faults (measured: 50-200 ms spikes in 160 ms steps).
        self.buffer = None
        if reuse_buffer and self.block is None:
            videos = draws * sum(
                min(videos_per_class, len(p)) for p in (self.anomalous, self.normal)
            )
            rows = videos * dataset.rows_per_video(crop_mode)  # crop mode "all": C rows each
            self.buffer = np.empty(rows * max_segments * dataset.dim, dtype=np.float32)
            self.buffer.fill(0.0)  # touch every page now, not in the first steps that reach it

    def sample(self) -> Draw:
        """One training batch's videos and segment positions."""
        videos = []
        for _ in range(self.draws):
            for pool in (self.anomalous, self.normal):
                n = min(self.videos_per_class, len(pool))
                videos.append(self.rng.choice(pool, size=n, replace=False))
        vids = np.concatenate(videos)
        positions = (sample_positions_compat if self.reference_sampling else sample_positions)(
            self.dataset.lengths[vids],
            self.dataset.labels[vids] == ANOMALOUS,
            self.max_segments,
            self.rng,
            self.sample_step,
            **self.reference_sampling,
        )
        crops = None
        if self.dataset.crops is not None and self.crop_mode == "random":
            crops = self.rng.integers(0, self.dataset.crops, size=len(vids))
        return Draw(vids, positions, crops)

    def next_batch(self) -> Batch:
        """The next training batch, on the sampler's device (host memory without one)."""
        if self.block is not None:
            return self.dataset.batch_from(self.block, self.sample(), crop_mode=self.crop_mode)
        return self.dataset.batch(self.sample(), crop_mode=self.crop_mode, out=self.buffer)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
