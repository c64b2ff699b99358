"""The frames after a video's last full segment (`--tail pad`, detect's and watch's default):
their segment is the video's last 16 frames, real ones, so a short tail scores as those frames
do in a full segment, never higher for being short; for every backbone, in `extract`, `detect`
and `watch` (the exported runtime path: tests/test_export.py). Records of datasets extracted
before, whose padded tails repeated their last frame, still read and are never mixed with new
ones."""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

cv2 = pytest.importorskip("cv2", reason="the extract extra (OpenCV) is not installed")

from arnet.cli import main  # noqa: E402
from arnet.extract import (  # noqa: E402
    ExtractConfig,
    FeatureExtractor,
    Preprocessing,
    create_backbone,
    extract_dataset,
    find_inputs,
)
from arnet.extract.flow import FlowSettings  # noqa: E402

H, W = 48, 96


@pytest.fixture(autouse=True)
def _plain_cpu_convolutions():
    enabled = torch.backends.mkldnn.enabled  # oneDNN is slow on inputs this small
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = enabled


def draw(folder: Path, squares: list[list[tuple[int, int]]]) -> Path:
    """A frame folder: frame i shows a bright 10 x 10 square at each (top, left) of
    squares[i] on a still, textured background (PNG: lossless, so a frame is the same pixels
    in every video it is cut into)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur((rng.random((H, W)) * 60 + 40).astype(np.uint8), (5, 5), 0)
    for i, places in enumerate(squares):
        frame = background.copy()
        for top, left in places:
            frame[top : top + 10, left : left + 10] = 230
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.repeat(frame[:, :, None], 3, axis=2))
    return folder


def walking(n: int, top: int, speed: int = 1) -> list[list[tuple[int, int]]]:
    return [[(top, 2 + speed * i)] for i in range(n)]


def flickering(n: int, top: int) -> list[list[tuple[int, int]]]:
    """A square jumping between two places every frame: every two consecutive frames differ
    alike, so any 16 of them have the same frame differences."""
    return [[(top, 10 + 4 * (i % 2))] for i in range(n)]


def riding(n: int) -> list[list[tuple[int, int]]]:
    """Walking in the top row and, in the bottom rows, something fast."""
    return [[(4, 2 + i), (34, (5 * i) % 80)] for i in range(n)]


def cut(folder: Path, start: int, into: Path) -> Path:
    """The frames of a frame folder from `start` on, as a folder of their own."""
    into.mkdir(parents=True)
    for i, frame in enumerate(sorted(folder.iterdir())[start:]):
        shutil.copy(frame, into / f"{i:03d}.png")
    return into


# ---------------------------------------------------------------------- every backbone


def _backbones() -> dict[str, tuple[dict, Preprocessing]]:
    small = Preprocessing(short_side=24, crop_size=16, tail="pad")
    full = Preprocessing(short_side=0, crop="full", tail="pad")
    grid = {m: create_backbone("motion-grid", m, grid="2x4") for m in ("rgb", "flow")}
    chosen = {
        "motion-grid": (grid, full),
        "i3d": ({m: create_backbone("i3d", m, random_init=True) for m in ("rgb", "flow")}, small),
    }
    try:
        import efficientnet_lite_pytorch  # noqa: F401
    except ImportError:
        return chosen
    lite = Preprocessing(short_side=48, crop="full", tail="pad")
    for pool in ("mean_std", "mean_diff"):
        chosen[f"efficientnet-lite0 {pool}"] = (
            {"rgb": create_backbone("efficientnet-lite0", "rgb", pool=pool)},
            lite,
        )
    chosen["efficientnet-lite0 stride 4"] = (
        {"rgb": create_backbone("efficientnet-lite0", "rgb", pool="mean_std")},
        Preprocessing(short_side=48, crop="full", tail="pad", frame_stride=4),
    )
    return chosen


@pytest.mark.parametrize("name", list(_backbones()))
def test_a_short_tail_is_the_feature_of_the_last_full_window(tmp_path, name):
    """36 frames: two segments and a tail of 4. Its feature (every output of every backbone,
    flow included) is that of the last 16 frames, the last segment of the same frames cut to
    32; with the tail padded by repeating its last frame (arnet before) it was not."""
    backbones, pp = _backbones()[name]
    video = draw(tmp_path / "v", riding(36))
    shifted = cut(video, 4, tmp_path / "shifted")
    extractor = FeatureExtractor(backbones, ExtractConfig(pp, FlowSettings("farneback")))
    got = extractor.extract(find_inputs([str(video)])[0])
    assert (got.segments, got.padded, got.overlap, got.dropped) == (3, 0, 12, 0)
    full = extractor.extract(find_inputs([str(shifted)])[0])
    assert full.segments == 2 and full.padded == full.overlap == 0
    for output in extractor.outputs:
        np.testing.assert_allclose(
            got.features[output][-1], full.features[output][-1], rtol=1e-5, atol=1e-6
        )
    # the segments before are those of `drop`, which leaves the tail out
    dropping = FeatureExtractor(
        backbones, ExtractConfig(replace(pp, tail="drop"), FlowSettings("farneback"))
    )
    head = dropping.extract(find_inputs([str(video)])[0])
    for output in extractor.outputs:
        np.testing.assert_array_equal(got.features[output][:2], head.features[output])


# ---------------------------------------------------------------------- detect and watch


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict[str, Path]:
    """The recipe for a new site on generated frames: motion-grid features (Farneback flow,
    the tail dropped), nearest-normal runs on the combined and on the rgb statistics."""
    root = tmp_path_factory.mktemp("site")
    videos = {
        "flicker0": flickering(48, 4),
        "flicker1": flickering(48, 20),
        "walk0": walking(48, 12),
        "ride0": riding(48),
        "ride1": [[(20, 2 + i), (34, (6 * i) % 80)] for i in range(48)],
        "walk1": walking(48, 28),
        "ride2": [[(12, 2 + i), (34, (4 * i) % 80)] for i in range(48)],
    }
    labels = {}
    for name, squares in videos.items():
        draw(root / "frames" / name, squares)
        labels[name] = {"frames": 48, "anomalous_frames": [[1, 48]] if "ride" in name else []}
    (root / "labels.json").write_text(json.dumps(labels))
    (root / "splits").mkdir()
    (root / "splits" / "weak_train.txt").write_text("flicker0\nflicker1\nwalk0\nride0\nride1\n")
    (root / "splits" / "weak_test.txt").write_text("walk1\nride2\n")
    data = root / "data"
    assert main(["extract", str(root), "--out", str(data), "--backbone", "motion-grid",
                 "--modal", "combine", "--flow", "farneback", "--grid", "2x4",
                 "--short-side", "0", "--crop", "full", "--tail", "drop",
                 "--quiet"]) == 0  # fmt: skip
    runs = {}
    for modal in ("combine", "rgb"):
        runs[modal] = root / f"run-{modal}"
        assert main(["train", "--data", str(data), "--feature-backbone", "motion-grid",
                     "--feature-modal", modal, "--model", "nearest-normal", "--out",
                     str(runs[modal]), "--no-plot", "--quiet"]) == 0  # fmt: skip
    return {"root": root, **runs}


@pytest.mark.parametrize("footage", ["walking", "flickering"])
def test_detect_scores_a_short_tail_as_the_same_frames_in_a_full_segment(
    site, tmp_path, capsys, footage
):
    """37 frames: two segments and a tail of 5 frames. Each tail frame's score is the score
    those frames get in a full segment (the video cut to its last 32 frames), whatever was
    before them, not that of a segment completed by repeating the last frame (higher than
    every real segment of the flickering footage: motion stops)."""
    squares = walking(37, 20) if footage == "walking" else flickering(37, 4)
    video = draw(tmp_path / "video", squares)
    shifted = cut(video, 5, tmp_path / "cut")
    scores = {}
    for name, folder in (("video", video), ("cut", shifted)):
        out = tmp_path / f"detect-{name}"
        argv = ["detect", str(folder), "--checkpoint", str(site["combine"]), "--out", str(out)]
        assert main([*argv, "--json"]) == 0
        capsys.readouterr()
        text = (out / f"{name}.scores.csv").read_text().splitlines()[1:]
        scores[name] = np.array([float(line.split(",")[2]) for line in text])
    assert scores["video"].size == 37 and scores["cut"].size == 32
    tail, same = scores["video"][32:], scores["cut"][27:]  # frames 32-36 of the video
    assert np.allclose(tail, same, rtol=0, atol=1e-6), (tail, same)


def test_stopping_the_watcher_leaves_the_stored_peak_as_it_was(site, tmp_path):
    """A camera (a frame folder being written) whose alert is open, stopped a few frames into
    a segment: the stopped segment, the last 16 frames, is scored as the ones before (the
    footage flickers alike from frame to frame) and the alert's stored peak does not move; a
    segment completed by repeating its last frame scored above every real one and became the
    peak."""
    pytest.importorskip("sqlalchemy")
    from livekit import wait_for

    from arnet.detection.detector import load_detector
    from arnet.live.scorer import SegmentScorer
    from arnet.live.sources import parse_sources
    from arnet.live.tracker import Thresholds
    from arnet.live.watch import Watcher, WatchOptions
    from arnet.store import open_store

    folder = draw(tmp_path / "cam", flickering(52, 4))
    for frame in folder.iterdir():  # written a while ago: the last one is read too, not waited for
        os.utime(frame, (frame.stat().st_mtime - 60,) * 2)
    detector, _ = load_detector(site["rgb"], device="cpu")
    with open_store(tmp_path / "events.db") as store:
        watcher = Watcher(
            SegmentScorer(detector),
            store,
            parse_sources([f"cam={folder}"]),
            Thresholds(0.0, 0.0),  # every segment alerts: the alert is open when stopped
            WatchOptions(quiet=True),
        )
        before: list[float] = []

        def stop_once_three_are_stored() -> None:
            assert wait_for(lambda: len(store.scores("cam", limit=None)) == 3, timeout=300)
            (alert,), _ = store.alerts(camera="cam")
            before.append(alert["peak_score"])
            watcher.stop()

        watcher.start()
        stopper = threading.Thread(target=stop_once_three_are_stored, daemon=True)
        stopper.start()
        watcher.run()
        stopper.join()
        scores = store.scores("cam", limit=None)
        assert len(scores) == 4 and scores[-1]["start_frame"] == 48  # the stopped segment
        (alert,), _ = store.alerts(camera="cam")
        assert alert["state"] == "closed" and alert["end_frame"] == scores[-1]["end_frame"]
        assert alert["peak_score"] == before[0], (before, [s["score"] for s in scores])
        assert scores[-1]["score"] == pytest.approx(scores[-2]["score"], abs=1e-6)


# ---------------------------------------------------------------------- records


def test_the_tail_is_recorded_and_datasets_extracted_before_still_read(tmp_path, capsys):
    """`--tail pad` extractions record the window (extraction.json, each video's record); a
    dataset extracted before (its padded tails repeated, no `tail_fill` in its record) reads
    as it did, and is never extended with tails of the other kind; a `drop` dataset of before
    resumes as ever (its features have no tail)."""
    from arnet.extract.dataset import settings_summary
    from arnet.formats import open_dataset

    inputs = tmp_path / "videos"
    for name, squares in (("a", riding(36)), ("b", walking(36, 12)), ("c", walking(36, 28))):
        draw(inputs / name, squares)
    labels = {"a": {"frames": 36, "anomalous_frames": [[1, 36]]}, "b": {"frames": 36},
              "c": {"frames": 36}}  # fmt: skip
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    (tmp_path / "train.txt").write_text("a\nb\n")
    (tmp_path / "test.txt").write_text("c\n")
    extract = ["extract", str(inputs), "--backbone", "motion-grid", "--modal", "rgb",
               "--grid", "2x4", "--short-side", "0", "--crop", "full", "--labels",
               str(tmp_path / "labels.json"), "--train-split", str(tmp_path / "train.txt"),
               "--test-split", str(tmp_path / "test.txt"), "--quiet"]  # fmt: skip
    layout = {"backbone": "motion-grid", "modal": "rgb"}

    new = tmp_path / "new"
    assert main([*extract, "--out", str(new), "--tail", "pad"]) == 0
    folder = new / "features_video" / "motion-grid"
    meta = json.loads((folder / "extraction.json").read_text())
    assert meta["preprocessing"]["tail"] == "pad" and meta["preprocessing"]["tail_fill"] == "window"
    assert "tail pad (window)" in settings_summary(meta)
    record = json.loads((folder / "videos" / "a.json").read_text())
    assert (record["segments"], record["padded_frames"], record["overlap_frames"]) == (3, 0, 12)
    train, _ = open_dataset(new, tail="pad", **layout)
    assert train.lengths.tolist() == [3, 3] and [f.size for f in train.frame_labels] == [48, 48]

    # A dataset of before: its tails repeated their last frame, its record had no tail_fill.
    old = tmp_path / "old"
    pp = Preprocessing(short_side=0, crop="full", tail="pad", tail_fill="repeat")
    extractor = FeatureExtractor(
        {"rgb": create_backbone("motion-grid", "rgb", grid="2x4")}, ExtractConfig(pp)
    )
    extract_dataset(find_inputs([str(inputs)]), old, extractor, progress=False)
    old_record = old / "features_video" / "motion-grid" / "extraction.json"
    before = json.loads(old_record.read_text())
    del before["preprocessing"]["tail_fill"]
    old_record.write_text(json.dumps(before))
    for name in ("train_split.txt", "test_split.txt"):
        shutil.copy(new / name, old / name)
    shutil.copytree(new / "GT", old / "GT")
    train, _ = open_dataset(old, tail="pad", **layout)  # every video's record agrees
    assert train.lengths.tolist() == [3, 3]
    repeated = np.load(old / "features_video/motion-grid/rgb/a/feature.npy")
    windowed = np.load(folder / "rgb" / "a" / "feature.npy")
    assert np.array_equal(repeated[:2], windowed[:2]) and not np.allclose(repeated[2], windowed[2])
    capsys.readouterr()
    assert main(["inspect", str(old), "--feature-backbone", "motion-grid", "--feature-modal",
                 "rgb", "--tail", "pad", "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["errors"] == 0
    assert main([*extract, "--out", str(old), "--tail", "pad"]) == 2  # never mixed
    assert "extracted with other settings (preprocessing)" in capsys.readouterr().err
    assert json.loads(old_record.read_text()) == before

    # A `drop` dataset of before: the same settings as today's, so it resumes.
    drop = tmp_path / "drop"
    assert main([*extract, "--out", str(drop), "--tail", "drop"]) == 0
    drop_record = drop / "features_video" / "motion-grid" / "extraction.json"
    written = json.loads(drop_record.read_text())
    del written["preprocessing"]["tail_fill"]
    drop_record.write_text(json.dumps(written))
    resumed = [a for a in extract if a != "--quiet"]
    capsys.readouterr()
    assert main([*resumed, "--out", str(drop), "--tail", "drop", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == ["a", "b", "c"]
