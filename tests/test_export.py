"""`arnet export`: ONNX and TorchScript files of a run's head and EfficientNet-Lite0 backbone
give the scores and features of the PyTorch model; bad input is one line and exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("av", reason="the extract extra (PyAV) is not installed")
pytest.importorskip("cv2", reason="the extract extra (OpenCV) is not installed")
pytest.importorskip("efficientnet_lite_pytorch", reason="the extract extra is not installed")

from arnet.cli import main  # noqa: E402
from arnet.detection.export import load_exported  # noqa: E402


def scene(n: int, event_from: int | None, seed: int) -> list[np.ndarray]:
    """A textured 64x48 scene with a slow square; from `event_from` on, a bright block."""
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


@pytest.fixture(scope="module")
def lite_run(tmp_path_factory):
    """A run trained on EfficientNet-Lite0 features of generated videos (48 x 64 frames)."""
    from helpers import write_video

    root = tmp_path_factory.mktemp("export")
    videos = root / "videos"
    videos.mkdir()
    plan = {"train_event": (32, 16), "train_quiet": (32, None), "test_event": (32, 8)}
    labels = {}
    for i, (name, (n, start)) in enumerate(plan.items()):
        write_video(videos / f"{name}.mp4", scene(n, start, seed=i), fps=8)
        labels[name] = {"frames": n, "anomalous_frames": [] if start is None else [[start + 1, n]]}
    (root / "labels.json").write_text(json.dumps(labels))
    (root / "train.txt").write_text("train_event\ntrain_quiet\n")
    (root / "test.txt").write_text("test_event\n")
    data = root / "data"
    assert main(["extract", str(videos), "--out", str(data), "--backbone", "efficientnet-lite0",
                 "--short-side", "48", "--crop", "full", "--pool", "mean_std",
                 "--labels", str(root / "labels.json"), "--train-split", str(root / "train.txt"),
                 "--test-split", str(root / "test.txt"), "--quiet"]) == 0  # fmt: skip
    run = root / "run"
    assert main(["train", "--data", str(data), "--feature-modal", "rgb",
                 "--feature-backbone", "efficientnet-lite0", "--iterations", "5",
                 "--snapshot", "5", "--out", str(run), "--no-plot", "--no-tensorboard",
                 "--quiet"]) == 0  # fmt: skip
    return run, data, videos


def _reference(run):
    """The run's PyTorch model and backbone."""
    from arnet.extract.backbones import create_backbone
    from arnet.training.checkpoint import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(run)).eval()
    backbone = create_backbone("efficientnet-lite0", "rgb", pool="mean_std")
    return model, backbone


@pytest.mark.parametrize(
    ("fmt", "runtime"),
    [("onnx", "onnxruntime"), ("torchscript", "torch"), ("onnx", "openvino")],
)
def test_exported_files_match_the_pytorch_model(lite_run, tmp_path, capsys, fmt, runtime):
    if runtime != "torch":
        pytest.importorskip(runtime, reason=f"the export extra ({runtime}) is not installed")
        pytest.importorskip("onnx", reason="the export extra (onnx) is not installed")
    run, data, videos = lite_run
    out = tmp_path / "exported"
    assert main(["export", str(run), "--format", fmt, "--out", str(out), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["backbone"]["width"] == 64 and manifest["backbone"]["height"] == 48
    assert manifest["backbone"]["pool"] == "mean_std" and manifest["feature_dim"] == 2560
    exported = load_exported(out, runtime)
    model, backbone = _reference(run)

    # the head: scores of the extracted test features, and of a longer random sequence
    feats = np.load(data / "features_video/efficientnet-lite0/rgb/test_event/feature.npy")
    rng = np.random.default_rng(0)
    for x in (feats, rng.random((37, 2560), dtype=np.float32) * 3):
        with torch.no_grad():
            t = torch.from_numpy(x)[None]
            want = model(t, torch.ones(t.shape[:2], dtype=torch.bool))[0].numpy()
        got = exported.score(x)
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-5

    # the backbone: frame features, then a segment's pooled feature, from decoded frames
    from arnet.extract.video import find_inputs

    frames = [f for f in find_inputs([videos / "test_event.mp4"])[0].frames()][:16]
    prepared = np.stack([exported.prepare(f) for f in frames])
    got = exported.frame_features(prepared)
    pixels = torch.from_numpy(prepared).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.inference_mode():
        want = backbone.network(pixels).numpy()
    assert got.shape == (16, 1280) and np.abs(got - want).max() < 1e-4
    segment = exported.segment_feature(got)
    assert np.abs(segment - feats[0]).max() < 1e-4  # the extracted feature of segment 0


def test_the_exported_path_cuts_a_video_as_detect_does(lite_run, tmp_path, capsys):
    """A video of 2 segments and 5 frames through the exported files: its segment features,
    the tail's the last 16 frames' (as detect makes them), and its scores, detect's."""
    from helpers import write_video

    from arnet.detection.detector import load_detector
    from arnet.extract.video import find_inputs

    run, _, _ = lite_run
    out = tmp_path / "exported"
    assert main(["export", str(run), "--format", "torchscript", "--out", str(out)]) == 0
    exported = load_exported(out, "torch")
    assert exported.video_segments(37)[-1] == list(range(21, 37))  # overlapping the one before
    assert exported.video_segments(5) == [[0, 1, 2, 3, 4] + [4] * 11]  # shorter than one
    video = find_inputs([write_video(tmp_path / "tail.mp4", scene(37, 20, seed=7), fps=8)])[0]
    prepared = np.stack([exported.prepare(f) for f in video.frames()])
    features = exported.segment_features(exported.frame_features(prepared))
    detector, _ = load_detector(run, device="cpu")
    detection = detector.detect(video, 0.5)
    want = detector.extractor.extract(video).features["rgb"]
    assert features.shape == want.shape == (3, 2560)
    assert np.abs(features - want).max() < 1e-4
    assert np.abs(exported.score(features) - detection.segment_scores).max() < 1e-5


def test_export_refuses_bad_input_with_one_line(lite_run, tmp_path, capsys):
    run, _, _ = lite_run

    def fails(argv, names):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and names in err, err

    fails(["export", str(tmp_path / "nowhere"), "--format", "onnx"], "nowhere")
    corrupt = tmp_path / "corrupt" / "checkpoints"
    corrupt.mkdir(parents=True)
    (corrupt / "last.pt").write_bytes(b"not a checkpoint")
    fails(["export", str(corrupt.parent), "--format", "onnx"], "last.pt")
    fails(["export", str(run), "--format", "tflite", "--out", str(tmp_path / "x")], "--format")
    fails(["export", str(run), "--format", "onnx", "--input-size", "big"], "--input-size")
    fails(["export", str(run), "--format", "onnx", "--input-size", "50000x50000"], "8192 pixels")
    # an existing export is never replaced without --overwrite
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("saved by the user")
    fails(["export", str(run), "--format", "torchscript", "--out", str(kept)], str(kept))
    assert (kept / "mine.txt").read_text() == "saved by the user"
    # a changed file is found when loading
    out = tmp_path / "ts"
    assert main(["export", str(run), "--format", "torchscript", "--out", str(out)]) == 0
    (out / "head.pt").write_bytes(b"changed")
    with pytest.raises(ValueError, match="head.pt: changed since export"):
        load_exported(out)


def _tree(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_export_writes_only_new_or_empty_folders_or_an_earlier_export(lite_run, tmp_path, capsys):
    run, _, _ = lite_run

    def refused(argv, names):
        assert main(["export", str(run), "--format", "torchscript", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and names in err, err

    # --overwrite never deletes a folder of the user's own files
    mine = tmp_path / "mine"
    (mine / "notes").mkdir(parents=True)
    (mine / "notes" / "plan.txt").write_text("saved by the user")
    refused(["--out", str(mine), "--overwrite"], "holds no arnet export")
    assert (mine / "notes" / "plan.txt").read_text() == "saved by the user"
    # nor the run itself, nor a folder holding it
    before = _tree(run)
    refused(["--out", str(run), "--overwrite"], "is the run being exported")
    refused(["--out", str(run.parent), "--overwrite"], "is the run being exported")
    assert _tree(run) == before
    # an earlier export is replaced; one holding something else is not
    out = tmp_path / "deploy"
    assert main(["export", str(run), "--format", "torchscript", "--out", str(out)]) == 0
    refused(["--out", str(out)], "not empty")
    assert main(["export", str(run), "--format", "onnx", "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.name != ".arnet.lock") == [
        "backbone.onnx",
        "head.onnx",
        "manifest.json",
    ]
    load_exported(out)
    (out / "README.txt").write_text("how we deploy")
    refused(["--out", str(out), "--overwrite"], "holds README.txt besides the export")
    assert (out / "head.onnx").is_file() and (out / "README.txt").is_file()
    capsys.readouterr()
    # without --out: a fresh folder beside the run each time, as detect makes
    firsts = []
    for _ in range(2):
        assert main(["export", str(run), "--format", "torchscript", "--json"]) == 0
        firsts.append(json.loads(capsys.readouterr().out)["out"])
    assert [p.rsplit("/", 1)[1] for p in firsts] == ["export-torchscript", "export-torchscript-2"]
    # a refused export into a new folder leaves no folder behind
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy / "run")
    shutil.copytree(Path(_config(run)["data"]), copy / "data")
    for record in (copy / "data").rglob("videos/*.json"):  # no frame size to export at
        record.unlink()
    payload = torch.load(copy / "run/checkpoints/last.pt", weights_only=True)
    payload["config"]["data"] = str(copy / "data")
    payload.pop("extraction")  # a run saved before runs carried their features' record
    torch.save(payload, copy / "run/checkpoints/last.pt")
    for earlier in (copy / "run").glob("export-*"):
        shutil.rmtree(earlier)
    assert main(["export", str(copy / "run"), "--format", "torchscript"]) == 2
    assert "--input-size" in capsys.readouterr().err
    assert not list((copy / "run").glob("export-*"))


def _config(run):
    from arnet.training.checkpoint import load_checkpoint

    return load_checkpoint(run)["config"]


def test_an_export_of_a_newer_version_is_refused_by_name(lite_run, tmp_path):
    run, _, _ = lite_run
    out = tmp_path / "ts"
    assert main(["export", str(run), "--format", "torchscript", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(ValueError, match=r"manifest.json: export format version 99 .* newer"):
        load_exported(out)
    (out / "manifest.json").write_text(json.dumps({**manifest, "arnet_version": "9.0.0"}))
    with pytest.raises(ValueError, match=r"written by arnet 9.0.0\) is newer"):
        load_exported(out)
