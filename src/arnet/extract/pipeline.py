"""Extraction: videos -> segment features, and whole datasets -> the AR-Net layout.

`FeatureExtractor.extract(video)` streams one video: frames are decoded, resized, paired with
their flow field when a flow backbone is present, grouped into segments (tail policy), cropped
and encoded `batch_size` segments at a time, so memory stays bounded for long videos.

`extract_dataset` writes what training reads (SPEC §1, AR-Net layout) plus what makes the
features reproducible:

```
OUT/features_video/BACKBONE/{rgb,flow,combine}/VIDEO/feature.npy   (T, D) or (T, 10, D) float32
OUT/features_video/BACKBONE/extraction.json   preprocessing, flow, backbones, weight SHA-256s
OUT/features_video/BACKBONE/videos/VIDEO.json per video: frames, segments, fps, tail frames
OUT/train_split.txt, OUT/test_split.txt, OUT/GT/*.pickle     with labels and splits
```

A video is done when its VIDEO.json exists (written after its features, each written to a
temporary file and renamed), so an interrupted run resumes where it stopped, and several
processes (`--shard i/n`, torchrun ranks) can fill one folder. The ground truth is written by
whichever process finds every video done.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import __version__
from ..atomic import write_atomic, write_json_atomic
from ..errors import ExtractError
from ..formats.groundtruth import fit_frame_labels, normalize_name
from ..formats.layout import (
    backbone_folder,
    extraction_record,
    feature_path,
    video_record,
    write_labels_and_splits,
)
from .backbones import Backbone
from .flow import FlowSettings, with_flow
from .preprocess import (
    Preprocessing,
    Segmenter,
    crop_clips,
    crop_windows,
    resize_short_side,
    scale_rgb,
)
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
    """

    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    flow: FlowSettings = field(default_factory=FlowSettings)
    batch_size: int = 16

    def validate(self) -> None:
        self.preprocessing.validate()
        self.flow.validate()
        if self.batch_size < 1:
            raise ExtractError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class VideoFeatures:
    """The features of one video.

    Attributes:
        name: the video's name.
        features: output ("rgb", "flow", "combine") -> (T, D) or, with ten crops, (T, 10, D).
        frames: frames decoded, F.
        segments: T.
        padded: repeated frames that completed the last segment (`pad` policy).
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

    def info(self, source: str | Path) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": str(source),
            "frames": self.frames,
            "segments": self.segments,
            "padded_frames": self.padded,
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
        for backbone in self.backbones.values():
            backbone.to(self.device)
        self.name = names.pop()

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

        def resized() -> Iterator[np.ndarray]:
            for frame in video.frames():  # all of one size (checked there, naming the file)
                if not first_size:
                    first_size.append((frame.shape[1], frame.shape[0]))
                yield resize_short_side(frame, pp.short_side)

        if "flow" in self.backbones:
            items: Iterator[tuple[np.ndarray, np.ndarray | None]] = with_flow(
                resized(), self.config.flow
            )
        else:
            items = ((frame, None) for frame in resized())
        segmenter = Segmenter(pp.frames_per_segment, pp.tail)
        collected: dict[str, list[np.ndarray]] = {m: [] for m in self.backbones}
        pending: list[list[tuple[np.ndarray, np.ndarray | None]]] = []
        windows = None
        for segment in segmenter(items):
            if windows is None:
                h, w = segment[0][0].shape[:2]
                try:
                    windows = crop_windows(h, w, pp.crop_size, pp.crop)
                except ExtractError as exc:
                    raise ExtractError(f"{video.path}: {exc}") from None
            pending.append(segment)
            if len(pending) == self.config.batch_size:
                self._encode(pending, windows, collected)
                pending = []
        if pending:
            self._encode(pending, windows, collected)
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
        )

    def _encode(
        self,
        segments: list[list[tuple[np.ndarray, np.ndarray | None]]],
        windows: list[tuple[int, int, int, int, bool]],
        collected: dict[str, list[np.ndarray]],
    ) -> None:
        n, views = len(segments), len(windows)
        for modality, backbone in self.backbones.items():
            if modality == "rgb":
                stack = np.stack([[frame for frame, _ in seg] for seg in segments])
                clips = scale_rgb(crop_clips(stack, windows))  # (N, V, L, h, w, 3)
            else:
                stack = np.stack([[flow for _, flow in seg] for seg in segments])
                clips = crop_clips(stack, windows, flow=True)  # (N, V, L, h, w, 2)
            tensor = torch.from_numpy(clips).permute(0, 1, 5, 2, 3, 4).flatten(0, 1)
            out = backbone.encode(tensor.contiguous()).cpu().numpy()  # (N V, D)
            out = out.reshape(n, views, -1)
            collected[modality].append(out[:, 0] if views == 1 else out)


# ---------------------------------------------------------------------- whole datasets


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


def _settings(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of extraction.json that decide feature values (not paths or versions)."""
    out = {k: v for k, v in meta.items() if k != "arnet_version"}
    out["backbones"] = {
        m: {k: v for k, v in b.items() if k != "weights"}
        for m, b in meta.get("backbones", {}).items()
    }
    return out


def settings_key(meta: Mapping[str, Any]) -> str:
    """A short fingerprint of `_settings(meta)`, stored with each video's features: a video
    counts as done only when it was extracted with the folder's current settings."""
    text = json.dumps(_settings(meta), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_metadata(folder: str | Path) -> dict[str, Any] | None:
    """extraction.json of a features_video/BACKBONE folder, or None when absent."""
    path = extraction_record(folder)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ExtractError(f"{path}: not valid JSON ({exc})") from exc


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
    existing = read_metadata(folder)
    if existing is not None and _settings(existing) != _settings(meta) and not overwrite:
        differ = sorted(
            k
            for k in set(meta) | set(existing)
            if _settings(existing).get(k) != _settings(meta).get(k)
        )
        raise ExtractError(
            f"{extraction_record(folder)}: features there were extracted with other settings "
            f"({', '.join(differ)}); choose another output folder, or overwrite to re-extract all"
        )
    write_json_atomic(extraction_record(folder), meta)
    key = settings_key(meta)

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
        for output, array in result.features.items():
            path = feature_path(folder / output, video.name)
            write_atomic(path, lambda f, a=array: np.save(f, a.astype(np.float32)))
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
        f"{pp['frames_per_segment']}-frame segments, tail {pp['tail']}",
    ]
    if flow:
        parts.append(f"flow {flow['method']} bound {flow['bound']:g}")
    return ", ".join(parts)
