"""Feature datasets and the batches built from them, with explicit masks.

The path from disk to the model (SPEC §2; the sampler is in `arnet.data.sampling`):

    FeatureDataset (per video: features (T, D) or (T, C, D), label, frame labels)
      --BalancedBatchSampler.sample()--> Draw (which videos, which segment positions)
      --FeatureDataset.batch(draw)--> Batch(features (B, L, D), mask (B, L), lengths, labels)

Padding is never inferred from zeros: every batch carries its true lengths and a mask.

Multi-crop features (T, C, D) enter a batch in one of three ways (`CROP_MODES`, the
`--train-crop` choices): "random", one crop per video per draw; "mean", the crops averaged;
"all", every crop its own row (RTFM's and MGFN's ten-crop training): the batch then holds
B x C rows, video-major (row b * C + c is crop c of video b), and `Batch.crops` = C tells an
objective which rows are views of one video. A model sees each row as a video of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import DataError

ANOMALOUS, NORMAL = 1, 0
CROP_MODES = ("random", "mean", "all")
"""How multi-crop features enter a training batch (see the module docstring)."""


@dataclass
class Batch:
    """A padded batch of videos.

    Attributes:
        features: (B, T, D) float32 segment features, zero at padded positions.
        mask: (B, T) bool, True at valid segments.
        lengths: (B,) int64 valid segments per video.
        labels: (B,) float32 video labels, 1 = anomalous.
        crops: rows per video: 1, or C when every crop of (T, C, D) features is its own row
            (crop mode "all"; rows video-major, B = videos x C, each row with its video's
            label and length).
    """

    features: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    crops: int = 1

    @property
    def videos(self) -> int:
        """Videos in the batch (rows / crops)."""
        return self.features.shape[0] // self.crops

    def to(self, device: torch.device | str) -> Batch:
        non_blocking = torch.device(device).type == "cuda"
        return Batch(
            self.features.to(device, non_blocking=non_blocking),
            self.mask.to(device, non_blocking=non_blocking),
            self.lengths.to(device, non_blocking=non_blocking),
            self.labels.to(device, non_blocking=non_blocking),
            self.crops,
        )


class UniformSegments:
    """One video's features seen as `n` segments, each the mean of consecutive ones: segment j
    averages rows [r_j, r_(j+1)) with r = floor(linspace(0, T, n + 1)), or is row r_j when that
    range is empty (a video shorter than n). The training input of RTFM, MGFN and UR-DMU
    (their 32 segments per video); computed when read, so a memory-mapped video stays mapped.

    Args:
        array: (T, D) or (T, C, D) features (an array, a memory map, anything sliceable).
        n: segments to see.
    """

    def __init__(self, array: Any, n: int) -> None:
        if n < 1:
            raise ValueError(f"uniform segments: n must be >= 1, got {n}")
        self.array = array
        self.bounds = np.linspace(0, array.shape[0], n + 1).astype(np.int64)
        self.shape = (n, *array.shape[1:])
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        x = np.asarray(self.array, dtype=np.float64)
        lo, hi = self.bounds[:-1], self.bounds[1:]
        # reduceat sums [lo_j, lo_(j+1)) and gives row lo_j where that range is empty: exactly
        # the rule above once each sum is divided by its row count
        sums = np.add.reduceat(x, lo, axis=0)
        counts = np.maximum(hi - lo, 1).reshape(-1, *([1] * (x.ndim - 1)))
        out = (sums / counts).astype(np.float32)
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self)[key]


@dataclass
class Draw:
    """Which segments of which videos form one training batch.

    Attributes:
        videos: (B,) dataset indices, anomalous videos first.
        positions: (B, L) segment index inside each video, -1 at padded positions.
        crops: (B,) crop index per video for multi-crop features, or None.
    """

    videos: np.ndarray
    positions: np.ndarray
    crops: np.ndarray | None = None

    @property
    def lengths(self) -> np.ndarray:
        return (self.positions >= 0).sum(axis=1)


class FeatureDataset:
    """Videos with segment features, video labels and (optionally) per-frame labels.

    Features are kept as one array per video: files read lazily (`formats.arrays.NpyFile`),
    or views into one contiguous block (in memory, or a packed store), in which case a batch is
    gathered from the block with one bulk row copy per video. Multi-crop features have shape
    (T, C, D).

    Args:
        names: video names, unique.
        labels: video labels (1 anomalous, 0 normal).
        features: per video, an array (T, D) or (T, C, D) with T >= 1.
        frame_labels: per video, 0/1 labels of its frames, or None where unknown.
        sources: per video, the file its features come from (for error messages).
        block: when the per-video arrays are views of one (S, D) or (S, C, D) block, that
            block.
        offsets: with `block`, each video's first row in it.
        checked: every value is known to be finite in float32 (`to_memory` checks once);
            otherwise every batch and every scored video is checked when read, so a damaged
            file or store is named with its video instead of turning the loss into NaN.
    """

    def __init__(
        self,
        names: Sequence[str],
        labels: Sequence[int] | np.ndarray,
        features: Sequence[Any],  # arrays, or lazy array-likes (NpyFile, UniformSegments)
        frame_labels: Sequence[np.ndarray | None] | None = None,
        sources: Sequence[str] | None = None,
        *,
        block: np.ndarray | None = None,
        offsets: np.ndarray | Sequence[int] | None = None,
        checked: bool = False,
    ) -> None:
        self.names = list(names)
        self.checked = checked
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        self._features = list(features)
        self.sources = list(sources) if sources is not None else list(self.names)
        if frame_labels is None:
            frame_labels = [None] * len(self.names)
        self.frame_labels = list(frame_labels)
        self._block = block
        self.offsets = None if offsets is None else np.asarray(offsets, dtype=np.int64)
        self._index = {name: i for i, name in enumerate(self.names)}
        self._check()
        self.lengths = np.array([f.shape[0] for f in self._features], dtype=np.int64)

    def _check(self) -> None:
        n = len(self.names)
        if len(self._index) != n:
            seen: set[str] = set()
            dup = next(x for x in self.names if x in seen or seen.add(x))  # type: ignore[func-returns-value]
            raise DataError(f"video {dup!r} appears twice")
        for what, seq in (
            ("labels", self.labels),
            ("features", self._features),
            ("frame_labels", self.frame_labels),
            ("sources", self.sources),
        ):
            if len(seq) != n:
                raise DataError(f"{len(seq)} {what} for {n} videos")
        bad = [x for x in self.labels if x not in (0, 1)]
        if bad:
            raise DataError(f"video labels must be 0 or 1, got {bad[0]}")
        shape = None
        for name, feats, src in zip(self.names, self._features, self.sources):
            if feats.ndim not in (2, 3):
                raise DataError(
                    f"{src}: features of video {name!r} have shape {feats.shape}; "
                    "expected (segments, dim) or (segments, crops, dim)"
                )
            if feats.shape[0] == 0:
                raise DataError(f"{src}: video {name!r} is empty (0 segments)")
            if shape is None:
                shape = feats.shape[1:]
            elif feats.shape[1:] != shape:
                raise DataError(
                    f"{src}: video {name!r} has feature shape {feats.shape[1:]} per segment, "
                    f"but {self.names[0]!r} has {shape}"
                )

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.names)

    @property
    def dim(self) -> int:
        """Feature dimension D."""
        return int(self._features[0].shape[-1]) if self._features else 0

    @property
    def crops(self) -> int | None:
        """Crops per segment C for (T, C, D) features, else None."""
        if not self._features or self._features[0].ndim == 2:
            return None
        return int(self._features[0].shape[1])

    @property
    def contiguous(self) -> bool:
        return self._block is not None

    def index(self, name: str) -> int:
        return self._index[name]

    def features(self, i: int) -> np.ndarray:
        """Features of video i, (T, D) or (T, C, D), as stored (possibly memory-mapped)."""
        return self._features[i]

    def indices_of(self, label: int) -> np.ndarray:
        return np.flatnonzero(self.labels == label)

    def describe(self) -> dict[str, Any]:
        return {
            "videos": len(self),
            "anomalous": int((self.labels == ANOMALOUS).sum()),
            "normal": int((self.labels == NORMAL).sum()),
            "segments": int(self.lengths.sum()),
            "dim": self.dim,
            "crops": self.crops,
        }

    def subset(self, indices: Sequence[int] | np.ndarray) -> FeatureDataset:
        """The videos at `indices`, sharing storage with this dataset."""
        idx = [int(i) for i in indices]
        return FeatureDataset(
            [self.names[i] for i in idx],
            self.labels[idx],
            [self._features[i] for i in idx],
            [self.frame_labels[i] for i in idx],
            [self.sources[i] for i in idx],
            block=self._block,
            offsets=None if self.offsets is None else self.offsets[idx],
            checked=self.checked,
        )

    def uniform_segments(self, n: int) -> FeatureDataset:
        """The videos seen as `n` segments each (`UniformSegments`), for training; frame labels
        no longer fit such segments and are dropped."""
        return FeatureDataset(
            self.names,
            self.labels,
            [UniformSegments(f, n) for f in self._features],
            None,
            self.sources,
            checked=self.checked,
        )

    def to_memory(self, dtype: np.dtype | type = np.float32) -> FeatureDataset:
        """Copy every video into one contiguous in-memory block (the fast gather path).

        Raises:
            DataError: when a video holds NaN or Inf (checked once here, not per batch).
        """
        total = int(self.lengths.sum())
        block = np.empty((total, *self._features[0].shape[1:]), dtype=dtype) if self else None
        offsets = np.zeros(len(self), dtype=np.int64)
        views, start = [], 0
        for i, feats in enumerate(self._features):
            assert block is not None  # made for a dataset with videos
            end = start + feats.shape[0]
            with np.errstate(over="ignore"):  # values beyond the dtype are reported below
                block[start:end] = feats
            require_finite(block[start:end], self.names[i], self.sources[i], feats)
            offsets[i] = start
            views.append(block[start:end])
            start = end
        return FeatureDataset(
            self.names,
            self.labels,
            views,
            self.frame_labels,
            self.sources,
            block=block,
            offsets=offsets,
            checked=True,
        )

    def check_values(self, rows_per_read: int = 4096) -> None:
        """Read every value once and raise DataError naming the first video whose features
        hold NaN or Inf, or values beyond float32; afterwards batches are not checked again.

        A store written by `arnet pack` was checked when packed, but its file may have changed
        since: training checks it once, before the first step (a single sequential read of
        the mapped block, which the first epoch reads anyway).
        """
        if self.checked:
            return
        for name, feats, source in zip(self.names, self._features, self.sources):
            for start in range(0, int(feats.shape[0]), rows_per_read):
                raw = np.asarray(feats[start : start + rows_per_read])
                with np.errstate(over="ignore"):
                    used = raw.astype(np.float32, copy=False)
                if not np.isfinite(used).all():
                    raise _non_finite(name, source, raw)
        self.checked = True

    # ------------------------------------------------------------------ batches
    def gather(
        self, draw: Draw, crop_mode: str = "random", out: np.ndarray | None = None
    ) -> np.ndarray:
        """Features of a draw as a (B, L, D) float32 array, zero at padded positions.

        Args:
            draw: videos and positions (see `Draw`).
            crop_mode: for (T, C, D) features, "random" takes `draw.crops`, "mean" averages,
                "all" gives every crop its own row: (B x C, L, D), video-major.
            out: a float32 buffer of at least B * L * D elements (B * C * L * D with "all")
                to write the batch into (its first elements); None allocates a new array.
        """
        if crop_mode not in CROP_MODES:
            raise ValueError(f"unknown crop mode {crop_mode!r}; choose one of {CROP_MODES}")
        if crop_mode == "all" and self.crops is not None:
            return self._gather_all_crops(draw, out)
        pos = draw.positions
        shape = (*pos.shape, self.dim)
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        else:
            out = out.reshape(-1)[: int(np.prod(shape))].reshape(shape)
        # One path for every storage: each video's features are an array (a view of the block,
        # or a lazily read file), and only its valid rows are copied, straight into the batch:
        # padding is never read (on ShanghaiTech most of a batch is padding) and written once.
        with np.errstate(over="ignore"):  # values beyond float32: the batch check names them
            for b, (v, n) in enumerate(zip(draw.videos, draw.lengths)):
                _take_into(
                    out[b, :n], self._features[v], pos[b, :n], _crop_of(draw.crops, b), crop_mode
                )
                out[b, n:] = 0.0
        if not self.checked:  # an in-memory block was checked once, when it was made
            self._check_finite_batch(out, draw.videos)
        return out

    def _gather_all_crops(self, draw: Draw, out: np.ndarray | None) -> np.ndarray:
        """`gather` with crop mode "all": (B x C, L, D), row b * C + c = crop c of video b."""
        pos, crops = draw.positions, int(self.crops or 1)
        shape = (pos.shape[0], crops, pos.shape[1], self.dim)
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        else:
            out = out.reshape(-1)[: int(np.prod(shape))].reshape(shape)
        with np.errstate(over="ignore"):
            for b, (v, n) in enumerate(zip(draw.videos, draw.lengths)):
                rows = np.asarray(self._features[v][pos[b, :n]], dtype=np.float32)  # (n, C, D)
                out[b, :, :n] = rows.transpose(1, 0, 2)
                out[b, :, n:] = 0.0
        flat = out.reshape(shape[0] * crops, shape[2], shape[3])
        if not self.checked:
            finite = np.isfinite(out).reshape(len(draw.videos), -1).all(axis=1)
            if not finite.all():
                v = int(draw.videos[int(np.flatnonzero(~finite)[0])])
                raise _non_finite(self.names[v], self.sources[v], self._features[v])
        return flat

    def rows_per_video(self, crop_mode: str) -> int:
        """Rows a video takes in a batch: C with crop mode "all" on (T, C, D) features, else 1."""
        return int(self.crops) if crop_mode == "all" and self.crops is not None else 1

    def block_rows(self, indices: Sequence[int]) -> np.ndarray | None:
        """The features of videos `indices`, (sum T, ...), as one slice of the block (no copy)
        when they lie one after another in it; None otherwise."""
        if self._block is None or not len(indices):
            return None
        assert self.offsets is not None  # given with the block
        idx = np.asarray(indices, dtype=np.int64)
        ends = self.offsets[idx] + self.lengths[idx]
        if not (ends[:-1] == self.offsets[idx[1:]]).all():
            return None
        return self._block[self.offsets[idx[0]] : ends[-1]]

    def device_block(self, device: torch.device | str) -> torch.Tensor:
        """The contiguous block (S, D) or (S, C, D) as a tensor on `device`, in its stored dtype.

        Copied in chunks, so a memory-mapped store is never read into host memory whole. With
        the block on a GPU, `batch_from` gathers each batch there: no per-step host-to-device
        copy of features.

        Raises:
            DataError: when the dataset is not one contiguous block (see `to_memory`).
        """
        if self._block is None:
            raise DataError(
                "features must be one contiguous block to live on a device: load them into "
                "memory (`to_memory`) or pack them into a store (`formats.packed`)"
            )
        block = self._block
        out = torch.empty(block.shape, dtype=_torch_dtype(block.dtype), device=device)
        step = max(1, (64 << 20) // max(1, block[:1].nbytes))  # ~64 MB per copy
        for start in range(0, len(block), step):
            chunk = np.array(block[start : start + step])  # a writable host copy of the chunk
            if not self.checked:
                self._check_finite_rows(chunk, start)
            out[start : start + step].copy_(torch.from_numpy(chunk))
        return out

    def batch_from(
        self,
        block: torch.Tensor,
        draw: Draw,
        labels: np.ndarray | None = None,
        crop_mode: str = "random",
    ) -> Batch:
        """`batch(draw)`, gathered from `device_block(device)` on its device.

        Only the draw's indices (B x L integers) travel to the device; the features are
        gathered there by one index_select, converted to float32 and zeroed at padding, with
        no host synchronisation. Gives the same batch as `batch` (tests prove it).
        """
        device = block.device
        pinned = device.type == "cuda"

        def send(array: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(np.ascontiguousarray(array))
            return t.pin_memory().to(device, non_blocking=True) if pinned else t

        positions = send(draw.positions.astype(np.int64))  # (B, L)
        mask = positions >= 0
        assert self.offsets is not None  # a device block is made from the block, with offsets
        rows = send(self.offsets[draw.videos])[:, None] + positions.clamp(min=0)  # (B, L)
        flat = rows.reshape(-1)
        repeat = self.rows_per_video(crop_mode)
        if labels is None:
            labels = self.labels[draw.videos]
        if repeat > 1:  # "all": (B, L, C, D) -> (B x C, L, D), video-major
            B, L = rows.shape
            feats = block.index_select(0, flat).float().view(B, L, repeat, -1)
            feats = feats.permute(0, 2, 1, 3).reshape(B * repeat, L, -1)
            mask = mask.repeat_interleave(repeat, dim=0)
            feats = feats.masked_fill_(~mask[..., None], 0.0)
            return Batch(
                features=feats,
                mask=mask,
                lengths=mask.sum(dim=1),
                labels=send(np.repeat(np.asarray(labels, dtype=np.float32), repeat)),
                crops=repeat,
            )
        if block.dim() == 2:
            feats = block.index_select(0, flat)
        elif crop_mode == "mean":
            feats = block.index_select(0, flat).float().mean(dim=-2)
        else:
            if draw.crops is None:
                raise ValueError("random crop mode needs a crop index per video")
            crops = send(np.asarray(draw.crops, dtype=np.int64))  # (B,)
            feats = block[flat, crops[:, None].expand_as(rows).reshape(-1)]
        feats = feats.float().view(*rows.shape, -1).masked_fill_(~mask[..., None], 0.0)
        if labels is None:
            labels = self.labels[draw.videos]
        return Batch(
            features=feats,
            mask=mask,
            lengths=mask.sum(dim=1),
            labels=send(np.asarray(labels, dtype=np.float32)),
        )

    def _check_finite_batch(self, out: np.ndarray, videos: np.ndarray) -> None:
        finite = np.isfinite(out).reshape(len(videos), -1).all(axis=1)
        if not finite.all():
            v = int(videos[int(np.flatnonzero(~finite)[0])])
            raise _non_finite(self.names[v], self.sources[v], self._features[v])

    def _check_finite_rows(self, rows: np.ndarray, start: int) -> None:
        """Rows [start, start + len(rows)) of the block; the error names their video."""
        with np.errstate(over="ignore"):
            finite = np.isfinite(rows.astype(np.float32, copy=False)).reshape(len(rows), -1)
        bad = np.flatnonzero(~finite.all(axis=1))
        if not bad.size:
            return
        assert self.offsets is not None  # rows of the block, given with its offsets
        order = np.argsort(self.offsets, kind="stable")  # offsets need not be sorted
        for row in (start + bad).tolist():
            k = int(np.searchsorted(self.offsets[order], row, side="right")) - 1
            v = int(order[k]) if k >= 0 else -1
            # The block may hold other videos too (a store's test split): only ours count.
            if v >= 0 and row < self.offsets[v] + self.lengths[v]:
                raise _non_finite(self.names[v], self.sources[v], self._features[v])

    def batch(
        self,
        draw: Draw,
        labels: np.ndarray | None = None,
        crop_mode: str = "random",
        out: np.ndarray | None = None,
    ) -> Batch:
        """Assemble a `Batch` for a draw (labels default to the videos' own); `out` as in
        `gather` (the batch's features are then a view of it). With crop mode "all" each
        video's C rows repeat its mask, length and label (`Batch.crops` = C)."""
        feats = self.gather(draw, crop_mode, out)
        if labels is None:
            labels = self.labels[draw.videos]
        repeat = self.rows_per_video(crop_mode)
        mask = np.repeat(draw.positions >= 0, repeat, axis=0)
        return Batch(
            features=torch.from_numpy(feats),
            mask=torch.from_numpy(mask),
            lengths=torch.from_numpy(mask.sum(axis=1).astype(np.int64)),
            labels=torch.as_tensor(np.repeat(np.asarray(labels), repeat), dtype=torch.float32),
            crops=repeat,
        )


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype


def _crop_of(crops: np.ndarray | None, b: int) -> Any:
    return None if crops is None else crops[b]


def _take_into(out: np.ndarray, array: Any, rows: np.ndarray, crop: Any, crop_mode: str) -> None:
    """Copy rows of one video's features into `out` (float32, (n, D)): (T, D) rows as they are;
    (T, C, D) rows averaged over crops ("mean") or at crop `crop` ("random")."""
    if array.ndim == 2:
        if isinstance(array, np.ndarray) and array.dtype == np.float32:
            np.take(array, rows, axis=0, out=out)
        else:
            out[...] = array[rows]
    elif crop_mode == "mean":
        out[...] = np.asarray(array[rows], dtype=np.float32).mean(axis=-2)
    elif crop is None:
        raise ValueError("random crop mode needs a crop index per video")
    else:
        out[...] = array[rows, int(crop)]


def require_finite(array: np.ndarray, name: str, source: str, raw: Any = None) -> None:
    """DataError naming the file and the video when `array` (features as used, float32)
    holds NaN or Inf; `raw`, the features as stored, tells values beyond float32's range
    from NaN or Inf in the file."""
    if not np.isfinite(array).all():
        raise _non_finite(name, source, raw)


def _non_finite(name: str, source: str, raw: Any = None) -> DataError:
    if raw is not None:
        stored = np.asarray(raw)
        if stored.dtype.kind == "f" and stored.size and np.isfinite(stored).all():
            return DataError(
                f"{source}: features of video {name!r} hold values beyond the float32 range "
                f"(largest magnitude {float(np.abs(stored).max()):.3g}); arnet computes in "
                "float32: rescale the features"
            )
    return DataError(f"{source}: features of video {name!r} hold NaN or Inf")


def pad_videos(arrays: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack whole videos into a padded batch for scoring.

    Args:
        arrays: per video, features (T_i, D).

    Returns:
        features (B, T, D) float32, zero-padded, and mask (B, T) bool; T = max T_i.
    """
    lengths = np.array([a.shape[0] for a in arrays])
    out = np.zeros((len(arrays), int(lengths.max()), arrays[0].shape[-1]), dtype=np.float32)
    for b, a in enumerate(arrays):
        out[b, : a.shape[0]] = a
    mask = np.arange(out.shape[1])[None, :] < lengths[:, None]
    return torch.from_numpy(out), torch.from_numpy(mask)
