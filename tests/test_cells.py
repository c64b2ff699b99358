"""Instances: every cell of grid features scored by a registered model (`--instances cells`),
a segment scoring as its highest cell; training, testing and export of such a run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import write_grid_synthetic

from arnet.cli import main
from arnet.config import TrainConfig
from arnet.data.dataset import Batch
from arnet.evaluation.evaluate import predict
from arnet.formats import open_dataset
from arnet.models import create_model
from arnet.models.cells import CellInstances, input_dim
from arnet.training.checkpoint import load_checkpoint, model_from_checkpoint
from arnet.training.trainer import build_objective

MIL_CASES = [("single", {}), ("mean", {}), ("concat", {}), ("lstm", {"bidirectional": True})]
MIL_IDS = ["single", "mean", "concat", "lstm-bi"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is fastest and keeps a busy two-core machine responsive."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _batch(cells=6, dim=5, lengths=(7, 4, 1, 6), seed=0):
    """A padded batch of grid features (B, T, cells * dim), zero at padding."""
    g = torch.Generator().manual_seed(seed)
    t = max(lengths)
    lengths = torch.tensor(lengths)
    mask = torch.arange(t)[None, :] < lengths[:, None]
    features = torch.rand(len(lengths), t, cells * dim, generator=g) * mask[..., None]
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0][: len(lengths)])
    return Batch(features, mask, lengths, labels)


def _cell_model(name, kwargs, cells=6, dim=5, seed=0):
    torch.manual_seed(seed)
    return CellInstances(create_model(name, dim, **kwargs), cells, [dim]).eval()


@pytest.mark.parametrize(("name", "kwargs"), MIL_CASES, ids=MIL_IDS)
def test_the_wrapper_is_the_max_over_a_loop_of_cells(name, kwargs):
    wrapper = _cell_model(name, kwargs)
    batch = _batch()
    with torch.no_grad():
        got = wrapper(batch.features, batch.mask)
        per_cell = wrapper.cell_scores(batch.features, batch.mask)
        x = batch.features.unflatten(-1, (6, 5))
        # the model called on each cell as if it were its own video
        loop = torch.stack([wrapper.model(x[:, :, c], batch.mask) for c in range(6)], -1)
    assert per_cell.shape == (4, 7, 6) and got.shape == (4, 7)
    # equal up to the rounding of matrix products of another shape (one float32 step)
    torch.testing.assert_close(per_cell, loop, rtol=0, atol=2e-7)
    torch.testing.assert_close(got, loop.amax(-1), rtol=0, atol=2e-7)
    assert (got[~batch.mask] == 0).all()


@pytest.mark.parametrize(("name", "kwargs"), MIL_CASES, ids=MIL_IDS)
def test_padding_never_changes_a_score(name, kwargs):
    wrapper = _cell_model(name, kwargs)
    batch = _batch()
    g = torch.Generator().manual_seed(1)
    junk = 100 * torch.randn(batch.features.shape, generator=g)
    junk[0, -1, :3] = float("nan")  # padding may hold anything
    scrambled = torch.where(batch.mask[..., None], batch.features, junk)
    # and a longer padded tail of junk still
    longer = torch.cat([scrambled, 50 * torch.randn(4, 5, 30, generator=g)], dim=1)
    longer_mask = torch.cat([batch.mask, torch.zeros(4, 5, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        want = wrapper(batch.features, batch.mask)
        got = wrapper(scrambled, batch.mask)
        got_longer = wrapper(longer, longer_mask)
        alone = [wrapper(batch.features[i : i + 1, :n], batch.mask[i : i + 1, :n])[0]
                 for i, n in enumerate(batch.lengths.tolist())]  # fmt: skip
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    torch.testing.assert_close(got_longer[:, :7], want, rtol=0, atol=1e-6)
    assert (got_longer[~longer_mask] == 0).all()
    for i, n in enumerate(batch.lengths.tolist()):  # each video scored alone, unpadded
        torch.testing.assert_close(alone[i], want[i, :n], rtol=0, atol=1e-6)


@pytest.mark.parametrize(("name", "kwargs"), MIL_CASES[:2], ids=MIL_IDS[:2])
def test_cells_are_a_set_and_combined_parts_gather_by_cell(name, kwargs):
    wrapper = _cell_model(name, kwargs)
    batch = _batch()
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    shuffled = batch.features.unflatten(-1, (6, 5))[:, :, order].flatten(2)
    with torch.no_grad():
        scores = wrapper.cell_scores(batch.features, batch.mask)
        moved = wrapper.cell_scores(shuffled, batch.mask)
        torch.testing.assert_close(moved, scores[:, :, order], rtol=0, atol=1e-6)
        torch.testing.assert_close(
            wrapper(shuffled, batch.mask), wrapper(batch.features, batch.mask), rtol=0, atol=1e-6
        )
    # --modal combine: all rgb cells (2 numbers each), then all flow cells (3 numbers each);
    # each cell gathers its own rgb and flow numbers
    combined = CellInstances(wrapper.model, 6, [2, 3])
    rgb = torch.arange(12.0).reshape(6, 2)
    flow = 100 + torch.arange(18.0).reshape(6, 3)
    joined = combined.split_cells(torch.cat([rgb.flatten(), flow.flatten()]))
    torch.testing.assert_close(joined, torch.cat([rgb, flow], dim=1))
    with pytest.raises(ValueError, match="6 cells x 5 = 30 features per segment, got 29"):
        combined(torch.zeros(1, 2, 29), torch.ones(1, 2, dtype=torch.bool))


@pytest.mark.parametrize(("name", "kwargs"), MIL_CASES[:2], ids=MIL_IDS[:2])
def test_the_mil_objective_trains_the_cell_model(name, kwargs):
    wrapper = _cell_model(name, kwargs).train()
    batch = _batch()
    loss, parts = build_objective(name, TrainConfig(model=name))(wrapper, batch)
    assert torch.isfinite(loss) and set(parts) == {"mil", "center"}
    loss.backward()
    assert all(p.grad is not None for p in wrapper.model.parameters())
    # the anchored center loss's empty-scene scores: those of all-zero segments
    wrapper.eval()
    if name == "single":
        zeros = torch.zeros(1, 3, 30)
        with torch.no_grad():
            torch.testing.assert_close(
                wrapper.empty_scores(3), wrapper(zeros, torch.ones(1, 3, dtype=torch.bool))[0]
            )
    else:
        assert not wrapper.has_empty_scores  # declared by the model, not probed


# ---------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def grid_data(tmp_path_factory):
    return write_grid_synthetic(tmp_path_factory.mktemp("cells") / "grid")


GRID = ["--feature-backbone", "grid-synth", "--feature-modal", "rgb"]


def _train(data, out, *extra):
    return main(["train", "--data", str(data), *GRID, "--iterations", "30", "--snapshot", "30",
                 "--lr", "1e-3", "--out", str(out), "--no-plot", "--no-tensorboard", "--quiet",
                 "--json", *extra])  # fmt: skip


def test_train_and_test_a_cell_run_from_the_command_line(grid_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(grid_data, run, "--instances", "cells") == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["metrics"]["auc"] > 0.9  # the event lives in one cell of its segments
    config = json.loads((run / "config.json").read_text())
    assert (config["instances"], config["cells"], config["cell_widths"]) == ("cells", 6, [8])
    payload = load_checkpoint(run)
    assert payload["model"]["kwargs"]["feature_dim"] == 8  # the model takes one cell
    model = model_from_checkpoint(payload)
    assert isinstance(model, CellInstances) and input_dim(model) == 48
    # `arnet test` rebuilds the cell model from the checkpoint and scores as training did
    assert main(["test", "--checkpoint", str(run), "--json", "--no-plot"]) == 0
    tested = json.loads(capsys.readouterr().out)
    assert tested["metrics"]["auc"] == pytest.approx(trained["metrics"]["auc"])
    _, test_set = open_dataset(grid_data, modal="rgb", backbone="grid-synth")
    saved = np.load(run / "scores.npz")
    again = predict(model, test_set)
    for name in test_set.names:
        np.testing.assert_array_equal(again[name], saved[name])


def test_cells_need_a_grid_or_a_cell_count(grid_data, tiny_data, tmp_path, capsys):
    def fails(code, *words):
        assert code == 2
        err = capsys.readouterr().err
        assert all(w in err for w in words), err

    # I3D-like features without a grid: exit 2, naming the option
    fails(_train(tiny_data, tmp_path / "a", "--feature-backbone", "i3d", "--feature-modal",
                 "combine", "--instances", "cells"), "--instances cells", "--cells N")  # fmt: skip
    fails(_train(grid_data, tmp_path / "b", "--instances", "cells", "--cells", "4"),
          "--cells 4", "records 6 cells")  # fmt: skip
    fails(_train(grid_data, tmp_path / "c", "--cells", "6"), "--instances cells only")
    fails(_train(grid_data, tmp_path / "d", "--instances", "cells", "--model", "nearest-normal"),
          "--instances cells", "nearest-normal")  # fmt: skip
    fails(_train(grid_data, tmp_path / "e", "--instances", "cells", "--model", "bas"),
          "--instances cells", "'bas'")  # fmt: skip
    # a packed store keeps no extraction record: --cells says how to read its segments
    store = tmp_path / "s.store"
    assert main(["pack", str(grid_data), str(store), *GRID, "--dtype", "float32"]) == 0
    capsys.readouterr()
    fails(_train(store, tmp_path / "f", "--instances", "cells"), "no extraction record", "--cells")
    fails(_train(store, tmp_path / "g", "--instances", "cells", "--cells", "5"), "do not split")
    assert _train(store, tmp_path / "h", "--instances", "cells", "--cells", "6") == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["auc"] > 0.9


def test_a_cell_run_exports_its_whole_cell_model(grid_data, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="the export extra (onnxruntime) is not installed")
    pytest.importorskip("onnx", reason="the export extra (onnx) is not installed")
    from arnet.detection.export import load_exported

    for model, extra in (("single", []), ("mean", ["--videos-per-class", "4"])):
        run = tmp_path / f"run-{model}"
        assert _train(grid_data, run, "--instances", "cells", "--model", model, *extra) == 0
        capsys.readouterr()
        reference = model_from_checkpoint(load_checkpoint(run)).eval()
        x = np.random.default_rng(0).random((37, 48), dtype=np.float32)
        with torch.no_grad():
            t = torch.from_numpy(x)[None]
            want = reference(t, torch.ones(t.shape[:2], dtype=torch.bool))[0].numpy()
        for fmt in ("onnx", "torchscript"):
            out = tmp_path / f"{model}-{fmt}"
            assert main(["export", str(run), "--format", fmt, "--out", str(out), "--json"]) == 0
            manifest = json.loads(capsys.readouterr().out)
            assert (manifest["feature_dim"], manifest["instances"], manifest["cells"]) == (
                48,
                "cells",
                6,
            )
            assert manifest["backbone"] is None  # not efficientnet-lite0 features
            got = load_exported(out).score(x)
            assert np.abs(got - want).max() < 1e-5


# ---------------------------------------------------------------------- EfficientNet-Lite0


@pytest.fixture(scope="module")
def lite_cells(tmp_path_factory):
    """A frame dataset, its EfficientNet-Lite0 features on a 2 x 4 grid (`extract --grid`),
    and a cell run trained on them: (frames root, features folder, run folder)."""
    pytest.importorskip("cv2", reason="the extract extra (OpenCV) is not installed")
    pytest.importorskip("efficientnet_lite_pytorch", reason="the extract extra is not installed")
    from helpers import square_site

    tmp = tmp_path_factory.mktemp("lite-cells")
    root = square_site(tmp / "site")  # 48 x 96 frames
    out = tmp / "features"
    assert main(["extract", str(root), "--out", str(out), "--backbone", "efficientnet-lite0",
                 "--grid", "2x4", "--spatial", "max", "--short-side", "96", "--crop", "full",
                 "--quiet"]) == 0  # fmt: skip
    run = tmp / "run"
    assert main(["train", "--data", str(out), *LITE, "--instances", "cells", "--iterations",
                 "4", "--snapshot", "4", "--out", str(run), "--no-plot", "--no-tensorboard",
                 "--quiet", "--json"]) == 0  # fmt: skip
    return root, out, run


LITE = ["--feature-backbone", "efficientnet-lite0", "--feature-modal", "rgb"]


def test_efficientnet_grid_features_are_recorded_and_read_by_every_layout(
    lite_cells, tmp_path, capsys
):
    root, out, run = lite_cells
    folder = out / "features_video" / "efficientnet-lite0"
    meta = json.loads((folder / "extraction.json").read_text())
    described = meta["backbones"]["rgb"]
    # 96 x 192 frames: a 3 x 6 feature map into 2 x 4 cells
    assert (described["grid"], described["cell_dim"], described["dim"]) == ([2, 4], 1280, 10240)
    assert described["options"]["grid"] == "2x4"
    features = np.load(folder / "rgb" / "ride2" / "feature.npy")
    assert features.shape == (3, 8 * 1280) and np.isfinite(features).all()
    assert main(["extract", str(root), "--out", str(tmp_path / "fine"), "--backbone",
                 "efficientnet-lite0", "--grid", "4x4", "--short-side", "96", "--crop", "full",
                 "--quiet"]) == 2  # fmt: skip
    assert "--grid 4x4 does not fit" in capsys.readouterr().err

    assert main(["inspect", str(out), *LITE, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["errors"] == 0 and report["dim"] == 8 * 1280
    store = tmp_path / "s.store"
    assert main(["pack", str(out), str(store), *LITE, "--dtype", "float32"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dim"] == 8 * 1280
    # the run read the grid from extraction.json: 8 cells of 1280
    config = json.loads((run / "config.json").read_text())
    assert (config["cells"], config["cell_widths"]) == (8, [1280])


def test_detect_shows_the_cell_scores_of_a_cell_run(lite_cells, tmp_path, capsys):
    root, _, run = lite_cells
    detect = tmp_path / "detect"
    # detect re-extracts with the recorded grid; every frame alerts at threshold 0
    assert main(["detect", str(root / "frames" / "ride2"), "--checkpoint", str(run), "--out",
                 str(detect), "--threshold", "0", "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["extraction"]["backbones"]["rgb"]["grid"] == [2, 4]
    assert (detect / "ride2.alert1.jpg").is_file()
    from arnet.detection.detector import load_detector
    from arnet.extract import find_inputs

    detector, _ = load_detector(run, device="cpu")
    assert isinstance(detector.model, CellInstances)
    detection = detector.detect(find_inputs([str(root / "frames" / "ride2")])[0], 0.5)
    maps = detection.cell_maps  # the learned cell scores, row by row
    assert maps.shape == (3, 2, 4)
    np.testing.assert_allclose(maps.max(axis=(1, 2)), detection.segment_scores, atol=1e-6)


def test_watch_scores_with_the_cell_model_as_detect_does(lite_cells, tmp_path):
    pytest.importorskip("av", reason="the extract extra (PyAV) is not installed")
    pytest.importorskip("sqlalchemy", reason="the live extra is not installed")
    import cv2
    from helpers import write_video

    from arnet.detection.detector import load_detector
    from arnet.extract.video import VideoInput
    from arnet.live.scorer import SegmentScorer
    from arnet.live.sources import parse_sources
    from arnet.live.tracker import Thresholds
    from arnet.live.watch import Watcher, WatchOptions
    from arnet.store import open_store

    root, _, run = lite_cells
    frames = sorted((root / "frames" / "ride2").glob("*.png"))
    images = [cv2.imread(str(f))[:, :, ::-1].copy() for f in frames]
    video = write_video(tmp_path / "ride2.mp4", images, fps=25)
    detector, _ = load_detector(run, device="cpu")
    offline = detector.detect(VideoInput(video, "ride2", "video"), 0.5)
    with open_store(tmp_path / "e.db") as store:
        options = WatchOptions(quiet=True, reconnect_first=0.2, reconnect_max=0.5)
        watcher = Watcher(SegmentScorer(detector), store, parse_sources([str(video)]),
                          Thresholds(0.5, 0.5, 1, 0), options)  # fmt: skip
        watcher.start()
        watcher.run()
        live = [s["score"] for s in store.scores("ride2", limit=None)]
    np.testing.assert_allclose(live, offline.segment_scores, rtol=0, atol=1e-5)


def test_export_of_an_efficientnet_grid_cell_run(lite_cells, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="the export extra (onnxruntime) is not installed")
    pytest.importorskip("onnx", reason="the export extra (onnx) is not installed")
    from arnet.detection.export import load_exported
    from arnet.extract import find_inputs

    root, out, run = lite_cells
    exported_dir = tmp_path / "export"
    assert main(["export", str(run), "--format", "onnx", "--out", str(exported_dir), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["backbone"]["frame_dim"] == 8 * 1280 and manifest["backbone"]["cells"] == 8
    assert manifest["feature_dim"] == 8 * 1280 and manifest["cells"] == 8
    exported = load_exported(exported_dir)
    video = find_inputs([str(root / "frames" / "ride2")])[0]
    frames = [f for f in video.frames()][:16]
    got = exported.frame_features(np.stack([exported.prepare(f) for f in frames]))
    assert got.shape == (16, 8 * 1280)
    stored = np.load(out / "features_video/efficientnet-lite0/rgb/ride2/feature.npy")
    assert np.abs(exported.segment_feature(got) - stored[0]).max() < 1e-4
    with torch.no_grad():
        t = torch.from_numpy(stored)[None]
        model = model_from_checkpoint(load_checkpoint(run)).eval()
        want = model(t, torch.ones(t.shape[:2], dtype=torch.bool))[0].numpy()
    assert np.abs(exported.score(stored) - want).max() < 1e-5


def test_a_cell_run_with_held_out_videos_resumes_into_a_copy(grid_data, tmp_path, capsys):
    """The selected snapshot of a cell run is rebuilt as a cell model when a resumed run finds
    no better one and evaluates it again."""
    import arnet.training.validation as validation_module

    run, copy = tmp_path / "run", tmp_path / "copy"
    common = ["--instances", "cells", "--val-fraction", "0.3", "--snapshot", "10"]
    assert _train(grid_data, run, *common) == 0
    capsys.readouterr()
    chosen = json.loads((run / "selected.json").read_text())["iteration"]
    original = validation_module.video_auc
    validation_module.video_auc = lambda peaks, labels: -1.0  # every later snapshot is worse
    try:
        code = main(["train", "--data", str(grid_data), *GRID, "--iterations", "40",
                     "--resume", str(run / "checkpoints" / "last.pt"), "--out", str(copy),
                     "--no-plot", "--no-tensorboard", "--quiet", "--json"])  # fmt: skip
    finally:
        validation_module.video_auc = original
    assert code == 0, capsys.readouterr().err
    resumed = json.loads(capsys.readouterr().out)
    assert json.loads((copy / "metrics.json").read_text())["iteration"] == chosen
    assert isinstance(model_from_checkpoint(load_checkpoint(copy)), CellInstances)
    assert resumed["metrics"]["auc"] == pytest.approx(
        json.loads((run / "metrics.json").read_text())["auc"]
    )
