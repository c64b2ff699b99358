"""`arnet watch --notify`: alerts delivered to a real HTTP receiver (http.server on the loopback
address) and a real mosquitto broker started by the test, through receivers that are down,
slow, failing or refusing, and a watcher killed with SIGKILL between an alert and its delivery.
No test measures time: waits poll the store or the receiver for what must eventually happen."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("av")
pytest.importorskip("cv2")
pytest.importorskip("sqlalchemy")
pytest.importorskip("httpx")

from livekit import footage, make_checkpoint, wait_for  # noqa: E402
from notifykit import Broker, Receiver, Subscriber, free_port  # noqa: E402
from pgserver import fresh_database, postgres_server  # noqa: E402, F401

from arnet.cli import main  # noqa: E402
from arnet.store import open_store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SECRET = b"a shared secret of the receiver"


@pytest.fixture(scope="module")
def live_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint that alerts on a bright square (see livekit)."""
    return make_checkpoint(tmp_path_factory.mktemp("notify"))


@pytest.fixture(scope="module")
def detector(live_run: Path):
    from arnet.detection.detector import load_detector

    return load_detector(live_run, device="cpu")[0]


def _video(path: Path, pattern: str, seed: int = 0) -> Path:
    from helpers import write_video

    return write_video(path, footage(pattern, seed), fps=25)


def _sinks(urls, secret=SECRET, **options):  # noqa: ANN001, ANN202
    from arnet.live.notify import make_sinks
    from arnet.live.sinks import NotifyOptions

    defaults = {"first_delay": 0.1, "max_delay": 0.5, "drain": 60.0, "timeout": 5.0}
    return make_sinks(urls, secret, NotifyOptions(**{**defaults, **options}))


def _watch(detector, store, sources, sinks, **options):  # noqa: ANN001, ANN202
    """Run a watcher over files to their end, then stop it (its sinks drain)."""
    from arnet.live.scorer import SegmentScorer
    from arnet.live.sources import parse_sources
    from arnet.live.tracker import Thresholds
    from arnet.live.watch import Watcher, WatchOptions

    opts = WatchOptions(quiet=True, reconnect_first=0.2, reconnect_max=0.5, **options)
    watcher = Watcher(
        SegmentScorer(detector), store, parse_sources(sources), Thresholds(0.5, 0.5), opts, sinks
    )
    watcher.start()
    try:
        watcher.run()
    finally:
        watcher.close()
    return watcher


def _deliveries(store):  # noqa: ANN001, ANN202
    from arnet.store.deliveries import Deliveries

    alerts, _ = store.alerts(limit=None)
    found = Deliveries(store).of_alerts([a["id"] for a in alerts])
    return [dict(d, alert_id=i) for i, rows in found.items() for d in rows]


# ---------------------------------------------------------------------- webhooks


def _check_delivered(store, receiver: Receiver, cameras: set[str], clips: bool = False) -> None:  # noqa: ANN001
    from arnet.live.webhook import verify

    alerts, _ = store.alerts(limit=None)
    assert alerts and {a["camera"] for a in alerts} == cameras
    got = receiver.accepted()
    for r in got:  # every body signed with the secret, its event id in the headers
        assert verify(SECRET, r["body"], r["headers"]["x-arnet-signature"]), r["headers"]
        assert r["headers"]["x-arnet-event"] == r["json"]["event_id"]
        assert r["headers"]["content-type"] == "application/json"
    events = {(r["json"]["alert_id"], r["json"]["event"]) for r in got}
    for a in alerts:  # each alert opened and closed, by its id in the store
        assert (a["id"], "opened") in events and (a["id"], "closed") in events
        closed = next(
            r["json"]
            for r in got
            if r["json"]["alert_id"] == a["id"] and r["json"]["event"] == "closed"
        )
        assert closed["camera"] == a["camera"] and closed["state"] == "closed"
        for key in ("start_frame", "end_frame", "start_time", "end_time", "peak_score"):
            assert closed[key] == a[key], key
        assert closed["threshold"] == 0.5 and closed["image"] == f"/api/alerts/{a['id']}/image"
        for r in (r["json"] for r in got if r["json"]["alert_id"] == a["id"]):
            assert r["clip"] == (f"/api/alerts/{a['id']}/clip" if clips else None), r
    rows = _deliveries(store)
    assert rows and {d["status"] for d in rows} == {"delivered"}
    assert len({d["event_id"] for d in rows}) == len(rows)  # one row per event and target
    assert {r["json"]["event_id"] for r in got} == {d["event_id"] for d in rows}


def test_webhook_gets_each_alert_event_signed(tmp_path: Path, detector) -> None:  # noqa: ANN001
    videos = [_video(tmp_path / f"c{i}.mp4", "..XXX...XX..", seed=i) for i in range(2)]
    with Receiver() as receiver, open_store(tmp_path / "events.db") as store:
        _watch(detector, store, [f"c{i}={v}" for i, v in enumerate(videos)], _sinks([receiver.url]))
        _check_delivered(store, receiver, {"c0", "c1"})
        # nothing sent twice to a receiver that answered at once
        assert len(receiver.requests) == len(_deliveries(store))


def test_with_clips_on_every_event_names_where_its_clip_is_served(tmp_path: Path, detector) -> None:  # noqa: ANN001, E501
    from fastapi.testclient import TestClient

    from arnet.live.clips import ClipSettings
    from arnet.web.app import create_app

    video = _video(tmp_path / "c.mp4", "..XXX...XX..", seed=5)
    clips = ClipSettings(folder=tmp_path / "clips", before=0.2, after=0.2)
    with Receiver() as receiver, open_store(tmp_path / "events.db") as store:
        _watch(detector, store, [f"gate={video}"], _sinks([receiver.url]), clips=clips)
        _check_delivered(store, receiver, {"gate"}, clips=True)
        client = TestClient(create_app(store), base_url="http://127.0.0.1")
        for path in {r["json"]["clip"] for r in receiver.accepted()}:
            answer = client.get(path)  # the path the payload gave, served as an MP4
            assert answer.status_code == 200 and answer.content[4:8] == b"ftyp", path


def test_webhooks_on_postgresql(tmp_path: Path, detector, request) -> None:  # noqa: ANN001
    db = fresh_database(request.getfixturevalue("postgres_server"), "notify")
    video = _video(tmp_path / "c.mp4", "..XXX...", seed=3)
    with Receiver() as receiver, open_store(db) as store:
        _watch(detector, store, [f"pg={video}"], _sinks([receiver.url]))
        _check_delivered(store, receiver, {"pg"})


def test_a_receiver_answering_500_is_retried(tmp_path: Path, detector, capsys) -> None:  # noqa: ANN001
    video = _video(tmp_path / "c.mp4", "..XXX...", seed=4)
    with Receiver(answer=lambda n, r: 500 if n < 3 else 200) as receiver:
        with open_store(tmp_path / "events.db") as store:
            _watch(detector, store, [f"gate={video}"], _sinks([receiver.url]))
            _check_delivered(store, receiver, {"gate"})
            first = min(_deliveries(store), key=lambda d: d["created"])
            assert first["attempts"] == 4 and "HTTP 500" in first["last_error"]
    err = capsys.readouterr().err
    assert err.count("not delivered (HTTP 500") == 1, err  # said once per outage, not per try
    assert "delivering again" in err


def test_a_receiver_down_then_up_gets_them_later(tmp_path: Path, detector) -> None:  # noqa: ANN001
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    video = _video(tmp_path / "c.mp4", "..XXX...", seed=5)
    db = tmp_path / "events.db"
    up: list[Receiver] = []

    def start_when_failed() -> None:
        def failed() -> bool:
            with open_store(db, "read") as s:
                return any(d["attempts"] >= 2 for d in _deliveries(s))

        assert wait_for(failed, timeout=300)
        up.append(Receiver(port).__enter__())

    helper = threading.Thread(target=start_when_failed, daemon=True)
    helper.start()
    with open_store(db) as store:
        _watch(detector, store, [f"gate={video}"], _sinks([url], attempts=1000))
        helper.join()
        try:
            _check_delivered(store, up[0], {"gate"})
            # the first event failed while the receiver was down; the later ones waited
            # behind it (events of a target are delivered in order)
            first, *later = sorted(
                _deliveries(store), key=lambda d: d["event_id"] != "alert-1-opened"
            )
            assert first["attempts"] >= 2 and "ConnectError" in first["last_error"]
        finally:
            up[0].__exit__()


def test_a_slow_receiver_never_blocks_scoring(tmp_path: Path, detector) -> None:  # noqa: ANN001
    video = _video(tmp_path / "c.mp4", "..XX....XX....XX....", seed=6)
    hold = threading.Event()
    db = tmp_path / "events.db"
    with Receiver(hold=hold) as receiver, open_store(db) as store:

        def release_when_scored() -> None:
            # every segment and alert committed while the receiver still holds its first POST
            def scored() -> bool:
                with open_store(db, "read") as s:
                    return len(s.scores("gate", limit=None)) == 20 and s.alerts()[1] == 3

            ok = wait_for(scored, timeout=300)
            blocked.append(ok and not receiver.requests)
            hold.set()

        blocked: list[bool] = []
        helper = threading.Thread(target=release_when_scored, daemon=True)
        helper.start()
        _watch(detector, store, [f"gate={video}"], _sinks([receiver.url], timeout=600))
        helper.join()
        assert blocked == [True], "scoring waited for the receiver"
        _check_delivered(store, receiver, {"gate"})


def test_a_refused_signature_becomes_a_dead_letter(tmp_path: Path, detector, capsys) -> None:  # noqa: ANN001
    from arnet.live.webhook import verify

    def answer(n: int, r: dict) -> int:  # the receiver knows another secret
        return (
            200
            if verify(b"another secret", r["body"], r["headers"].get("x-arnet-signature"))
            else 401
        )

    video = _video(tmp_path / "c.mp4", "..XXX...", seed=7)
    db = tmp_path / "events.db"
    with Receiver(answer=answer) as receiver, open_store(db) as store:
        _watch(detector, store, [f"gate={video}"], _sinks([receiver.url], attempts=3))
        rows = _deliveries(store)
        assert rows and all(d["status"] == "dead" and d["attempts"] == 3 for d in rows)
        assert all(d["last_error"].startswith("HTTP 401 Unauthorized") for d in rows)
        assert len(receiver.requests) == 3 * len(rows)
    err = capsys.readouterr().err.splitlines()
    dead = [line for line in err if "gave up on" in line]
    assert len(dead) == len(rows), err  # one clear line per dead letter
    assert "after 3 attempt(s): HTTP 401 Unauthorized" in dead[0]
    assert "dead letter" in dead[0] and SECRET.decode() not in "\n".join(err)
    # arnet alerts shows them
    assert main(["alerts", "--db", str(db), "--deliveries"]) == 0
    table = capsys.readouterr().out
    assert f"{len(rows)} dead" in table and "deliveries" in table
    assert main(["alerts", "--db", str(db), "--deliveries", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["alerts"][0]["deliveries"]
    assert {d["status"] for d in listed} == {"dead"} and listed[0]["last_error"].startswith(
        "HTTP 401"
    )
    assert main(["alerts", "--db", str(db), "--deliveries", "--csv"]) == 0
    (row,) = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert row["deliveries"] == f"{len(rows)} dead"


def _cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def test_kill_9_between_alert_and_delivery(tmp_path: Path, live_run: Path) -> None:
    """The first watcher stores the alert but cannot deliver it (the receiver is down) and is
    killed; once the receiver is up, the restarted watcher delivers it, same alert id."""
    port = free_port()
    db = tmp_path / "events.db"
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    video = _video(tmp_path / "c.mp4", "..XXX...", seed=8)
    argv = [
        sys.executable, "-m", "arnet", "watch", "--checkpoint", str(live_run), "--db", str(db),
        "--notify", f"http://127.0.0.1:{port}/hook", "--notify-secret-file", str(secret),
        "--notify-retry-first", "0.2", "--notify-drain", "600", "--quiet", f"gate={video}",
    ]  # fmt: skip
    first = subprocess.Popen(argv, env=_cli_env(), stderr=subprocess.PIPE)
    try:

        def tried() -> bool:
            with open_store(db, "read") as store:
                rows = _deliveries(store)
                return (
                    len(rows) >= 2
                    and all(d["status"] == "pending" for d in rows)
                    and any(d["attempts"] >= 1 for d in rows)
                )

        assert wait_for(tried, timeout=600), "the first watcher never tried to deliver"
    finally:
        first.kill()  # SIGKILL: no clean-up of any kind
        first.wait()
    with open_store(db, "read") as store:
        (alert,) = store.alerts()[0]
        pending = {d["event_id"] for d in _deliveries(store)}
    with Receiver(port) as receiver:
        second = subprocess.run(argv, env=_cli_env(), capture_output=True, text=True, timeout=600)
        assert second.returncode == 0, second.stderr
        got = receiver.accepted()
        assert {r["json"]["event_id"] for r in got} == pending
        assert {r["json"]["alert_id"] for r in got} == {alert["id"]}
        with open_store(db, "read") as store:
            assert store.alerts()[1] == 1  # the alert is not opened again
            assert {d["status"] for d in _deliveries(store)} == {"delivered"}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--notify", "ftp://example.org/x"], "--notify ftp://example.org/x: unsupported scheme"),
        (["--notify", "mqtt://127.0.0.1:1883"], "--notify mqtt://127.0.0.1:1883: no topic"),
        (["--notify", "http:///hook"], "--notify http:///hook: no host"),
        (["--notify", "http://h:99999/x"], "--notify http://h:99999/x: not a URL"),
        (
            ["--notify", "http://h/x", "--notify-secret-file", "/no/such"],
            "--notify-secret-file /no/such",
        ),
        (["--notify-secret-file", "/no/such"], "--notify-secret-file: no --notify URL"),
        (["--notify", "http://h/x", "--notify-drain", "-1"], "--notify-drain must be >= 0"),
    ],
)
def test_bad_notify_options_are_named_with_exit_2(
    extra: list[str],
    message: str,
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    db = tmp_path / "events.db"
    code = main(
        ["watch", "--checkpoint", str(tmp_path / "none"), "--db", str(db), "cam.mp4", *extra]
    )
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not db.exists()  # refused before anything was made


def test_an_empty_secret_file_is_refused(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    empty = tmp_path / "secret"
    empty.write_text("\n")
    code = main(
        [
            "watch",
            "--checkpoint",
            "x",
            "--notify",
            "http://h/x",
            "--notify-secret-file",
            str(empty),
            "c.mp4",
        ]
    )
    assert (
        code == 2 and f"--notify-secret-file {empty}: the file is empty" in capsys.readouterr().err
    )


def test_a_password_in_a_target_is_never_stored_or_shown() -> None:
    from arnet.live.sinks import shown

    assert shown("mqtt://ha:hunter2@broker:1883/arnet") == "mqtt://ha:***@broker:1883/arnet"
    assert shown("https://example.org/hook?x=1") == "https://example.org/hook?x=1"


# ---------------------------------------------------------------------- MQTT


def test_mqtt_events_state_and_home_assistant_discovery(tmp_path: Path, detector) -> None:  # noqa: ANN001
    video = _video(tmp_path / "c.mp4", "..XXX...XX..", seed=9)
    with Broker() as broker:
        sub = Subscriber(broker.port, ("arnet/#", "homeassistant/#"))
        try:
            url = f"mqtt://127.0.0.1:{broker.port}/arnet"
            with open_store(tmp_path / "events.db") as store:
                _watch(detector, store, [f"front.door={video}"], _sinks([url]))
                alerts, _ = store.alerts(limit=None)
                rows = _deliveries(store)
                assert rows and {d["status"] for d in rows} == {"delivered"}

            def all_seen() -> bool:
                return len(sub.on("arnet/front_door/events")) == len(rows)

            assert wait_for(all_seen, timeout=60)
            events = [json.loads(p) for p in sub.on("arnet/front_door/events")]
            assert [(e["alert_id"], e["event"]) for e in events if e["event"] != "updated"] == [
                (a["id"], k)
                for a in sorted(alerts, key=lambda a: a["id"])
                for k in ("opened", "closed")
            ]
            assert sub.on("arnet/front_door/state")[-1] == b"OFF"
            assert b"ON" in sub.on("arnet/front_door/state")
        finally:
            sub.close()
        late = Subscriber(broker.port, ("arnet/#", "homeassistant/#"))  # retained ones
        try:
            assert wait_for(lambda: late.on("arnet/front_door/state") == [b"OFF"], timeout=30)
            config_topic = "homeassistant/binary_sensor/arnet_front_door/config"
            assert wait_for(lambda: late.on(config_topic), timeout=30)
            config = json.loads(late.on(config_topic)[0])
            assert config["state_topic"] == "arnet/front_door/state"
            assert config["unique_id"] == "arnet_front_door"
            assert (config["payload_on"], config["payload_off"]) == ("ON", "OFF")
            assert config["device"]["name"] == "arnet front.door"
            assert late.on("arnet/front_door/events") == []  # events are not retained
        finally:
            late.close()


def test_a_broker_down_then_up_gets_them_later(tmp_path: Path, detector) -> None:  # noqa: ANN001
    video = _video(tmp_path / "c.mp4", "..XXX...", seed=10)
    db = tmp_path / "events.db"
    broker = Broker()
    started: list[Subscriber] = []

    def start_when_failed() -> None:
        def failed() -> bool:
            with open_store(db, "read") as s:
                return any(d["attempts"] >= 1 for d in _deliveries(s))

        assert wait_for(failed, timeout=300)
        broker.start()

    helper = threading.Thread(target=start_when_failed, daemon=True)
    helper.start()
    url = f"mqtt://127.0.0.1:{broker.port}/arnet"
    try:
        with open_store(db) as store:
            _watch(detector, store, [f"gate={video}"], _sinks([url], attempts=1000, timeout=1.0))
            helper.join()
            rows = _deliveries(store)
            assert rows and {d["status"] for d in rows} == {"delivered"}
            assert any("not connected to the broker" in (d["last_error"] or "") for d in rows)
        started.append(Subscriber(broker.port, ("arnet/#",)))
        assert wait_for(lambda: started[0].on("arnet/gate/state") == [b"OFF"], timeout=30)
    finally:
        for s in started:
            s.close()
        broker.__exit__()


def test_a_watcher_ending_with_deliveries_pending_keeps_them(
    tmp_path: Path, live_run: Path
) -> None:
    """A watcher whose receiver is down says what stays pending once its drain time is over,
    exits 0, and leaves them pending in the store for the next watcher."""
    port = free_port()
    db = tmp_path / "events.db"
    video = _video(tmp_path / "c.mp4", "..XXX...", seed=11)
    argv = [
        "watch", "--checkpoint", str(live_run), "--db", str(db),
        "--notify", f"http://127.0.0.1:{port}/hook", "--notify-retry-first", "0.2",
        "--notify-drain", "1", "--quiet", f"gate={video}",
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "arnet", *argv], env=_cli_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "still pending; the next watcher of these cameras sends them" in done.stderr
    assert "not delivered (ConnectError" in done.stderr
    with open_store(db, "read") as store:
        rows = _deliveries(store)
        assert rows and {d["status"] for d in rows} == {"pending"}


def test_a_broker_password_from_the_environment_and_a_wrong_one(
    tmp_path: Path,
    detector,
    monkeypatch,
    capsys,  # noqa: ANN001
) -> None:
    video = _video(tmp_path / "c.mp4", "..XXX...", seed=12)
    with Broker(users={"watcher": "right password"}) as broker:
        url = f"mqtt://watcher@127.0.0.1:{broker.port}/arnet"
        monkeypatch.setenv("ARNET_MQTT_PASSWORD", "wrong password")
        with open_store(tmp_path / "refused.db") as store:
            _watch(detector, store, [f"gate={video}"], _sinks([url], attempts=2, timeout=1.0))
            rows = _deliveries(store)
            assert rows and {d["status"] for d in rows} == {"dead"}
            assert "refused the connection" in rows[0]["last_error"], rows[0]["last_error"]
        assert "gave up on alert" in capsys.readouterr().err
        monkeypatch.setenv("ARNET_MQTT_PASSWORD", "right password")
        with open_store(tmp_path / "events.db") as store:
            _watch(detector, store, [f"gate={video}"], _sinks([url]))
            rows = _deliveries(store)
            assert rows and {d["status"] for d in rows} == {"delivered"}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_pending_deliveries_survive_a_restart(
    backend: str,
    tmp_path: Path,
    detector,
    request,  # noqa: ANN001
) -> None:
    """A watcher that stops with its receiver down leaves the deliveries pending in the store;
    the next watcher of the camera sends them (same alert ids), then its own."""
    if backend == "postgresql":
        db = fresh_database(request.getfixturevalue("postgres_server"), "restart")
    else:
        db = str(tmp_path / "events.db")
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    first = _video(tmp_path / "a.mp4", "..XXX...", seed=13)
    with open_store(db) as store:
        _watch(detector, store, [f"gate={first}"], _sinks([url], drain=0.0, attempts=1000))
        before = {d["event_id"]: d for d in _deliveries(store)}
        assert before and {d["status"] for d in before.values()} == {"pending"}
        (alert,) = store.alerts()[0]
    second = _video(tmp_path / "b.mp4", "..XX....", seed=14)  # a new file: a new alert
    with Receiver(port) as receiver, open_store(db) as store:
        _watch(detector, store, [f"gate={second}"], _sinks([url]))
        got = [r["json"] for r in receiver.accepted()]
        assert {e["event_id"] for e in got} >= set(before)
        assert {e["alert_id"] for e in got if e["event_id"] in before} == {alert["id"]}
        # the restarted watcher's backlog went first: events in the order they happened
        assert [e["event_id"] for e in got[: len(before)]] == sorted(
            before, key=lambda k: before[k]["created"]
        )
        assert store.alerts()[1] == 2
        assert {d["status"] for d in _deliveries(store)} == {"delivered"}


class _Recorder:
    """An in-process AlertSink: what it was told, in order; `broken` raises on every call."""

    def __init__(self, broken: bool = False) -> None:
        self.calls: list[tuple[str, int, str]] = []
        self.broken = broken
        self.stopped = 0

    def _got(self, kind: str, alert) -> None:  # noqa: ANN001
        if self.broken:
            raise RuntimeError("a broken sink")
        self.calls.append((kind, alert["id"], alert["state"]))

    def opened(self, alert) -> None:  # noqa: ANN001
        self._got("opened", alert)

    def updated(self, alert) -> None:  # noqa: ANN001
        self._got("updated", alert)

    def closed(self, alert) -> None:  # noqa: ANN001
        self._got("closed", alert)

    def stop(self) -> None:
        self.stopped += 1


def test_every_sink_hears_each_event_once_the_store_holds_it(tmp_path: Path, detector) -> None:  # noqa: ANN001
    from arnet.live.sinks import AlertSink

    video = _video(tmp_path / "c.mp4", "..XXX...XX...", seed=15)
    broken, recorder = _Recorder(broken=True), _Recorder()
    assert isinstance(recorder, AlertSink)
    with Receiver() as receiver, open_store(tmp_path / "events.db") as store:
        _watch(detector, store, [f"gate={video}"], [broken, recorder, *_sinks([receiver.url])])
        alerts = sorted(store.alerts(limit=None)[0], key=lambda a: a["id"])
        assert len(alerts) == 2 and recorder.stopped == 1
        # opened first, closed last, per alert, with the store's ids; a broken sink stops nothing
        for a in alerts:
            mine = [c for c in recorder.calls if c[1] == a["id"]]
            # (a short alert is opened and closed by one commit: both events, state closed)
            assert mine[0][0] == "opened" and mine[-1] == ("closed", a["id"], "closed")
            assert {c[0] for c in mine[1:-1]} <= {"updated"}
        # the webhook got exactly the events the in-process sink heard
        hook = [(r["json"]["event"], r["json"]["alert_id"]) for r in receiver.accepted()]
        assert sorted(hook) == sorted((k, i) for k, i, _ in recorder.calls)
