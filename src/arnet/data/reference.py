"""The reference AR-Net code's training behaviours, each on its own, for exact emulation.

`arnet` deliberately differs from the reference implementation in a few places (README, "What
differs from the reference implementation"). Each difference that changes how a model learns is
reproduced here, so that `--compat reference` trains as the reference code does and each one
can be measured alone (`benchmarks/compat.py`):

- padded center loss: each normal video's score variance is taken over the batch's longest
  length, the positions past its end holding the model's score of an all-zero feature (scored
  in training mode, dropout included);
- window start: the random window of a normal video longer than `max_segments` never starts at
  the last possible segment (T - L starts instead of T - L + 1);
- strided window: with `sample_step` s > 1 the window holds ceil(L / s) segments, not L, and
  starts in [0, T - sL) (or [0, s) when the video is shorter than sL);
- perturbed sampling: position j of a long anomalous video is drawn from the closed range
  [floor(jT/L), floor((j+1)T/L)], so two positions can repeat a segment, and the last position
  is always floor((L-1)T/L): the video's last segments are never seen.

The sampling functions consume exactly the random numbers that `arnet.data.sample_positions`
draws, so on videos no longer than `max_segments` they agree with it draw for draw.
"""

from __future__ import annotations

import numpy as np

SAMPLING_BEHAVIOURS = ("window_start", "strided_window", "perturbed_sampling")


def sample_positions_compat(
    lengths: np.ndarray,
    anomalous: np.ndarray,
    max_segments: int,
    rng: np.random.Generator,
    sample_step: int = 1,
    *,
    window_start: bool = False,
    strided_window: bool = False,
    perturbed_sampling: bool = False,
) -> np.ndarray:
    """`arnet.data.sample_positions` with any of the reference's sampling behaviours.

    Args:
        lengths, anomalous, max_segments, rng, sample_step: as `sample_positions`.
        window_start: the reference's window start (T - L choices, not T - L + 1).
        strided_window: the reference's strided window (ceil(L / s) segments).
        perturbed_sampling: the reference's perturbed sampling (closed bins, last fixed).

    Returns:
        (B, L') int64 positions, -1 at padding, L' = the longest valid length in the batch.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    anomalous = np.asarray(anomalous, dtype=bool)
    L, s = int(max_segments), int(sample_step)
    u = rng.random((len(lengths), L))
    u_start = rng.random(len(lengths))
    j = np.arange(L)
    T = lengths[:, None]
    positions = np.where(j < T, j, -1)

    long_ = lengths > L
    bins = anomalous & long_
    if bins.any():
        lo = (j * T[bins]) // L
        hi = ((j + 1) * T[bins]) // L
        if perturbed_sampling:
            pick = lo + np.floor(u[bins] * (hi - lo + 1)).astype(np.int64)
            pick[:, -1] = lo[:, -1]
            positions[bins] = pick
        else:
            positions[bins] = lo + np.floor(u[bins] * (hi - lo)).astype(np.int64)

    window = ~anomalous & long_
    if window.any():
        Tw = lengths[window]
        if s > 1 and strided_window:
            fits = Tw > s * L
            n_starts = np.where(fits, Tw - s * L, s)
            taken = -(-L // s)  # ceil(L / s) segments, then padding
        else:
            span = s * (L - 1) + 1
            fits = Tw >= span
            last = 0 if (window_start and s == 1) else 1
            n_starts = np.where(fits, Tw - span + last, np.minimum(s, Tw))
            taken = L
        start = np.floor(u_start[window] * n_starts).astype(np.int64)
        pos = start[:, None] + s * j
        keep = (pos < Tw[:, None]) & (j < taken)
        positions[window] = np.where(keep, pos, -1)

    valid = (positions >= 0).sum(axis=1)
    return positions[:, : int(valid.max()) if len(valid) else 0]
