import json
import os
import shutil
import signal

import numpy as np
import pytest
import torch
from helpers import tiny_config

from arnet.data.dataset import FeatureDataset
from arnet.data.sampling import BalancedBatchSampler
from arnet.errors import CheckpointError, DataError, TrainingError
from arnet.evaluation.evaluate import evaluate, evaluate_model, predict
from arnet.formats import open_dataset
from arnet.training.checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from arnet.training.trainer import Trainer, train


def _config(tiny_data, **changes):
    return tiny_config(tiny_data, **changes)


@pytest.fixture
def ctrl_c():
    """Ctrl-C as in a terminal: a background or nohup'ed test run starts with SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="module")
def splits(tiny_data):
    return open_dataset(tiny_data, in_memory=True)


def test_learns_the_planted_anomalies(tiny_data, splits, tmp_path):
    # AR-Net's published defaults except the batch (all 12 anomalous training videos) and a
    # higher lr, so a few hundred iterations suffice; seed 3 reaches about 0.91.
    config = _config(tiny_data, iterations=400, snapshot_every=400, lr=1e-3, videos_per_class=12)
    result = train(config, *splits, tmp_path / "run", progress=False)
    assert result.metrics.auc > 0.8
    assert result.iterations == 400


def test_checkpoint_round_trip_gives_identical_scores(tiny_data, splits, tmp_path):
    result = train(_config(tiny_data), *splits, tmp_path / "run", progress=False)
    payload = load_checkpoint(result.checkpoint)
    assert payload["iteration"] == 30 and payload["model"]["name"] == "single"
    model = model_from_checkpoint(payload)
    again = predict(model, splits[1])
    saved = np.load(tmp_path / "run" / "scores.npz")
    for name in splits[1].names:
        np.testing.assert_array_equal(again[name], saved[name])
    assert evaluate(again, splits[1]).auc == pytest.approx(result.metrics.auc)


def test_a_test_run_through_evaluate_model_writes_what_the_snapshot_wrote(
    tiny_data, splits, tmp_path
):
    result = train(_config(tiny_data), *splits, tmp_path / "run", progress=False)
    model = model_from_checkpoint(load_checkpoint(result.checkpoint))
    again = evaluate_model(model, splits[1], out_dir=tmp_path / "again", plot=False, iteration=30)
    assert again.metrics.summary() == result.metrics.summary()
    for file in ("metrics.json", "per_video.csv"):
        assert (tmp_path / "again" / file).read_text() == (tmp_path / "run" / file).read_text()
    saved = np.load(tmp_path / "again" / "scores.npz")
    for name in splits[1].names:
        np.testing.assert_array_equal(again.scores[name], saved[name])
    assert evaluate_model(model, splits[1]).metrics.summary() == again.metrics.summary()
    assert not (tmp_path / "again" / "plots").exists()


def test_resume_after_interruption_matches_uninterrupted_run(
    tiny_data, splits, tmp_path, monkeypatch, ctrl_c
):
    config = _config(tiny_data, iterations=40, snapshot_every=10)
    full = train(config, *splits, tmp_path / "full", progress=False)

    calls = {"n": 0}
    original = BalancedBatchSampler.next_batch

    def ctrl_c_in_step_26(self):  # mid-step, after the sampler has drawn none of step 26 yet
        calls["n"] += 1
        if calls["n"] == 26:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self)

    monkeypatch.setattr(BalancedBatchSampler, "next_batch", ctrl_c_in_step_26)
    with pytest.raises(KeyboardInterrupt):
        train(config, *splits, tmp_path / "cut", progress=False)
    monkeypatch.setattr(BalancedBatchSampler, "next_batch", original)
    assert load_checkpoint(tmp_path / "cut")["iteration"] == 26  # the step ran to its end

    resumed = train(config, *splits, tmp_path / "cut", resume=tmp_path / "cut", progress=False)
    assert resumed.iterations == 40
    a = load_checkpoint(full.checkpoint)["state_dict"]
    b = load_checkpoint(resumed.checkpoint)["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_from_a_snapshot_matches_too(tiny_data, splits, tmp_path):
    config = _config(tiny_data, iterations=20, snapshot_every=10)
    full = train(config, *splits, tmp_path / "full", progress=False)
    shutil.copytree(tmp_path / "full", tmp_path / "part")
    snapshot = tmp_path / "part" / "checkpoints" / "iter_000010.pt"
    resumed = train(config, *splits, tmp_path / "part", resume=snapshot, progress=False)
    a = load_checkpoint(full.checkpoint)["state_dict"]
    b = load_checkpoint(resumed.checkpoint)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_run(tiny_data, splits, tmp_path):
    runs = [
        train(_config(tiny_data, iterations=10), *splits, tmp_path / f"r{i}", progress=False)
        for i in range(2)
    ]
    a, b = (load_checkpoint(r.checkpoint)["state_dict"] for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_run_folder_contents(tiny_data, splits, tmp_path):
    out = tmp_path / "run"
    train(_config(tiny_data, plot=True, keep_checkpoints=2), *splits, out, progress=False)
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "log.jsonl",
        "results.jsonl",
        "metrics.json",
        "per_video.csv",
        "scores.npz",
        "report.html",
        "plots",
        "checkpoints",
    } <= names
    assert len(list((out / "plots").glob("*.png"))) == len(splits[1])
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "iter_000020.pt",
        "iter_000030.pt",
        "last.pt",
    ]
    assert len((out / "results.jsonl").read_text().splitlines()) == 3


def test_the_training_chart_holds_the_last_evaluation(tiny_data, splits, tmp_path):
    """curves.png and the report drawn at the last snapshot: the same chart as one drawn from
    the finished logs (every evaluation in results.jsonl, the last included)."""
    from arnet.evaluation.report import write_html_report

    out = tmp_path / "run"
    result = train(
        _config(tiny_data, iterations=30, snapshot_every=10), *splits, out, progress=False
    )
    assert [r["iteration"] for r in result.history] == [10, 20, 30]
    written = (out / "curves.png").read_bytes(), (out / "report.html").read_text()
    write_html_report(out, result.metrics, 30)  # after training: every point is in the logs
    assert (out / "curves.png").read_bytes() == written[0]
    assert (out / "report.html").read_text() == written[1]


def test_train_off_a_terminal_logs_progress_lines(tiny_data, tmp_path):
    """`arnet train > log 2>&1`: no progress bar there, so plain lines at each snapshot (and
    every 30 s between them) with the iteration, the loss, the speed and the time left."""
    import re
    import subprocess
    import sys

    def train_cli(out, *extra):
        argv = ["train", "--data", str(tiny_data), "--iterations", "30", "--snapshot", "10",
                "--log-every", "5", "--sample_size", "6", "--max-seqlen", "32", "--no-plot",
                "--no-tensorboard", "--device", "cpu", "--out", str(out), *extra]  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "arnet", *argv], capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr
        return done

    done = train_cli(tmp_path / "run")
    pattern = re.compile(
        r"^train single: iteration (\d+)/30 \(\d+%\), loss (\d+\.\d{4}), \d+\.\d it/s, "
        r"ETA \d+:\d\d:\d\d$"
    )
    found = [pattern.match(line) for line in done.stderr.splitlines()]
    shown = [int(m[1]) for m in found if m]
    assert shown[-3:] == [10, 20, 30] and shown == sorted(shown), done.stderr
    assert "\r" not in done.stderr  # no bar redrawn over itself in the log
    logged = {
        r["iteration"]: r["loss"] for r in map(json.loads, (tmp_path / "run" / "log.jsonl").open())
    }
    for m in filter(None, found):  # the loss of the step the line is of
        if int(m[1]) in logged:
            assert float(m[2]) == pytest.approx(logged[int(m[1])], abs=1e-4)
    # --quiet and --json print none (the JSON alone on stdout)
    for flag in ("--quiet", "--json"):
        done = train_cli(tmp_path / flag.strip("-"), flag)
        assert "iteration" not in done.stderr, done.stderr
    assert json.loads(done.stdout)["iterations"] == 30


def test_existing_run_is_not_overwritten(tiny_data, splits, tmp_path):
    train(_config(tiny_data, iterations=10), *splits, tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(TrainingError, match="already holds a run"):
        train(_config(tiny_data, iterations=10), *splits, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes() == before


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.pt", {"format": "x", "value": torch.ones(2)})
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"format": "x", "value": torch.zeros(2)})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left behind


def test_corrupt_and_foreign_checkpoints_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="bad.pt: not a readable checkpoint"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"fc.weight": torch.ones(1)}, foreign)
    with pytest.raises(CheckpointError, match="not an arnet checkpoint"):
        load_checkpoint(foreign)


def test_truncated_checkpoint_is_refused(tiny_data, splits, tmp_path):
    result = train(_config(tiny_data, iterations=10), *splits, tmp_path / "run", progress=False)
    data = result.checkpoint.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt"):
        load_checkpoint(cut)


def test_pretrained_from_a_bare_state_dict(tiny_data, splits, tmp_path):
    first = train(_config(tiny_data, iterations=10), *splits, tmp_path / "a", progress=False)
    state = load_checkpoint(first.checkpoint)["state_dict"]
    torch.save(state, tmp_path / "iter_10.pkl")  # how the reference saves its weights
    trainer = Trainer(
        _config(tiny_data, pretrained=str(tmp_path / "iter_10.pkl")),
        *splits,
        tmp_path / "b",
        progress=False,
    )
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, state[key])
    torch.save({"other.weight": torch.ones(1)}, tmp_path / "wrong.pkl")
    with pytest.raises(CheckpointError, match="missing.*fc.weight"):
        Trainer(_config(tiny_data, pretrained=str(tmp_path / "wrong.pkl")), *splits, tmp_path / "c")


def test_nan_loss_stops_without_touching_saved_work(tiny_data, splits, tmp_path):
    config = _config(tiny_data, iterations=20, snapshot_every=10, log_every=5)
    trainer = Trainer(config, *splits, tmp_path / "run", progress=False)
    original = trainer.objective

    def poisoned(model, batch):
        total, parts = original(model, batch)
        return (total * float("nan") if trainer.iteration >= 12 else total), parts

    trainer.objective = poisoned
    diverged = "(loss became nan at iteration 15|is NaN or Inf after iteration 13)"
    with pytest.raises(TrainingError, match=diverged + ".*last good checkpoint is .*last.pt"):
        trainer.run()
    assert load_checkpoint(tmp_path / "run")["iteration"] == 10


def test_feature_size_mismatch_names_the_file(tiny_data, splits, tmp_path):
    from arnet.errors import DataError

    with pytest.raises(DataError, match="'feature_dim' is 2048.*dimension 64.*feature.npy"):
        Trainer(_config(tiny_data, feature_dim=2048), *splits, tmp_path / "run")


def _ctrl_c_at(iterations, twice=False):
    """A next_batch that presses Ctrl-C (once or twice) when drawing the given step."""
    calls = {"n": 0}
    original = BalancedBatchSampler.next_batch

    def next_batch(self):
        calls["n"] += 1
        if calls["n"] == iterations:
            os.kill(os.getpid(), signal.SIGINT)
            if twice:
                os.kill(os.getpid(), signal.SIGINT)
        return original(self)

    return next_batch


def test_a_second_ctrl_c_stops_mid_step_and_keeps_the_snapshot(
    tiny_data, splits, tmp_path, monkeypatch, ctrl_c
):
    monkeypatch.setattr(BalancedBatchSampler, "next_batch", _ctrl_c_at(15, twice=True))
    with pytest.raises(KeyboardInterrupt):
        train(_config(tiny_data, iterations=30), *splits, tmp_path / "run", progress=False)
    assert load_checkpoint(tmp_path / "run")["iteration"] == 10  # not a half-done step 15
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_ctrl_c_after_divergence_keeps_the_last_good_checkpoint(
    tiny_data, splits, tmp_path, monkeypatch, ctrl_c
):
    trainer = Trainer(
        _config(tiny_data, iterations=30, log_every=30), *splits, tmp_path / "run", progress=False
    )
    original = trainer.objective

    def poisoned(model, batch):
        total, parts = original(model, batch)
        return (total * float("nan") if trainer.iteration >= 12 else total), parts

    trainer.objective = poisoned
    monkeypatch.setattr(BalancedBatchSampler, "next_batch", _ctrl_c_at(15))
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    payload = load_checkpoint(tmp_path / "run")
    assert payload["iteration"] == 10
    assert all(torch.isfinite(t).all() for t in payload["state_dict"].values())


def test_a_failed_evaluation_keeps_the_training(tiny_data, splits, tmp_path, monkeypatch):
    import arnet.evaluation.evaluate

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(arnet.evaluation.evaluate, "predict", broken)
    with pytest.raises(OSError, match="disk full"):
        train(_config(tiny_data, iterations=10), *splits, tmp_path / "run", progress=False)
    assert load_checkpoint(tmp_path / "run")["iteration"] == 10


def test_weights_of_another_shape_and_test_features_of_another_size_are_named(
    tiny_data, splits, tmp_path
):
    first = train(_config(tiny_data, iterations=10), *splits, tmp_path / "a", progress=False)
    state = load_checkpoint(first.checkpoint)["state_dict"]
    state["fc.weight"] = state["fc.weight"][:, :8]
    torch.save(state, tmp_path / "narrow.pt")
    with pytest.raises(CheckpointError, match="narrow.pt: weights do not fit model 'single'"):
        Trainer(_config(tiny_data, pretrained=str(tmp_path / "narrow.pt")), *splits, tmp_path / "b")
    train_set, test_set = splits
    narrow = FeatureDataset(
        test_set.names,
        test_set.labels,
        [np.asarray(test_set.features(i))[:, :8] for i in range(len(test_set))],
        test_set.frame_labels,
        sources=test_set.sources,
    )
    with pytest.raises(
        DataError, match="test features have 8 dimensions, the training features 64"
    ):
        Trainer(_config(tiny_data), train_set, narrow, tmp_path / "c")


def test_an_ignored_sigint_stays_ignored(tiny_data, splits, tmp_path, monkeypatch):
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under nohup
    monkeypatch.setattr(BalancedBatchSampler, "next_batch", _ctrl_c_at(3))
    try:
        result = train(_config(tiny_data, iterations=6), *splits, tmp_path / "r", progress=False)
        assert result.iterations == 6
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
