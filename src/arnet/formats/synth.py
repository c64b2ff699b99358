"""A synthetic dataset that behaves like I3D features of surveillance video.

What makes it realistic enough to test weak supervision honestly:

- Non-negative features (I3D's average-pooled features follow a ReLU), built from a scene
  appearance (each camera has its own pattern), slow temporally correlated activity (an AR(1)
  process in a low-dimensional subspace) and per-segment noise.
- Anomalous videos hold one or two events. Event boundaries fall mid-segment and the frame
  labels are exact; a segment partly covered by an event carries the event in proportion.
- Some videos (normal and anomalous alike) hold rare but normal events: distractors, unusual
  segments that are not anomalies.
- Anomalies are unevenly spread over scenes, as in ShanghaiTech: a classifier that copies each
  video's label onto all its segments learns "this scene is anomalous" and fires on the normal
  frames of those scenes. Frame AUC penalises exactly that.

The default mirrors ShanghaiTech's weakly supervised split: 238 training videos (63
anomalous) and 199 test videos (44 anomalous), 13 scenes, names `SS_NNN` (normal) and
`SS_NNNN` (anomalous).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_json_atomic
from ..config import SynthConfig
from ..errors import FolderError
from ..folders import claim_folder, contents, remove_stale_temporaries, temporary_name
from .arnet import write_arnet


@dataclass
class SyntheticVideo:
    name: str
    label: int
    features: np.ndarray  # (T, D) float32, (T, C, D) with crops
    frame_labels: np.ndarray  # (F,) uint8, F = 16 T + tail


class _World:
    """The fixed ingredients shared by all videos: scenes, activity subspace, event patterns."""

    RANK = 16

    def __init__(self, cfg: SynthConfig, rng: np.random.Generator) -> None:
        D = cfg.dim
        self.cfg = cfg
        self.scene_base = rng.gamma(0.6, 0.5, size=(cfg.scenes, D))  # sparse-ish, >= 0
        self.loadings = rng.normal(0, 1 / np.sqrt(self.RANK), size=(self.RANK, D))
        self.scene_loadings = rng.normal(
            0, 0.5 / np.sqrt(self.RANK), size=(cfg.scenes, self.RANK, D)
        )
        self.anomaly_patterns = self._patterns(rng, cfg.anomaly_types, D)
        self.distractor_patterns = self._patterns(rng, cfg.distractor_types, D)
        self.busy_pattern = self._patterns(rng, 1, D)[0]
        # Uneven anomaly rates across scenes: some cameras see most of the anomalies.
        self.scene_anomaly_weight = rng.dirichlet(np.full(cfg.scenes, 0.6))
        self.scene_normal_weight = rng.dirichlet(np.full(cfg.scenes, 4.0))

    @staticmethod
    def _patterns(rng: np.random.Generator, n: int, D: int) -> np.ndarray:
        support = rng.random((n, D)) < 0.25
        return support * rng.gamma(2.0, 0.5, size=(n, D))

    def video(
        self, rng: np.random.Generator, scene: int, anomalous: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.cfg
        frames_per_segment = cfg.frames_per_segment
        T = int(np.exp(rng.uniform(np.log(cfg.min_segments), np.log(cfg.max_segments + 1))))
        T = min(max(T, cfg.min_segments), cfg.max_segments)
        trailing = int(rng.integers(0, frames_per_segment))  # frames that fill no segment
        frames = T * frames_per_segment + trailing

        # slow activity: AR(1) latent factors
        z = np.empty((T, self.RANK))
        z[0] = rng.normal(size=self.RANK)
        rho = 0.9
        for t in range(1, T):
            z[t] = rho * z[t - 1] + np.sqrt(1 - rho**2) * rng.normal(size=self.RANK)
        activity = z @ (self.loadings + self.scene_loadings[scene])
        noise = rng.normal(0, 0.35 * cfg.difficulty, size=(T, cfg.dim))
        x = self.scene_base[scene] * rng.uniform(0.85, 1.15) + 0.6 * activity + noise
        # Busy videos (crowds, traffic) are more often anomalous, but busyness is not an anomaly.
        if rng.random() < (0.8 if anomalous else 0.3):
            x += rng.uniform(1.0, 2.0) * cfg.busy_strength * self.busy_pattern

        frame_labels = np.zeros(frames, dtype=np.uint8)
        events = np.zeros_like(x)  # what events add (the views see them unequally)
        if anomalous:
            for start, end in self._events(rng, frames, int(rng.integers(1, 3)), 0.06, 0.35):
                frame_labels[start:end] = 1
                events += self._event(rng, self.anomaly_patterns, start, end, T, cfg.event_strength)
        if rng.random() < cfg.distractor_rate:
            ((start, end),) = self._events(rng, frames, 1, 0.03, 0.12)
            events += self._event(
                rng, self.distractor_patterns, start, end, T, cfg.distractor_strength
            )
        if cfg.crops == 1:
            return np.maximum(x + events, 0).astype(np.float32), frame_labels
        views = [  # drawn after every draw of one view: crops = 1 stays as it was
            x * rng.uniform(0.9, 1.1, size=cfg.dim)
            + rng.normal(0, 0.15 * cfg.difficulty, size=x.shape)
            + rng.uniform(0.6, 1.0) * events
            for _ in range(cfg.crops)
        ]
        return np.maximum(np.stack(views, axis=1), 0).astype(np.float32), frame_labels

    @staticmethod
    def _events(
        rng: np.random.Generator, frames: int, n: int, low: float, high: float
    ) -> list[tuple[int, int]]:
        """n disjoint frame spans, each low..high of the video, at random frame offsets."""
        spans: list[tuple[int, int]] = []
        for _ in range(50 * n):
            if len(spans) == n:
                break
            length = max(int(rng.uniform(low, high) * frames), 8)
            start = int(rng.integers(0, max(frames - length, 1)))
            end = min(start + length, frames)
            if all(end <= a or start >= b for a, b in spans):
                spans.append((start, end))
        return sorted(spans)

    def _event(
        self,
        rng: np.random.Generator,
        patterns: np.ndarray,
        start: int,
        end: int,
        T: int,
        strength: float,
    ) -> np.ndarray:
        """Additive event signal per segment, in proportion to the event's frames in it."""
        frames_per_segment = self.cfg.frames_per_segment
        seg_start = np.arange(T) * frames_per_segment
        overlap = np.minimum(seg_start + frames_per_segment, end) - np.maximum(seg_start, start)
        cover = np.clip(overlap, 0, frames_per_segment) / frames_per_segment
        pattern = patterns[int(rng.integers(len(patterns)))]
        pattern = pattern * rng.uniform(0.7, 1.3, size=pattern.shape)
        envelope = cover * strength * rng.uniform(0.8, 1.2, size=T)
        return envelope[:, None] * pattern[None, :]


def generate(cfg: SynthConfig) -> dict[str, list[SyntheticVideo]]:
    """Generate the train and test splits in memory."""
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    world = _World(cfg, rng)
    counters: dict[tuple[int, bool], int] = {}
    splits: dict[str, list[SyntheticVideo]] = {}
    for split, n, n_anomalous in (
        ("train", cfg.train_videos, cfg.train_anomalous),
        ("test", cfg.test_videos, cfg.test_anomalous),
    ):
        videos = []
        for i in range(n):
            anomalous = i < n_anomalous
            weights = world.scene_anomaly_weight if anomalous else world.scene_normal_weight
            scene = int(rng.choice(cfg.scenes, p=weights))
            key = (scene, anomalous)
            counters[key] = counters.get(key, 0) + 1
            # ShanghaiTech naming: SS_NNN for normal, SS_NNNN for anomalous videos
            name = (
                f"{scene + 1:02d}_{counters[key]:04d}"
                if anomalous
                else f"{scene + 1:02d}_{counters[key]:03d}"
            )
            features, frame_labels = world.video(rng, scene, anomalous)
            videos.append(SyntheticVideo(name, int(anomalous), features, frame_labels))
        splits[split] = videos
    return splits


CONFIG_FILE = "synth_config.json"


def write_synthetic(
    out: str | Path,
    cfg: SynthConfig | None = None,
    modal: str = "combine",
    *,
    overwrite: bool = False,
) -> Path:
    """Generate a dataset and write it in the AR-Net layout under `out`; returns `out`.

    `out` must be new or empty; with `overwrite`, it may hold an earlier synthetic dataset,
    whose files (listed in its `synth_config.json`) are replaced while everything else saved in
    the folder (a run, notes) is kept. The new dataset is written beside `out` first and moved
    in once complete.

    Raises:
        FolderError: `out` is not a folder, is a symbolic link given with `overwrite`, or holds
            something other than a synthetic dataset this function may replace.
    """
    cfg = cfg or SynthConfig()
    cfg.validate()
    out = Path(out)
    _replaceable_files(out, overwrite)  # refused before anything is created
    with claim_folder(out, "arnet synth"):  # two synths into one folder: the second refused
        return _write_synthetic(out, cfg, modal, _replaceable_files(out, overwrite))


def _write_synthetic(out: Path, cfg: SynthConfig, modal: str, old_files: set[str]) -> Path:
    splits = generate(cfg)
    remove_stale_temporaries(out.parent, [out.name])
    tmp = temporary_name(out)
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        write_arnet(
            tmp,
            {
                split: [(v.name, v.label, v.features, v.frame_labels) for v in videos]
                for split, videos in splits.items()
            },
            modal=modal,
        )
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        clash = [f for f in files if f not in old_files and (out / f).exists()]
        if clash:
            raise FolderError(
                f"{out / clash[0]}: exists and was not written by `arnet synth`; choose a new "
                "folder"
            )
        _remove_files(out, old_files)
        for name in files:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / name, out / name)
        record = {**asdict(cfg), "modal": modal, "files": [*files, CONFIG_FILE]}
        write_json_atomic(out / CONFIG_FILE, record)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _replaceable_files(out: Path, overwrite: bool) -> set[str]:
    """The files of an earlier synthetic dataset in `out` that may be replaced (none when `out`
    is new or empty); refuses anything else."""
    if out.is_symlink() and overwrite:
        raise FolderError(f"{out}: is a symbolic link; give the folder it points to")
    if out.exists() and not out.is_dir():
        raise FolderError(f"{out}: exists and is not a folder")
    if not contents(out):
        return set()
    record = out / CONFIG_FILE
    if not overwrite:
        raise FolderError(
            f"{out} is not empty: choose a new folder (--overwrite replaces a synthetic dataset)"
        )
    if not record.is_file():
        raise FolderError(
            f"{out} is not empty and holds no synthetic dataset ({CONFIG_FILE}); --overwrite "
            "replaces only one: choose a new folder"
        )
    try:
        files = json.loads(record.read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        files = None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise FolderError(
            f"{record}: lists no files (written by an earlier arnet, or edited); remove that "
            "dataset by hand or choose a new folder"
        )
    root = out.absolute().resolve()
    for name in files:  # only files inside the folder, never through a link out of it
        path = (root / name).resolve()
        if ".." in Path(name).parts or Path(name).is_absolute() or root not in path.parents:
            raise FolderError(f"{record}: lists {name!r}, outside {out}")
    return set(files)


def _remove_files(out: Path, files: set[str]) -> None:
    """Delete the listed files of `out`, then the folders they leave empty."""
    folders: set[Path] = set()
    for name in files:
        path = out / name
        if path.is_file() or path.is_symlink():
            path.unlink()
        folders.update(p for p in (out / name).parents if out in p.parents)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty: something else is kept in it
            folder.rmdir()
