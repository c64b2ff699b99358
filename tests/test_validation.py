"""`arnet train --val-fraction`: held-out training videos choose the snapshot and the threshold."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from helpers import tiny_config

import arnet.training.validation as validation_module
from arnet.cli import main
from arnet.config import TrainConfig
from arnet.data.dataset import FeatureDataset
from arnet.errors import DataError, TrainingError
from arnet.evaluation.evaluate import predict
from arnet.evaluation.metrics import calibrate_threshold, expand_to_frames
from arnet.formats import open_dataset
from arnet.formats.synth import SynthConfig, write_synthetic
from arnet.models import list_models
from arnet.training.checkpoint import checkpoint_threshold, load_checkpoint, model_from_checkpoint
from arnet.training.trainer import Trainer, train
from arnet.training.validation import Validation, split_held_out


def _config(tiny_data, **changes):
    return tiny_config(tiny_data, **{"val_fraction": 0.3, **changes})


@pytest.fixture(scope="module")
def splits(tiny_data):
    return open_dataset(tiny_data, in_memory=True)


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _toy(names, labels, frame_labels=None):
    rng = np.random.default_rng(0)
    features = [rng.normal(size=(4, 8)).astype(np.float32) for _ in names]
    return FeatureDataset(names, labels, features, frame_labels)


# ---------------------------------------------------------------------- the split


def test_the_split_is_stratified_seeded_and_from_the_training_videos_only(tiny_data, splits):
    train_set, test_set = splits
    config = _config(tiny_data)
    held = Validation(train_set, config, test_set)
    names = held.held_out.names
    assert set(names) <= set(train_set.names) and not set(names) & set(test_set.names)
    labels = held.held_out.labels.tolist()
    # 12 anomalous and 28 normal training videos: round(0.3 x each) of each class
    assert labels.count(1) == 4 and labels.count(0) == 8
    assert sorted(held.train_set.names + names) == sorted(train_set.names)
    assert not set(held.train_set.names) & set(names)
    assert all(f is None for f in held.held_out.frame_labels)  # video labels only
    assert Validation(train_set, config, test_set).held_out.names == names  # same seed
    other = Validation(train_set, dataclasses.replace(config, seed=4), test_set)
    assert other.held_out.names != names
    # the same videos whatever order the dataset lists them in
    order = np.random.default_rng(1).permutation(len(train_set))
    shuffled = Validation(train_set.subset(order), config, test_set).held_out.names
    assert sorted(shuffled) == sorted(names)


def test_a_video_of_the_test_split_is_never_held_out():
    names = ["a0", "a1", "a2", "a3", "n0", "n1", "n2", "n3"]
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    exclude = ["a0", "a1", "n0", "n1"]
    for seed in range(20):
        held = split_held_out(names, labels, 0.9, seed, exclude)
        assert not {names[i] for i in held} & set(exclude)
        assert sorted(labels[i] for i in held) == [0, 1]  # all but one of a2/a3, n2/n3
    with pytest.raises(DataError, match=r"--val-fraction 0.5 .*1 anomalous .*outside the test"):
        split_held_out(names, labels, 0.5, 1, ["a0", "a1", "a2"])


def test_at_least_one_of_each_class_is_held_out_and_left_to_train():
    labels = [1, 1] + [0] * 30
    names = [f"v{i:02d}" for i in range(len(labels))]
    held = [labels[i] for i in split_held_out(names, labels, 0.01, 1)]
    assert held == [1, 0]  # one of each, though 1% of 2 rounds to none
    held = [labels[i] for i in split_held_out(names, labels, 0.99, 1)]
    assert held.count(1) == 1 and held.count(0) == 29  # one of each left to train on
    with pytest.raises(DataError, match="--val-fraction 0.3 .* 1 anomalous and 30 normal"):
        split_held_out(names[1:], labels[1:], 0.3, 1)


def test_frame_labels_of_training_videos_play_no_part(tiny_data):
    names = [f"a{i}" for i in range(4)] + [f"n{i}" for i in range(6)]
    labels = [1] * 4 + [0] * 6
    plain = _toy(names, labels)
    noisy = _toy(names, labels, [np.ones(64, np.uint8)] * len(names))  # nonsense frame labels
    config = _config(tiny_data)
    model = _Scorer()
    rows = [Validation(d, config, None).score(model, "cpu", 10) for d in (plain, noisy)]
    assert rows[0] == rows[1]


class _Scorer(torch.nn.Module):
    """A fixed scorer: the sigmoid of each segment's first feature."""

    def forward(self, features, mask=None):
        return torch.sigmoid(features[..., 0])


# ---------------------------------------------------------------------- the figures


def test_the_rows_figures_follow_from_the_held_out_scores(tiny_data, splits):
    held = Validation(splits[0], _config(tiny_data), splits[1])
    model = _Scorer()
    row = held.score(model, "cpu", 7)
    scores = predict(model, held.held_out)
    labels = held.held_out.labels
    peaks = np.array([scores[n].max() for n in held.held_out.names])
    from sklearn.metrics import roc_auc_score

    assert row["iteration"] == 7
    assert row["video_auc"] == pytest.approx(roc_auc_score(labels, peaks))
    normal = [
        expand_to_frames(scores[n].astype(np.float64))
        for n, y in zip(held.held_out.names, labels)
        if y == 0
    ]
    assert row["threshold"] == calibrate_threshold(normal, 0.05)
    frames = np.concatenate(normal)
    assert row["false_alarm_rate"] == np.mean(frames >= row["threshold"]) <= 0.05
    assert row["anomalous_alerted"] == np.mean(peaks[labels == 1] >= row["threshold"])


# ---------------------------------------------------------------------- selection


def _scripted_auc(monkeypatch, values):
    """Make the held-out video AUC of successive snapshots `values` (the rest is real)."""
    calls = iter(values)
    monkeypatch.setattr(validation_module, "video_auc", lambda peaks, labels: next(calls))


def test_the_selected_snapshot_is_the_best_held_out_auc_not_the_last(
    tiny_data, splits, tmp_path, monkeypatch
):
    _scripted_auc(monkeypatch, [0.6, 0.9, 0.7])
    out = tmp_path / "run"
    result = train(_config(tiny_data, keep_checkpoints=1), *splits, out, progress=False)
    rows = _lines(out / "validation.jsonl")
    assert [r["iteration"] for r in rows] == [10, 20, 30]
    assert [r["video_auc"] for r in rows] == [0.6, 0.9, 0.7]
    selected = json.loads((out / "selected.json").read_text())
    assert selected["iteration"] == 20 == result.snapshot and result.iterations == 30
    assert selected["threshold"] == rows[1]["threshold"] == result.validation["threshold"]
    # its weights are kept (iter_000020.pt was pruned) and are the ones of iteration 20
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "iter_000030.pt",
        "last.pt",
        "selected.pt",
    ]
    payload = load_checkpoint(out)
    assert payload["path"].endswith("selected.pt") and payload["iteration"] == 20
    assert (
        payload["validation"] == rows[1] and checkpoint_threshold(payload) == rows[1]["threshold"]
    )
    assert result.checkpoint == out / "checkpoints" / "selected.pt"
    # the reported test figures are the selected snapshot's, at its threshold
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["iteration"] == 20 and metrics["snapshot"].startswith("selected")
    tested = _lines(out / "results.jsonl")
    assert [r["iteration"] for r in tested] == [10, 20, 30]
    assert metrics["auc"] == pytest.approx(tested[1]["auc"]) == pytest.approx(result.metrics.auc)
    assert metrics["threshold"] == rows[1]["threshold"]
    scores = np.load(out / "scores.npz")
    again = predict(model_from_checkpoint(payload), splits[1])
    for name in splits[1].names:
        np.testing.assert_array_equal(again[name], scores[name])
    # each snapshot's checkpoint carries its own threshold; a run resumes from last.pt
    assert load_checkpoint(out / "checkpoints" / "iter_000030.pt")["validation"] == rows[2]
    assert load_checkpoint(out, resume=True)["path"].endswith("last.pt")


def test_of_equal_held_out_aucs_the_later_snapshot_is_selected(
    tiny_data, splits, tmp_path, monkeypatch
):
    _scripted_auc(monkeypatch, [0.8, 0.8, 0.5])
    result = train(_config(tiny_data), *splits, tmp_path / "run", progress=False)
    assert result.snapshot == 20
    assert json.loads((tmp_path / "run" / "selected.json").read_text())["iteration"] == 20


def test_the_threshold_is_chosen_on_held_out_videos_only(tiny_data, splits, tmp_path):
    train_set, test_set = splits
    a = train(_config(tiny_data), train_set, test_set, tmp_path / "a", progress=False)
    # the test split's labels turned upside down: video labels and frame labels
    flipped = FeatureDataset(
        test_set.names,
        1 - test_set.labels,
        [test_set.features(i) for i in range(len(test_set))],
        [1 - f for f in test_set.frame_labels],
        test_set.sources,
    )
    b = train(_config(tiny_data), train_set, flipped, tmp_path / "b", progress=False)
    assert a.metrics.auc != pytest.approx(b.metrics.auc)  # the test figures did change
    assert (tmp_path / "a" / "validation.jsonl").read_text() == (
        tmp_path / "b" / "validation.jsonl"
    ).read_text()
    assert a.validation == b.validation and a.snapshot == b.snapshot
    # and the threshold is the held-out normal videos' own
    payload = load_checkpoint(tmp_path / "a")
    held = Validation(train_set, _config(tiny_data), test_set)
    scores = predict(model_from_checkpoint(payload), held.held_out)
    normal = [
        expand_to_frames(scores[n].astype(np.float64))
        for n, y in zip(held.held_out.names, held.held_out.labels)
        if y == 0
    ]
    assert payload["validation"]["threshold"] == min(calibrate_threshold(normal, 0.05), 1.0)


def test_without_val_fraction_nothing_changes(tiny_data, splits, tmp_path):
    result = train(_config(tiny_data, val_fraction=0.0), *splits, tmp_path / "r", progress=False)
    assert result.snapshot == 30 and result.validation is None
    assert result.checkpoint.name == "last.pt"
    names = {p.name for p in (tmp_path / "r").iterdir()}
    assert not names & {"validation.json", "validation.jsonl", "selected.json"}
    assert "snapshot" not in json.loads((tmp_path / "r" / "metrics.json").read_text())
    payload = load_checkpoint(tmp_path / "r")
    assert "validation" not in payload and checkpoint_threshold(payload) == 0.5


# ---------------------------------------------------------------------- resume


def test_a_resumed_run_keeps_its_split_and_its_choice(tiny_data, splits, tmp_path, monkeypatch):
    config = _config(tiny_data)
    full = train(config, *splits, tmp_path / "full", progress=False)
    shutil.copytree(tmp_path / "full", tmp_path / "part")
    snapshot = tmp_path / "part" / "checkpoints" / "iter_000010.pt"
    resumed = train(config, *splits, tmp_path / "part", resume=snapshot, progress=False)
    for name in ("validation.json", "validation.jsonl", "metrics.json"):
        assert (tmp_path / "full" / name).read_text() == (tmp_path / "part" / name).read_text()
    assert resumed.validation == full.validation and resumed.snapshot == full.snapshot
    a, b = (load_checkpoint(r.out_dir) for r in (full, resumed))
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])

    # continued elsewhere as a copy: the choice so far comes with the checkpoint
    _scripted_auc(monkeypatch, [0.1])  # the one snapshot after the resume is worse
    last = tmp_path / "full" / "checkpoints" / "iter_000020.pt"
    copy = train(
        dataclasses.replace(config, iterations=30),
        *splits,
        tmp_path / "copy",
        resume=last,
        progress=False,
    )
    chosen = load_checkpoint(last)["selected"]["best"]["iteration"]
    assert copy.snapshot == chosen
    assert load_checkpoint(tmp_path / "copy")["iteration"] == chosen
    assert json.loads((tmp_path / "copy" / "metrics.json").read_text())["iteration"] == chosen

    # other training data would hold out other videos: refused
    dropped = json.loads((tmp_path / "full" / "validation.json").read_text())["held_out"][0]
    other = splits[0].subset([i for i, n in enumerate(splits[0].names) if n != dropped["name"]])
    with pytest.raises(TrainingError, match="--val-fraction"):
        train(config, other, splits[1], tmp_path / "x", resume=snapshot, progress=False)


# ---------------------------------------------------------------------- every model


@pytest.mark.parametrize("name", [e.name for e in list_models()])
def test_every_model_trains_with_held_out_videos(name, tiny_data, splits, tmp_path):
    config = _config(tiny_data, model=name, iterations=4, snapshot_every=2)
    result = Trainer(config, *splits, tmp_path / "run", progress=False).run()
    selected = json.loads((tmp_path / "run" / "selected.json").read_text())
    rows = _lines(tmp_path / "run" / "validation.jsonl")
    assert selected["iteration"] == result.snapshot and result.validation is not None
    assert 0.0 <= selected["threshold"] <= 1.0
    payload = load_checkpoint(tmp_path / "run")
    assert payload["validation"]["threshold"] == selected["threshold"]
    if name == "nearest-normal":  # fitted once, without the held-out videos
        assert [r["iteration"] for r in rows] == [0]
        fit = json.loads((tmp_path / "run" / "fit.json").read_text())
        held = json.loads((tmp_path / "run" / "validation.json").read_text())
        assert fit["normal_videos"] == 28 - held["held_out_normal"]
        assert payload["path"].endswith("last.pt")
    else:
        assert [r["iteration"] for r in rows] == [2, 4]


# ---------------------------------------------------------------------- command line


def test_cli_train_and_test_with_val_fraction(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", str(tiny_data), "--iterations", "20", "--snapshot-every", "10",
            "--sample_size", "6", "--max-seqlen", "32", "--no-plot", "--no-tensorboard",
            "--device", "cpu", "--seed", "3"]  # fmt: skip
    assert main([*args, "--val-fraction", "0.3", "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for name in ("validation.json", "validation.jsonl", "selected.json", "metrics.json"):
        assert (out / name).is_file(), name
    assert (out / "checkpoints" / "selected.pt").is_file()
    selected = json.loads((out / "selected.json").read_text())
    assert printed["snapshot_iteration"] == selected["iteration"]
    assert printed["checkpoint"].endswith("selected.pt")
    held = json.loads((out / "validation.json").read_text())
    assert held["fraction"] == 0.3 and held["held_out_anomalous"] == 4
    assert main(["test", "--checkpoint", str(out), "--no-plot", "--json"]) == 0
    tested = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert tested["checkpoint"].endswith("selected.pt")
    assert tested["metrics"]["threshold"] == selected["threshold"]
    assert tested["metrics"]["auc"] == pytest.approx(selected["test_metrics"]["auc"])
    assert (
        main(["test", "--checkpoint", str(out), "--no-plot", "--json", "--threshold", "0.3"]) == 0
    )
    assert json.loads(capsys.readouterr().out.strip())["metrics"]["threshold"] == 0.3
    # --resume may not change it
    assert main(["train", "--resume", str(out), "--val-fraction", "0.2"]) == 2
    assert "val_fraction" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-0.1", "1.0", "nan"])
def test_cli_refuses_a_fraction_outside_0_to_1(value, tiny_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", str(tiny_data), "--val-fraction", value, "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "--val-fraction" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--val-fraction"):
        TrainConfig(val_fraction=float(value)).validate()


def test_cli_refuses_too_few_training_videos_and_a_threshold_too(tmp_path, tiny_data, capsys):
    small = SynthConfig(train_videos=6, train_anomalous=1, test_videos=4, test_anomalous=1, dim=8,
                        min_segments=4, max_segments=8, seed=1)  # fmt: skip
    data = write_synthetic(tmp_path / "small", small)
    args = ["train", "--data", str(data), "--iterations", "2", "--device", "cpu", "--no-plot"]
    assert main([*args, "--val-fraction", "0.3", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "--val-fraction" in err and "1 anomalous" in err
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
    big = ["train", "--data", str(tiny_data), "--val-fraction", "0.3", "--threshold", "0.4"]
    assert main([*big, "--out", str(tmp_path / "b")]) == 2
    assert "--val-fraction" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["nearest-normal", "single"])
@pytest.mark.parametrize("seeds", [[], ["--seeds", "1,2"]])
def test_a_refused_val_fraction_leaves_no_run_folder(model, seeds, tmp_path, capsys, monkeypatch):
    small = SynthConfig(train_videos=6, train_anomalous=1, test_videos=4, test_anomalous=1, dim=8,
                        min_segments=4, max_segments=8, seed=1)  # fmt: skip
    data = write_synthetic(tmp_path / "small", small)
    monkeypatch.chdir(tmp_path)  # the default run folder: runs/MODEL-TIMESTAMP
    argv = ["train", "--data", str(data), "--model", model, "--val-fraction", "0.3", *seeds]
    for _ in range(2):  # the retry is refused the same way, and leaves nothing either
        assert main([*argv, "--iterations", "2", "--no-plot", "--quiet"]) == 2
        assert "--val-fraction" in capsys.readouterr().err
        assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())
