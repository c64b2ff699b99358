"""A clip per alert (`arnet watch --clip-before/--clip-after`): the MP4 beside the store shows
the alert's frames with their pre- and post-roll, decoded back with PyAV; a clip disk that
fills or turns read-only (a real small tmpfs) loses the clip only, never the alert or a score;
a watcher killed with SIGKILL mid-clip leaves no clip claimed, and the next one clears its
temporary. No test measures time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("cv2")
pytest.importorskip("sqlalchemy")

from livekit import L, footage, make_checkpoint, wait_for  # noqa: E402

from arnet.cli import main  # noqa: E402
from arnet.store import open_store  # noqa: E402
from arnet.store.media import clip, clips  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def live_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("live"))


@pytest.fixture(scope="module")
def detector(live_run: Path):  # noqa: ANN201
    from arnet.detection.detector import load_detector

    return load_detector(live_run, device="cpu")[0]


def _watch(detector, store, sources, clips_folder: Path, **clip_options):  # noqa: ANN001, ANN202
    from arnet.live.clips import ClipSettings
    from arnet.live.scorer import SegmentScorer
    from arnet.live.sources import parse_sources
    from arnet.live.tracker import Thresholds
    from arnet.live.watch import Watcher, WatchOptions

    settings = ClipSettings(clips_folder, **{"before": 1.0, "after": 1.0, **clip_options})
    options = WatchOptions(quiet=True, clips=settings)
    watcher = Watcher(
        SegmentScorer(detector), store, parse_sources(sources), Thresholds(0.5, 0.5), options
    )
    watcher.start()
    watcher.run()
    watcher.close()
    return watcher


def _decoded(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        return [f.to_ndarray(format="rgb24") for f in container.decode(stream)]


def _video(path: Path, pattern: str, seed: int) -> tuple[Path, list[np.ndarray]]:
    from helpers import write_video

    frames = footage(pattern, seed)
    return write_video(path, frames, fps=25), frames


def test_each_alert_gets_a_clip_with_its_pre_and_post_roll(tmp_path: Path, detector) -> None:  # noqa: ANN001
    from arnet.extract.video import VideoInput

    video, _ = _video(tmp_path / "gate.mp4", "......XXX......XX.....", seed=3)
    decoded = list(VideoInput(video, "gate", "video").frames())
    with open_store(tmp_path / "e.db") as store:
        watcher = _watch(detector, store, [f"gate={video}"], tmp_path / "clips")
        alerts = sorted(store.alerts(limit=None)[0], key=lambda a: a["start_frame"])
        assert len(alerts) == 2 and watcher.clips.written == 2
        found = clips(store, [a["id"] for a in alerts])
    for alert in alerts:
        c = found[alert["id"]]
        # one second of pre- and post-roll at 25 fps, within the footage
        assert c["start_frame"] == max(0, alert["start_frame"] - 25)
        assert c["end_frame"] == min(len(decoded) - 1, alert["end_frame"] + 25)
        path = Path(c["path"])
        assert (
            path.parent == tmp_path / "clips" / "gate" and path.name == f"alert-{alert['id']}.mp4"
        )
        assert c["bytes"] == path.stat().st_size and (c["width"], c["height"]) == (32, 32)
        assert c["fps"] == 25
        frames = _decoded(path)
        assert len(frames) == c["end_frame"] - c["start_frame"] + 1
        # the clip's frames are the camera's, H.264 rounding apart (the bright square shows)
        for i in (0, len(frames) // 2, len(frames) - 1):
            source = decoded[c["start_frame"] + i].astype(float)
            assert np.abs(frames[i].astype(float) - source).mean() < 12
    # nothing but the clips in the folder: no temporary left
    assert sorted(p.name for p in (tmp_path / "clips" / "gate").iterdir()) == sorted(
        f"alert-{a['id']}.mp4" for a in alerts
    )


def test_clips_are_scaled_down_to_their_short_side(tmp_path: Path, detector) -> None:  # noqa: ANN001
    import cv2
    from helpers import write_video

    frames = [cv2.resize(f, (96, 64)) for f in footage("..XX..", seed=4)]
    video = write_video(tmp_path / "wide.mp4", frames, fps=25)
    with open_store(tmp_path / "e.db") as store:
        _watch(detector, store, [f"wide={video}"], tmp_path / "clips", short_side=32)
        ((alert,), _) = store.alerts()
        c = clip(store, alert["id"])
    assert (c["width"], c["height"]) == (48, 32)
    assert _decoded(Path(c["path"]))[0].shape == (32, 48, 3)


def test_a_clip_disk_that_fills_keeps_the_alert_and_the_scores(
    tmp_path: Path,
    detector,
    capfd,  # noqa: ANN001
) -> None:
    from helpers import fill_up, mounted_tmpfs

    video, _ = _video(tmp_path / "yard.mp4", "....XXX....", seed=5)
    with mounted_tmpfs(tmp_path / "disk", "256k") as disk:
        fill_up(disk)
        with open_store(tmp_path / "e.db") as store:
            watcher = _watch(detector, store, [f"yard={video}"], disk)
            ((alert,), _) = store.alerts()
            assert len(store.scores("yard", limit=None)) == 11  # scoring went on
            assert store.alert_image(alert["id"])[:2] == b"\xff\xd8"
            assert clip(store, alert["id"]) is None
        assert watcher.clips.failures == 1 and watcher.clips.written == 0
        err = capfd.readouterr().err
        (line,) = [x for x in err.splitlines() if "without a clip" in x]
        assert f"alert {alert['id']} is kept without a clip" in line
        assert "No space left on device" in line
        assert not list((disk / "yard").iterdir())  # no half file left


def test_a_clip_folder_turned_read_only_then_writable_again(
    tmp_path: Path,
    detector,
    capfd,  # noqa: ANN001
) -> None:
    from helpers import mounted_tmpfs

    first, _ = _video(tmp_path / "a.mp4", "..XX..", seed=6)
    second, _ = _video(tmp_path / "b.mp4", "..XX..", seed=7)
    with mounted_tmpfs(tmp_path / "disk", "4m") as disk, open_store(tmp_path / "e.db") as store:
        from arnet.live.clips import ClipRecorder, ClipSettings

        recorder_start = ClipRecorder.start

        def start_then_read_only(self, cameras):  # noqa: ANN001, ANN202
            recorder_start(self, cameras)  # the folder is checked writable at the start ...
            subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)

        ClipRecorder.start = start_then_read_only  # ... and turns read-only just after
        try:
            _watch(detector, store, [f"a={first}"], disk)
        finally:
            ClipRecorder.start = recorder_start
        ((alert,), _) = store.alerts(camera="a")
        assert clip(store, alert["id"]) is None and len(store.scores("a", limit=None)) == 6
        assert "Read-only file system" in capfd.readouterr().err
        # a watcher started on the read-only folder is refused before it scores anything
        from arnet.errors import DataError
        from arnet.live.clips import check_folder

        with pytest.raises(DataError, match=f"--clips {disk}: cannot write clips there"):
            check_folder(disk)
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        _watch(detector, store, [f"b={second}"], disk)
        ((alert,), _) = store.alerts(camera="b")
        assert Path(clip(store, alert["id"])["path"]).is_file()
        ClipSettings(disk)  # still a valid setting


def _write_frames(folder: Path, frames: list, first: int = 0) -> None:
    from livekit import jpeg_bytes

    folder.mkdir(exist_ok=True)
    for i, image in enumerate(frames, start=first):
        part = folder / f".{i}.tmp"
        part.write_bytes(jpeg_bytes(image))
        part.rename(folder / f"{i}.jpg")


def _temporaries(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".*.tmp")) if folder.is_dir() else []


def test_a_watcher_killed_mid_clip_claims_no_half_file(tmp_path: Path, live_run: Path) -> None:
    db, frames, clips_folder = tmp_path / "events.db", tmp_path / "frames", tmp_path / "clips"
    _write_frames(frames, footage("..XXXX", seed=8))
    argv = [sys.executable, "-m", "arnet", "watch", "--checkpoint", str(live_run), "--db",
            str(db), "--quiet", "--clips", str(clips_folder), "--clip-before", "0.5s",
            "--clip-after", "0.5s", f"hall={frames}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

    def count() -> int:
        with open_store(db, "read") as store:
            return len(store.scores("hall", limit=None))

    first = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: count() == 6, timeout=600), "no scores"
        # the open alert's clip is being written: frames reach its temporary file
        assert wait_for(lambda: any(p.stat().st_size for p in _temporaries(clips_folder)), 600)
    finally:
        first.kill()  # SIGKILL mid-clip
        first.wait()
    with open_store(db, "read") as store:
        ((alert,), _) = store.alerts()
        assert alert["state"] == "open" and clip(store, alert["id"]) is None
    assert not list(clips_folder.rglob("*.mp4"))  # no file under the clip's name
    (left,) = _temporaries(clips_folder)
    _write_frames(frames, footage("X...", seed=9), first=6 * L)
    second = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
    try:
        # (the continued alert's clip may already be written here: it is checked below)
        assert wait_for(lambda: count() == 10, timeout=600), "did not continue"
    finally:
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err.decode()
    assert f"removed {left}" in err.decode()  # the killed watcher's temporary is cleared
    assert not _temporaries(clips_folder)
    with open_store(db, "read") as store:
        ((alert,), _) = store.alerts()
        c = clip(store, alert["id"])
    # the continued alert's clip starts where the second watcher started reading
    assert alert["state"] == "closed" and c["start_frame"] == 6 * L
    assert len(_decoded(Path(c["path"]))) == c["end_frame"] - c["start_frame"] + 1


def test_clip_options_are_checked_before_the_model_loads(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    base = ["watch", "--checkpoint", str(tmp_path / "no-such-run"), str(video)]
    cases = [
        (["--clip-before", "-1"], "--clip-before: not a duration: '-1'"),
        (["--clip-after", "soon"], "not a duration: 'soon'"),
        (["--db", "postgresql://u@127.0.0.1:1/x", "--clip-after", "3s"], "give --clips DIR"),
        (["--clips", str(video / "sub")], f"--clips {video / 'sub'}: cannot write clips"),
        (["--clip-after", "2h"], "--clip-after: seconds from 0 to 3600"),
    ]
    for extra, message in cases:
        db = [] if "--db" in extra else ["--db", str(tmp_path / "e.db")]
        try:
            code = main(base + extra + db)
        except SystemExit as exc:  # refused by the option parser
            code = exc.code
        assert code == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "Traceback" not in err, err
    assert not (tmp_path / "e.db").exists()


def test_alerts_export_copies_alerts_images_and_clips(tmp_path: Path, detector, capsys) -> None:  # noqa: ANN001
    import csv
    import json

    video, _ = _video(tmp_path / "gate.mp4", "...XX.....XX...", seed=10)
    db = tmp_path / "e.db"
    with open_store(db) as store:
        _watch(detector, store, [f"gate={video}"], tmp_path / "clips")
        alerts = store.alerts(limit=None)[0]
        found = clips(store, [a["id"] for a in alerts])
        store.acknowledge(alerts[0]["id"], "a cat", by="ana")
    assert len(alerts) == 2 and len(found) == 2
    # the first alert's clip is gone from the disk: said, and left out; the rest is exported
    gone = Path(found[alerts[1]["id"]]["path"])
    gone.unlink()
    out = tmp_path / "export"
    assert main(["alerts", "--db", str(db), "--export", str(out)]) == 0
    captured = capsys.readouterr()
    assert "2 alert(s), 2 image(s) and 1 clip(s) exported" in captured.out
    assert f"its clip {gone} is gone; exported without it" in captured.err
    listed = json.loads((out / "alerts.json").read_text())
    assert listed["total"] == 2
    by_id = {a["id"]: a for a in listed["alerts"]}
    kept = by_id[alerts[0]["id"]]
    assert kept["clip"] == f"clips/alert-{alerts[0]['id']}.mp4" and kept["note"] == "a cat"
    assert (out / kept["clip"]).read_bytes() == Path(found[alerts[0]["id"]]["path"]).read_bytes()
    assert (out / kept["image"]).read_bytes()[:2] == b"\xff\xd8"
    assert by_id[alerts[1]["id"]]["clip"] is None
    rows = list(csv.DictReader((out / "alerts.csv").read_text().splitlines()))
    assert {r["clip"] for r in rows} == {kept["clip"], ""}
    assert sorted(p.name for p in out.iterdir()) == ["alerts.csv", "alerts.json", "clips", "images"]
    # never into a folder that holds anything, which is left as it was; never beside --out
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert main(["alerts", "--db", str(db), "--export", str(out)]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert main(["alerts", "--db", str(db), "--export", str(tmp_path / "x"), "--out", "y"]) == 2
    assert "without --out" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    # an empty folder that exists is taken
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["alerts", "--db", str(db), "--export", str(empty), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["clips"] == 1


def test_a_store_of_an_earlier_revision_is_read_without_clips(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    import json
    import sqlite3

    from alembic import command

    from arnet.store.engine import _script, create_engine, make_url

    db = tmp_path / "old.db"
    engine = create_engine(make_url(db))
    config, _ = _script()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
    engine.dispose()
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO cameras (id, name, source, state, next_segment, next_frame, created, "
            "updated) VALUES (1, 'gate', 'x', 'stopped', 4, 64, 0, 0)"
        )
        conn.execute(
            "INSERT INTO alerts (camera_id, state, start_segment, end_segment, start_frame, "
            "end_frame, start_time, end_time, peak_score, peak_frame, peak_time, created, "
            "updated) VALUES (1, 'closed', 1, 2, 16, 47, 1, 2, 0.9, 20, 1.5, 0, 0)"
        )
    assert main(["alerts", "--db", str(db), "--export", str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "folder": str(tmp_path / "out"), "alerts": 1, "images": 0, "clips": 0, "clips_missing": []
    }  # fmt: skip
    with open_store(db, "read") as store:
        from arnet.store.media import mask

        assert clip(store, 1) is None and mask(store, "gate") is None
    with sqlite3.connect(db) as conn:  # read as it is: never migrated by a reader
        assert conn.execute("SELECT version_num FROM arnet_store_version").fetchone()[0] == "0002"
