"""`arnet train --model rtfm|mgfn` on ten-crop features, then resume, test, export, detect."""

import json

import numpy as np
import pytest
import torch

from arnet.cli import main
from arnet.formats import open_dataset
from arnet.training.checkpoint import load_checkpoint, model_from_checkpoint

SMALL = {
    "rtfm": ["--model-arg", "hidden_dim=8", "--model-arg", "classifier_dims=[8,4]"],
    "mgfn": ["--model-arg", "dims=[8,16,16]", "--model-arg", "depths=[1,1,1]",
             "--model-arg", "dim_head=8"],
}  # fmt: skip


@pytest.fixture(scope="module")
def ten_crops(tmp_path_factory):
    data = tmp_path_factory.mktemp("ten") / "d10"
    assert main(["synth", str(data), "--train-videos", "16", "--train-anomalous", "6",
                 "--test-videos", "6", "--test-anomalous", "2", "--dim", "16",
                 "--min-segments", "8", "--max-video-segments", "40",
                 "--crops", "10"]) == 0  # fmt: skip
    return data


def _train(data, run, name, *extra):
    return main(["train", "--data", str(data), "--model", name, *SMALL[name],
                 "--videos-per-class", "4", "--snapshot", "3", "--out", str(run),
                 "--no-plot", "--no-tensorboard", "--quiet", *extra])  # fmt: skip


@pytest.mark.parametrize("name", ["rtfm", "mgfn"])
def test_train_resume_test_and_export_on_ten_crops(name, ten_crops, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(ten_crops, run, name, "--iterations", "3") == 0
    config = json.loads((run / "config.json").read_text())
    # their schedule by default: 32 uniform segments, every crop a sample, crops' mean score
    assert (config["train_crop"], config["test_crop"], config["uniform_segments"]) == (
        "all",
        "per_crop",
        32,
    )
    assert config["lr"] == 1e-3
    assert main(["train", "--resume", str(run), "--iterations", "6", "--quiet"]) == 0
    assert load_checkpoint(run)["iteration"] == 6

    assert main(["test", "--checkpoint", str(run), "--data", str(ten_crops),
                 "--out", str(tmp_path / "test")]) == 0  # fmt: skip
    metrics = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert 0.0 <= metrics["auc"] <= 1.0

    model = model_from_checkpoint(load_checkpoint(run)).eval()
    _, test = open_dataset(str(ten_crops))
    for fmt, runtime in (("onnx", "onnxruntime"), ("torchscript", "torch")):
        out = tmp_path / f"export-{fmt}"
        assert main(["export", str(run), "--format", fmt, "--out", str(out)]) == 0
        from arnet.detection.export import load_exported

        exported = load_exported(out, runtime)
        for i in range(len(test)):  # videos of other lengths than the traced example
            x = np.asarray(test.features(i))[:, 3]  # one crop, (T, D)
            with torch.no_grad():
                want = model(torch.from_numpy(x)[None], torch.ones(1, len(x), dtype=torch.bool))
            np.testing.assert_allclose(exported.score(x), want[0].numpy(), rtol=1e-4, atol=1e-5)
    capsys.readouterr()


def test_bad_model_and_objective_arguments_are_one_line(ten_crops, tmp_path, capsys):
    assert _train(ten_crops, tmp_path / "a", "rtfm", "--objective-arg", "marign=3") == 2
    err = capsys.readouterr().err.strip()
    assert "no option marign" in err and len(err.splitlines()) == 1
    assert main(["train", "--data", str(ten_crops), "--model", "mgfn", "--model-arg",
                 "blocks=[1,2]", "--out", str(tmp_path / "b"), "--quiet"]) == 2  # fmt: skip
    assert "blocks takes three of" in capsys.readouterr().err
    assert not (tmp_path / "a" / "checkpoints").exists()


def test_detect_with_an_rtfm_run_on_generated_videos(tmp_path, capsys):
    pytest.importorskip("av", reason="the extract extra (PyAV) is not installed")
    pytest.importorskip("cv2", reason="the extract extra (OpenCV) is not installed")
    from helpers import write_video
    from test_export import scene

    videos = tmp_path / "videos"
    videos.mkdir()
    plan = {"train_event": (48, 16), "train_quiet": (48, None), "test_event": (45, 24)}
    labels = {}
    for i, (name, (n, start)) in enumerate(plan.items()):
        write_video(videos / f"{name}.mp4", scene(n, start, seed=i), fps=8)
        labels[name] = {"frames": n, "anomalous_frames": [] if start is None else [[start + 1, n]]}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    (tmp_path / "train.txt").write_text("train_event\ntrain_quiet\n")
    (tmp_path / "test.txt").write_text("test_event\n")
    data = tmp_path / "data"
    assert main(["extract", str(videos), "--out", str(data), "--random-init", "--modal", "rgb",
                 "--short-side", "24", "--crop-size", "16",
                 "--labels", str(tmp_path / "labels.json"),
                 "--train-split", str(tmp_path / "train.txt"),
                 "--test-split", str(tmp_path / "test.txt"), "--quiet"]) == 0  # fmt: skip
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--feature-modal", "rgb", "--model", "rtfm",
                 *SMALL["rtfm"], "--iterations", "3", "--snapshot", "3", "--out", str(run),
                 "--no-plot", "--no-tensorboard", "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    out = tmp_path / "alerts"
    assert main(["detect", str(videos / "test_event.mp4"), "--checkpoint", str(run),
                 "--out", str(out), "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["videos"][0]["segments"] == 3
    assert (out / "test_event.scores.csv").is_file()
