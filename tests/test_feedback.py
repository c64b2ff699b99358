"""Operator feedback: verdicts in a real SQLite store, detector versions in a run folder, a
nearest-normal watcher that stops alerting on what an operator called a false alarm (without a
restart), undo, opposite verdicts, a verdict on another detector's alert, a store of an earlier
revision; and the small things: a frame folder that stops growing, a camera list edited while
watching (SIGHUP to a real `arnet watch` process). No test measures time."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("cv2")
pytest.importorskip("sqlalchemy")

from livekit import footage, make_grid_checkpoint, wait_for  # noqa: E402

from arnet.cli import main  # noqa: E402
from arnet.store import open_store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PATTERN = "....XX...."


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A nearest-normal run folder on motion-grid features (livekit.make_grid_checkpoint)."""
    return make_grid_checkpoint(tmp_path_factory.mktemp("grid"))


@pytest.fixture()
def run(grid_run: Path, tmp_path: Path) -> Path:
    """A fresh copy of the run (versions are written into it)."""
    copy = tmp_path / "run"
    shutil.copytree(grid_run, copy)
    return copy.resolve()


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers import write_video

    return write_video(tmp_path_factory.mktemp("v") / "yard.mp4", footage(PATTERN, seed=3), fps=25)


def _watch(run: Path, store, sources: list[str], learn: bool = True, **options):  # noqa: ANN001, ANN202
    """A watcher of `run` as `arnet watch --checkpoint RUN` makes it (with its feedback)."""
    from arnet.detection.detector import load_detector
    from arnet.live.feedback import LiveFeedback
    from arnet.live.scorer import SegmentScorer
    from arnet.live.sources import parse_sources
    from arnet.live.tracker import Thresholds
    from arnet.live.watch import Watcher, WatchOptions

    detector, _ = load_detector(run, device="cpu")
    lines: list[str] = []
    feedback = LiveFeedback(detector.model, run, store, learn, lines.append)
    t = Thresholds(detector.threshold, detector.threshold)
    watcher = Watcher(
        SegmentScorer(detector),
        store,
        parse_sources(sources, idle_stop=options.pop("idle_stop", None)),
        t,
        WatchOptions(quiet=True, **options),
        feedback=feedback,
    )
    watcher.lines = lines
    return watcher


def _replay(watcher) -> None:  # noqa: ANN001
    watcher.start()
    watcher.run()


def _one_line(capsys) -> str:  # noqa: ANN001
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_a_false_alarm_teaches_the_watcher_and_undo_takes_it_back(
    run: Path,
    video: Path,
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    from arnet.training import feedback as versions

    db = tmp_path / "e.db"
    with open_store(db) as store:
        first = _watch(run, store, [f"day1={video}"])
        _replay(first)
        (alert,) = store.alerts(camera="day1")[0]
        assert alert["detector"] == {"run": str(run), "version": 0}
        stored = store.alert_features(alert["id"])
        assert stored.shape[0] == alert["end_segment"] - alert["start_segment"] + 1
        assert stored.shape[1] == first.scorer.detector.model.bank.shape[1]
    # the operator's verdict, naming the detector they judge
    assert main(["alerts", "--db", str(db), "--verdict", str(alert["id"]), "false-alarm",
                 "--run", str(run), "--by", "ana", "--note", "a shadow"]) == 0  # fmt: skip
    assert capsys.readouterr().out.startswith(f"alert {alert['id']}: false-alarm (scored by ")
    with open_store(db) as store:
        second = _watch(run, store, [f"day2={video}"])
        assert second.feedback.version == 0
        second.feedback.poll(force=True)  # what the running watcher does every 2 s
        assert second.feedback.version == 1 and versions.current_version(run) == 1
        assert "feedback: version 1" in second.lines[0]
        _replay(second)
        assert store.alerts(camera="day2")[1] == 0  # the same footage: no longer an alert
    # `detect` scores with the version in use too, and says which
    capsys.readouterr()
    assert main(["detect", str(video), "--checkpoint", str(run), "--out", str(tmp_path / "d1"),
                 "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["version"] == 1 and report["videos"][0]["alerts"] == []
    with open_store(db) as store:
        record = versions.version_record(run, 1)
        assert record["normal_alerts"] == [alert["id"]] and record["parent"] == 0
        assert record["verdicts"][0]["by"] == "ana"
    # undo: back to version 0; the watcher follows the pointer without a restart
    assert main(["feedback", "undo", str(run)]) == 0
    assert "version 0 in use (was 1" in capsys.readouterr().out
    with open_store(db) as store:
        third = _watch(run, store, [f"day3={video}"])
        third.feedback.poll(force=True)  # the undone verdict is not applied again
        assert third.feedback.version == 0
        _replay(third)
        (again,) = store.alerts(camera="day3")[0]
        assert again["detector"]["version"] == 0
    capsys.readouterr()
    assert main(["detect", str(video), "--checkpoint", str(run), "--out", str(tmp_path / "d0"),
                 "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["version"] == 0 and len(report["videos"][0]["alerts"]) == 1
    with open_store(db) as store:
        second.feedback.poll(force=True)  # a watcher at version 1 follows the undo too
        assert second.feedback.version == 0
        assert second.lines[-1].endswith(f"now scoring with {run}")
        # and redo: nothing was deleted
        assert main(["feedback", "use", str(run), "1"]) == 0
        assert "version 1 in use (was 0)" in capsys.readouterr().out
        second.feedback.poll(force=True)
        assert second.feedback.version == 1
    assert main(["feedback", "list", str(run), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(v["version"], v["current"]) for v in listed] == [(0, False), (1, True)]
    assert main(["feedback", "use", str(run), "7"]) == 2
    assert "no version 7" in _one_line(capsys)
    assert main(["feedback", "undo", str(tmp_path)]) == 2
    assert "not a run folder" in _one_line(capsys)


def test_opposite_verdicts_latest_wins_and_both_are_kept(
    run: Path,
    video: Path,
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    from arnet.detection.detector import load_detector
    from arnet.live.feedback import apply_verdicts
    from arnet.training import feedback as versions

    db = tmp_path / "e.db"
    with open_store(db) as store:
        _replay(_watch(run, store, [f"gate={video}"], learn=False))
        (alert,) = store.alerts(camera="gate")[0]
        model = load_detector(run, device="cpu")[0].model
        a = store.add_verdict(alert["id"], "false-alarm", by="ana")
        assert a["replaces"] is None
        assert apply_verdicts(run, store, model)["normal_alerts"] == [alert["id"]]
        b = store.add_verdict(alert["id"], "real", by="li", note="a cart")
        assert b["replaces"] == "false-alarm"
        made = apply_verdicts(run, store, model)
        # the latest verdict counts: out of the normal examples, in the real ones
        assert made["version"] == 2 and made["parent"] == 1
        assert made["normal_alerts"] == [] and made["anomalous_alerts"] == [alert["id"]]
        assert apply_verdicts(run, store, model) is None  # nothing new
        full = store.alert(alert["id"])
        assert full["verdict"] == "real"
        assert [(v["verdict"], v["by"]) for v in full["verdicts"]] == [
            ("false-alarm", "ana"),
            ("real", "li"),
        ]
        kept = versions.examples(run, 2)
        assert len(kept.anomalous) == len(store.alert_features(alert["id"]))
    assert main(["alerts", "--db", str(db), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["alerts"]
    assert row["verdict"] == "real" and [v["by"] for v in row["verdicts"]] == ["ana", "li"]
    assert row["detector_run"] == str(run) and row["detector_version"] == 0


def test_a_normal_example_never_hides_a_real_one(run: Path) -> None:
    from arnet.detection.detector import load_detector
    from arnet.training import feedback as versions

    model = load_detector(run, device="cpu")[0].model
    rng = np.random.default_rng(0)
    real = model.bank[:3].numpy() + 50.0 * model.scale.numpy()  # far from normal footage
    near = real + 1e-3  # an operator's false alarm that looks just like the real ones
    far = model.bank[3:5].numpy() + rng.normal(0, 1e-3, size=(2, model.bank.shape[1]))
    keep = versions.guard(model, np.concatenate([near, far]).astype(np.float32), real)
    assert keep.tolist() == [False, False, False, True, True]


def test_a_verdict_on_another_detectors_alert_is_refused(
    run: Path,
    video: Path,
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    db = tmp_path / "e.db"
    with open_store(db) as store:
        _replay(_watch(run, store, [f"gate={video}"], learn=False))
        (alert,) = store.alerts(camera="gate")[0]
    other = tmp_path / "other"
    (other / "checkpoints").mkdir(parents=True)
    args = ["alerts", "--db", str(db), "--verdict", str(alert["id"]), "false-alarm"]
    assert main([*args, "--run", str(other)]) == 2
    line = _one_line(capsys)
    assert f"alert {alert['id']} was scored by {run}, not {other}" in line
    assert main([*args, "--run", f"{run}@3"]) == 2
    assert f"was scored by {run}, not {run}@3" in _one_line(capsys)
    assert main([*args[:-1], "maybe"]) == 2
    assert "a verdict is false-alarm or real" in _one_line(capsys)
    assert main([*args[:-2], "999", "real"]) == 2
    assert "--verdict 999: no such alert" in _one_line(capsys)
    with open_store(db, "read") as store:
        assert store.verdicts([alert["id"]])[alert["id"]] == []  # nothing was recorded
    assert main([*args, "--run", f"{run}@0"]) == 0  # the right detector, version given


def test_a_store_of_an_earlier_revision_takes_no_verdict(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from alembic import command

    from arnet.store.engine import _script, create_engine, make_url

    db = tmp_path / "old.db"
    engine = create_engine(make_url(db))
    config, _ = _script()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
    engine.dispose()
    assert main(["alerts", "--db", str(db)]) == 0  # read as it is
    capsys.readouterr()
    assert main(["alerts", "--db", str(db), "--verdict", "1", "real"]) == 2
    assert "predates verdicts" in _one_line(capsys)


def test_a_frame_folder_that_stops_growing_ends(run: Path, tmp_path: Path) -> None:
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, image in enumerate(footage("...", seed=1)):
        cv2.imwrite(str(folder / f"{i:04d}.png"), image[:, :, ::-1])
    with open_store(tmp_path / "e.db") as store:
        watcher = _watch(run, store, [f"door={folder}"], idle_stop=1.0)
        _replay(watcher)  # returns by itself: the folder got no new frame for 1 s
        camera = store.camera("door")
        assert camera["next_frame"] == 48 and camera["state"] == "stopped"
        assert "--idle-stop" in camera["state_detail"]


def _wait_line(process: subprocess.Popen, lines: list[str], text: str) -> None:
    assert wait_for(lambda: any(text in line for line in lines), timeout=300), (text, lines)


def test_a_camera_list_edited_while_watching_is_reread_on_sighup(
    run: Path, video: Path, tmp_path: Path
) -> None:
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "0000.png"), footage(".", seed=1)[0])
    cameras = tmp_path / "cameras.txt"
    cameras.write_text(f"hall={folder}\n")
    db = tmp_path / "e.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "arnet", "watch", "--checkpoint", str(run), "--db", str(db)]
    clips = tmp_path / "clips"
    process = subprocess.Popen(
        [
            *command,
            "--cameras",
            str(cameras),
            "--clips",
            str(clips),
            "--clip-before",
            "1s",
            "--clip-after",
            "1s",
            "--keep-days",
            "30",
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        _wait_line(process, lines, "hall: streaming")
        cameras.write_text(f"# the yard too\nhall={folder}\nyard={video}\n")
        process.send_signal(signal.SIGHUP)
        _wait_line(process, lines, f"yard: added from the camera list ({video})")
        with open_store(db, "read") as store:
            assert wait_for(lambda: store.alerts(camera="yard")[1] == 1, timeout=120)
        cameras.write_text(f"yard={video}\nhall={folder}\nbad=ftp://nowhere/x\n")
        process.send_signal(signal.SIGHUP)
        _wait_line(process, lines, "camera list not re-read (ftp://nowhere/x: unsupported URL")
        cameras.write_text(f"yard={video}\n")
        process.send_signal(signal.SIGHUP)
        _wait_line(process, lines, "hall: removed from the camera list; stopping it")
        # every camera has ended (the yard's file, the hall removed): the watcher is done
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=10)
    with open_store(db, "read") as store:
        assert store.camera("hall")["state_detail"] == "removed from the camera list"
        # the camera added by SIGHUP records clips as the cameras given at the start do
        from arnet.store.media import clip

        (alert,), _ = store.alerts(camera="yard")
        recorded = clip(store, alert["id"])
        assert recorded is not None and Path(recorded["path"]).is_file()


def test_watch_scores_with_an_export_folder_as_with_its_run(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from helpers import write_video
    from livekit import make_checkpoint

    run = make_checkpoint(tmp_path / "k")
    out = tmp_path / "export"
    argv = ["export", str(run), "--format", "onnx", "--out", str(out), "--input-size", "32x32"]
    assert main([*argv, "--json"]) == 0
    video = write_video(tmp_path / "gate.mp4", footage("...XXX....", seed=5), fps=25)
    scored = {}
    for name, checkpoint in (("run", run), ("export", out)):
        db = tmp_path / f"{name}.db"
        argv = ["watch", f"gate={video}", "--checkpoint", str(checkpoint), "--db", str(db)]
        assert main([*argv, "--quiet"]) == 0
        with open_store(db, "read") as store:
            alerts = store.alerts()[0]
            scored[name] = ([s["score"] for s in store.scores("gate", limit=None)], alerts)
    np.testing.assert_allclose(scored["export"][0], scored["run"][0], rtol=0, atol=1e-4)
    spans = {k: [(a["start_frame"], a["end_frame"]) for a in v[1]] for k, v in scored.items()}
    assert spans["export"] == spans["run"] and spans["run"]
    assert scored["export"][1][0]["detector"] == {"run": str(out.resolve()), "version": 0}
    capsys.readouterr()
    # the export's alert is not the run's: a verdict naming the run is refused
    alert_id = str(scored["export"][1][0]["id"])
    argv = ["alerts", "--db", str(tmp_path / "export.db"), "--verdict", alert_id, "real"]
    assert main([*argv, "--run", str(run)]) == 2
    assert f"was scored by {out.resolve()}, not {run.resolve()}" in _one_line(capsys)
    (out / "manifest.json").write_text("{}")
    argv = ["watch", f"gate={video}", "--checkpoint", str(out), "--db", str(tmp_path / "x.db")]
    assert main(argv) == 2
    assert "not an arnet export manifest" in _one_line(capsys)


def _judged_alerts(db: Path, run: Path, features: list[np.ndarray], verdicts: list[str]) -> None:
    """Alerts of `run` in a store, as a watcher writes them, and an operator's verdicts."""
    with open_store(db) as store:
        cam = store.register_camera("gate", "rtsp://cam/1")
        for k, (rows, verdict) in enumerate(zip(features, verdicts)):
            first = 100 * k
            segs = [
                {"segment": first + i, "start_frame": 16 * (first + i),
                 "end_frame": 16 * (first + i) + 15, "start_time": first + i,
                 "end_time": first + i + 1.0, "score": 0.9}
                for i in range(len(rows))
            ]  # fmt: skip
            alert = {
                "state": "closed",
                "start_segment": first,
                "end_segment": first + len(rows) - 1,
                "start_frame": 16 * first,
                "end_frame": 16 * (first + len(rows)) - 1,
                "start_time": float(first),
                "end_time": float(first + len(rows)),
                "peak_score": 0.9,
                "peak_frame": 16 * first,
                "peak_time": float(first),
                "threshold": 0.5,
                "detector": (str(run), 0),
                "segment_features": dict(enumerate(rows, start=first)),
            }
            (alert_id,) = store.commit_segments(cam["id"], segs, [alert])
            store.add_verdict(alert_id, verdict, by="ana", run=str(run))


def test_a_trained_run_learns_verdicts_by_training_into_a_new_version(
    tiny_data: Path,
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    from arnet.formats import open_dataset
    from arnet.live.feedback import LiveFeedback
    from arnet.training import feedback as versions
    from arnet.training.checkpoint import load_checkpoint, model_from_checkpoint

    run = (tmp_path / "run").resolve()
    argv = ["train", "--data", str(tiny_data), "--snapshot", "10", "--sample_size", "6",
            "--max-seqlen", "32", "--no-plot", "--no-tensorboard", "--device", "cpu",
            "--quiet"]  # fmt: skip
    assert main([*argv, "--iterations", "10", "--out", str(run)]) == 0
    test = open_dataset(str(tiny_data), split="test")
    normal = [test.features(i)[:5] for i in np.flatnonzero(test.labels == 0)[:2]]
    anomalous = [test.features(i)[:5] for i in np.flatnonzero(test.labels == 1)[:1]]
    db = tmp_path / "e.db"
    _judged_alerts(db, run, normal + anomalous, ["false-alarm", "false-alarm", "real"])
    capsys.readouterr()
    resumed = [*argv, "--resume", str(run), "--feedback", str(db), "--iterations", "20"]
    assert main([*resumed, "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert (done["version"], done["parent"]) == (1, 0) and versions.current_version(run) == 1
    record = versions.version_record(run, 1)
    assert len(record["normal_alerts"]) == 2 and len(record["anomalous_alerts"]) == 1
    trained = load_checkpoint(versions.version_checkpoint(run, 1))
    assert trained["iteration"] == 20 and load_checkpoint(run)["iteration"] == 10  # run kept
    # a watcher of the run takes the version up, and back after an undo
    model = model_from_checkpoint(load_checkpoint(run), "cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with open_store(db, "read") as store:
        live = LiveFeedback(model, run, store, say=lambda _line: None)
        assert live.version == 1 and not live.learn
        changed = [k for k, v in model.state_dict().items() if not v.equal(before[k])]
        assert changed
        assert main(["feedback", "undo", str(run)]) == 0
        assert live.poll(force=True) and live.version == 0
        assert all(v.equal(before[k]) for k, v in model.state_dict().items())
    # refused: nearest-normal (it learns without training), a store without its verdicts
    assert main([*resumed[:-4], "--resume", str(run), "--feedback", str(tmp_path / "none.db")]) == 2
    assert "none.db" in _one_line(capsys)
    other = tmp_path / "other.db"
    _judged_alerts(other, tmp_path / "elsewhere", normal[:1], ["false-alarm"])
    assert main([*resumed[:-4], "--resume", str(run), "--feedback", str(other)]) == 2
    assert f"no verdict with segments on alerts of {run}" in _one_line(capsys)


def test_versions_survive_a_kill_two_writers_and_a_damaged_pointer(
    run: Path,
    video: Path,
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    from arnet.detection.detector import load_detector
    from arnet.live.feedback import LiveFeedback, apply_verdicts
    from arnet.training import feedback as versions

    db = tmp_path / "e.db"
    with open_store(db) as store:
        _replay(_watch(run, store, [f"gate={video}"], learn=False))
        (alert,) = store.alerts(camera="gate")[0]
        store.add_verdict(alert["id"], "false-alarm", run=str(run))
        # a writer killed half-way leaves a folder without version.json: no version
        (versions.versions_dir(run) / "1").mkdir(parents=True)
        models = [load_detector(run, device="cpu")[0].model for _ in range(2)]
        made: list = []
        threads = [
            threading.Thread(target=lambda m=m: made.append(apply_verdicts(run, store, m)))
            for m in models
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # two watchers at once: one version, made once
        assert sorted(m["version"] for m in made if m) == [2] and made.count(None) == 1
        assert [v["version"] for v in versions.list_versions(run)] == [0, 2]
        live = LiveFeedback(models[0], run, store, say=(lines := []).append)
        assert live.version == 2
        (versions.versions_dir(run) / "current.json").write_text("{not json")
        assert live.poll(force=True) is False and live.version == 2  # keeps scoring
        assert "not applied" in lines[-1] and "current.json: not a version pointer" in lines[-1]
        assert live.poll(force=True) is False and len(lines) == 1  # said once
    assert main(["feedback", "list", str(run)]) == 2
    assert "current.json: not a version pointer" in _one_line(capsys)
    (versions.versions_dir(run) / "current.json").write_text('{"version": 9}')
    assert main(["feedback", "list", str(run)]) == 2
    assert "names version 9" in _one_line(capsys)
