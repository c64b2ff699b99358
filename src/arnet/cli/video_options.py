"""The video-side options of the `arnet` command line: extract, detect and export.

The backbone and preprocessing options are shared by extract, detect and watch; their choices
and defaults come from `arnet.videoconfig`, so that these commands' help loads no torch.
"""

from __future__ import annotations

import argparse

from ..config import FRAMES_PER_SEGMENT, config_field
from ..videoconfig import (
    BACKBONES,
    CROP_MODES,
    CROP_SIZE,
    DEFAULT_BACKBONE,
    DEFAULT_FOLDER_FPS,
    FLOW_BOUND,
    FLOW_METHODS,
    MOTION_GRID,
    POOLS,
    PRECISIONS,
    RUNTIMES,
    SHORT_SIDE,
    SPATIAL,
    TAIL_POLICIES,
)
from .options import _at_least, _positive_real, _real, _unit


def _add_backbone_options(p: argparse.ArgumentParser, recorded: bool) -> None:
    """Backbone and preprocessing options; with `recorded`, absent ones mean "as recorded"."""

    def default(value: object) -> str:
        """The option's default: as recorded for the checkpoint's training features, or
        `value` where nothing is recorded (extract)."""
        return (
            " (default: as recorded with the training features)"
            if recorded
            else (f" (default: {value})")
        )

    g = p.add_argument_group("backbone")
    g.add_argument(
        "--backbone",
        default=None,
        help=f"feature extractor: {', '.join(BACKBONES)}, or a registered one"
        + default(DEFAULT_BACKBONE),
    )
    g.add_argument(
        "--weights-rgb", default=None, metavar="FILE", help="I3D RGB weights (rgb_imagenet.pt)"
    )
    g.add_argument(
        "--weights-flow", default=None, metavar="FILE", help="I3D flow weights (flow_imagenet.pt)"
    )
    g.add_argument(
        "--random-init",
        action="store_true",
        help="I3D with seeded random weights: for testing the pipeline, never for results",
    )
    g.add_argument(
        "--pool",
        choices=POOLS,
        default=None,
        help="2D backbones: frame pooling per segment" + default(POOLS[0]),
    )
    g.add_argument(
        "--spatial",
        choices=SPATIAL,
        default=None,
        help="2D backbones: pooling of each frame's feature map over space (max keeps small "
        "objects in wide views)" + default(SPATIAL[0]),
    )
    g.add_argument(
        "--grid",
        default=None,
        metavar="ROWSxCOLS",
        help="motion-grid: the cells the frame is cut into; efficientnet-lite0: pool the feature "
        "map over each of these cells instead of the whole frame (R*C*1280 numbers per "
        "segment, cell-major)"
        + default("{}x{} for motion-grid, none for efficientnet-lite0".format(*MOTION_GRID)),
    )
    g = p.add_argument_group("preprocessing")
    g.add_argument(
        "--short-side",
        type=_at_least(0),
        default=None,
        help="resize the short side to this many pixels; 0 keeps the size" + default(SHORT_SIDE),
    )
    g.add_argument(
        "--crop", choices=CROP_MODES, default=None, help="views per frame" + default(CROP_MODES[0])
    )
    g.add_argument(
        "--crop-size", type=_at_least(1), default=None, help="crop side" + default(CROP_SIZE)
    )
    g.add_argument(
        "--frames-per-segment",
        type=_at_least(1),
        default=None,
        help="frames per segment" + default(FRAMES_PER_SEGMENT),
    )
    g.add_argument(
        "--tail",
        choices=TAIL_POLICIES,
        default=None,
        help="frames after the last full segment: dropped, or scored by one more segment of "
        "the video's last frames, overlapping the one before"
        + (" (default: pad, so that every frame is scored)" if recorded else " (default: drop)"),
    )
    g.add_argument(
        "--flow",
        choices=FLOW_METHODS,
        default=None,
        help="optical flow method" + default(FLOW_METHODS[0]),
    )
    g.add_argument(
        "--flow-bound",
        type=_positive_real,
        default=None,
        help="flow clipping bound in pixels" + default(f"{FLOW_BOUND:g}"),
    )
    g.add_argument(
        "--frame-stride",
        type=_at_least(1),
        default=None,
        metavar="K",
        help="2D backbones: encode every K-th frame only, K dividing the segment length"
        + default(1),
    )
    g.add_argument(
        "--fps",
        type=_positive_real,
        default=None,
        help=f"frame rate of frame folders (default: {DEFAULT_FOLDER_FPS:g})",
    )
    g = p.add_argument_group("run")
    g.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=None,
        help="2D backbones: what runs the network: torch, or onnxruntime / openvino, several "
        'times faster on CPUs (pip install "arnet-vad[export]"); same features to float '
        f"rounding (default: {RUNTIMES[0]})",
    )
    g.add_argument(
        "--runtime-precision",
        choices=PRECISIONS,
        default=None,
        help="the runtime's inference precision: f32 (the same features on every CPU) or bf16 "
        "(openvino only; faster on CPUs with bfloat16 units, other features)"
        + default(PRECISIONS[0]),
    )
    g.add_argument(
        "--threads",
        type=_at_least(1),
        default=None,
        help="CPU threads for the network (default: torch's, one per core)",
    )
    g.add_argument(
        "--batch-size",
        type=_at_least(1),
        default=16,
        help="segments per forward pass (default: %(default)s)",
    )
    g.add_argument(
        "--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)"
    )
    g.add_argument("--json", action="store_true", help="print the result as one JSON object")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _extract(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="VIDEO",
        help="video files, frame folders, folders of those, or a frame dataset folder "
        "(frames/ + labels.json, e.g. UCSD Ped2)",
    )
    p.add_argument("--out", required=True, help="dataset folder to write (AR-Net layout)")
    p.add_argument(
        "--modal",
        choices=config_field("feature_modal").metadata["choices"],
        default=None,
        help="streams to extract (default: those with weights for i3d, rgb otherwise)",
    )
    _add_backbone_options(p, recorded=False)
    g = p.add_argument_group("labels and splits")
    g.add_argument(
        "--labels", default=None, metavar="JSON", help="frame labels (labels.json format)"
    )
    g.add_argument("--train-split", default=None, metavar="FILE", help="train video names")
    g.add_argument("--test-split", default=None, metavar="FILE", help="test video names")
    g = p.add_argument_group("resuming and sharing the work")
    g.add_argument(
        "--shard", default=None, metavar="I/N", help="extract every N-th video from the I-th"
    )
    g.add_argument("--overwrite", action="store_true", help="re-extract videos already done")


def add_alert_options(p: argparse.ArgumentParser, *, live: bool) -> None:
    """The alert rule's options, one group for `detect` and `watch` (which adds the stop
    threshold of its hysteresis): the same names, checks and defaults in both."""
    g = p.add_argument_group("alerts")
    g.add_argument(
        "--threshold",
        type=_unit,
        default=None,
        help=("start threshold of an alert" if live else "alert threshold")
        + " (default: the checkpoint's: chosen on held-out videos with train --val-fraction, "
        "else 0.5)",
    )
    if live:
        g.add_argument(
            "--stop-threshold",
            type=_unit,
            default=None,
            help="an alert lasts while segments score at least this (default: the start threshold)",
        )
    g.add_argument(
        "--calibrate",
        nargs="+",
        default=None,
        metavar="NORMAL_VIDEO",
        help="choose the threshold on these normal videos (at --false-alarm-rate)",
    )
    g.add_argument(
        "--false-alarm-rate",
        type=_real,
        default=0.01,
        help="target share of normal frames that alert when calibrating (default 0.01)",
    )
    g.add_argument(
        "--min-alert-frames", type=_at_least(1), default=1, help="drop alerts shorter than this"
    )
    g.add_argument(
        "--merge-gap",
        type=_at_least(0),
        default=0,
        help="join alerts separated by at most this many frames",
    )


def _detect(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="VIDEO", help="video files or frame folders")
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run folder")
    p.add_argument("--out", default=None, help="output folder (default: detect/ beside the run)")
    add_alert_options(p, live=False)
    _add_backbone_options(p, recorded=True)


def _export(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run folder or checkpoint file")
    p.add_argument(
        "--format",
        required=True,
        metavar="FORMAT",
        help="onnx (ONNX Runtime, OpenVINO, ...) or torchscript (PyTorch without arnet)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="a new or empty folder to write (default: a fresh RUN/export-FORMAT, -2, -3, ...)",
    )
    p.add_argument(
        "--input-size",
        default=None,
        metavar="WxH",
        help="frame size the backbone takes after resizing (default: that of the extracted "
        "training videos)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier export in --out (default RUN/export-FORMAT); a folder holding "
        "anything else is never touched",
    )
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
