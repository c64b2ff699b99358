"""`arnet watch` and `arnet alerts`: real streams (an HTTP MJPEG server on the loopback
address), video files, a growing frame folder, a real SQLite store and a PostgreSQL server
started by the test, a watcher killed with SIGKILL. No test measures time: waits poll the store
for what must eventually be there."""

from __future__ import annotations

import csv
import json
import os
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

from livekit import L, MjpegServer, footage, make_checkpoint, wait_for  # noqa: E402
from pgserver import fresh_database, postgres_server  # noqa: E402, F401

from arnet.cli import main  # noqa: E402
from arnet.store import open_store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def live_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint that alerts on a bright square (see livekit)."""
    return make_checkpoint(tmp_path_factory.mktemp("live"))


@pytest.fixture(scope="session")
def detector(live_run: Path):
    from arnet.detection.detector import load_detector

    return load_detector(live_run, device="cpu")[0]


def _video(path: Path, pattern: str, seed: int = 0) -> Path:
    from helpers import write_video

    return write_video(path, footage(pattern, seed), fps=25)


def _watcher(detector, store, sources, **options):  # noqa: ANN001, ANN202
    from arnet.live.scorer import SegmentScorer
    from arnet.live.sources import parse_sources
    from arnet.live.tracker import Thresholds
    from arnet.live.watch import Watcher, WatchOptions

    thresholds = Thresholds(0.5, options.pop("stop", 0.5), 1, options.pop("merge_gap", 0))
    opts = WatchOptions(quiet=True, reconnect_first=0.2, reconnect_max=0.5, **options)
    return Watcher(SegmentScorer(detector), store, parse_sources(sources), thresholds, opts)


def _run_until(watcher, condition) -> None:  # noqa: ANN001
    """Run the watcher here, and stop it from a helper thread once `condition()` holds."""

    def stopper() -> None:
        wait_for(condition, timeout=300)
        watcher.stop()

    watcher.start()  # registers the cameras the condition may look up
    helper = threading.Thread(target=stopper, daemon=True)
    helper.start()
    watcher.run()
    helper.join()


def _spans(store, camera: str) -> list[tuple[int, int, str]]:  # noqa: ANN001
    alerts, _ = store.alerts(camera=camera, limit=None)
    return sorted((a["start_segment"], a["end_segment"], a["state"]) for a in alerts)


# ---------------------------------------------------------------------- alert rule


def test_tracker_hysteresis_min_length_and_merging_match_detect() -> None:
    from arnet.detection.alerts import find_alerts
    from arnet.detection.detector import frame_scores
    from arnet.live.camera import Segment
    from arnet.live.tracker import AlertTracker, Thresholds

    def run(scores, **kw):  # noqa: ANN001, ANN202
        t = AlertTracker(Thresholds(**kw), lambda s: b"jpg")
        written: dict[int, dict] = {}
        for i, score in enumerate(scores):
            seg = Segment("c", i, i * L, i * L + L - 1, i, i + 1, [], np.zeros(1), 0, 25.0)
            for row in t.update(seg, score):
                written[row["start_segment"]] = row
        for row in t.close():
            written[row["start_segment"]] = row
        return [(r["start_frame"], r["end_frame"], r["peak_frame"]) for r in written.values()]

    rng = np.random.default_rng(3)
    for trial in range(40):
        scores = rng.random(30)
        gap = int(rng.integers(0, 3)) * L
        shortest = int(rng.integers(1, 3)) * L
        frames = frame_scores(scores, 30 * L)
        expected = [
            (a.start_frame, a.end_frame, a.peak_frame)
            for a in find_alerts(frames, 0.6, 25, min_frames=shortest, merge_gap=gap)
        ]
        got = run(scores, start=0.6, stop=0.6, min_frames=shortest, merge_gap=gap)
        assert got == expected, trial
    # hysteresis: starts at 0.8, lasts while >= 0.3
    assert run([0.1, 0.5, 0.9, 0.5, 0.4, 0.2, 0.5], start=0.8, stop=0.3) == [(32, 79, 32)]
    with pytest.raises(ValueError, match="stop-threshold"):
        Thresholds(0.5, 0.6).validate()


# ---------------------------------------------------------------------- sources


def test_sources_are_named_and_bad_ones_refused(tmp_path: Path) -> None:
    from arnet.live.sources import SourceError, parse_source, parse_sources

    video = _video(tmp_path / "gate.mp4", ".")
    assert parse_source(str(video)).name == "gate" and parse_source(str(video)).kind == "file"
    s = parse_source("door=rtsp://10.0.0.5:554/live?ch=1")
    assert (s.name, s.kind, s.url) == ("door", "stream", "rtsp://10.0.0.5:554/live?ch=1")
    assert parse_source("http://cam.local/video.mjpg").name == "cam.local_video.mjpg"
    assert parse_source(str(tmp_path)).kind == "folder"
    with pytest.raises(SourceError, match=r"ftp://x/y: unsupported URL scheme 'ftp'"):
        parse_source("ftp://x/y")
    with pytest.raises(SourceError, match="nothing.mp4: no such video file"):
        parse_source(str(tmp_path / "nothing.mp4"))
    with pytest.raises(SourceError, match="/dev/video99: no such video device"):
        parse_source("device:99")
    with pytest.raises(SourceError, match="would both be camera 'gate'"):
        parse_sources([str(video), f"gate={tmp_path}"])


# ---------------------------------------------------------------------- parity with detect


def test_watch_over_a_file_scores_as_detect_does(tmp_path: Path, detector) -> None:  # noqa: ANN001
    from arnet.extract.video import VideoInput

    # 10 segments and 5 frames: the padded tail is scored too, as detect scores it
    frames = footage("...XXX....", seed=5) + footage(".", seed=6)[:5]
    from helpers import write_video

    video = write_video(tmp_path / "parity.mp4", frames, fps=25)
    offline = detector.detect(VideoInput(video, "parity", "video"), 0.5)
    with open_store(tmp_path / "e.db") as store:
        watcher = _watcher(detector, store, [str(video)])
        watcher.start()
        watcher.run()
        live = store.scores("parity", limit=None)
        assert [s["segment"] for s in live] == list(range(11))
        assert live[-1]["end_frame"] == len(frames) - 1
        np.testing.assert_allclose(
            [s["score"] for s in live], offline.segment_scores, rtol=0, atol=1e-5
        )
        alerts, _ = store.alerts(camera="parity")
        assert [(a["start_frame"], a["end_frame"]) for a in alerts] == [
            (a.start_frame, a.end_frame) for a in offline.alerts
        ]
        (alert,) = alerts
        assert alert["state"] == "closed"
        image = store.alert_image(alert["id"])
        assert image[:2] == b"\xff\xd8"  # a JPEG
        assert store.camera("parity")["state"] == "stopped"
        # watched again: the file is read on after its last scored frame, nothing is repeated
        again = _watcher(detector, store, [str(video)])
        again.start()
        assert again.run() == 0
        assert len(store.scores("parity", limit=None)) == 11 and store.alerts()[1] == 1


def test_an_alert_of_a_model_that_says_where_keeps_its_heat_map(tmp_path: Path, detector) -> None:  # noqa: ANN001
    import cv2
    from helpers import write_video
    from livekit import SIZE, make_grid_checkpoint

    from arnet.detection.detector import load_detector
    from arnet.detection.heatmaps import PICTURE_GAP, heat_overlay
    from arnet.extract.video import VideoInput

    grid, _ = load_detector(make_grid_checkpoint(tmp_path / "grid"), device="cpu")
    assert grid.cell_grid == (4, 4) and detector.cell_grid is None
    video = write_video(tmp_path / "yard.mp4", footage("....XX....", seed=3), fps=25)
    offline = grid.detect(VideoInput(video, "yard", "video"), grid.threshold)
    decoded = list(VideoInput(video, "yard", "video").frames())
    with open_store(tmp_path / "e.db") as store:
        for checkpoint, name in ((grid, "yard"), (detector, "plain")):
            watcher = _watcher(checkpoint, store, [f"{name}={video}"])
            watcher.start()
            watcher.run()
        (alert,) = store.alerts(camera="yard")[0]
        (plain,) = store.alerts(camera="plain")[0]
        (peak,) = [a.peak_frame for a in offline.alerts]
        assert alert["peak_frame"] == peak
        picture = cv2.imdecode(np.frombuffer(store.alert_image(alert["id"]), np.uint8), 1)
        plain_picture = cv2.imdecode(np.frombuffer(store.alert_image(plain["id"]), np.uint8), 1)
    # the model that cannot say where keeps the frame alone; the grid one the frame, then the
    # frame under the heat map of the peak segment's cells, as detect draws it
    assert plain_picture.shape == (SIZE, SIZE, 3)
    assert picture.shape == (SIZE, 2 * SIZE + PICTURE_GAP, 3)
    frame = decoded[peak].astype(float)
    expected = heat_overlay(decoded[peak], offline.cell_maps[peak // L]).astype(float)
    left = picture[:, :SIZE, ::-1].astype(float)
    right = picture[:, SIZE + PICTURE_GAP :, ::-1].astype(float)
    assert np.abs(left - frame).mean() < 6  # JPEG rounding only
    other = heat_overlay(decoded[peak], offline.cell_maps[0]).astype(float)  # a quiet segment's
    # JPEG's colour subsampling blurs the saturated colours a little; another map, or none,
    # is several times further off
    assert np.abs(right - expected).mean() < 10
    assert np.abs(right - frame).mean() > 30 and np.abs(right - other).mean() > 30


def test_watch_with_a_frame_stride_scores_as_detect_does(tmp_path: Path, live_run: Path) -> None:
    """`--frame-stride 4`: live, each segment encodes the frames `detect` encodes, the tail's
    segment (the last 16 frames, overlapping the one before) too."""
    from helpers import write_video

    from arnet.detection.detector import load_detector
    from arnet.extract.video import VideoInput

    detector, _ = load_detector(live_run, device="cpu", preprocessing={"frame_stride": 4})
    frames = footage("..X", seed=9) + footage("X", seed=10)[:5]  # a tail of 5 frames
    video = write_video(tmp_path / "strided.mp4", frames, fps=25)
    offline = detector.detect(VideoInput(video, "strided", "video"), 0.5)
    with open_store(tmp_path / "e.db") as store:
        watcher = _watcher(detector, store, [str(video)])
        watcher.start()
        watcher.run()
        live = store.scores("strided", limit=None)
    assert [(s["start_frame"], s["end_frame"]) for s in live][-1] == (48, 52)
    np.testing.assert_allclose([s["score"] for s in live], offline.segment_scores, atol=1e-5)


# ---------------------------------------------------------------------- streams


def test_a_stream_that_dies_reconnects_and_the_gap_is_recorded(
    tmp_path: Path,
    detector,  # noqa: ANN001
) -> None:
    parts = [footage("..XX", seed=1), footage("X..", seed=2)]

    with MjpegServer(lambda n: parts[n] if n < len(parts) else []) as server:
        with open_store(tmp_path / "e.db") as store:
            watcher = _watcher(detector, store, [f"door={server.url}"])
            _run_until(watcher, lambda: len(store.scores("door", limit=None)) >= 7)
            scores = store.scores("door", limit=None)
            assert [s["segment"] for s in scores] == list(range(7))
            assert [s["start_frame"] for s in scores] == [L * i for i in range(7)]
            assert [s["score"] > 0.5 for s in scores] == [
                False,
                False,
                True,
                True,
                True,
                False,
                False,
            ]
            kinds = [e["kind"] for e in reversed(store.events("door"))]
            assert kinds[:3] == ["connected", "disconnected", "connected"]
            connected = [e for e in reversed(store.events("door")) if e["kind"] == "connected"]
            reconnected = connected[1]  # the first reconnection, after 4 segments
            assert "gap of" in reconnected["detail"] and reconnected["frame"] == 4 * L
            # the gap closes the first alert: the one after it is a new alert
            assert _spans(store, "door") == [(2, 3, "closed"), (4, 4, "closed")]
            assert store.camera("door")["state"] == "stopped"


def test_a_corrupt_stream_never_stops_the_other_cameras(
    tmp_path: Path,
    detector,  # noqa: ANN001
) -> None:
    video = _video(tmp_path / "yard.mp4", "..X..")
    garbage = bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8))
    with MjpegServer(lambda n: None, garbage=garbage) as server:
        with open_store(tmp_path / "e.db") as store:
            watcher = _watcher(detector, store, [f"bad={server.url}", str(video)])

            def settled() -> bool:
                cams = {c["name"]: c for c in store.cameras()}
                return cams["yard"]["state"] == "stopped" and server.connections >= 2

            _run_until(watcher, settled)
            assert len(store.scores("yard", limit=None)) == 5
            assert _spans(store, "yard") == [(2, 2, "closed")]
            assert store.scores("bad") == []
            (unreachable, *_) = [e for e in store.events("bad") if e["kind"] == "unreachable"]
            assert (
                "cannot open" in unreachable["detail"] and "bad (http://" in unreachable["detail"]
            )


def test_a_frame_folder_watched_while_it_is_written(tmp_path: Path, detector) -> None:  # noqa: ANN001
    from livekit import jpeg_bytes

    folder = tmp_path / "frames"
    folder.mkdir()
    frames = footage("..X.", seed=4)

    def writer() -> None:
        for i, image in enumerate(frames):
            part = folder / f".{i}.tmp"
            part.write_bytes(jpeg_bytes(image))
            part.rename(folder / f"{i}.jpg")  # natural order: 9.jpg before 10.jpg
            if i % L == L - 1:  # a segment at a time, the watcher catching up in between
                wait_for(lambda n=i: len(store.scores("frames", limit=None)) * L >= n - L)

    with open_store(tmp_path / "e.db") as store:
        watcher = _watcher(detector, store, [str(folder)])
        feeding = threading.Thread(target=writer, daemon=True)
        feeding.start()
        _run_until(watcher, lambda: len(store.scores("frames", limit=None)) >= 4)
        feeding.join()
        scores = store.scores("frames", limit=None)
        assert [s["segment"] for s in scores] == [0, 1, 2, 3]
        assert [s["score"] > 0.5 for s in scores] == [False, False, True, False]
        assert _spans(store, "frames") == [(2, 2, "closed")]


# ---------------------------------------------------------------------- the command line


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "arnet", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_kill_9_mid_alert_then_restart_keeps_each_alert_once(
    tmp_path: Path, live_run: Path
) -> None:
    db = tmp_path / "events.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    stalled = threading.Event()
    # the camera sends 5 segments, the alert opening at the third, then stalls (kept open);
    # after the restart it sends the alert's last two segments and two quiet ones
    parts = [footage("..XXX", seed=7), footage("XX..", seed=8)]
    with MjpegServer(lambda n: parts[n] if n < 2 else [], hold=stalled) as server:
        argv = [
            sys.executable,
            "-m",
            "arnet",
            "watch",
            "--checkpoint",
            str(live_run),
            "--db",
            str(db),
            "--merge-gap",
            "100000",
            "--open-timeout",
            "3600",
            "--quiet",
            f"hall={server.url}",
        ]  # fmt: skip  (a stalled read never times out here)
        first = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
        try:

            def mid_alert() -> bool:
                with open_store(db) as store:
                    return len(store.scores("hall", limit=None)) == 5 and bool(
                        store.alerts(state="open")[1]
                    )

            assert wait_for(mid_alert, timeout=600), "the first watcher never opened the alert"
        finally:
            first.kill()  # SIGKILL: no clean-up of any kind
            first.wait()
        stalled.set()
        with open_store(db) as store:
            (alert,) = store.alerts()[0]
            assert (alert["state"], alert["start_segment"], alert["end_segment"]) == ("open", 2, 4)
        second = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
        try:

            def caught_up() -> bool:
                with open_store(db) as store:
                    return len(store.scores("hall", limit=None)) == 9

            assert wait_for(caught_up, timeout=600), "the restarted watcher did not continue"
        finally:
            second.send_signal(signal.SIGTERM)  # a clean stop closes the open alert
            _, err = second.communicate(timeout=120)
        assert second.returncode == 0, err.decode()
    with open_store(db) as store:
        assert [s["segment"] for s in store.scores("hall", limit=None)] == list(range(9))
        assert [s["start_frame"] for s in store.scores("hall", limit=None)] == [
            L * i for i in range(9)
        ]
        # one alert, continued across the kill: opened once, closed once
        assert _spans(store, "hall") == [(2, 6, "closed")]
        assert store.alerts()[0][0]["id"] == alert["id"]


def test_bad_input_is_named_with_exit_2(tmp_path: Path, live_run: Path, capsys) -> None:  # noqa: ANN001
    video = _video(tmp_path / "v.mp4", ".")
    db = str(tmp_path / "e.db")
    cases = [
        (["ftp://cam/1"], "ftp://cam/1: unsupported URL scheme"),
        (["cam=http://127.0.0.1:9/none.mjpg"], "cam (http://127.0.0.1:9/none.mjpg): cannot open"),
        ([str(tmp_path / "gone.mp4")], "gone.mp4: no such video file"),
    ]
    for sources, message in cases:
        assert main(["watch", "--checkpoint", str(live_run), "--db", db, *sources]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    with open_store(db, "read") as store:  # the camera that could not be opened says so
        assert store.camera("cam")["state"] == "failed" and store.lease("cam") is None
    code = main(
        [
            "watch",
            "--checkpoint",
            str(live_run),
            "--db",
            "postgresql://w:pw@127.0.0.1:1/ev",
            str(video),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "postgresql://w:***@127.0.0.1:1/ev: cannot reach" in err
    other = make_checkpoint(tmp_path / "other", other_dim=True)
    assert main(["watch", "--checkpoint", str(other), "--db", db, str(video)]) == 2
    err = capsys.readouterr().err.strip()
    assert "1288-d features" in err and "efficientnet-lite0" in err and len(err.splitlines()) == 1


def _four_alerts(db: str) -> None:
    """Cameras a and b with two closed alerts each (ids 1-4, oldest first)."""
    with open_store(db) as store:
        for name, first in (("a", 0), ("b", 5)):
            cam = store.register_camera(name, "x")
            for k in range(2):
                seg = first + 3 * k
                row = {
                    "state": "closed",
                    "start_segment": seg,
                    "end_segment": seg,
                    "start_frame": seg * L,
                    "end_frame": seg * L + 15,
                    "start_time": 100.0 + seg,
                    "end_time": 100.6 + seg,
                    "peak_score": 0.9,
                    "peak_frame": seg * L,
                    "peak_time": 100.0 + seg,
                    "threshold": 0.5,
                    "peak_image": b"\xff\xd8J",
                }
                store.commit_segments(cam["id"], [], [row])


def test_alerts_command_lists_filters_and_exports(tmp_path: Path, live_run: Path, capsys) -> None:  # noqa: ANN001
    db = str(tmp_path / "e.db")
    _four_alerts(db)
    with open_store(db) as store:
        store.acknowledge(1, "seen")
    assert main(["alerts", "--db", db, "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"] == 4 and [a["camera"] for a in out["alerts"]] == ["b", "b", "a", "a"]
    assert out["alerts"][0]["start_iso"].startswith("1970-01-01T00:01:")
    assert main(["alerts", "--db", db, "--camera", "a", "--unacknowledged", "--format", "csv"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [(r["camera"], r["start_frame"]) for r in rows] == [("a", "48")]
    assert main(["alerts", "--db", db, "--since", "1970-01-01T00:01:45", "--until", "108"]) == 0
    assert capsys.readouterr().out.startswith("2 of 2 alert(s)")
    target = tmp_path / "export.csv"
    assert (
        main(
            [
                "alerts",
                "--db",
                db,
                "--format",
                "csv",
                "--out",
                str(target),
                "--images",
                str(tmp_path / "img"),
            ]
        )
        == 0
    )
    assert len(target.read_text().splitlines()) == 5
    assert (tmp_path / "img" / "alert-1.jpg").read_bytes() == b"\xff\xd8J"
    assert main(["alerts", "--db", db, "--out", str(target)]) == 2  # never overwritten
    assert "exists" in capsys.readouterr().err
    assert main(["alerts", "--db", db, "--ack", "3", "--note", "ok", "--by", "li"]) == 0
    with open_store(db) as store:
        assert store.alert(3)["acknowledgements"][0]["by"] == "li"


def test_alerts_say_who_acknowledged_when_with_what_note(
    tmp_path: Path, capsys, monkeypatch
) -> None:  # noqa: ANN001
    import arnet.store.events

    db = str(tmp_path / "e.db")
    _four_alerts(db)
    with open_store(db) as store:
        first = store.acknowledge(1, "seen")
        latest = store.acknowledge(1, "delivery van, expected", by="ana")
        store.acknowledge(3, "", by="li")
    # the table has a header row, and the acknowledgement in words
    assert main(["alerts", "--db", db]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "4 of 4 alert(s)"
    assert lines[1].split() == [
        "id",
        "camera",
        "state",
        "start",
        "(UTC)",
        "duration",
        "peak",
        "acknowledged",
    ]
    by_id = {line.split()[0]: line for line in lines[2:]}
    assert by_id["1"].endswith(" by ana: delivery van, expected") and by_id["3"].endswith(" by li")
    assert by_id["2"].endswith("0.900")  # nobody acknowledged it
    # CSV and JSON carry the latest acknowledgement's time, who and note; JSON lists them all
    monkeypatch.setattr(arnet.store.events, "ACK_QUERY_IDS", 3)  # several queries for 4 alerts
    for spelling in (["--csv"], ["--format", "csv"]):
        assert main(["alerts", "--db", db, *spelling]) == 0
        rows = {r["id"]: r for r in csv.DictReader(capsys.readouterr().out.splitlines())}
        one = rows["1"]
        assert (one["acknowledged"], one["acknowledged_by"], one["note"]) == (
            "True",
            "ana",
            "delivery van, expected",
        )
        assert float(one["acknowledged_time"]) == latest["time"]
        assert one["acknowledged_iso"].startswith("20") and one["acknowledged_iso"].endswith(
            "+00:00"
        )
        assert (rows["3"]["acknowledged_by"], rows["3"]["note"]) == ("li", "")
        assert (rows["2"]["acknowledged"], rows["2"]["acknowledged_by"], rows["2"]["note"]) == (
            "False",
            "",
            "",
        )
    for spelling in (["--json"], ["--format", "json"]):
        assert main(["alerts", "--db", db, *spelling]) == 0
        out = json.loads(capsys.readouterr().out)
        alerts = {a["id"]: a for a in out["alerts"]}
        assert (
            alerts[1]["note"] == "delivery van, expected" and alerts[1]["acknowledged_by"] == "ana"
        )
        assert [(k["time"], k["note"], k["by"]) for k in alerts[1]["acknowledgements"]] == [
            (first["time"], "seen", None),
            (latest["time"], "delivery van, expected", "ana"),
        ]
        assert alerts[2]["acknowledgements"] == [] and alerts[2]["acknowledged_time"] is None
    # one output choice at a time
    with pytest.raises(SystemExit) as exc:
        main(["alerts", "--db", db, "--json", "--csv"])
    assert exc.value.code == 2 and "not allowed with" in capsys.readouterr().err
    assert main(["alerts", "--db", db, "--ack", "2", "--note", "ok", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["note"] == "ok"


def test_many_watchers_share_one_postgresql_store(
    tmp_path: Path,
    live_run: Path,
    postgres_server: str,  # noqa: F811
) -> None:
    url = fresh_database(postgres_server, "watch_shards")
    videos = [
        _video(tmp_path / f"cam{i}.mp4", pattern, seed=i)
        for i, pattern in enumerate(("..X", "X..", ".X."))
    ]
    listing = tmp_path / "cameras.txt"
    listing.write_text(
        "# the site's cameras\n" + "".join(f"c{i}={v}\n" for i, v in enumerate(videos))
    )
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "arnet",
                "watch",
                "--checkpoint",
                str(live_run),
                "--db",
                url,
                "--cameras",
                str(listing),
                "--shard",
                f"{i}/2",
                "--quiet",
            ],
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read().decode()
    with open_store(url) as store:
        assert sorted(c["name"] for c in store.cameras()) == ["c0", "c1", "c2"]
        assert [_spans(store, f"c{i}") for i in range(3)] == [
            [(2, 2, "closed")],
            [(0, 0, "closed")],
            [(1, 1, "closed")],
        ]


@pytest.mark.parametrize(
    "option, value",
    [
        ("--threshold", "nan"),
        ("--threshold", "1.5"),
        ("--threshold", "-0.5"),
        ("--stop-threshold", "nan"),
        ("--reconnect-max", "-1"),
        ("--reconnect-max", "0"),
        ("--open-timeout", "0"),
        ("--min-alert-frames", "0"),
        ("--merge-gap", "-1"),
        ("--context", "0"),
    ],
)
def test_watch_refuses_what_detect_refuses(option, value, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    db = tmp_path / "e.db"
    with pytest.raises(SystemExit) as stop:
        main(["watch", "--checkpoint", "c.pt", "--db", str(db), str(tmp_path), option, value])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"argument {option}" in err, err
    assert not db.exists()


def test_the_library_refuses_them_too() -> None:
    from arnet.live.camera import Backoff
    from arnet.live.tracker import Thresholds
    from arnet.live.watch import WatchOptions

    for start, stop, says in ((float("nan"), 0.5, "--threshold"), (0.5, 1.5, "--stop-threshold"),
                              (-0.5, -0.5, "--threshold")):  # fmt: skip
        with pytest.raises(ValueError, match=f"{says}: the alert threshold must be a number"):
            Thresholds(start, stop).validate()
    with pytest.raises(ValueError, match="--reconnect-max must be seconds > 0"):
        Backoff(0.5, -1.0)
    with pytest.raises(ValueError, match="--reconnect-max"):
        WatchOptions(reconnect_max=0.0)
    assert Backoff(0.5, 0.2).next() == 0.2  # a maximum below the first delay caps it


def test_a_refused_watch_creates_no_store(tmp_path: Path, live_run: Path, capsys) -> None:  # noqa: ANN001
    import sqlite3

    video = _video(tmp_path / "v.mp4", ".")
    db = tmp_path / "new.db"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    other = make_checkpoint(tmp_path / "other", other_dim=True)
    for checkpoint, says in ((bad, "bad.pt"), (other, "1288-d features")):
        assert main(["watch", "--checkpoint", str(checkpoint), "--db", str(db), str(video)]) == 2
        assert says in capsys.readouterr().err
        assert not db.exists()
    foreign = tmp_path / "other.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE notes (t TEXT)")
    before = foreign.read_bytes()
    assert main(["watch", "--checkpoint", str(live_run), "--db", str(foreign), str(video)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not an arnet event store (it holds tables of another program: notes)" in err
    assert foreign.read_bytes() == before


# ---------------------------------------------------------------------- frame folders, exactly


def _write_frames(folder: Path, frames: list, first: int = 0, size: int | None = None) -> None:
    """Frames as JPEG files first.jpg, first+1.jpg, ... (written under a temporary name and
    renamed, as the README says a writer should)."""
    from livekit import jpeg_bytes

    folder.mkdir(exist_ok=True)
    for i, image in enumerate(frames, start=first):
        if size is not None:
            import cv2

            image = cv2.resize(image, (size, size))
        part = folder / f".{i}.tmp"
        part.write_bytes(jpeg_bytes(image))
        part.rename(folder / f"{i}.jpg")


def _count(db, camera: str) -> int:  # noqa: ANN001
    with open_store(db, "read") as store:
        return len(store.scores(camera, limit=None))


def test_a_frame_folder_watcher_killed_mid_alert_continues_it(
    tmp_path: Path, live_run: Path
) -> None:
    db = tmp_path / "events.db"
    folder = tmp_path / "frames"
    _write_frames(folder, footage("..XXX", seed=7))
    argv = [sys.executable, "-m", "arnet", "watch", "--checkpoint", str(live_run), "--db",
            str(db), "--quiet", f"hall={folder}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    first = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: _count(db, "hall") == 5, timeout=600), "no scores"
    finally:
        first.kill()  # SIGKILL mid-alert
        first.wait()
    with open_store(db, "read") as store:
        ((alert_id, state),) = [(a["id"], a["state"]) for a in store.alerts()[0]]
        assert state == "open"
    _write_frames(folder, footage("XX..", seed=8), first=5 * L)
    second = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: _count(db, "hall") == 9, timeout=600), "did not continue"
    finally:
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=120)
    assert second.returncode == 0, err.decode()
    with open_store(db, "read") as store:
        scores = store.scores("hall", limit=None)
        assert [s["start_frame"] for s in scores] == [L * i for i in range(9)]
        assert _spans(store, "hall") == [(2, 6, "closed")]  # one alert, not two
        assert store.alerts()[0][0]["id"] == alert_id
        assert not [e for e in store.events("hall") if "gap" in (e["detail"] or "")]


def test_a_restart_counts_the_quiet_frames_already_scored(tmp_path: Path, detector) -> None:  # noqa: ANN001
    import time

    from arnet.folders import machine_of, process_identity
    from arnet.store.events import Holder

    folder = tmp_path / "frames"
    _write_frames(folder, footage("..XX...X", seed=3))
    url = str(folder.resolve())
    with open_store(tmp_path / "e.db") as store:
        # as a watcher killed after segment 4 leaves the store: an open alert over segments
        # 2-3, one quiet segment after it (16 frames of a merge gap of 32)
        dead = Holder(
            "dead", "here", 2**22 + 1, f"{machine_of(process_identity())}/0", "arnet watch"
        )
        camera = store.claim_camera("frames", url, dead, frames_per_segment=L).camera
        soon = time.time() + 3600  # the last frame's wall time: no gap to count from it
        segments = [
            {"segment": i, "start_frame": L * i, "end_frame": L * i + L - 1, "start_time": soon,
             "end_time": soon, "score": 0.9 if i in (2, 3) else 0.1}
            for i in range(5)
        ]  # fmt: skip
        alert = {"state": "open", "start_segment": 2, "end_segment": 3, "start_frame": 2 * L,
                 "end_frame": 4 * L - 1, "start_time": soon, "end_time": soon, "peak_score": 0.9,
                 "peak_frame": 2 * L, "peak_time": soon, "threshold": 0.5}  # fmt: skip
        store.commit_segments(camera["id"], segments, [alert], holder=dead, position=5 * L)
        watcher = _watcher(detector, store, [str(folder)], merge_gap=2 * L)
        _run_until(watcher, lambda: len(store.scores("frames", limit=None)) == 8)
        # segments 5 and 6 are quiet too: 48 quiet frames close the alert, 7 opens a new one
        assert _spans(store, "frames") == [(2, 3, "closed"), (7, 7, "closed")]


# ---------------------------------------------------------------------- one writer per camera


def _lease(db, camera: str):  # noqa: ANN001, ANN202
    with open_store(db, "read") as store:
        return store.lease(camera)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_camera_has_one_watcher_and_a_dead_ones_is_taken_over(
    backend: str, tmp_path: Path, live_run: Path, request: pytest.FixtureRequest
) -> None:
    import socket

    if backend == "sqlite":
        db = str(tmp_path / "events.db")
    else:
        db = fresh_database(request.getfixturevalue("postgres_server"), "leases")
    folder = tmp_path / "frames"
    _write_frames(folder, footage("..", seed=1))
    video = _video(tmp_path / "other.mp4", "XXX")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

    def watch(source: str) -> subprocess.Popen:
        argv = [sys.executable, "-m", "arnet", "watch", "--checkpoint", str(live_run), "--db",
                db, "--quiet", f"gate={source}"]  # fmt: skip
        return subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)

    first = watch(str(folder))
    try:
        assert wait_for(lambda: _count(db, "gate") == 2, timeout=600), "the first never scored"
        # a second watcher of the same camera (another source, even) is refused by name
        second = watch(str(video))
        _, err = second.communicate(timeout=600)
        assert second.returncode == 2, err
        (line,) = [x for x in err.splitlines() if x.strip()]
        assert (
            f"camera 'gate' is watched by process {first.pid} (arnet watch) on "
            f"{socket.gethostname()}" in line
        ), line
        assert _count(db, "gate") == 2  # nothing of the other video was written
        _write_frames(folder, footage(".", seed=2), first=2 * L)
        assert wait_for(lambda: _count(db, "gate") == 3, timeout=600)
    finally:
        first.kill()  # SIGKILL: the lease stays behind
        first.wait()
    assert _lease(db, "gate")["pid"] == first.pid
    _write_frames(folder, footage("X", seed=3), first=3 * L)
    third = watch(str(folder))
    try:
        assert wait_for(lambda: _count(db, "gate") == 4, timeout=600), "no take-over"
        assert _lease(db, "gate")["pid"] == third.pid
    finally:
        third.send_signal(signal.SIGTERM)
        _, err = third.communicate(timeout=120)
    assert third.returncode == 0, err
    assert f"taking over from process {first.pid} (arnet watch) on" in err
    assert _lease(db, "gate") is None  # released by the clean stop
    with open_store(db, "read") as store:
        scores = store.scores("gate", limit=None)
        assert [s["start_frame"] for s in scores] == [L * i for i in range(4)]
        assert _spans(store, "gate") == [(3, 3, "closed")]


def test_leases_of_other_machines_expire_and_are_renewed(tmp_path: Path, detector) -> None:  # noqa: ANN001
    from dataclasses import replace

    from arnet.store.events import CameraBusy, Holder

    with open_store(tmp_path / "e.db") as store:
        me = Holder.this_process("test")
        away = Holder("t-away", "elsewhere", os.getpid(), "other-boot/pid:[1]/5", "arnet watch")
        store.claim_camera("gate", "rtsp://x", away)
        with pytest.raises(
            CameraBusy, match=r"watched by process \d+ \(arnet watch\) on elsewhere"
        ):
            store.claim_camera("gate", "rtsp://x", me)  # its lease has not expired
        store.claim_camera("yard", "rtsp://y", replace(away, lease_seconds=-1.0))
        claim = store.claim_camera("yard", "rtsp://y", me)  # expired: taken over
        assert claim.taken_from.host == "elsewhere" and store.lease("yard")["token"] == me.token
        # a watcher renews its lease while it runs, and gives it up when it stops
        folder = tmp_path / "frames"
        folder.mkdir()
        watcher = _watcher(detector, store, [f"hall={folder}"], lease_seconds=0.6)
        watcher.start()
        taken = store.lease("hall")
        assert wait_for(lambda: store.lease("hall")["expires"] > taken["expires"], timeout=60)
        watcher.stop()
        watcher.run()
        assert store.lease("hall") is None


def test_a_watcher_whose_lease_was_taken_over_stops_writing(tmp_path: Path, detector) -> None:  # noqa: ANN001
    import sqlite3

    db = tmp_path / "e.db"
    folder = tmp_path / "frames"
    _write_frames(folder, footage("..", seed=1))
    video = _video(tmp_path / "yard.mp4", "." * 4)
    with open_store(db) as store:
        watcher = _watcher(detector, store, [str(folder), str(video)])
        watcher.start()
        helper = threading.Thread(target=watcher.run, daemon=True)
        helper.start()
        assert wait_for(lambda: len(store.scores("frames", limit=None)) == 2)
        with sqlite3.connect(db) as conn:  # another machine's watcher took it (thought dead)
            conn.execute(
                "UPDATE camera_leases SET token = 'new', host = 'elsewhere', pid = 7 "
                "WHERE camera_id = (SELECT id FROM cameras WHERE name = 'frames')"
            )
        kept = len(store.scores("frames", limit=None))
        _write_frames(folder, footage("XX", seed=2), first=2 * L)
        assert wait_for(lambda: not watcher.workers["frames"].is_alive(), timeout=120)
        watcher.stop()
        helper.join(timeout=120)
        assert len(store.scores("frames", limit=None)) == kept  # not one row more
        assert store.lease("frames")["host"] == "elsewhere"  # not released: not its own
        assert len(store.scores("yard", limit=None)) == 4  # the other camera went on


# ---------------------------------------------------------------------- the store goes away


class _Lines:
    """The stderr lines of a process, read as they come (a thread), to wait for one."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.reader.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stderr:
            self.lines.append(line)

    def held(self) -> int:
        """The most segments the watcher said it held in memory."""
        import re

        counts = [int(m[1]) for x in self.lines if (m := re.search(r"(\d+) segment\(s\) held", x))]
        return max(counts, default=0)

    def text(self) -> str:
        return "".join(self.lines)


def _watch_through_an_outage(  # noqa: ANN001
    db: str, folder: Path, live_run: Path, down, up, stop_first: bool = False
) -> None:
    """A frame-folder watcher into `db`: four segments with an alert opening, then the store
    goes (`down()`), four more segments are scored, the store comes back (`up()`). With
    `stop_first`, the watcher is stopped (SIGTERM) before the store comes back: it waits."""
    _write_frames(folder, footage("..XX", seed=5))
    argv = [sys.executable, "-m", "arnet", "watch", "--checkpoint", str(live_run), "--db", db,
            "--quiet", f"gate={folder}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    watcher = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    lines = _Lines(watcher)
    try:
        assert wait_for(lambda: _count(db, "gate") == 4, timeout=600), lines.text()
        with open_store(db, "read") as store:
            ((alert_id, state),) = [(a["id"], a["state"]) for a in store.alerts()[0]]
        assert state == "open"
        down()
        _write_frames(folder, footage("XX..", seed=6), first=4 * L)
        # it keeps scoring: the four new segments wait in memory
        assert wait_for(lambda: lines.held() >= 4, timeout=600), lines.text()
        assert watcher.poll() is None
        if stop_first:
            watcher.send_signal(signal.SIGTERM)
            assert wait_for(lambda: "wait for the event store" in lines.text(), timeout=600)
            assert watcher.poll() is None  # what it holds is not given up
        up()
        assert wait_for(lambda: _count(db, "gate") == 8, timeout=600), lines.text()
    finally:
        if watcher.poll() is None and not stop_first:
            watcher.send_signal(signal.SIGTERM)
        try:
            watcher.wait(timeout=300)
        except subprocess.TimeoutExpired:
            watcher.kill()
            raise
        lines.reader.join(timeout=60)
    assert watcher.returncode == 0, lines.text()
    assert "Traceback" not in lines.text()
    with open_store(db, "read") as store:
        scores = store.scores("gate", limit=None)
        assert [s["segment"] for s in scores] == list(range(8))  # each once, none lost
        assert [s["score"] > 0.5 for s in scores] == [False, False, True, True, True, True,
                                                       False, False]  # fmt: skip
        assert _spans(store, "gate") == [(2, 5, "closed")]  # the committed alert, continued
        assert store.alerts()[0][0]["id"] == alert_id
        (outage,) = [e for e in store.events("gate") if e["kind"] == "store-outage"]
        assert "the event store was unavailable for" in outage["detail"]
        assert "4 segment(s) held in memory and written" in outage["detail"]


def test_a_postgresql_server_stopped_while_watching(tmp_path: Path, live_run: Path) -> None:
    from pgserver import PostgresServer

    server = PostgresServer()
    server.start()
    try:
        db = fresh_database(server.url, "outage")
        _watch_through_an_outage(db, tmp_path / "frames", live_run, server.stop, server.start)
    finally:
        server.remove()


def test_a_sqlite_store_on_a_full_disk(tmp_path: Path, live_run: Path) -> None:
    from helpers import fill_up, mounted_tmpfs

    with mounted_tmpfs(tmp_path / "disk", "2m") as disk:
        ballast: list[Path] = []
        _watch_through_an_outage(
            str(disk / "events.db"),
            tmp_path / "frames",
            live_run,
            lambda: ballast.append(fill_up(disk)),
            lambda: ballast[0].unlink(),
            stop_first=True,
        )


def test_held_segments_are_bounded_and_no_alert_is_dropped(tmp_path: Path) -> None:
    from helpers import fill_up, mounted_tmpfs

    from arnet.live.outbox import Outbox
    from arnet.store.events import Holder

    def rows(first: int, count: int) -> list[dict]:
        return [{"segment": i, "start_frame": L * i, "end_frame": L * i + L - 1,
                 "start_time": 100.0 + i, "end_time": 101.0 + i, "score": 0.9}
                for i in range(first, first + count)]  # fmt: skip

    def alert(end: int, state: str) -> dict:
        return {"state": state, "start_segment": 5, "end_segment": end, "start_frame": 5 * L,
                "end_frame": L * end + L - 1, "start_time": 105.0, "end_time": 101.0 + end,
                "peak_score": 0.9, "peak_frame": 5 * L, "peak_time": 105.0, "threshold": 0.5,
                **({"peak_image": b"JPEG"} if end == 5 else {})}  # fmt: skip

    with mounted_tmpfs(tmp_path / "disk", "1m") as disk, open_store(disk / "e.db") as store:
        holder = Holder.this_process("test")
        camera = store.claim_camera("gate", "x", holder).camera["id"]
        box = Outbox(store, holder, lambda *_: None, lambda *_: None, limit=8)
        ballast = fill_up(disk)
        opened = {1: [alert(5, "open")], 2: [alert(11, "open")], 3: [alert(13, "closed")]}
        for i in range(6):  # 24 segments; an alert over 5-13, its picture with its first row
            box.batch(camera, rows(4 * i, 4), opened.get(i, []), None)
            assert box.held() <= 8
        assert store.scores("gate") == []
        ballast.unlink()
        assert box.flush(force=True) and box.held() == 0
        assert [s["segment"] for s in store.scores("gate", limit=None)] == list(range(16, 24))
        ((stored),) = store.alerts()[0]
        assert (stored["state"], stored["start_segment"], stored["end_segment"]) == (
            "closed",
            5,
            13,
        )
        assert store.alert_image(stored["id"]) == b"JPEG"
        (outage,) = [e for e in store.events("gate") if e["kind"] == "store-outage"]
        assert (
            "8 segment(s) held in memory and written, 16 dropped (memory bound)"
            in (outage["detail"])
        )


def test_an_odd_sized_frame_is_skipped_and_a_new_size_taken_up(tmp_path: Path, detector) -> None:  # noqa: ANN001
    folder = tmp_path / "frames"
    frames = footage("....", seed=9)
    _write_frames(folder, frames[:20])
    _write_frames(folder, footage(".", seed=1)[:1], first=20, size=48)  # a stray thumbnail
    _write_frames(folder, frames[20:], first=21)
    _write_frames(folder, footage("..", seed=2), first=65, size=40)  # the camera was changed
    with open_store(tmp_path / "e.db") as store:
        watcher = _watcher(detector, store, [str(folder)])
        _run_until(watcher, lambda: len(store.scores("frames", limit=None)) == 6)
        scores = store.scores("frames", limit=None)
        assert [s["start_frame"] for s in scores] == [L * i for i in range(6)]
        kinds = {e["kind"]: e["detail"] for e in store.events("frames")}
        assert "failed" not in kinds
        skipped = "1 frame(s) from read position 20 skipped: 48x48, not the camera's 32x32"
        assert kinds["skipped"] == skipped
        assert kinds["resized"] == "frames are 40x40 from read position 65 on, were 32x32"
    with open_store(tmp_path / "e.db") as store:  # a restart reads on after the last file
        again = _watcher(detector, store, [str(folder)])
        _write_frames(folder, footage(".", seed=3), first=97, size=40)
        _run_until(again, lambda: len(store.scores("frames", limit=None)) == 7)
        assert [s["start_frame"] for s in store.scores("frames", limit=None)][-1] == 6 * L


def test_a_refused_watcher_frees_the_cameras_it_had_taken(tmp_path: Path, detector) -> None:  # noqa: ANN001
    from arnet.store.events import CameraBusy

    gate, yard = tmp_path / "gate", tmp_path / "yard"
    gate.mkdir()
    yard.mkdir()
    with open_store(tmp_path / "e.db") as store:
        first = _watcher(detector, store, [str(gate)])
        first.start()
        second = _watcher(detector, store, [str(yard), str(gate)])
        with pytest.raises(CameraBusy, match="camera 'gate' is watched by process"):
            second.start()
        assert store.lease("yard") is None and store.lease("gate")["token"] == first.holder.token
        first.stop()
        first.run()
        assert store.lease("gate") is None
