"""Writers and loaders that only the tests use: datasets in every layout the readers take,
short video files, and the single-layout loaders the tests call directly."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path

import numpy as np

from arnet.config import FRAMES_PER_SEGMENT, TrainConfig
from arnet.data.dataset import FeatureDataset
from arnet.errors import DataError, ExtractError
from arnet.formats.arnet import catalog_arnet
from arnet.formats.groundtruth import label_from_name
from arnet.formats.opening import open_catalog, to_datasets
from arnet.formats.packed import catalog_packed

# ---------------------------------------------------------------------- loaders


def load_arnet(
    root: str | Path,
    *,
    modal: str = "combine",
    backbone: str = "i3d",
    layer: str = "fc6",
    feature_dim: int | None = None,
    in_memory: bool = False,
    tail: str = "drop",
) -> tuple[FeatureDataset, FeatureDataset]:
    """Read a dataset in the AR-Net layout.

    Args:
        root: the dataset folder (reference: DATASET_PATH/DATASET_NAME).
        modal, backbone, layer: which features (see `feature_folder`).
        feature_dim: expected D; None accepts the data's own.
        in_memory: copy all features into RAM (reference --larger_mem 1); otherwise memory-map.
        tail: how frame labels meet segments (see `arnet.formats.groundtruth`).

    Returns:
        (train, test) datasets; test videos carry frame labels when GT/frame_label.pickle exists.

    Raises:
        DataError: naming the file or video, for anything missing or inconsistent.
    """
    catalog = catalog_arnet(root, modal=modal, backbone=backbone, layer=layer)
    catalog.tail = tail
    train, test = to_datasets(open_catalog(catalog), in_memory)
    if feature_dim is not None and train.dim != feature_dim:
        raise DataError(
            f"{train.sources[0]}: features have dimension {train.dim}, "
            f"but feature_dim is {feature_dim}"
        )
    return train, test


def load_packed(
    root: str | Path,
    *,
    ground_truth: str | Path | None = None,
    tail: str = "drop",
    in_memory: bool = False,
) -> tuple[FeatureDataset, FeatureDataset]:
    """(train, test) FeatureDatasets over the store's one block (memory-mapped by default).

    Raises:
        DataError: for a broken store (see `catalog_packed`) or ground truth that does not fit.
    """
    catalog = catalog_packed(root, ground_truth=ground_truth, in_memory=in_memory)
    catalog.tail = tail
    return to_datasets(open_catalog(catalog))


# ---------------------------------------------------------------------- list and crop layouts


Video = tuple[str, int, np.ndarray, np.ndarray | None]


def _feature_files(folder: Path, name: str, features: np.ndarray, per_crop: bool) -> list[Path]:
    """Write one video's features: one file, or `NAME__K.npy` per crop of (T, C, D) features."""
    folder.mkdir(parents=True, exist_ok=True)
    features = np.asarray(features, dtype=np.float32)
    if per_crop and features.ndim == 3:
        paths = []
        for crop in range(features.shape[1]):
            path = folder / f"{name}__{crop}.npy"
            np.save(path, np.ascontiguousarray(features[:, crop]))
            paths.append(path)
        return paths
    path = folder / f"{name}.npy"
    np.save(path, features)
    return [path]


def _covered(name: str, frames: np.ndarray | None, segments: int) -> np.ndarray:
    """The frame labels of the 16 T frames a test video's segments cover."""
    if frames is None:
        raise DataError(f"test video {name!r} has no frame labels to write")
    return np.asarray(frames, np.uint8)[: FRAMES_PER_SEGMENT * segments]


def write_list(
    folder: str | Path,
    splits: Mapping[str, Iterable[Video]],
    *,
    stem: str = "data",
    per_crop: bool = False,
) -> Path:
    """Write videos in the RTFM/MGFN list layout, for programs that read it.

    Writes ``features/{split}/NAME.npy`` (or ``NAME__K.npy`` per crop), ``STEM-train.list``
    with the anomalous videos first, ``STEM-test.list`` and ``gt-STEM.npy``: the test videos'
    frame labels cut to 16 T and concatenated in list order.

    Args:
        folder: where to write.
        splits: "train"/"test" -> (name, label, features (T, D) or (T, C, D), frame labels).
        stem: the lists' name.
        per_crop: one file per crop (UR-DMU style lines) instead of one (T, C, D) file.

    Returns:
        The train list.
    """
    folder = Path(folder)
    gt = []
    for split in ("train", "test"):
        videos = list(splits[split])
        if split == "train":
            videos.sort(key=lambda v: -v[1])  # anomalous first, in order (stable sort)
        lines = []
        for name, _, features, frames in videos:
            lines += _feature_files(folder / "features" / split, name, features, per_crop)
            if split == "test":
                gt.append(_covered(name, frames, len(features)))
        (folder / f"{stem}-{split}.list").write_text("".join(f"{p.resolve()}\n" for p in lines))
    np.save(folder / f"gt-{stem}.npy", np.concatenate(gt).astype(np.float64))
    return folder / f"{stem}-train.list"


def write_csv(
    folder: str | Path, splits: Mapping[str, Iterable[Video]], *, per_crop: bool = False
) -> Path:
    """Write videos as ``train.csv``/``test.csv`` lists (``path,label`` with a header, paths
    relative to the CSV) and ``gt.npy`` (test frame labels cut to 16 T, concatenated).

    Returns:
        The train CSV.
    """
    folder = Path(folder)
    gt = []
    for split in ("train", "test"):
        rows = ["path,label"]
        for name, label, features, frames in splits[split]:
            for path in _feature_files(folder / split, name, features, per_crop):
                rows.append(f"{path.relative_to(folder)},{label}")
            if split == "test":
                gt.append(_covered(name, frames, len(features)))
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
    np.save(folder / "gt.npy", np.concatenate(gt).astype(np.uint8))
    return folder / "train.csv"


def _events(frames: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [start, end) runs of 1s in a 0/1 array."""
    padded = np.concatenate([[0], np.asarray(frames, np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def write_crops(
    root: str | Path,
    splits: Mapping[str, Iterable[tuple[str, int, np.ndarray, np.ndarray | None]]],
) -> Path:
    """Write videos as per-crop folders with XD-Violence style annotations.

    (T, C, D) features become ``SPLIT/NAME__K.npy`` files, (T, D) features ``SPLIT/NAME.npy``;
    the anomalous frames of the videos become ``annotations.txt`` lines
    ``NAME s1 e1 s2 e2 ...`` (half-open). Names must carry their labels (see
    `groundtruth.label_from_name`), as the reader takes labels from them.

    Returns:
        `root`.

    Raises:
        DataError: a name whose convention contradicts its label.
    """
    root = Path(root)
    lines = []
    for split, videos in splits.items():
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for name, label, features, frames in videos:
            if label_from_name(name) != label:
                raise DataError(f"video {name!r}: its name does not say its label {label}")
            features = np.asarray(features, dtype=np.float32)
            if features.ndim == 3:
                for crop in range(features.shape[1]):
                    np.save(folder / f"{name}__{crop}.npy", np.ascontiguousarray(features[:, crop]))
            else:
                np.save(folder / f"{name}.npy", features)
            spans = _events(frames) if frames is not None else []
            if spans:
                lines.append(" ".join([name, *(f"{s} {e}" for s, e in spans)]))
    (root / "annotations.txt").write_text("".join(f"{line}\n" for line in lines))
    return root


# ---------------------------------------------------------------------- video


def write_video(
    path: str | Path, frames: Iterable[np.ndarray], fps: float = 25.0, codec: str = "mpeg4"
) -> Path:
    """Encode RGB (H, W, 3) uint8 frames into a video file with PyAV (e.g. synthetic clips).

    Args:
        path: the file to write; its suffix picks the container (.mp4, .avi, ...).
        frames: frames of one size; H and W must be even for the yuv420p pixel format.
        fps: frame rate.
        codec: an FFmpeg encoder PyAV carries (mpeg4 and libx264 in its wheels).
    """
    import av  # the extract extra; the tests that write video skip without it

    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = "yuv420p"
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        if stream is None:
            raise ExtractError(f"{path}: no frames to write")
        for packet in stream.encode():
            container.mux(packet)
    return path


# ---------------------------------------------------------------------- grid features


def square_frames(folder, n=32, speed=3, h=48, w=96, top=4):
    """A bright 10 x 10 square crossing the top-left cell row rightwards, `speed` px a frame,
    on a textured, still background (PNG frames)."""
    import cv2  # the extract extra; the tests that call this skip without it

    folder = Path(folder)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    background = (rng.random((h, w)) * 60 + 40).astype(np.uint8)
    background = cv2.GaussianBlur(background, (5, 5), 0)
    for i in range(n):
        frame = background.copy()
        x = 2 + speed * i
        frame[top : top + 10, x : x + 10] = 230
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.repeat(frame[:, :, None], 3, axis=2))
    return folder


def square_site(root: str | Path) -> Path:
    """A frame dataset (Ped2 layout) of 48 x 96 frames: pedestrians walk (a slow square), an
    anomaly rides (from frame 17, a mirrored strip and a fast block in the bottom rows)."""
    import json

    import cv2

    root = Path(root)
    labels = {}
    for i in range(4):
        square_frames(root / "frames" / f"walk{i}", n=48, speed=1, top=4 + 8 * (i % 3))
        labels[f"walk{i}"] = {"frames": 48, "anomalous_frames": []}
    for i in range(3):  # walks for a segment, then rides
        folder = square_frames(root / "frames" / f"ride{i}", n=48, speed=1, top=4 + 8 * i)
        for j in range(16, 48):
            frame = cv2.imread(str(folder / f"{j:03d}.png"))
            frame[28:38, :] = frame[28:38, ::-1]  # a mirrored strip: something new moves there
            x = (4 * j) % 80
            frame[30:38, x : x + 12] = 250
            cv2.imwrite(str(folder / f"{j:03d}.png"), frame)
        labels[f"ride{i}"] = {"frames": 48, "anomalous_frames": [[17, 48]]}
    (root / "labels.json").write_text(json.dumps(labels))
    (root / "splits").mkdir()
    (root / "splits" / "weak_train.txt").write_text("walk0\nwalk1\nwalk2\nride0\nride1\n")
    (root / "splits" / "weak_test.txt").write_text("walk3\nride2\n")
    return root


def write_grid_synthetic(
    root: str | Path,
    grid: tuple[int, int] = (2, 3),
    dim: int = 8,
    videos: tuple[int, int, int, int] = (16, 8, 8, 6),
    strength: float = 1.5,
    seed: int = 0,
    backbone: str = "grid-synth",
) -> Path:
    """Synthetic grid features in the AR-Net layout (rgb), with an extraction.json recording
    the grid as `arnet extract` does for a grid backbone (`grid`, `cell_dim`).

    A segment is rows x cols cells of `dim` numbers, cell-major: each cell its own
    non-negative appearance plus noise. An anomalous video holds one event: for a run of
    segments, one cell (a different one per video) also carries a fixed event pattern. Frame
    labels mark the event's segments' 16 frames.

    Args:
        videos: (train normal, train anomalous, test normal, test anomalous) counts.
    """
    import json

    from arnet.formats.arnet import write_arnet

    rng = np.random.default_rng(seed)
    cells = grid[0] * grid[1]
    appearance = rng.gamma(1.0, 0.5, size=(cells, dim))
    event = np.abs(rng.normal(size=dim))
    counts = {"train": videos[:2], "test": videos[2:]}
    splits: dict[str, list] = {}
    for split, (normal, anomalous) in counts.items():
        rows = []
        for i in range(normal + anomalous):
            label = int(i >= normal)
            t = int(rng.integers(8, 25))
            x = appearance[None] + 0.3 * rng.random((t, cells, dim))
            frames = np.zeros(FRAMES_PER_SEGMENT * t, np.uint8)
            if label:
                start = int(rng.integers(0, t - 3))
                stop = int(rng.integers(start + 2, min(t, start + 8) + 1))
                x[start:stop, i % cells] += strength * event
                frames[FRAMES_PER_SEGMENT * start : FRAMES_PER_SEGMENT * stop] = 1
            name = f"{split}_{'anomaly' if label else 'normal'}_{i:02d}"
            rows.append((name, label, x.reshape(t, -1).astype(np.float32), frames))
        splits[split] = rows
    folder = write_arnet(root, splits, modal="rgb", backbone=backbone)
    record = {
        "backbone": backbone,
        "backbones": {
            "rgb": {
                "name": backbone,
                "modality": "rgb",
                "dim": cells * dim,
                "grid": list(grid),
                "cell_dim": dim,
            }  # fmt: skip
        },
    }
    (folder.parent / "extraction.json").write_text(json.dumps(record))
    return Path(root)


def tiny_config(tiny_data: str | Path, **changes: object) -> TrainConfig:
    """A quick CPU run on the `tiny_data` fixture: 30 iterations, a snapshot every 10."""
    values: dict = dict(
        data=str(tiny_data),
        iterations=30,
        snapshot_every=10,
        videos_per_class=6,
        max_segments=32,
        plot=False,
        tensorboard=False,
        seed=3,
        device="cpu",  # bit-exact repeatability is a CPU promise; tests/test_cuda.py has CUDA's
    )
    values.update(changes)
    return TrainConfig(**values)


@contextlib.contextmanager
def mounted_tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A real small file system (a tmpfs of `size`, e.g. "300k") at `mount`, where this
    process may mount one; else the test is skipped."""
    import pytest

    mount.mkdir(exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_up(folder: Path) -> Path:
    """Write one file in `folder` until its file system is full; the file."""
    ballast = folder / "ballast"
    with ballast.open("wb", buffering=0) as f:
        for size in (1 << 20, 1 << 12, 1):
            block = b"\0" * size
            with contextlib.suppress(OSError):
                while True:
                    f.write(block)
                    f.flush()
    return ballast
