"""Commands on videos: `arnet extract` (features in the AR-Net layout) and `arnet detect`
(scores and alerts from a checkpoint)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..detection.detector import load_detector, write_detection, write_summary
from ..errors import ExtractError
from ..extract.backbones import backbone_entry, create_backbone
from ..extract.dataset import extract_dataset, parse_shard, settings_summary, torchrun_rank
from ..extract.flow import FlowSettings
from ..extract.pipeline import ExtractConfig, FeatureExtractor
from ..extract.preprocess import Preprocessing
from ..extract.video import find_inputs
from ..folders import (
    RunFolder,
    claim_empty_folder,
    remove_stale_temporaries_under,
    require_empty,
)
from ..formats.layout import read_split
from ..formats.ped2 import expand_frame_datasets, read_annotations
from ..training.runtime import resolve_device
from ..videoconfig import DEFAULT_BACKBONE
from .common import emit, output_folder, progress

# load_detector's words for what `arnet detect` calls options.
_FLAGS = {
    "give the backbone (and its weights)": "give --backbone (and --weights-rgb / --weights-flow)",
    "give the rgb weights": "give --weights-rgb",
    "give the flow weights": "give --weights-flow",
}


def _in_flags(message: str) -> str:
    for words, flags in _FLAGS.items():
        message = message.replace(words, flags)
    return message


def _given(args: argparse.Namespace, fields: Mapping[str, str] | Iterable[str]) -> dict[str, Any]:
    """Fields whose option was given: {field: value}, for fields named as their option's dest
    or mapped {option dest: field}."""
    pairs = fields.items() if isinstance(fields, Mapping) else ((f, f) for f in fields)
    return {field: getattr(args, dest) for dest, field in pairs if getattr(args, dest) is not None}


# Options of each Preprocessing field's name; but `tail_fill`, a record: a new extraction or
# detection always fills a `pad` tail with the last frames (`window`).
_PREPROCESSING = tuple(f.name for f in dataclasses.fields(Preprocessing) if f.name != "tail_fill")
_FLOW = {"flow": "method", "flow_bound": "bound"}


def _backbone_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.random_init:
        options["random_init"] = True
    if args.pool is not None:
        options["pool"] = args.pool
    if args.spatial is not None:
        options["spatial"] = args.spatial
    if args.runtime not in (None, "torch"):
        options["runtime"] = args.runtime
    if args.runtime_precision is not None:
        options["precision"] = args.runtime_precision
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
        if args.runtime not in (None, "torch"):
            options["threads"] = args.threads
    if getattr(args, "grid", None) is not None:
        options["grid"] = args.grid
    return options


# ---------------------------------------------------------------------- extract


def run_extract(args: argparse.Namespace) -> int:
    name = args.backbone or DEFAULT_BACKBONE
    entry = backbone_entry(name)
    weights = {"rgb": args.weights_rgb, "flow": args.weights_flow}
    modalities: Sequence[str]
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

    annotations = read_annotations(args.labels) if args.labels else None
    inputs, annotations, splits = expand_frame_datasets(args.inputs, annotations)
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
    remove_stale_temporaries_under(args.out)  # half-written files of a killed extraction
    summary = extract_dataset(
        videos,
        args.out,
        extractor,
        annotations=annotations,
        splits=splits or None,
        shard=shard,
        overwrite=args.overwrite,
        progress=progress(args),
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
    emit(
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


def _loaded_from_args(loader: Any, args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """`loader` (a checkpoint's or an export folder's) with the backbone and preprocessing
    options of `detect` or `watch`; its errors worded in those commands' flags."""
    weights = {m: w for m, w in (("rgb", args.weights_rgb), ("flow", args.weights_flow)) if w}
    try:
        return loader(
            args.checkpoint,
            backbone=args.backbone,
            weights=weights,
            backbone_options=_backbone_options(args),
            preprocessing=_given(args, _PREPROCESSING),
            flow=_given(args, _FLOW),
            batch_size=args.batch_size,
            device=args.device,
        )
    except ExtractError as exc:
        raise ExtractError(_in_flags(str(exc))) from exc


def detector_from_args(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """`load_detector` with the options of `detect` or `watch`."""
    return _loaded_from_args(load_detector, args)


def export_detector_from_args(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """`load_export_detector` (an `arnet export` folder) with `watch`'s backbone options."""
    from ..detection.exported import load_export_detector

    return _loaded_from_args(load_export_detector, args)


def use_current_version(model: Any, checkpoint: str) -> int:
    """Score with the version of the run in use (`arnet feedback`; 0: the run as trained),
    as `watch` does; its number."""
    from ..training import feedback as versions

    run = versions.run_folder(checkpoint)
    if run is None:
        return 0
    number = versions.current_version(run)
    if number:
        versions.use_version(model, run, number)
    return number


def check_alert_arguments(args: argparse.Namespace) -> None:
    """The alert options (`add_alert_options`) that argparse cannot check one by one."""
    if args.calibrate and args.threshold is not None:
        raise ExtractError("give --threshold or --calibrate, not both")
    if not 0 <= args.false_alarm_rate < 1:
        raise ExtractError(f"--false-alarm-rate must be in [0, 1), got {args.false_alarm_rate}")


def alert_threshold(
    args: argparse.Namespace, detector: Any, normal: list[Any]
) -> tuple[float, dict[str, Any] | None]:
    """The (start) threshold of `detect` and `watch`: calibrated on the `--calibrate` videos,
    else `--threshold`, else the checkpoint's; with the calibration's record (None when none)."""
    if normal:
        threshold = detector.calibrate(normal, args.false_alarm_rate)
        calibration = {
            "videos": [str(v.path) for v in normal],
            "false_alarm_rate": args.false_alarm_rate,
        }
        return threshold, calibration
    return (args.threshold if args.threshold is not None else detector.threshold), None


def run_detect(args: argparse.Namespace) -> int:
    # Arguments and inputs first: a mistake shows before any model or video is loaded.
    check_alert_arguments(args)
    what = "write detections into a new or empty --out (or leave --out out)"
    if args.out:
        require_empty(Path(args.out), what)
    videos = find_inputs(args.inputs, fps=args.fps)
    normal = find_inputs(args.calibrate, fps=args.fps) if args.calibrate else []
    detector, meta = detector_from_args(args)
    version = use_current_version(detector.model, args.checkpoint)
    threshold, calibration = alert_threshold(args, detector, normal)
    checkpoint = Path(meta["checkpoint"])
    run = getattr(RunFolder.of_checkpoint(checkpoint), "path", checkpoint.parent)
    out = output_folder(args.out, run, "detect", what)
    with claim_empty_folder(out, "arnet detect", what):
        header, lines, summary = _detect_into(
            out, detector, videos, threshold, calibration, meta, args, version
        )
    emit(
        args,
        json.loads(summary.read_text()) | {"out": str(out)},
        "\n".join([header, *lines, f"results: {out}"]),
    )
    return 0


def _detect_into(
    out: Path,
    detector: Any,
    videos: list[Any],
    threshold: float,
    calibration: dict[str, Any] | None,
    meta: dict[str, Any],
    args: argparse.Namespace,
    version: int = 0,
) -> tuple[str, list[str], Path]:
    """Detect every video into `out`: the header line, the per-video lines, detect.json."""
    detections, lines, written = [], [], []
    for video in videos:
        detection = detector.detect(video, threshold, args.min_alert_frames, args.merge_gap)
        paths = write_detection(out, detection)
        detections.append(detection)
        written.append(paths)
        lines.append(
            f"{video.name}: {len(detection.alerts)} alert(s), max score "
            f"{float(detection.segment_scores.max()):.3f}; {paths['scores'].name}, "
            f"{paths['alerts'].name}, {paths['plot'].name}"
        )
        for n, a in enumerate(detection.alerts, 1):
            heat_map = paths.get(f"alert{n}")
            lines.append(
                f"  {a.start_s:8.2f} s - {a.end_s:8.2f} s  (frames {a.start_frame}-{a.end_frame}), "
                f"peak {a.peak_score:.3f} at frame {a.peak_frame}"
                + (f"; heat map {heat_map.name}" if heat_map else "")
            )
    summary = write_summary(
        out,
        detections,
        {
            "threshold": threshold,
            "calibration": calibration,
            "version": version,
            "extraction": meta,
        },
        written,
    )
    header = f"threshold {threshold:.4f}"
    if version:
        header = f"version {version} of the run, {header}"
    if calibration:
        header += (
            f" (calibrated to {args.false_alarm_rate:.2%} false alarms on "
            f"{len(calibration['videos'])} normal video(s))"
        )
    return header, lines, summary
