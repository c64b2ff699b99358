"""Whole datasets -> the AR-Net layout (`extract_dataset`), with resume and sharding.

`extract_dataset` writes what training reads (SPEC §1, AR-Net layout) plus what makes the
features reproducible:

```
OUT/features_video/BACKBONE/{rgb,flow,combine}/VIDEO/feature.npy   (T, D) or (T, 10, D) float32
OUT/features_video/BACKBONE/extraction.json   preprocessing, flow, backbones, weight SHA-256s
OUT/features_video/BACKBONE/videos/VIDEO.json per video: frames, segments, fps, tail frames
                                             (dropped, padded, overlapping)
OUT/train_split.txt, OUT/test_split.txt, OUT/GT/*.pickle     with labels and splits
```

A video is done when its VIDEO.json exists (written after its features, each written to a
temporary file and renamed), so an interrupted run resumes where it stopped, and several
processes (`--shard i/n`, torchrun ranks) can fill one folder. The ground truth is written by
whichever process finds every video done.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..atomic import write_atomic, write_json_atomic
from ..errors import ExtractError
from ..formats.extraction import ExtractionRecord, extraction_settings, settings_key
from ..formats.groundtruth import fit_frame_labels, normalize_name
from ..formats.layout import (
    backbone_folder,
    extraction_record,
    feature_path,
    recorded_settings,
    video_record,
    write_labels_and_splits,
)
from .pipeline import FeatureExtractor
from .preprocess import (
    Preprocessing,
)
from .video import VideoInput


@dataclass
class ExtractSummary:
    """What an `extract_dataset` call did.

    Attributes:
        out: the dataset folder.
        folder: features_video/BACKBONE.
        extracted: videos extracted by this call.
        skipped: videos of this shard found done.
        other_shards: videos left to other shards.
        frames: frames decoded by this call.
        seconds: wall time of this call.
        ground_truth: whether the split files and GT pickles were written.
    """

    out: Path
    folder: Path
    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    other_shards: int = 0
    frames: int = 0
    seconds: float = 0.0
    ground_truth: bool = False


def parse_shard(text: str) -> tuple[int, int]:
    """`i/n` -> (i, n) with 0 <= i < n."""
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise ExtractError(f"--shard takes I/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= index < count:
        raise ExtractError(f"--shard {text}: need 0 <= I < N")
    return index, count


def extract_dataset(
    videos: Sequence[VideoInput],
    out: str | Path,
    extractor: FeatureExtractor,
    *,
    annotations: Mapping[str, Any] | None = None,
    splits: Mapping[str, Sequence[str]] | None = None,
    shard: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    progress: bool | None = None,
) -> ExtractSummary:
    """Extract videos into the AR-Net layout under `out` (see the module docstring).

    Args:
        videos: the videos (from `find_inputs`).
        out: dataset folder.
        extractor: the configured extractor.
        annotations: video -> FrameAnnotation (labels.json); with `splits`, the ground truth
            pickles and split files are written once every video is done.
        splits: split name ("train", "test") -> video names.
        shard: (i, n): this process extracts videos i, i + n, i + 2n, ... of the sorted list.
        overwrite: re-extract videos already done, and replace a different extraction.json.
        progress: progress bar (None: only on a terminal).

    Raises:
        ExtractError: naming the file or video: settings that differ from the folder's
            existing extraction, split videos without input or labels, frame counts that
            disagree with the labels.
    """
    started = time.perf_counter()
    out = Path(out)
    folder = backbone_folder(out, extractor.name)
    summary = ExtractSummary(out, folder)
    splits = {s: [normalize_name(n) for n in names] for s, names in (splits or {}).items()}
    names = {v.name for v in videos}
    for split, members in splits.items():
        absent = [n for n in members if n not in names]
        if absent:
            raise ExtractError(
                f"the {split} split names video(s) {', '.join(absent[:8])} that are not among "
                "the inputs"
            )
        if annotations is None:
            raise ExtractError(
                f"writing the {split} split needs labels (annotations, as from a labels.json)"
            )
        unlabelled = [n for n in members if n not in annotations]
        if unlabelled:
            raise ExtractError(f"no labels for {split} video(s) {', '.join(unlabelled[:8])}")

    meta = extractor.metadata()
    record = ExtractionRecord.read(folder)
    existing = None if record is None else dict(record.data)
    if (
        existing is not None
        and extraction_settings(existing) != extraction_settings(meta)
        and not overwrite
    ):
        differ = sorted(
            k
            for k in set(meta) | set(existing)
            if extraction_settings(existing).get(k) != extraction_settings(meta).get(k)
        )
        raise ExtractError(
            f"{extraction_record(folder)}: features there were extracted with other settings "
            f"({', '.join(differ)}); choose another output folder, or overwrite to re-extract all"
        )
    key = settings_key(meta)
    # One dataset, one set of settings: videos of other settings that this call will not
    # redo would stay beside the new ones, under an extraction.json that no longer says so.
    stale = sorted(n for n, k in recorded_settings(folder).items() if k != key and n not in names)
    if stale:
        shown = ", ".join(stale[:5]) + (" ..." if len(stale) > 5 else "")
        raise ExtractError(
            f"{folder}: {len(stale)} video(s) there ({shown}) were extracted with other "
            "settings and are not among the inputs: give every video of the dataset to "
            "re-extract them all with these settings, or choose another output folder"
        )
    write_json_atomic(extraction_record(folder), meta)

    index, count = shard
    ordered = sorted(videos, key=lambda v: v.name)
    mine = ordered[index::count]
    summary.other_shards = len(ordered) - len(mine)
    bar = tqdm(
        mine,
        disable=None if progress is None else not progress,
        desc=f"extract {extractor.name}" + (f" [{index}/{count}]" if count > 1 else ""),
        unit="video",
        dynamic_ncols=True,
    )
    for video in bar:
        info_path = video_record(folder, video.name)
        if not overwrite and _is_done(folder, video.name, extractor.outputs, key):
            summary.skipped.append(video.name)
            continue
        bar.set_postfix_str(video.name)
        result = extractor.extract(video)
        annotation = (annotations or {}).get(video.name)
        if annotation is not None and annotation.frames is not None:
            if annotation.frames != result.frames:
                raise ExtractError(
                    f"{video.path}: decoded {result.frames} frames, but its labels say "
                    f"{annotation.frames}"
                )
        with extractor.timings.stage("write"):
            for output, array in result.features.items():
                path = feature_path(folder / output, video.name)
                # mypy cannot type a lambda with a default argument (python/mypy#15459)
                write_atomic(path, lambda f, a=array: np.save(f, a.astype(np.float32)))  # type: ignore[misc]
        write_json_atomic(info_path, {**result.info(video.path), "settings": key})
        summary.extracted.append(video.name)
        summary.frames += result.frames
    bar.close()

    if annotations is not None and all(
        _is_done(folder, v.name, extractor.outputs, key) for v in ordered
    ):
        write_ground_truth(
            out,
            folder,
            annotations,
            splits,
            [v.name for v in ordered],
            extractor.config.preprocessing,
        )
        summary.ground_truth = True
    summary.seconds = time.perf_counter() - started
    return summary


def _is_done(folder: Path, name: str, outputs: Sequence[str], key: str) -> bool:
    """Features of every output written, with the settings fingerprinted by `key` (an
    interrupted --overwrite run leaves videos of the old settings: those are not done)."""
    try:
        info = json.loads(video_record(folder, name).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(info, dict)
        and info.get("settings") == key
        and all(feature_path(folder / o, name).is_file() for o in outputs)
    )


def write_ground_truth(
    out: Path,
    folder: Path,
    annotations: Mapping[str, Any],
    splits: Mapping[str, Sequence[str]],
    videos: Sequence[str],
    preprocessing: Preprocessing,
) -> None:
    """Write GT/video_label.pickle, GT/frame_label.pickle and the split files.

    Frame labels have one entry per decoded frame; with the `pad` tail policy they are
    extended to the frames the segments cover by repeating the last frame's label (the padded
    frames are copies of the last frame), so that evaluation finds a label for every frame.
    """
    video_labels: dict[str, int] = {}
    frame_labels: dict[str, np.ndarray] = {}
    for name in videos:
        if name not in annotations:
            continue
        info = json.loads(video_record(folder, name).read_text())
        labels = annotations[name].frame_labels(info["frames"])
        if preprocessing.tail == "pad":
            labels = fit_frame_labels(
                labels, info["segments"], "pad", preprocessing.frames_per_segment, name, str(out)
            )
        video_labels[name] = int(annotations[name].label)
        frame_labels[name] = labels
    write_labels_and_splits(out, video_labels, frame_labels, splits)


def torchrun_rank() -> tuple[int, int, int | None]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, None) outside it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, None
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def settings_summary(meta: Mapping[str, Any]) -> str:
    """One line describing an extraction (for logs and reports)."""
    pp = meta["preprocessing"]
    flow = meta.get("flow")
    parts = [
        f"{meta['backbone']} {'+'.join(meta['modalities'])}",
        f"short side {pp['short_side']}",
        f"crop {pp['crop']}" + (f" {pp['crop_size']}" if pp["crop"] != "full" else ""),
        f"{pp['frames_per_segment']}-frame segments, tail {pp['tail']}"
        + (f" ({pp.get('tail_fill', 'repeat')})" if pp["tail"] == "pad" else ""),
    ]
    if pp.get("frame_stride", 1) > 1:
        parts.append(f"every {pp['frame_stride']}th frame encoded")
    if flow:
        parts.append(f"flow {flow['method']} bound {flow['bound']:g}")
    return ", ".join(parts)
