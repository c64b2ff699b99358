"""The event store on a real SQLite file and a real PostgreSQL server started by the test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("alembic")

from pgserver import fresh_database, postgres_server  # noqa: E402, F401

from arnet.store import StoreError, open_store  # noqa: E402


def _segments(first: int, count: int, score: float = 0.1) -> list[dict]:
    return [
        {
            "segment": i,
            "start_frame": 16 * i,
            "end_frame": 16 * i + 15,
            "start_time": 1000.0 + i,
            "end_time": 1001.0 + i,
            "score": score,
        }
        for i in range(first, first + count)
    ]


def _alert(start: int, end: int, state: str, peak: float = 0.9) -> dict:
    return {
        "state": state,
        "start_segment": start,
        "end_segment": end,
        "start_frame": 16 * start,
        "end_frame": 16 * end + 15,
        "start_time": 1000.0 + start,
        "end_time": 1001.0 + end,
        "peak_score": peak,
        "peak_frame": 16 * start,
        "peak_time": 1000.0 + start,
        "threshold": 0.5,
    }


def exercise(store) -> None:  # noqa: ANN001
    """The read and write API, the same on every backend."""
    cam = store.register_camera("gate", "rtsp://cam/1", start_threshold=0.5, stop_threshold=0.4)
    assert cam["next_segment"] == 0 and cam["state"] == "starting"
    (first,) = store.commit_segments(cam["id"], _segments(0, 4), [_alert(2, 3, "open")])
    # the same segments and alert again (a restarted watcher): nothing duplicated, alert updated
    (again,) = store.commit_segments(
        cam["id"], _segments(0, 4, score=0.7), [{**_alert(2, 3, "closed"), "peak_image": b"J"}]
    )
    assert again == first
    assert [s["score"] for s in store.scores("gate")] == [0.1] * 4  # first write kept
    assert [s["segment"] for s in store.scores("gate", since_segment=1)] == [2, 3]
    assert [s["segment"] for s in store.scores("gate", limit=2)] == [2, 3]
    assert [s["segment"] for s in store.scores("gate", since_time=1001.0)] == [1, 2, 3]
    assert store.scores("nobody") == []
    other = store.register_camera("yard", "file.mp4")
    store.commit_segments(other["id"], _segments(0, 9), [_alert(5, 8, "open", 0.8)])
    page, total = store.alerts()
    assert total == 2 and [a["camera"] for a in page] == ["yard", "gate"]  # newest first
    assert store.alerts(camera="gate")[1] == 1
    assert store.alerts(state="open")[0][0]["camera"] == "yard"
    assert store.alerts(since=1004.0)[1] == 1 and store.alerts(until=1003.0)[1] == 1
    assert store.alerts(limit=1, offset=1)[0][0]["camera"] == "gate"
    ack = store.acknowledge(first, "a cyclist", by="ana")
    assert ack["alert_id"] == first and ack["by"] == "ana"
    assert [a["camera"] for a in store.alerts(acknowledged=True)[0]] == ["gate"]
    assert [a["camera"] for a in store.alerts(acknowledged=False)[0]] == ["yard"]
    full = store.alert(first)
    assert full["state"] == "closed" and full["has_image"] and full["acknowledged"]
    assert [s["segment"] for s in full["segments"]] == [2, 3]
    assert full["acknowledgements"][0]["note"] == "a cyclist"
    assert store.alert_image(first) == b"J" and store.alert(10**6) is None
    with pytest.raises(KeyError):
        store.acknowledge(10**6, "none")
    cams = {c["name"]: c for c in store.cameras()}
    assert cams["gate"]["next_segment"] == 4 and cams["gate"]["next_frame"] == 64
    assert cams["yard"]["open_alert_id"] is not None and cams["gate"]["open_alert_id"] is None
    # whether someone has seen the open alert (gate's acknowledged alert is closed)
    assert [cams[n]["open_alert_acknowledged"] for n in ("gate", "yard")] == [False, False]
    store.acknowledge(cams["yard"]["open_alert_id"], "", by="li")
    assert store.camera("yard")["open_alert_acknowledged"] is True
    assert store.camera("gate")["open_alert_acknowledged"] is False
    acks = store.acknowledgements([first, cams["yard"]["open_alert_id"], 10**6])
    assert [a["note"] for a in acks[first]] == ["a cyclist"] and acks[10**6] == []
    assert [a["by"] for a in acks[cams["yard"]["open_alert_id"]]] == ["li"]
    store.set_state(cam["id"], "reconnecting", "connection refused", event="disconnected", frame=64)
    assert store.events("gate")[0]["kind"] == "disconnected"
    assert store.camera("gate")["state"] == "reconnecting"
    # registering again keeps the numbering (a restart continues)
    assert store.register_camera("gate", "rtsp://cam/2")["next_segment"] == 4


def test_sqlite_store(tmp_path: Path) -> None:
    with open_store(tmp_path / "events.db") as store:
        exercise(store)
    with open_store(f"sqlite:///{tmp_path / 'events.db'}") as store:  # reopened: data kept
        assert store.alerts()[1] == 2
    mode = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]);"
            "print(c.execute('PRAGMA journal_mode').fetchone()[0])",
            str(tmp_path / "events.db"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert mode.stdout.strip() == "wal"


def test_migrations_build_the_declared_schema(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from arnet.store.migrations_path import VERSION_TABLE
    from arnet.store.schema import metadata

    with open_store(tmp_path / "m.db") as store, store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        diff = compare_metadata(context, metadata)
    assert diff == [], diff


def test_bad_stores_are_named(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"mysql://u:\*\*\*@h/db: unsupported database"):
        open_store("mysql://u:secret@h/db")
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "no" / "such" / "events.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database, it is a text file of some length" * 50)
    with pytest.raises(StoreError, match="junk.db"):
        open_store(junk)
    assert junk.read_bytes().startswith(b"this is not")  # never overwritten
    with pytest.raises(StoreError) as info:
        open_store("postgresql://watch:hunter2@127.0.0.1:1/events")
    message = str(info.value)
    assert "cannot reach" in message and "127.0.0.1:1/events" in message
    assert "hunter2" not in message and "\n" not in message


def test_postgresql_store(postgres_server: str) -> None:  # noqa: F811
    url = fresh_database(postgres_server, "store_api")
    with open_store(url) as store:
        exercise(store)
    with open_store(url) as store:
        assert store.alerts()[1] == 2
