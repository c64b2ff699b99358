"""Scoring segments from many cameras together: one backbone pass per batch, then the model.

Segments of every camera are encoded in one batch (grouped by frame size), with the
checkpoint's extractor, so that many cameras share the backbone's cost. The model scores them
through `evaluation.scoring.score_arrays`, as `detect` and `test` do:

- a per-segment model (`single`, AR-Net) scores each segment alone: its live scores equal
  the scores of the whole video;
- a temporal model (`mean`, `sequence`, `concat`, `lstm`, `bas`, `rtfm`, `mgfn`, `urdmu`,
  `bnwvad`) looks at neighbouring segments, later ones included. Live, it scores each new
  segment at the right end of its own causal window: the camera's last `context` segments
  (left context only), whatever else arrived in the same batch, so that its live scores are
  `causal_scores` of the footage. They differ from offline scoring of a finished video; the
  docs report by how much.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..data.dataset import require_finite
from ..detection.detector import Detector
from ..errors import ExtractError
from ..evaluation.scoring import score_arrays
from ..extract.runtimes import RuntimeNetwork
from .camera import Segment

# frames per ONNX Runtime / OpenVINO request beside the camera threads (RuntimeNetwork)
LIVE_REQUEST_FRAMES = 8


class SegmentScorer:
    """Scores segments for a Detector (model + extractor from `load_detector`).

    Args:
        detector: the checkpoint's detector.
        context: segments a temporal model sees per score (the new one and those before).
    """

    def __init__(self, detector: Detector, context: int = 64) -> None:
        if context < 1:
            raise ExtractError(f"--context must be >= 1 segment, got {context}")
        self.detector = detector
        # The extraction's own frame stride (checked by the extractor: frame backbones only):
        # a camera hands over every k-th frame of a segment.
        self.frame_stride = detector.extractor.config.preprocessing.frame_stride
        self.independent = bool(getattr(detector.model, "independent_segments", False))
        self.context = context
        self.history: dict[str, deque[np.ndarray]] = {}
        self.last_features: list[np.ndarray] = []
        for backbone in detector.extractor.backbones.values():
            network = getattr(backbone, "network", None)
            if isinstance(network, RuntimeNetwork):
                network.request_frames = LIVE_REQUEST_FRAMES

    @property
    def model_name(self) -> str:
        return getattr(self.detector.model, "arnet_spec", {}).get("name", "model")

    def features(self, segments: Sequence[Segment]) -> list[np.ndarray]:
        """The model's input feature of each segment: (D,) or (V, D) with several views."""
        extractor = self.detector.extractor
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, s in enumerate(segments):
            groups.setdefault(s.items[0][0].shape, []).append(i)
        out: list[np.ndarray | None] = [None] * len(segments)
        for members in groups.values():
            encoded = extractor.encode_segments([segments[i].items for i in members])
            if len(encoded) == 2:
                encoded["combine"] = np.concatenate([encoded["rgb"], encoded["flow"]], axis=-1)
            chosen = encoded[self.detector.output]
            for row, i in enumerate(members):
                out[i] = chosen[row]
        return out  # type: ignore[return-value]

    def score(self, segments: Sequence[Segment]) -> np.ndarray:
        """Scores of the segments (in the order given; a camera's segments in order)."""
        return self._score(segments, locate=False)[0]

    def score_and_locate(
        self, segments: Sequence[Segment]
    ) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """Scores of the segments, and where each is anomalous: its (rows, cols) cell map
        (`Detector.cell_maps`, on the window it was scored in), or None for every segment when
        the checkpoint maps no cells (`Detector.cell_grid`)."""
        return self._score(segments, locate=self.detector.cell_grid is not None)

    def _score(
        self, segments: Sequence[Segment], locate: bool
    ) -> tuple[np.ndarray, list[np.ndarray | None]]:
        feats = self.features(segments)
        self.last_features = feats  # the model's inputs, kept with alerts (live.feedback)
        by_camera: dict[str, list[int]] = {}
        for i, s in enumerate(segments):
            by_camera.setdefault(s.camera, []).append(i)
        # (segment indices, the array scored for them): a per-segment model scores a camera's
        # new segments in one array; a temporal model scores each new segment at the right end
        # of its own causal window, so that its score never depends on how many of a camera's
        # segments happened to arrive in one batch (a file read fast, a stream read live).
        jobs: list[tuple[list[int], np.ndarray]] = []
        for camera, members in by_camera.items():
            if self.independent:
                windows = [(members, [feats[i] for i in members])]
            else:
                past = self.history.setdefault(camera, deque(maxlen=self.context - 1))
                windows = []
                for i in members:
                    windows.append(([i], [*past, feats[i]]))
                    past.append(feats[i])
            for indices, rows in windows:
                array = np.stack(rows).astype(np.float32)
                require_finite(array, camera, f"camera {camera}")
                jobs.append((indices, array))
        d = self.detector
        scored = score_arrays(d.model, [array for _, array in jobs], d.device, d.crop_mode)
        result = np.empty(len(segments), dtype=np.float64)
        maps: list[np.ndarray | None] = [None] * len(segments)
        for (indices, array), scores in zip(jobs, scored):
            n = len(indices)
            result[indices] = scores[-n:]
            located = d.cell_maps(array) if locate else None
            if located is not None:
                for i, cells in zip(indices, located[-n:]):
                    maps[i] = cells
        return result, maps

    def warm_up(self) -> None:
        """Run the backbone and the model once on a blank segment, so that the first camera's
        first segment is not also the one that pays for the libraries' lazy start-up."""
        pp = self.detector.extractor.config.preprocessing
        side = max(pp.short_side or 0, pp.crop_size if pp.crop != "full" else 0, 32)
        # as wide as a grid backbone's cells need (--grid 2x4: twice as wide as high)
        grids = [getattr(b, "grid", None) for b in self.detector.extractor.backbones.values()]
        wide = max((cols / rows for rows, cols in filter(None, grids)), default=1.0)
        width = max(side, math.ceil(side * wide))
        frame = np.zeros((side, width, 3), dtype=np.uint8)
        flow = np.zeros((side, width, 2), dtype=np.float32)
        with_flow = "flow" in self.detector.extractor.backbones
        items = [(frame, flow if with_flow else None)] * len(
            range(0, pp.frames_per_segment, self.frame_stride)
        )
        blank = Segment("warm-up", 0, 0, 0, 0.0, 0.0, items, frame)
        self.score([blank])
        self.forget("warm-up")

    def forget(self, camera: str) -> None:
        """Drop a camera's left context (after a gap, the past is no longer adjacent)."""
        self.history.pop(camera, None)


def causal_scores(
    model: nn.Module,
    features: np.ndarray,
    context: int,
    device: torch.device | str = "cpu",
    crop_mode: str = "mean",
) -> np.ndarray:
    """Scores of a whole video's features (T, D) as the live scorer gives them: each segment
    at the right end of its causal window of `context` segments (to measure what causal
    scoring costs a temporal model against scoring the finished video)."""
    windows = [features[max(0, t - context + 1) : t + 1] for t in range(len(features))]
    scored = score_arrays(model, windows, device, crop_mode)
    return np.array([s[-1] for s in scored], dtype=np.float64)
