"""The I3D path's cost on this machine: the network per frame, and optical flow per frame pair.

    python benchmarks/i3d.py                     # I3D rgb + flow streams, 4 flow methods
    python benchmarks/i3d.py --pairs 5 --clips 2 --device cuda

1. I3D (Inception-v1, the field's feature extractor) with seeded random weights in the
   pytorch-i3d layout (timing does not depend on the weights): 16-frame clips at 224 x 224, one
   centre crop, rgb (3 channels) and flow (2 channels); frames per second = 16 x clips / time.
2. Optical flow between consecutive UCSD Ped2 frames resized to short side 256 (256 x 384),
   as `arnet extract` computes it: TV-L1 (OpenCV contrib, default parameters, the field's
   choice), TV-L1 with fewer warps and scales, OpenCV's DIS (fine preset) and Farneback.
   Each method's fields are compared with TV-L1's: mean end-point error (pixels) over the
   pairs, and the mean absolute difference after the [-20, 20] clip and scaling to [-1, 1]
   that I3D receives (what a feature sees).

Prints seconds per frame pair and per frame, with the load average and thread count.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("ARNET_PED2", REPO.parent / "shared" / "data" / "ucsd-ped2"))


def time_i3d(clips: int, repeats: int, device: str) -> None:
    import torch

    from arnet.extract import create_backbone

    for modality, channels in (("rgb", 3), ("flow", 2)):
        backbone = create_backbone("i3d", modality, random_init=True).to(device)
        x = torch.rand(clips, channels, 16, 224, 224, device=device) * 2 - 1
        backbone.encode(x)  # warm-up (oneDNN / cuDNN pick their kernels)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            backbone.encode(x)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        frames = 16 * clips
        print(
            f"i3d {modality:4} {device}: {frames / min(times):6.1f} frames/s best, "
            f"{frames / statistics.median(times):6.1f} median ({clips} clip(s) of 16 frames, "
            f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f})",
            flush=True,
        )


def flow_methods():
    import cv2

    def tvl1(fast: bool):
        algo = cv2.optflow.DualTVL1OpticalFlow_create()
        if fast:
            algo.setWarpingsNumber(2)
            algo.setScalesNumber(3)
        return lambda a, b: algo.calc(a, b, None)

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return {
        "tvl1": tvl1(False),
        "tvl1-fast": tvl1(True),
        "dis-medium": lambda a, b: dis.calc(a, b, None),
        "farneback": lambda a, b: cv2.calcOpticalFlowFarneback(
            a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0
        ),
    }


def time_flow(data: Path, pairs: int) -> None:
    import cv2

    from arnet.extract.preprocess import resize_short_side
    from arnet.extract.video import frame_files

    cv2.setNumThreads(1)
    files = frame_files(sorted((data / "frames").iterdir())[0])[: pairs + 1]
    gray = [
        cv2.cvtColor(resize_short_side(cv2.imread(str(f)), 256), cv2.COLOR_BGR2GRAY) for f in files
    ]
    reference = None
    for name, method in flow_methods().items():
        fields, seconds = [], []
        for a, b in zip(gray, gray[1:]):
            start = time.perf_counter()
            fields.append(method(a, b))
            seconds.append(time.perf_counter() - start)
        if reference is None:
            reference = fields
        epe = np.mean([np.linalg.norm(f - r, axis=2).mean() for f, r in zip(fields, reference)])
        scaled = np.mean(
            [
                np.abs(np.clip(f, -20, 20) / 20 - np.clip(r, -20, 20) / 20).mean()
                for f, r in zip(fields, reference)
            ]
        )
        print(
            f"flow {name:10} {gray[0].shape[1]}x{gray[0].shape[0]}: "
            f"{statistics.median(seconds) * 1000:8.1f} ms per pair (median of {len(seconds)}, "
            f"1 thread), EPE vs tvl1 {epe:.3f} px, |diff| of I3D input {scaled:.4f} "
            f"(load {os.getloadavg()[0]:.1f})",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--pairs", type=int, default=3, help="Ped2 frame pairs per flow method")
    p.add_argument("--clips", type=int, default=1, help="I3D clips per forward pass")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--skip-i3d", action="store_true")
    p.add_argument("--skip-flow", action="store_true")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    if not args.skip_flow:
        time_flow(args.data, args.pairs)
    if not args.skip_i3d:
        time_i3d(args.clips, args.repeats, args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
