"""The motion-grid backbone: per-cell frame differences and flow statistics, from real frames."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import square_frames, square_site

from arnet.errors import ExtractError
from arnet.extract import (
    ExtractConfig,
    FeatureExtractor,
    Preprocessing,
    create_backbone,
    extract_dataset,
    find_inputs,
)
from arnet.extract.flow import FlowSettings
from arnet.extract.motion import FLOW_STATS, RGB_STATS, cells, parse_grid
from arnet.formats.extraction import feature_groups

cv2 = pytest.importorskip("cv2")


def extractor(grid="2x4", modal=("rgb", "flow")):
    backbones = {m: create_backbone("motion-grid", m, grid=grid) for m in modal}
    config = ExtractConfig(
        Preprocessing(short_side=0, crop="full"), flow=FlowSettings(method="farneback")
    )
    return FeatureExtractor(backbones, config, "cpu")


def test_grid_parsing_and_cells_by_hand():
    assert parse_grid("8x12") == (8, 12) and parse_grid((2, 3)) == (2, 3)
    for bad in ("8", "0x3", "ax3", "2x3x4"):
        with pytest.raises(ExtractError, match="--grid"):
            parse_grid(bad)
    x = torch.arange(4 * 7).reshape(4, 7).float()  # 4 x 7: the 7th column is left out
    c = cells(x, 2, 3)
    assert c.shape == (2, 3, 4)
    assert c[1, 2].tolist() == [18.0, 19.0, 25.0, 26.0]
    with pytest.raises(ExtractError, match="cannot be cut"):
        cells(torch.zeros(3, 3), 4, 1)


def test_the_moving_square_is_found_in_its_cells(tmp_path):
    video = find_inputs([str(square_frames(tmp_path / "v"))])[0]
    out = extractor().extract(video)
    assert out.features["rgb"].shape == (2, 2 * 4 * len(RGB_STATS))
    assert out.features["flow"].shape == (2, 2 * 4 * len(FLOW_STATS))
    assert out.features["combine"].shape == (2, 2 * 4 * (len(RGB_STATS) + len(FLOW_STATS)))
    rgb = out.features["rgb"].reshape(2, 2, 4, len(RGB_STATS))
    flow = out.features["flow"].reshape(2, 2, 4, len(FLOW_STATS))
    # segment 0: the square crosses cells (0, 0) and (0, 1); the bottom row never moves
    assert rgb[0, 0, :2, 0].min() > 5 * rgb[0, 1, :, 0].max()
    mag, dx, dy = (FLOW_STATS.index(s) for s in ("mag", "dx", "dy"))
    assert flow[0, 0, 0, mag] > 5 * flow[0, 1, :, mag].max()
    assert flow[0, 0, 0, dx] > 0 and abs(flow[0, 0, 0, dy]) < flow[0, 0, 0, dx]  # rightwards
    # segment 1: the square has moved on to the right half of the top row
    assert rgb[1, 0, 2:, 0].max() > rgb[1, 0, 0, 0]


def test_a_faster_object_has_a_higher_speed(tmp_path):
    speed = FLOW_STATS.index("speed")
    slow = extractor(modal=("flow",)).extract(
        find_inputs([str(square_frames(tmp_path / "slow", speed=1))])[0]
    )
    fast = extractor(modal=("flow",)).extract(
        find_inputs([str(square_frames(tmp_path / "fast", speed=3))])[0]
    )
    s = slow.features["flow"].reshape(2, 2, 4, -1)[0, 0, 0, speed]
    f = fast.features["flow"].reshape(2, 2, 4, -1)[0, 0, 0, speed]
    assert f > 1.5 * s > 0


def test_motion_grid_through_extract_dataset_records_its_layout(tmp_path):
    videos = find_inputs([str(square_frames(tmp_path / "src" / n)) for n in ("a", "b")])
    summary = extract_dataset(videos, tmp_path / "out", extractor(), progress=False)
    assert summary.extracted == ["a", "b"]
    root = tmp_path / "out" / "features_video" / "motion-grid"
    meta = json.loads((root / "extraction.json").read_text())
    described = meta["backbones"]
    assert described["flow"]["grid"] == [2, 4]
    assert described["flow"]["stats"] == list(FLOW_STATS)
    assert described["rgb"]["weights"] is None
    combine = np.load(root / "combine" / "a" / "feature.npy")
    assert combine.shape == (2, 2 * 4 * 8) and np.isfinite(combine).all()
    groups = feature_groups(described, "combine")
    assert len(groups) == combine.shape[1]
    assert groups[:4] == [0, 1, 0, 1] and groups[2 * 4 * 2 : 2 * 4 * 2 + 7] == [2, 3, 4, 5, 6, 7, 2]
    assert feature_groups(described, "flow")[:7] == [0, 1, 2, 3, 4, 5, 0]
    assert feature_groups({"rgb": {"name": "efficientnet-lite0"}}, "rgb") is None


def test_motion_grid_refuses_weights_and_foreign_options():
    with pytest.raises(ExtractError, match="no weights"):
        create_backbone("motion-grid", "rgb", weights="x.pt")
    with pytest.raises(ExtractError, match="--spatial"):
        create_backbone("motion-grid", "rgb", spatial="max")


def test_cli_extract_grid_inspect_pack_and_nearest_normal(tmp_path, capsys):
    """A frame dataset (Ped2 layout): pedestrians walk (a slow square), an anomaly rides (a fast
    one); motion-grid features through `extract --grid`, `inspect`, `pack` and training."""
    from arnet.cli import main

    root = square_site(tmp_path / "site")
    out = tmp_path / "features"
    extract = ["extract", str(root), "--out", str(out), "--backbone", "motion-grid", "--modal",
               "combine", "--grid", "2x4", "--flow", "farneback", "--short-side", "0", "--crop",
               "full", "--quiet"]  # fmt: skip
    assert main(extract) == 0
    meta = json.loads((out / "features_video" / "motion-grid" / "extraction.json").read_text())
    assert meta["backbones"]["flow"]["grid"] == [2, 4]
    assert main([*extract[:-1], "--grid", "0x4"]) == 2  # a bad grid is named, exit status 2
    assert "--grid" in capsys.readouterr().err
    common = ["--feature-backbone", "motion-grid", "--feature-modal", "combine"]
    assert main(["inspect", str(out), *common, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["errors"] == 0 and report["dim"] == 2 * 4 * 8
    assert main(["pack", str(out), str(tmp_path / "s.store"), *common, "--dtype", "float32"]) == 0
    capsys.readouterr()
    aucs = {}
    for data, extra in ((out, common), (tmp_path / "s.store", [])):
        run = tmp_path / f"run-{data.name}"
        args = ["train", "--data", str(data), *extra, "--model", "nearest-normal", "--out",
                str(run), "--no-plot", "--json"]  # fmt: skip
        assert main(args) == 0
        aucs[data.name] = json.loads(capsys.readouterr().out)["metrics"]["auc"]
        fit = json.loads((run / "fit.json").read_text())
        assert fit["groups"] == ("per statistic" if data == out else "one")
    assert aucs["features"] > 0.9
    # a cell model on the combined features: each cell gathers its 2 rgb and 6 flow numbers
    cells = tmp_path / "run-cells"
    args = ["train", "--data", str(out), *common, "--instances", "cells", "--iterations", "3",
            "--snapshot", "3", "--out", str(cells), "--no-plot", "--json"]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    config = json.loads((cells / "config.json").read_text())
    assert (config["cells"], config["cell_widths"]) == (8, [2, 6])
    # detect re-extracts new video as the training features were: the same grid and flow
    detect = tmp_path / "detect"
    assert main(["detect", str(root / "frames" / "ride2"), "--checkpoint",
                 str(tmp_path / "run-features"), "--out", str(detect), "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["extraction"]["backbones"]["flow"]["grid"] == [2, 4]
    assert report["extraction"]["flow"]["method"] == "farneback"
    assert (detect / "ride2.scores.csv").read_text().count("\n") == 48 + 1
    alerts = (detect / "ride2.alerts.csv").read_text().strip().splitlines()[1:]
    assert alerts and all((detect / f"ride2.alert{n}.jpg").is_file() for n in (1, len(alerts)))
    # the summary names every file written, the heat maps too (detect.json and the text)
    heat_maps = [f"ride2.alert{n}.jpg" for n in range(1, len(alerts) + 1)]
    (video,) = report["videos"]
    assert video["files"] == {"scores": "ride2.scores.csv", "alerts": "ride2.alerts.csv",
                              "plot": "ride2.png", **{f"alert{n}": name for n, name in
                              enumerate(heat_maps, 1)}}  # fmt: skip
    assert json.loads((detect / "detect.json").read_text())["videos"][0]["files"] == video["files"]
    text = tmp_path / "detect-text"
    assert main(["detect", str(root / "frames" / "ride2"), "--checkpoint",
                 str(tmp_path / "run-features"), "--out", str(text)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert all(f"heat map {name}" in printed for name in heat_maps), printed
    # where: the rider's strip (rows 28-38 of 48) is the bottom row of the 2 x 4 grid
    from arnet.detection.detector import load_detector

    detector, _ = load_detector(tmp_path / "run-features", device="cpu")
    video = find_inputs([str(root / "frames" / "ride2")])[0]
    maps = detector.detect(video, 0.5).cell_maps
    assert maps.shape == (3, 2, 4) and (maps >= 0).all()
    assert maps[2, 1].sum() > maps[2, 0].sum()
