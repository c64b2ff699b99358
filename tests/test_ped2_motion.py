"""The recommended recipe on a slice of real video (UCSD Ped2): motion-grid features and the
nearest-normal detector beat the naive weak-label classifier on the same features.

Needs the data folder (ARNET_PED2, default ../shared/data/ucsd-ped2 beside the repository);
skipped without it. Small frames (short side 60) keep it to seconds.
"""

from __future__ import annotations

import json

import pytest
from test_ped2 import ped2_or_skip

TRAIN = ["Test002", "Test012", "Train007", "Train008", "Train014"]  # 2 anomalous + 3 normal
TEST = ["Test001", "Test004", "Train001", "Train002"]  # anomalies start in mid-video


def test_a_ped2_slice_motion_grid_nearest_normal_beats_naive(tmp_path, capsys):
    root = ped2_or_skip()
    pytest.importorskip("cv2", reason="the extract extra (OpenCV) is not installed")
    from arnet.cli import main

    (tmp_path / "train.txt").write_text("\n".join(TRAIN) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(TEST) + "\n")
    data = tmp_path / "data"
    frames = [str(root / "frames" / n) for n in TRAIN + TEST]
    assert main(["extract", *frames, "--out", str(data), "--backbone", "motion-grid",
                 "--modal", "flow", "--flow", "farneback", "--grid", "4x6", "--short-side", "60",
                 "--crop", "full", "--labels", str(root / "labels.json"), "--train-split",
                 str(tmp_path / "train.txt"), "--test-split", str(tmp_path / "test.txt"),
                 "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    common = ["--data", str(data), "--feature-backbone", "motion-grid", "--feature-modal", "flow",
              "--no-plot", "--no-tensorboard", "--json"]  # fmt: skip
    assert main(["train", *common, "--model", "nearest-normal", "--out", str(tmp_path / "nn")]) == 0
    nearest = json.loads(capsys.readouterr().out)["metrics"]
    naive = ["--topk-divisor", "1", "--center-weight", "0"]  # NAIVE_BASELINE
    assert main(["train", *common, *naive, "--iterations", "60", "--seed", "1", "--out",
                 str(tmp_path / "naive")]) == 0  # fmt: skip
    baseline = json.loads(capsys.readouterr().out)["metrics"]
    assert nearest["auc"] > 0.9 and nearest["auc"] > baseline["auc"] + 0.02
    assert nearest["far_normal"] <= baseline["far_normal"]
