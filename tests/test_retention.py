"""Retention (`arnet watch --keep-days/--keep-gb/--keep-acknowledged-days`) on real SQLite and
PostgreSQL stores: by age and by size, acknowledged alerts and their clips kept longer, clip
files removed with their alerts, open alerts never; pruning in many small transactions while a
reader and a writer go on between them; and a watcher pruning while it watches. No test
measures time: the interleaving is read from the order of what happened."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy")

from pgserver import fresh_database, postgres_server  # noqa: E402, F401

from arnet.cli import main  # noqa: E402
from arnet.errors import DataError  # noqa: E402
from arnet.store import open_store  # noqa: E402
from arnet.store.media import clip, record_clip  # noqa: E402
from arnet.store.retention import DAY, Pruner, RetentionPolicy  # noqa: E402

T0 = 1_700_000_000.0
NOW = T0 + 10 * DAY
PER_DAY = 50  # segments a day in these stores


def _db(backend: str, tmp_path: Path, request: pytest.FixtureRequest, name: str) -> str:
    if backend == "sqlite":
        return str(tmp_path / f"{name}.db")
    return fresh_database(request.getfixturevalue("postgres_server"), name)


def _segments(first: int, count: int, step: float = DAY / PER_DAY) -> list[dict]:
    return [
        {
            "segment": i,
            "start_frame": 16 * i,
            "end_frame": 16 * i + 15,
            "start_time": T0 + i * step,
            "end_time": T0 + i * step + 0.6,
            "score": 0.1,
        }
        for i in range(first, first + count)
    ]


def _alert(day: float, state: str = "closed", length: int = 3) -> dict:
    start = int(day * PER_DAY)
    step = DAY / PER_DAY
    return {
        "state": state,
        "start_segment": start,
        "end_segment": start + length - 1,
        "start_frame": 16 * start,
        "end_frame": 16 * (start + length) - 1,
        "start_time": T0 + start * step,
        "end_time": T0 + (start + length) * step,
        "peak_score": 0.9,
        "peak_frame": 16 * start,
        "peak_time": T0 + start * step,
        "threshold": 0.5,
        "peak_image": b"\xff\xd8" + bytes(2000),
    }


def _fill(store, clips_folder: Path, camera: str = "gate") -> dict[str, int]:  # noqa: ANN001
    """Ten days of one camera: scores, an event a day, alerts on days 0 (still open), 2, 5
    (acknowledged) and 8, each closed one with a clip file. {name: alert id}."""
    cam = store.register_camera(camera, "x")
    store.commit_segments(cam["id"], _segments(0, 10 * PER_DAY))
    ids = {}
    for name, day, state in (("open0", 0, "open"), ("day2", 2, "closed"), ("ack5", 5, "closed"),
                             ("day8", 8, "closed")):  # fmt: skip
        (ids[name],) = store.commit_segments(cam["id"], [], [_alert(day, state)])
    for day in range(10):
        store.add_event(cam["id"], "connected", "x", when=T0 + day * DAY)
    store.acknowledge(ids["ack5"], "seen")
    folder = clips_folder / camera
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("day2", "ack5", "day8"):
        path = folder / f"alert-{ids[name]}.mp4"
        path.write_bytes(bytes(50_000))
        record_clip(store, ids[name], {"path": str(path), "start_frame": 0, "end_frame": 1,
                                       "start_time": T0, "fps": 25.0, "width": 2, "height": 2,
                                       "bytes": 50_000})  # fmt: skip
    return ids


def _alert_ids(store) -> set[int]:  # noqa: ANN001
    return {a["id"] for a in store.alerts(limit=None)[0]}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_pruning_by_age_keeps_acknowledged_alerts_longer(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db = _db(backend, tmp_path, request, "age")
    with open_store(db) as store:
        ids = _fill(store, tmp_path / "clips")
        cam = store.camera("gate")["id"]
        other = _fill(store, tmp_path / "clips", "other")  # another watcher's camera
        files = {n: Path(clip(store, i)["path"]) for n, i in ids.items() if n != "open0"}
        batches: list[tuple[str, int]] = []
        policy = RetentionPolicy(keep_days=3, keep_acknowledged_days=6, batch=40, pause=0)
        pruner = Pruner(
            store, policy, [cam], on_batch=lambda *b: batches.append(b), clock=lambda: NOW
        )
        done = pruner.round()
        # scores before day 7 went, but the acknowledged alert's (day 5, kept 6 days)
        left = [s["segment"] for s in store.scores("gate", limit=None)]
        ack = store.alert(ids["ack5"])
        kept = list(range(ack["start_segment"], ack["end_segment"] + 1))
        assert left == kept + list(range(7 * PER_DAY, 10 * PER_DAY))
        assert len(ack["segments"]) == 3 and ack["acknowledgements"][0]["note"] == "seen"
        assert _alert_ids(store) >= {ids["open0"], ids["ack5"], ids["day8"]}
        assert ids["day2"] not in _alert_ids(store)
        assert not files["day2"].exists() and files["ack5"].exists() and files["day8"].exists()
        assert [e["time"] for e in store.events("gate")] == [T0 + d * DAY for d in (9, 8, 7)]
        assert (done.alerts, done.clips, done.clip_bytes) == (1, 1, 50_000)
        assert done.scores == 7 * PER_DAY - 3 and done.events == 7
        # small transactions: never more than a batch of rows in one
        assert all(n <= 40 for _, n in batches) and done.batches == len(batches) > 9
        # the other camera is not this watcher's: untouched
        assert len(store.scores("other", limit=None)) == 10 * PER_DAY
        assert all(i in _alert_ids(store) for i in other.values())
        # a second round has nothing left to do
        assert pruner.round().rows == 0
        # four days later the acknowledged alert is older than 6 days: it goes, with its clip
        later = Pruner(store, policy, [cam], clock=lambda: NOW + 4 * DAY)
        later.round()
        assert ids["ack5"] not in _alert_ids(store) and not files["ack5"].exists()
        assert ids["open0"] in _alert_ids(store)  # an open alert is never pruned


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_pruning_by_size_removes_the_oldest_first(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db = _db(backend, tmp_path, request, "size")
    with open_store(db) as store:
        ids = _fill(store, tmp_path / "clips")
        cam = store.camera("gate")["id"]
        files = {n: Path(clip(store, i)["path"]) for n, i in ids.items() if n != "open0"}
        full = Pruner(store, RetentionPolicy(keep_gb=1.0), [cam]).size()
        # the three clips, four images and the rows
        assert full > 3 * 50_000 + 4 * 2002
        limit = full - 60_000  # one clip and some scores must go
        policy = RetentionPolicy(keep_gb=limit / 1e9, batch=50, pause=0)
        done = Pruner(store, policy, [cam]).round()
        assert done.size_before == full and done.size_after <= limit
        # the oldest went first: the scores before the day-2 alert, then that alert and clip
        assert ids["day2"] not in _alert_ids(store) and not files["day2"].exists()
        assert ids["day8"] in _alert_ids(store) and files["day8"].exists()
        left = store.scores("gate", limit=None)
        assert left[0]["segment"] > 2 * PER_DAY and left[-1]["segment"] == 10 * PER_DAY - 1
        # a budget of about the acknowledged alert (its 50 kB clip, image and rows) and the
        # open alert: everything else goes first (the acknowledged one is kept last); then,
        # with no room at all, the acknowledged one too (never the open one)
        tiny = RetentionPolicy(keep_gb=58_000 / 1e9, batch=200, pause=0)
        Pruner(store, tiny, [cam]).round()
        assert ids["ack5"] in _alert_ids(store) and ids["day8"] not in _alert_ids(store)
        Pruner(store, RetentionPolicy(keep_gb=1e-9, batch=200, pause=0), [cam]).round()
        assert _alert_ids(store) == {ids["open0"]} and not files["ack5"].exists()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_readers_and_the_watcher_go_on_while_pruning(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db = _db(backend, tmp_path, request, "busy")
    with open_store(db) as store:
        cam = store.register_camera("gate", "x")
        for first in range(0, 20_000, 5000):
            store.commit_segments(cam["id"], _segments(first, 5000, step=1.0))
        log: list[str] = []
        stop = threading.Event()

        def read() -> None:
            with open_store(db, "read") as reader:
                while not stop.is_set():
                    reader.alerts(limit=10)
                    reader.scores("gate", limit=10)
                    log.append("read")

        def write() -> None:
            segment = 20_000
            while not stop.is_set():
                rows = _segments(segment, 1)
                rows[0]["start_time"] = NOW
                store.commit_segments(cam["id"], rows)
                segment += 1
                log.append("write")

        threads = [threading.Thread(target=read), threading.Thread(target=write)]
        for t in threads:
            t.start()
        try:
            policy = RetentionPolicy(keep_days=1, batch=500, pause=0.02)
            pruner = Pruner(store, policy, [cam["id"]], on_batch=lambda *_: log.append("prune"),
                            clock=lambda: NOW)  # fmt: skip
            done = pruner.round()
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        # every old score went, none of those written meanwhile
        assert done.scores == 20_000
        assert len(store.scores("gate", limit=None)) == log.count("write")
        prunes = [i for i, x in enumerate(log) if x == "prune"]
        assert len(prunes) >= 38  # 500 rows a transaction
        between = log[prunes[0] : prunes[-1]]
        # the reader and the watcher's commits went on between the first and the last batch
        assert between.count("read") >= 5 and between.count("write") >= 5
        # and between most pairs of batches, not only at the ends
        gaps = [log[a + 1 : b] for a, b in zip(prunes, prunes[1:])]
        assert sum(1 for g in gaps if "read" in g or "write" in g) >= len(gaps) // 2


def test_a_watcher_prunes_while_it_watches(tmp_path: Path) -> None:
    pytest.importorskip("av")
    pytest.importorskip("cv2")
    from helpers import write_video
    from livekit import footage, make_checkpoint

    from arnet.detection.detector import load_detector
    from arnet.live.scorer import SegmentScorer
    from arnet.live.sources import parse_sources
    from arnet.live.tracker import Thresholds
    from arnet.live.watch import Watcher, WatchOptions

    detector = load_detector(make_checkpoint(tmp_path / "run"), device="cpu")[0]
    video = write_video(tmp_path / "gate.mp4", footage("." * 12, seed=2), fps=25)
    with open_store(tmp_path / "e.db") as store:
        ids = _fill(store, tmp_path / "clips")  # ten days of 2023, long gone
        policy = RetentionPolicy(keep_days=30, batch=100, pause=0, interval=0.2)
        options = WatchOptions(quiet=True, realtime=True, retention=policy)
        sources = parse_sources([f"gate={video}"])
        watcher = Watcher(SegmentScorer(detector), store, sources, Thresholds(0.5, 0.5), options)
        watcher.start()
        watcher.run()
        watcher.close()
        assert watcher.retention.rounds >= 1
        scores = store.scores("gate", limit=None)
        # the old days went; what this watcher scored now stayed
        assert [s["segment"] for s in scores] == list(range(10 * PER_DAY, 10 * PER_DAY + 12))
        # the old closed alerts went with their clips; the one left open in 2023 is closed by
        # this watcher (its camera is quiet) and may then go too
        assert _alert_ids(store) <= {ids["open0"]}
        assert not [p for p in (tmp_path / "clips").rglob("*.mp4")]


def test_retention_options_are_checked(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    with pytest.raises(DataError, match="shorter than --keep-days 3"):
        RetentionPolicy(keep_days=3, keep_acknowledged_days=1)
    with pytest.raises(DataError, match="needs --keep-days"):
        RetentionPolicy(keep_acknowledged_days=1)
    assert RetentionPolicy(keep_days=2).keep_acknowledged_days == 8
    assert not RetentionPolicy().active
    video = tmp_path / "x.mp4"
    video.write_bytes(b"")
    base = [
        "watch",
        "--checkpoint",
        str(tmp_path / "none"),
        "--db",
        str(tmp_path / "e.db"),
        str(video),
    ]
    assert main([*base, "--keep-days", "3", "--keep-acknowledged-days", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--keep-acknowledged-days 2 is shorter than --keep-days 3" in err
    assert len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as info:
        main([*base, "--keep-gb", "-1"])
    assert info.value.code == 2
    assert not (tmp_path / "e.db").exists()
