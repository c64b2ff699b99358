"""Two more generators of AR-Net-layout feature sets for the suite, each from assumptions of its
own (numpy and pickle only; nothing from `arnet`, `featuregen.py` or `arnet synth`).

    python benchmarks/suitegen.py spiky OUT --seed 1 --dim 128
    python benchmarks/suitegen.py drift OUT --seed 1 --dim 128

**spiky**: many cameras with few videos each (2-8 training anomalous videos per scene); each
segment an independent draw (no temporal correlation) around its scene's level, with
heavy-tailed noise (Student t, 2.5 degrees of freedom: single segments jump far from their
scene without anything happening); anomalies are bursts of a few frames (2-10, much shorter
than a 16-frame segment), strong but diluted in the one or two segments they touch.

**drift**: few cameras, long videos; a low-dimensional latent state wanders (a random walk with
level shifts) and reaches the features through a fixed non-linear map (softplus of a random
projection); an anomaly is a slow change of the latent state's direction that fades in and
then lasts most of the video (60-95% of its frames), so an anomalous video holds few normal
segments for the top-k to contrast.

Each writes features_video/i3d/combine/VIDEO/feature.npy, train_split.txt, test_split.txt,
GT/video_label.pickle ([1.0] / [0.0]), GT/frame_label.pickle (0/1 per frame, exact) and
generator.json. Videos have 16 T + r frames (r < 16 trailing frames, labelled like the frames
before them); features are float32 and never an all-zero row.
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
class SpikyConfig:
    seed: int = 0
    dim: int = 128
    scenes: int = 12
    train_anomalous_per_scene: tuple[int, int] = (2, 8)
    """Inclusive range of training anomalous videos per scene."""
    train_normal_per_scene: tuple[int, int] = (3, 9)
    test_anomalous_per_scene: tuple[int, int] = (1, 3)
    test_normal_per_scene: tuple[int, int] = (2, 5)
    min_len: int = 12
    max_len: int = 160
    df: float = 2.5
    """Degrees of freedom of the Student-t noise (heavy tails below ~4)."""
    noise: float = 0.25
    burst_frames: tuple[int, int] = (2, 10)
    burst_strength: float = 6.0
    """A burst's amplitude per frame it covers (a 4-frame burst adds 1.5 to one segment)."""


@dataclass
class DriftConfig:
    seed: int = 0
    dim: int = 128
    scenes: int = 4
    train: int = 90
    train_anomalous: int = 36
    test: int = 60
    test_anomalous: int = 18
    latent: int = 8
    min_len: int = 30
    max_len: int = 360
    cover: tuple[float, float] = (0.6, 0.95)
    """An event's share of its video's frames."""
    shift: float = 3.0
    """Size of the anomalous latent change, against the latent walk's spread of about 1."""
    noise: float = 0.12


def _name(scene: int, anomalous: bool, used: dict[tuple[int, bool], int]) -> str:
    key = (scene, anomalous)
    used[key] = used.get(key, 0) + 1
    return f"{scene + 1:02d}_{used[key]:04d}" if anomalous else f"{scene + 1:02d}_{used[key]:03d}"


def _length(rng: np.random.Generator, lo: int, hi: int) -> int:
    t = int(np.exp(rng.uniform(np.log(lo), np.log(hi + 1))))
    return min(max(t, lo), hi)


def _cover(labels: np.ndarray, t: int) -> np.ndarray:
    """Share of each segment's 16 frames inside an event."""
    return labels[: FRAMES * t].reshape(t, FRAMES).mean(axis=1)


# ---------------------------------------------------------------------- spiky


def _spiky_video(rng: np.random.Generator, cfg: SpikyConfig, world: dict[str, np.ndarray],
                 scene: int, anomalous: bool) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    t = _length(rng, cfg.min_len, cfg.max_len)
    frames = FRAMES * t + int(rng.integers(0, FRAMES))
    gain = rng.lognormal(0.0, 0.2)
    noise = cfg.noise * rng.standard_t(cfg.df, size=(t, cfg.dim))
    x = gain * world["level"][scene][None, :] + noise
    labels = np.zeros(frames, dtype=np.uint8)
    if anomalous:
        for _ in range(int(rng.integers(1, 5))):
            n = int(rng.integers(cfg.burst_frames[0], cfg.burst_frames[1] + 1))
            start = int(rng.integers(0, FRAMES * t - n))  # inside the segments' frames
            labels[start : start + n] = 1
        kind = int(rng.integers(0, len(world["burst"])))
        x = x + cfg.burst_strength * _cover(labels, t)[:, None] * world["burst"][kind][None, :]
    features = np.log1p(np.maximum(x, 0.0)) + 1e-3
    return features.astype(np.float32), labels


def generate_spiky(root: str | Path, cfg: SpikyConfig) -> Path:
    rng = np.random.default_rng(cfg.seed)
    d = cfg.dim
    world = {
        "level": rng.gamma(0.8, 0.6, size=(cfg.scenes, d)),
        "burst": np.abs(rng.normal(size=(3, d))) * (rng.random((3, d)) < 0.15),
    }
    videos: dict[str, list[tuple[str, bool, np.ndarray, np.ndarray]]] = {"train": [], "test": []}
    used: dict[tuple[int, bool], int] = {}
    for split in ("train", "test"):
        a_range = getattr(cfg, f"{split}_anomalous_per_scene")
        n_range = getattr(cfg, f"{split}_normal_per_scene")
        for scene in range(cfg.scenes):
            for anomalous, (lo, hi) in ((True, a_range), (False, n_range)):
                for _ in range(int(rng.integers(lo, hi + 1))):
                    feats, labels = _spiky_video(rng, cfg, world, scene, anomalous)
                    videos[split].append((_name(scene, anomalous, used), anomalous, feats, labels))
        order = rng.permutation(len(videos[split]))
        videos[split] = [videos[split][i] for i in order]
    return _write(root, videos, "spiky", asdict(cfg))


# ---------------------------------------------------------------------- drift


def _drift_video(rng: np.random.Generator, cfg: DriftConfig, world: dict[str, np.ndarray],
                 scene: int, anomalous: bool) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    t = _length(rng, cfg.min_len, cfg.max_len)
    frames = FRAMES * t + int(rng.integers(0, FRAMES))
    steps = rng.normal(0.0, 1.0 / np.sqrt(t), size=(t, cfg.latent))
    h = world["center"][scene][None, :] + np.cumsum(steps, axis=0)
    if rng.random() < 0.5:  # a level shift (lights, weather): normal
        at = int(rng.integers(1, t))
        h[at:] += rng.normal(0.0, 0.6, size=cfg.latent)
    labels = np.zeros(frames, dtype=np.uint8)
    if anomalous:
        n = int(frames * rng.uniform(*cfg.cover))
        start = int(rng.integers(0, max(1, FRAMES * t - n)))
        labels[start : start + n] = 1
        ramp = np.minimum(1.0, np.cumsum(_cover(labels, t)) / 4.0)  # fades in over ~4 segments
        direction = world["anomaly"][int(rng.integers(0, len(world["anomaly"])))]
        h = h + cfg.shift * (ramp * (_cover(labels, t) > 0))[:, None] * direction[None, :]
    z = h @ world["projection"] + world["bias"][scene][None, :]
    x = np.logaddexp(0.0, z) + cfg.noise * rng.normal(size=z.shape)
    return (np.maximum(x, 0.0) + 1e-3).astype(np.float32), labels


def generate_drift(root: str | Path, cfg: DriftConfig) -> Path:
    rng = np.random.default_rng(cfg.seed)
    anomaly = rng.normal(size=(3, cfg.latent))
    world = {
        "center": rng.normal(0.0, 1.0, size=(cfg.scenes, cfg.latent)),
        "projection": rng.normal(0.0, 1.0 / np.sqrt(cfg.latent), size=(cfg.latent, cfg.dim)),
        "bias": rng.normal(-1.0, 0.5, size=(cfg.scenes, cfg.dim)),
        "anomaly": anomaly / np.linalg.norm(anomaly, axis=1, keepdims=True),
    }
    videos: dict[str, list[tuple[str, bool, np.ndarray, np.ndarray]]] = {}
    used: dict[tuple[int, bool], int] = {}
    for split, n, n_anomalous in (("train", cfg.train, cfg.train_anomalous),
                                  ("test", cfg.test, cfg.test_anomalous)):  # fmt: skip
        flags = np.zeros(n, dtype=bool)
        flags[rng.choice(n, size=n_anomalous, replace=False)] = True
        videos[split] = []
        for anomalous in flags:
            scene = int(rng.integers(0, cfg.scenes))
            feats, labels = _drift_video(rng, cfg, world, scene, bool(anomalous))
            videos[split].append((_name(scene, bool(anomalous), used), bool(anomalous), feats,
                                  labels))  # fmt: skip
    return _write(root, videos, "drift", asdict(cfg))


# ---------------------------------------------------------------------- writing


def _write(root: str | Path, videos: dict[str, list], family: str, cfg: dict) -> Path:
    root = Path(root)
    if (root / "GT").exists():
        raise FileExistsError(f"{root}: already holds a dataset")
    folder = root / "features_video" / "i3d" / "combine"
    video_labels: dict[str, list[float]] = {}
    frame_labels: dict[str, np.ndarray] = {}
    for split, items in videos.items():
        for name, anomalous, feats, labels in items:
            (folder / name).mkdir(parents=True, exist_ok=True)
            np.save(folder / name / "feature.npy", feats)
            video_labels[name] = [1.0 if anomalous else 0.0]
            frame_labels[name] = labels
        (root / f"{split}_split.txt").write_text("".join(f"{v[0]}\n" for v in items))
    (root / "GT").mkdir(parents=True)
    for file, value in (("video_label.pickle", video_labels), ("frame_label.pickle", frame_labels)):
        with (root / "GT" / file).open("wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    (root / "generator.json").write_text(json.dumps({"family": family, **cfg}, indent=2) + "\n")
    return root


def family_statistics(root: str | Path) -> dict[str, float]:
    """What sets the families apart, measured on a set's training videos: `cover` (mean share
    of an anomalous video's frames inside events), `autocorrelation` (median over videos and
    dimensions of the lag-1 autocorrelation of features around the video's mean), `kurtosis`
    (median excess kurtosis of those deviations: heavy tails > 0) and `videos_per_scene`
    (median training videos per scene, from the SS_ name prefix)."""
    root = Path(root)
    with (root / "GT" / "video_label.pickle").open("rb") as f:
        video_labels = pickle.load(f)
    with (root / "GT" / "frame_label.pickle").open("rb") as f:
        frame_labels = pickle.load(f)
    names = (root / "train_split.txt").read_text().split()
    cover, auto, kurt = [], [], []
    scenes: dict[str, int] = {}
    for name in names:
        x = np.load(root / "features_video" / "i3d" / "combine" / name / "feature.npy")
        r = x.astype(np.float64) - x.mean(axis=0)
        den = (r * r).sum(axis=0) + 1e-12
        auto.append(float(np.median((r[1:] * r[:-1]).sum(axis=0) / den)))
        z = r / (r.std(axis=0) + 1e-9)
        kurt.append(float(np.median((z**4).mean(axis=0)) - 3.0))
        if video_labels[name] == [1.0]:
            cover.append(float(np.mean(frame_labels[name])))
        scenes[name[:2]] = scenes.get(name[:2], 0) + 1
    return {"cover": float(np.mean(cover)), "autocorrelation": float(np.median(auto)),
            "kurtosis": float(np.median(kurt)),
            "videos_per_scene": float(np.median(list(scenes.values())))}  # fmt: skip


GENERATORS = {"spiky": (SpikyConfig, generate_spiky), "drift": (DriftConfig, generate_drift)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("family", choices=sorted(GENERATORS))
    p.add_argument("out", help="folder to write the dataset into")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dim", type=int, default=128)
    args = p.parse_args(argv)
    cls, gen = GENERATORS[args.family]
    if args.dim < 8:
        print("suitegen: --dim must be >= 8", file=sys.stderr)
        return 2
    try:
        gen(args.out, cls(seed=args.seed, dim=args.dim))
    except FileExistsError as exc:
        print(f"suitegen: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
