"""An independent generator of ShanghaiTech-shaped segment features, for held-out comparisons.

    python benchmarks/featuregen.py OUT --seed 3 --dim 256 --train 118 --train-anomalous 31 \
        --test 99 --test-anomalous 22 --difficulty 0.5

Writes the AR-Net layout (features_video/i3d/combine/VIDEO/feature.npy, train_split.txt,
test_split.txt, GT/video_label.pickle, GT/frame_label.pickle) with plain numpy and pickle; it
imports nothing from `arnet`, and its model of a video is unrelated to `arnet synth`'s, so
training code tuned on one is not thereby tuned on the other.

The story it tells: a fixed camera looks at a scene with its own background; people of a few
kinds (walkers, groups, cyclists allowed on the path...) come and go, their number drifting
slowly; a segment's feature is the log of the non-negative sum of what it sees, plus sensor
noise, as a pooled CNN activation would be. An anomaly is an actor of a kind never seen in
normal video (a car on the walkway, a fight) for a stretch of frames. Its appearance is a blend
of one normal kind and a kind of its own: `difficulty` in [0, 1] moves the blend towards the
normal kind and raises the noise, so 0 is easy and 1 is nearly indistinguishable. Normal videos
also hold crowd surges (many more people for a while): unusual, not anomalous.

Event boundaries fall on frames, not segments; a segment partly covered by an event carries it
in proportion, and the frame labels are exact. Every video has 16 T + r frames (r < 16: the
trailing frames that fill no segment, labelled like the frames before them).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FRAMES = 16


@dataclass
class GenConfig:
    """Knobs of one generated dataset."""

    seed: int = 0
    dim: int = 256
    train: int = 118
    train_anomalous: int = 31
    test: int = 99
    test_anomalous: int = 22
    difficulty: float = 0.5
    min_len: int = 16
    """Shortest video, in segments."""
    max_len: int = 120
    """Longest video, in segments (lengths are log-uniform in between)."""
    scenes: int = 12
    normal_kinds: int = 5
    anomaly_kinds: int = 4

    def check(self) -> None:
        if not 0.0 <= self.difficulty <= 1.0:
            raise ValueError(f"difficulty must lie in [0, 1], got {self.difficulty}")
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got {self.min_len}, {self.max_len}")
        for split, n, a in (("train", self.train, self.train_anomalous),
                            ("test", self.test, self.test_anomalous)):  # fmt: skip
            if not (1 <= a < n):
                raise ValueError(f"{split}: need 1 <= anomalous < videos, got {a} of {n}")
        if self.dim < 8:
            raise ValueError(f"dim must be >= 8, got {self.dim}")


def _sparse_positive(
    rng: np.random.Generator, shape: tuple[int, ...], density: float
) -> np.ndarray:
    return np.abs(rng.normal(size=shape)) * (rng.random(shape) < density)


class World:
    """The scenes and the kinds of actor shared by every video of a dataset."""

    def __init__(self, cfg: GenConfig, rng: np.random.Generator) -> None:
        d = cfg.dim
        self.background = 1.5 * _sparse_positive(rng, (cfg.scenes, d), 0.3)
        self.normal = _sparse_positive(rng, (cfg.normal_kinds, d), 0.2)
        own = _sparse_positive(rng, (cfg.anomaly_kinds, d), 0.2)
        look_alike = rng.integers(0, cfg.normal_kinds, size=cfg.anomaly_kinds)
        # difficulty 0: an anomalous actor is all its own kind; 1: nearly its normal look-alike
        blend = 0.15 + 0.8 * cfg.difficulty
        self.anomaly = blend * self.normal[look_alike] + (1.0 - blend) * own
        # which kinds of people each scene sees, and how busy it is on average
        self.mix = rng.dirichlet(np.full(cfg.normal_kinds, 0.7), size=cfg.scenes)
        self.crowd = rng.uniform(0.5, 4.0, size=cfg.scenes)
        self.noise = 0.15 + 0.35 * cfg.difficulty


def _events(rng: np.random.Generator, frames: int, count: int) -> np.ndarray:
    """0/1 frame labels holding `count` events of 10-50% of the video each."""
    labels = np.zeros(frames, dtype=np.uint8)
    for _ in range(count):
        length = max(FRAMES // 2, int(frames * rng.uniform(0.1, 0.5)))
        start = int(rng.integers(0, max(1, frames - length)))
        labels[start : start + length] = 1
    return labels


def make_video(
    world: World, cfg: GenConfig, rng: np.random.Generator, anomalous: bool
) -> tuple[int, np.ndarray, np.ndarray]:
    """(scene, features (T, D) float32, frame labels) of one video."""
    t = int(np.exp(rng.uniform(np.log(cfg.min_len), np.log(cfg.max_len + 1))))
    t = min(max(t, cfg.min_len), cfg.max_len)
    frames = FRAMES * t + int(rng.integers(0, FRAMES))
    scene = int(rng.integers(0, cfg.scenes))
    # crowd level: a slow log-random walk around the scene's mean
    walk = np.cumsum(rng.normal(0.0, 0.15, size=t))
    level = world.crowd[scene] * np.exp(walk - walk.mean())
    if rng.random() < 0.3:  # a crowd surge: unusual, yet normal
        length = int(rng.integers(1, max(2, t // 3)))
        start = int(rng.integers(0, t - length + 1))
        level[start : start + length] *= rng.uniform(2.0, 4.0)
    counts = rng.poisson(level[:, None] * world.mix[scene][None, :])  # (T, kinds)
    signal = world.background[scene][None, :] + counts @ world.normal
    labels = np.zeros(frames, dtype=np.uint8)
    if anomalous:
        labels = _events(rng, frames, 1 + int(rng.random() < 0.3))
        kind = int(rng.integers(0, len(world.anomaly)))
        # the share of each segment's frames inside an event (trailing frames fill no segment)
        cover = labels[: FRAMES * t].reshape(t, FRAMES).mean(axis=1)
        amplitude = rng.uniform(1.0, 2.0)
        signal = signal + (amplitude * cover)[:, None] * world.anomaly[kind][None, :]
    noisy = signal + world.noise * rng.normal(size=signal.shape) * (1.0 + signal) ** 0.5
    features = np.log1p(np.maximum(noisy, 0.0)) + 1e-3  # never an all-zero row
    return scene, features.astype(np.float32), labels


def generate(root: str | Path, cfg: GenConfig) -> Path:
    """Write one dataset in the AR-Net layout under `root` (which must not hold one)."""
    cfg.check()
    root = Path(root)
    if (root / "GT").exists():
        raise FileExistsError(f"{root}: already holds a dataset")
    rng = np.random.default_rng(cfg.seed)
    world = World(cfg, rng)
    folder = root / "features_video" / "i3d" / "combine"
    video_labels: dict[str, list[float]] = {}
    frame_labels: dict[str, np.ndarray] = {}
    used: set[str] = set()
    for split, n, n_anomalous in (("train", cfg.train, cfg.train_anomalous),
                                  ("test", cfg.test, cfg.test_anomalous)):  # fmt: skip
        flags = np.zeros(n, dtype=bool)
        flags[rng.choice(n, size=n_anomalous, replace=False)] = True
        names = []
        for anomalous in flags:
            scene, feats, labels = make_video(world, cfg, rng, bool(anomalous))
            # ShanghaiTech's naming: normal SS_NNN, anomalous SS_NNNN
            width = 4 if anomalous else 3
            number = 1 + sum(1 for u in used if u.startswith(f"{scene + 1:02d}_"))
            name = f"{scene + 1:02d}_{number:0{width}d}"
            used.add(name)
            (folder / name).mkdir(parents=True, exist_ok=True)
            np.save(folder / name / "feature.npy", feats)
            video_labels[name] = [1.0 if anomalous else 0.0]
            frame_labels[name] = labels
            names.append(name)
        (root / f"{split}_split.txt").write_text("".join(f"{x}\n" for x in names))
    (root / "GT").mkdir(parents=True)
    for file, value in (("video_label.pickle", video_labels), ("frame_label.pickle", frame_labels)):
        with (root / "GT" / file).open("wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    (root / "generator.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="folder to write the dataset into")
    defaults = GenConfig()
    for name, value in asdict(defaults).items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = p.parse_args(argv)
    cfg = GenConfig(**{k: getattr(args, k) for k in asdict(defaults)})
    try:
        generate(args.out, cfg)
    except (ValueError, FileExistsError) as exc:
        print(f"featuregen: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
