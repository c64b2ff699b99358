"""Extraction: videos -> segment features, and whole datasets -> the AR-Net layout.

`FeatureExtractor.extract(video)` streams one video: frames are decoded, resized, paired with
their flow field when a flow backbone is present, grouped into segments (tail policy), cropped
and encoded `batch_size` segments at a time, so memory stays bounded for long videos. Decoding,
resizing and flow run in a background thread a bounded number of frames ahead of the network
(`ExtractConfig.prefetch`), and the time of each stage is summed in `FeatureExtractor.timings`.

Whole datasets are written by arnet.extract.dataset.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..errors import ExtractError
from .backbones import Backbone
from .flow import FlowSettings, with_flow
from .preprocess import (
    Preprocessing,
    Segmenter,
    crop_clips,
    crop_windows,
    kept_frames,
    resize_short_side,
    scale_rgb,
)
from .tuning import StageTimes, limit_allocator_churn, limit_library_threads, prefetch
from .video import VideoInput

EXTRACTION_FORMAT = "arnet-extraction"
EXTRACTION_VERSION = 1


@dataclass(frozen=True)
class ExtractConfig:
    """Everything besides the backbones that decides the features.

    Attributes:
        preprocessing: resizing, cropping, segmenting (see `Preprocessing`).
        flow: flow method and bound (used when a flow backbone is present).
        batch_size: segments per forward pass (ten crops make 10 clips of each).
        prefetch: frames decoded ahead of the network in a background thread (0: decode in
            the calling thread, between forward passes).
    """

    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    flow: FlowSettings = field(default_factory=FlowSettings)
    batch_size: int = 16
    prefetch: int = 64

    def validate(self) -> None:
        self.preprocessing.validate()
        self.flow.validate()
        if self.batch_size < 1:
            raise ExtractError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.prefetch < 0:
            raise ExtractError(f"prefetch must be >= 0, got {self.prefetch}")


@dataclass
class VideoFeatures:
    """The features of one video.

    Attributes:
        name: the video's name.
        features: output ("rgb", "flow", "combine") -> (T, D) or, with ten crops, (T, 10, D).
        frames: frames decoded, F.
        segments: T.
        padded: repeated frames that completed the last segment (`pad` policy, a video
            shorter than one segment, or `tail_fill` `repeat`).
        dropped: trailing frames without a segment (`drop` policy).
        fps: frame rate.
        size: decoded frame size (width, height).
    """

    name: str
    features: dict[str, np.ndarray]
    frames: int
    segments: int
    padded: int
    dropped: int
    fps: float
    size: tuple[int, int]
    overlap: int = 0
    """Frames the last segment shares with the one before (`pad` policy, `tail_fill`
    `window`: it is the video's last frames_per_segment frames)."""

    def info(self, source: str | Path) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": str(source),
            "frames": self.frames,
            "segments": self.segments,
            "padded_frames": self.padded,
            "overlap_frames": self.overlap,
            "dropped_frames": self.dropped,
            "fps": self.fps,
            "width": self.size[0],
            "height": self.size[1],
        }


class FeatureExtractor:
    """Turns videos into segment features with one backbone per modality.

    Args:
        backbones: modality ("rgb", "flow") -> backbone; all of the same family (name).
        config: preprocessing, flow and batching.
        device: where the backbones run.
    """

    def __init__(
        self,
        backbones: Mapping[str, Backbone],
        config: ExtractConfig | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if not backbones:
            raise ExtractError("no backbone to extract with")
        for modality, backbone in backbones.items():
            if backbone.modality != modality:
                raise ExtractError(
                    f"backbone {backbone.name!r} takes {backbone.modality} clips, "
                    f"but was given for {modality}"
                )
        names = {b.name for b in backbones.values()}
        if len(names) > 1:
            raise ExtractError(f"one backbone family per extraction, got {sorted(names)}")
        self.config = config or ExtractConfig()
        self.config.validate()
        self.device = torch.device(device)
        self.backbones = {m: backbones[m] for m in ("rgb", "flow") if m in backbones}
        stride = self.config.preprocessing.frame_stride
        if stride > 1:
            clips = [b.name for b in self.backbones.values() if not getattr(b, "per_frame", False)]
            if clips or "flow" in self.backbones:
                raise ExtractError(
                    f"a frame stride of {stride} needs a per-frame backbone on rgb frames "
                    f"(such as efficientnet-lite0); {', '.join(clips) or 'flow'} needs every frame"
                )
        self.timings = StageTimes()
        for backbone in self.backbones.values():
            backbone.to(self.device)
            if hasattr(backbone, "timings"):
                backbone.timings = self.timings
        self.name = names.pop()
        limit_allocator_churn()
        if "flow" not in self.backbones:  # TV-L1 is the cost there: it keeps OpenCV's threads
            limit_library_threads()

    @property
    def outputs(self) -> list[str]:
        """Feature folders written: each modality, plus `combine` when there are both."""
        outs = list(self.backbones)
        return outs + ["combine"] if len(outs) == 2 else outs

    @property
    def dims(self) -> dict[str, int]:
        dims = {m: b.dim for m, b in self.backbones.items()}
        if len(dims) == 2:
            dims["combine"] = dims["rgb"] + dims["flow"]
        return dims

    def metadata(self) -> dict[str, Any]:
        """What decides the features, JSON-ready (written to extraction.json)."""
        cfg = self.config
        return {
            "format": EXTRACTION_FORMAT,
            "version": EXTRACTION_VERSION,
            "arnet_version": __version__,
            "backbone": self.name,
            "modalities": list(self.backbones),
            "outputs": self.outputs,
            "dims": self.dims,
            "views": cfg.preprocessing.views,
            "preprocessing": cfg.preprocessing.to_dict(),
            "flow": cfg.flow.to_dict() if "flow" in self.backbones else None,
            "backbones": {m: b.describe() for m, b in self.backbones.items()},
        }

    # ------------------------------------------------------------------ one video
    def extract(self, video: VideoInput) -> VideoFeatures:
        """Features of one video, every output (see `outputs`).

        Raises:
            ExtractError: naming the video, when it cannot be decoded, its frames change size,
                the crop does not fit, or it has too few frames for one segment.
        """
        pp = self.config.preprocessing
        first_size: list[tuple[int, int]] = []
        timings = self.timings

        def resized() -> Iterator[np.ndarray | None]:
            # all of one size (checked there, naming the file); None: skipped by the stride
            for frame in timings.timed(video.frames(pp.frame_stride), "decode"):
                if frame is None:
                    yield None
                    continue
                if not first_size:
                    first_size.append((frame.shape[1], frame.shape[0]))
                with timings.stage("resize"):
                    frame = resize_short_side(frame, pp.short_side)
                yield frame

        if "flow" in self.backbones:
            # the "flow" stage includes the decoding and resizing that each field pulls in
            # with flow the stride is 1 (checked in __init__): no frame is None
            flows = timings.timed(with_flow(resized(), self.config.flow), "flow")  # type: ignore[arg-type]
            produced: Iterator[tuple[np.ndarray | None, np.ndarray | None]] = flows
        else:
            produced = ((frame, None) for frame in resized())
        items = prefetch(produced, self.config.prefetch)
        segmenter = Segmenter(pp.frames_per_segment, pp.tail, pp.tail_fill)
        collected: dict[str, list[np.ndarray]] = {m: [] for m in self.backbones}
        pending: list[list[tuple[np.ndarray, np.ndarray | None]]] = []
        windows = None
        for segment in segmenter(items):
            if windows is None:
                h, w = segment[0][0].shape[:2]  # the stride keeps each segment's first frame
                try:
                    windows = crop_windows(h, w, pp.crop_size, pp.crop)
                except ExtractError as exc:
                    raise ExtractError(f"{video.path}: {exc}") from None
            pending.append(segment)
            if len(pending) == self.config.batch_size:
                self._encode(pending, windows, collected)
                pending = []
        if pending:
            assert windows is not None  # set at the first segment
            self._encode(pending, windows, collected)
        timings.frames += segmenter.frames
        if segmenter.frames == 0:
            raise ExtractError(f"{video.path}: no frames decoded")
        segments = segmenter.segments
        if segments == 0:
            raise ExtractError(
                f"{video.path}: {segmenter.frames} frames, fewer than one "
                f"{pp.frames_per_segment}-frame segment; use the pad tail policy"
            )
        features = {m: np.concatenate(parts) for m, parts in collected.items()}
        if len(features) == 2:
            features["combine"] = np.concatenate([features["rgb"], features["flow"]], axis=-1)
        return VideoFeatures(
            name=video.name,
            features=features,
            frames=segmenter.frames,
            segments=segments,
            padded=segmenter.padded,
            dropped=segmenter.dropped,
            fps=video.frame_rate(),
            size=first_size[0],
            overlap=segmenter.overlap,
        )

    def encode_segments(
        self, segments: Sequence[Sequence[tuple[np.ndarray, np.ndarray | None]]]
    ) -> dict[str, np.ndarray]:
        """Features of already-segmented frames, every modality (not `combine`).

        Args:
            segments: N segments, each a list of (resized frame, flow field or None) pairs as
                `extract` groups them; all frames of one size.

        Returns:
            modality -> (N, D), or (N, V, D) with several views.
        """
        h, w = segments[0][0][0].shape[:2]
        pp = self.config.preprocessing
        windows = crop_windows(h, w, pp.crop_size, pp.crop)
        collected: dict[str, list[np.ndarray]] = {m: [] for m in self.backbones}
        self._encode([list(s) for s in segments], windows, collected)
        return {m: parts[0] for m, parts in collected.items()}

    def _encode(
        self,
        segments: list[list[tuple[np.ndarray, np.ndarray | None]]],
        windows: list[tuple[int, int, int, int, bool]],
        collected: dict[str, list[np.ndarray]],
    ) -> None:
        n, views = len(segments), len(windows)
        timings = self.timings
        for modality, backbone in self.backbones.items():
            start = time.perf_counter()
            if modality == "rgb":
                pp = self.config.preprocessing
                stack = np.stack(
                    [
                        kept_frames([f for f, _ in seg], pp.frames_per_segment, pp.frame_stride)
                        for seg in segments
                    ]
                )
                clips = scale_rgb(crop_clips(stack, windows))  # (N, V, L, h, w, 3)
            else:
                stack = np.stack([[flow for _, flow in seg] for seg in segments])
                clips = crop_clips(stack, windows, flow=True)  # (N, V, L, h, w, 2)
            tensor = torch.from_numpy(clips).permute(0, 1, 5, 2, 3, 4).flatten(0, 1)
            tensor = tensor.contiguous()
            timings.add("preprocess", time.perf_counter() - start)
            start = time.perf_counter()
            out = backbone.encode(tensor).cpu().numpy()  # (N V, D)
            if not hasattr(backbone, "timings"):  # a frame backbone times its own stages
                timings.add("network", time.perf_counter() - start)
            out = out.reshape(n, views, -1)
            collected[modality].append(out[:, 0] if views == 1 else out)
