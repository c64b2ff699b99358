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
