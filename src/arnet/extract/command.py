"""Options and actions of `arnet extract` and `arnet detect` (wired into `arnet.cli`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .flow import FLOW_METHODS
from .image import POOLS, SPATIAL
from .preprocess import CROP_MODES, TAIL_POLICIES, Preprocessing


def _add_backbone_options(p: argparse.ArgumentParser, recorded: bool) -> None:
    """Backbone and preprocessing options; with `recorded`, absent ones mean "as recorded"."""
    d = Preprocessing()
    note = " (default: as recorded for the training features)" if recorded else ""
    g = p.add_argument_group("backbone")
    g.add_argument(
        "--backbone",
        default=None,
        help="feature extractor: i3d, efficientnet-lite0, or a registered one"
        + (note or " (default: i3d)"),
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
        help="2D backbones: frame pooling per segment (default mean)",
    )
    g.add_argument(
        "--spatial",
        choices=SPATIAL,
        default=None,
        help="2D backbones: pooling of each frame's feature map over space (default mean; "
        "max keeps small objects in wide views)",
    )
    g = p.add_argument_group("preprocessing")
    g.add_argument(
        "--short-side",
        type=int,
        default=None,
        help=f"resize the short side to this (default {d.short_side}; 0 keeps the size){note}",
    )
    g.add_argument(
        "--crop", choices=CROP_MODES, default=None, help=f"views per frame (default {d.crop}){note}"
    )
    g.add_argument(
        "--crop-size", type=int, default=None, help=f"crop side (default {d.crop_size}){note}"
    )
    g.add_argument(
        "--frames-per-segment", type=int, default=None, help=f"default {d.frames_per_segment}"
    )
    g.add_argument(
        "--tail",
        choices=TAIL_POLICIES,
        default=None,
        help="frames after the last full segment: drop (default for extract) or pad "
        "(default for detect)",
    )
    g.add_argument(
        "--flow",
        choices=FLOW_METHODS,
        default=None,
        help=f"optical flow method (default tvl1){note}",
    )
    g.add_argument(
        "--flow-bound",
        type=float,
        default=None,
        help=f"flow clipping bound in pixels (default 20){note}",
    )
    g.add_argument(
        "--fps", type=float, default=None, help="frame rate of frame folders (default 25)"
    )
    g = p.add_argument_group("run")
    g.add_argument("--batch-size", type=int, default=16, help="segments per forward pass")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--json", action="store_true", help="print the result as one JSON object")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def add_extract_arguments(p: argparse.ArgumentParser) -> None:
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
        choices=("rgb", "flow", "combine"),
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


def add_detect_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="VIDEO", help="video files or frame folders")
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run folder")
    p.add_argument("--out", default=None, help="output folder (default: detect/ beside the run)")
    g = p.add_argument_group("alerts")
    g.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="alert threshold (default: the checkpoint's, 0.5)",
    )
    g.add_argument(
        "--calibrate",
        nargs="+",
        default=None,
        metavar="NORMAL_VIDEO",
        help="calibrate the threshold on these normal videos",
    )
    g.add_argument(
        "--false-alarm-rate",
        type=float,
        default=0.01,
        help="target share of normal frames that alert when calibrating (default 0.01)",
    )
    g.add_argument("--min-alert-frames", type=int, default=1, help="drop shorter alerts")
    g.add_argument(
        "--merge-gap", type=int, default=0, help="join alerts separated by at most this many frames"
    )
    _add_backbone_options(p, recorded=True)


# ---------------------------------------------------------------------- helpers


def _emit(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    print(json.dumps(payload) if args.json else text)


def _progress(args: argparse.Namespace) -> bool | None:
    return False if (args.quiet or args.json) else None


def _given(args: argparse.Namespace, fields: Mapping[str, str] | Iterable[str]) -> dict[str, Any]:
    """Fields whose option was given: {field: value}, for fields named as their option's dest
    or mapped {option dest: field}."""
    pairs = fields.items() if isinstance(fields, Mapping) else ((f, f) for f in fields)
    return {field: getattr(args, dest) for dest, field in pairs if getattr(args, dest) is not None}


_PREPROCESSING = tuple(f.name for f in dataclasses.fields(Preprocessing))  # options of that name
_FLOW = {"flow": "method", "flow_bound": "bound"}


def _backbone_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.random_init:
        options["random_init"] = True
    if args.pool is not None:
        options["pool"] = args.pool
    if args.spatial is not None:
        options["spatial"] = args.spatial
    return options


# ---------------------------------------------------------------------- extract


def run_extract(args: argparse.Namespace) -> int:
    from ..errors import ExtractError
    from ..formats.layout import read_split
    from ..formats.ped2 import is_frame_dataset, read_annotations, read_frame_dataset
    from ..runtime import resolve_device
    from .backbones import backbone_entry, create_backbone
    from .flow import FlowSettings
    from .pipeline import (
        ExtractConfig,
        FeatureExtractor,
        extract_dataset,
        parse_shard,
        settings_summary,
        torchrun_rank,
    )
    from .video import find_inputs

    name = args.backbone or "i3d"
    entry = backbone_entry(name)
    weights = {"rgb": args.weights_rgb, "flow": args.weights_flow}
    if args.modal is not None:
        modalities = ["rgb", "flow"] if args.modal == "combine" else [args.modal]
    elif entry.needs_weights and not args.random_init:
        modalities = [m for m in ("rgb", "flow") if weights[m]]
        if not modalities:
            raise ExtractError(
                f"backbone {name!r} needs weights: give --weights-rgb and/or --weights-flow"
            )
    else:
        modalities = [m for m in ("rgb", "flow") if m in entry.modalities][:1]
    for modality, path in weights.items():
        if path and modality not in modalities:
            raise ExtractError(
                f"--weights-{modality} given, but --modal {args.modal} leaves {modality} out"
            )

    # A frame dataset folder (Ped2 layout) brings its own videos, labels and weak splits.
    inputs: list[str] = []
    annotations = read_annotations(args.labels) if args.labels else None
    splits: dict[str, list[str]] = {}
    for raw in args.inputs:
        if is_frame_dataset(raw):
            dataset = read_frame_dataset(raw)
            inputs += [str(p) for p in dataset.videos.values()]
            if annotations is None:
                annotations = dict(dataset.annotations)
            splits.update(dataset.splits)
        else:
            inputs.append(raw)
    for split, path in (("train", args.train_split), ("test", args.test_split)):
        if path:
            splits[split] = read_split(path)
    videos = find_inputs(inputs, fps=args.fps)

    rank, world, local_rank = torchrun_rank()
    if args.shard and world > 1:
        raise ExtractError("give --shard or run under torchrun, not both")
    shard = parse_shard(args.shard) if args.shard else (rank, world)
    device = resolve_device(args.device, local_rank)
    options = _backbone_options(args)
    backbones = {m: create_backbone(name, m, weights[m], **options) for m in modalities}
    config = ExtractConfig(
        Preprocessing(**_given(args, _PREPROCESSING)),
        FlowSettings(**_given(args, _FLOW)),
        args.batch_size,
    )
    extractor = FeatureExtractor(backbones, config, device)
    summary = extract_dataset(
        videos,
        args.out,
        extractor,
        annotations=annotations,
        splits=splits or None,
        shard=shard,
        overwrite=args.overwrite,
        progress=_progress(args),
    )
    meta = extractor.metadata()
    text = (
        f"{settings_summary(meta)}\n"
        f"extracted {len(summary.extracted)} video(s) ({summary.frames} frames, "
        f"{summary.seconds:.1f} s), {len(summary.skipped)} already done"
        + (f", {summary.other_shards} left to other shards" if summary.other_shards else "")
        + f"\nfeatures: {summary.folder}"
        + (f"\nground truth and splits: {summary.out}" if summary.ground_truth else "")
    )
    _emit(
        args,
        {
            "out": str(summary.out),
            "folder": str(summary.folder),
            "extracted": summary.extracted,
            "skipped": summary.skipped,
            "other_shards": summary.other_shards,
            "frames": summary.frames,
            "seconds": round(summary.seconds, 2),
            "ground_truth": summary.ground_truth,
            "settings": meta,
        },
        text,
    )
    return 0


# ---------------------------------------------------------------------- detect


def run_detect(args: argparse.Namespace) -> int:
    from ..detect import load_detector, write_detection, write_summary
    from ..errors import ExtractError
    from .video import find_inputs

    # Arguments and inputs first: a mistake shows before any model or video is loaded.
    if args.calibrate and args.threshold is not None:
        raise ExtractError("give --threshold or --calibrate, not both")
    if not 0 <= args.false_alarm_rate < 1:
        raise ExtractError(f"--false-alarm-rate must be in [0, 1), got {args.false_alarm_rate}")
    videos = find_inputs(args.inputs, fps=args.fps)
    normal = find_inputs(args.calibrate, fps=args.fps) if args.calibrate else []
    weights = {m: w for m, w in (("rgb", args.weights_rgb), ("flow", args.weights_flow)) if w}
    detector, meta = load_detector(
        args.checkpoint,
        backbone=args.backbone,
        weights=weights,
        backbone_options=_backbone_options(args),
        preprocessing=_given(args, _PREPROCESSING),
        flow=_given(args, _FLOW),
        batch_size=args.batch_size,
        device=args.device,
    )
    calibration = None
    if normal:
        threshold = detector.calibrate(normal, args.false_alarm_rate)
        calibration = {
            "videos": [str(v.path) for v in normal],
            "false_alarm_rate": args.false_alarm_rate,
        }
    elif args.threshold is not None:
        threshold = args.threshold
    else:
        threshold = detector.threshold
    out = Path(args.out) if args.out else Path(meta["checkpoint"]).parent.parent / "detect"
    detections, lines = [], []
    for video in videos:
        detection = detector.detect(video, threshold, args.min_alert_frames, args.merge_gap)
        paths = write_detection(out, detection)
        detections.append(detection)
        lines.append(
            f"{video.name}: {len(detection.alerts)} alert(s), max score "
            f"{float(detection.segment_scores.max()):.3f}; {paths['scores'].name}, "
            f"{paths['alerts'].name}, {paths['plot'].name}"
        )
        for a in detection.alerts:
            lines.append(
                f"  {a.start_s:8.2f} s - {a.end_s:8.2f} s  (frames {a.start_frame}-{a.end_frame}), "
                f"peak {a.peak_score:.3f} at frame {a.peak_frame}"
            )
    summary = write_summary(
        out, detections, {"threshold": threshold, "calibration": calibration, "extraction": meta}
    )
    header = f"threshold {threshold:.4f}" + (
        f" (calibrated to {args.false_alarm_rate:.2%} false alarms on {len(calibration['videos'])} "
        "normal video(s))"
        if calibration
        else ""
    )
    _emit(
        args,
        json.loads(summary.read_text()) | {"out": str(out)},
        "\n".join([header, *lines, f"results: {out}"]),
    )
    return 0
