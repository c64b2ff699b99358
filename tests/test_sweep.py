"""`arnet train --seeds`: one run per seed, and the spread of every metric over them."""

from __future__ import annotations

import json
import statistics

import pytest

from arnet.cli import main
from arnet.training.sweep import parse_seeds, spread


def test_seed_lists_and_spread_by_hand():
    assert parse_seeds("1,2,3") == [1, 2, 3]
    assert parse_seeds("1-3,7") == [1, 2, 3, 7]
    for bad in ("", "a", "1,1", "-1", "3-1x"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)
    assert len(parse_seeds("1-1000")) == 1000
    for huge in ("1-10000000000", "0-999,1000", "5,1-1000"):  # counted, never listed
        with pytest.raises(ValueError, match=f"--seeds {huge}: more than 1000 runs"):
            parse_seeds(huge)
    s = spread([0.5, 0.7, None, float("nan"), 0.9])
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.7) and s["min"] == 0.5
    assert s["std"] == pytest.approx(statistics.stdev([0.5, 0.7, 0.9]))
    assert spread([None])["mean"] is None


def test_an_impossible_seed_range_is_one_line(tiny_data, tmp_path, capsys):
    argv = ["train", "--data", str(tiny_data), "--seeds", "1-10000000000", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        "arnet train: error: --seeds 1-10000000000: more than 1000 runs; one sweep trains at "
        "most 1000"
    ]


def test_train_seeds_writes_each_run_and_their_spread(tiny_data, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["train", "--data", str(tiny_data), "--iterations", "20", "--no-plot", "--out",
            str(out), "--seeds", "1,2,3"]  # fmt: skip
    assert main([*args, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    summary = json.loads((out / "seeds.json").read_text())
    assert printed["seeds"] == summary["seeds"] == [1, 2, 3]
    aucs = []
    for seed, run in zip((1, 2, 3), summary["runs"]):
        assert run["seed"] == seed and run["snapshot_iteration"] == 20
        config = json.loads((out / f"seed-{seed}" / "config.json").read_text())
        assert config["seed"] == seed
        metrics = json.loads((out / f"seed-{seed}" / "metrics.json").read_text())
        assert run["metrics"]["auc"] == pytest.approx(metrics["auc"])
        aucs.append(metrics["auc"])
    assert len(set(aucs)) > 1  # the seeds differ
    assert summary["metrics"]["auc"]["mean"] == pytest.approx(statistics.fmean(aucs))
    assert summary["metrics"]["auc"]["std"] == pytest.approx(statistics.stdev(aucs))
    assert main(args) == 2  # the runs are kept, never overwritten
    assert "seed-1" in capsys.readouterr().err


def test_seeds_with_val_fraction_report_each_selected_snapshot(tiny_data, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["train", "--data", str(tiny_data), "--iterations", "20", "--snapshot-every", "10",
            "--no-plot", "--out", str(out), "--seeds", "1,2", "--val-fraction", "0.3"]  # fmt: skip
    assert main(args) == 0
    assert "snapshots at iterations" in capsys.readouterr().out
    summary = json.loads((out / "seeds.json").read_text())
    assert "held-out" in summary["snapshot"]
    splits = []
    for seed, run in zip((1, 2), summary["runs"]):
        selected = json.loads((out / f"seed-{seed}" / "selected.json").read_text())
        assert run["snapshot_iteration"] == selected["iteration"] == run["validation"]["iteration"]
        assert run["selected_by"].startswith("selected on held-out")
        assert run["checkpoint"].endswith("selected.pt")
        metrics = json.loads((out / f"seed-{seed}" / "metrics.json").read_text())
        assert metrics["iteration"] == selected["iteration"]
        assert run["metrics"]["auc"] == pytest.approx(metrics["auc"])
        held = json.loads((out / f"seed-{seed}" / "validation.json").read_text())
        splits.append([v["name"] for v in held["held_out"]])
    assert splits[0] != splits[1]  # each seed draws its own held-out videos
    aucs = [r["validation"]["video_auc"] for r in summary["runs"]]
    assert summary["validation"]["video_auc"]["mean"] == pytest.approx(statistics.fmean(aucs))
    assert summary["validation"]["iteration"]["n"] == 2
