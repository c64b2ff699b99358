"""Optical flow for the I3D flow stream: TV-L1 (the field's choice), DIS or Farneback (faster).

Flow is computed between consecutive resized grayscale frames, before cropping, so every crop
of a segment sees the same field. Field i is the motion from frame i to frame i + 1; the last
frame, which has no successor, repeats the previous field, so a video of F frames has F fields
(a one-frame video gets a zero field). Displacements in pixels are clipped to [-bound, bound]
(bound = 20) and divided by bound, giving the [-1, 1] input I3D's flow stream was trained on.
Channel 0 is the horizontal displacement, channel 1 the vertical one.

TV-L1 uses OpenCV contrib's `optflow.DualTVL1OpticalFlow` with its default parameters;
it costs about a second per frame pair at 256 x 340 on a CPU core. DIS (OpenCV core, the
`medium` preset) is about a hundred times faster and the closest of the fast methods to TV-L1
(benchmarks/i3d.py: on Ped2 frame pairs its fields differ from TV-L1's by a third less than
Farneback's). Farneback (OpenCV core) is one to two orders of magnitude faster and gives
coarser fields. Features of one method are not comparable with another's, which is why the
method is recorded with the features.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import ExtractError
from ..videoconfig import FLOW_BOUND, FLOW_METHODS
from .optional import require


@dataclass(frozen=True)
class FlowSettings:
    """How flow fields are computed and scaled.

    Attributes:
        method: `tvl1` (TV-L1, OpenCV contrib), `dis` or `farneback` (OpenCV core, faster).
        bound: displacements are clipped to [-bound, bound] pixels, then divided by bound.
    """

    method: str = FLOW_METHODS[0]
    bound: float = FLOW_BOUND

    def validate(self) -> None:
        if self.method not in FLOW_METHODS:
            raise ExtractError(f"flow method must be one of {FLOW_METHODS}, got {self.method!r}")
        if not self.bound > 0:
            raise ExtractError(f"flow bound must be > 0, got {self.bound}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FlowEstimator:
    """Dense flow between two grayscale frames, (H, W) uint8 -> (H, W, 2) float32 pixels."""

    def __init__(self, method: str = "tvl1") -> None:
        cv2 = require("cv2", "optical flow")
        self.method = method
        self._cv2 = cv2
        if method == "tvl1":
            optflow = getattr(cv2, "optflow", None)
            if optflow is None:
                raise ExtractError(
                    "TV-L1 flow needs OpenCV's contrib modules (opencv-contrib-python-headless, "
                    'in `pip install "arnet-vad[extract]"`); or choose --flow farneback'
                )
            self._tvl1 = optflow.DualTVL1OpticalFlow_create()
        elif method == "dis":
            self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        elif method != "farneback":
            raise ExtractError(f"flow method must be one of {FLOW_METHODS}, got {method!r}")

    def __call__(self, previous: np.ndarray, following: np.ndarray) -> np.ndarray:
        if self.method == "tvl1":
            flow = self._tvl1.calc(previous, following, None)
        elif self.method == "dis":
            flow = self._dis.calc(previous, following, None)
        else:
            # OpenCV's documented example settings: 3 pyramid levels halving the size, 15-pixel
            # windows, 3 iterations, 5-pixel polynomial neighbourhoods.
            flow = self._cv2.calcOpticalFlowFarneback(
                previous, following, None, 0.5, 3, 15, 3, 5, 1.2, 0
            )
        return np.asarray(flow, dtype=np.float32)


def scale_flow(flow: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """Clip displacements to [-bound, bound] and divide by bound: float32 in [-1, 1]."""
    return (np.clip(flow, -bound, bound) / bound).astype(np.float32)


def to_gray(frame: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3) uint8 -> grayscale (H, W) uint8."""
    cv2 = require("cv2", "optical flow")
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def with_flow(
    frames: Iterable[np.ndarray], settings: FlowSettings
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pair each frame with its scaled flow field (see the module docstring for the rule).

    Args:
        frames: RGB (H, W, 3) uint8 frames, already resized.
        settings: method and bound.

    Yields:
        (frame (H, W, 3) uint8, flow (H, W, 2) float32 in [-1, 1]), one pair per frame.
    """
    estimator = FlowEstimator(settings.method)
    previous_frame = previous_gray = None
    last_flow = None
    for frame in frames:
        gray = to_gray(frame)
        if previous_frame is not None:
            assert previous_gray is not None  # set with previous_frame
            last_flow = scale_flow(estimator(previous_gray, gray), settings.bound)
            yield previous_frame, last_flow
        previous_frame, previous_gray = frame, gray
    if previous_frame is not None:
        if last_flow is None:
            last_flow = np.zeros((*previous_frame.shape[:2], 2), dtype=np.float32)
        yield previous_frame, last_flow
