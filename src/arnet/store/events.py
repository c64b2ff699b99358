"""`EventStore`: what `arnet watch` writes and what dashboards and `arnet alerts` read.

Every returned row is a plain dict (JSON-ready apart from image bytes); times are seconds
since the Unix epoch, UTC. Each write method is one transaction, so a reader never sees a
segment's score without the alert it opened, and a process killed at any point leaves only
whole transactions behind. A database error is raised as `StoreUnavailable` when the store may
work again later (a server stopped, a full disk), else as `StoreError`, naming the store.

One watcher writes a camera: `claim_camera` takes the camera's lease (a row of
`camera_leases`) for a `Holder`, and refuses while another live process holds it. A holder on
this machine is known dead by its PID; one on another machine once its lease has expired (the
holder renews it with every commit and with `renew_lease`, a heartbeat). Every write of a
holder checks, in its own transaction, that the lease is still its own (`LeaseLost`
otherwise): a watcher whose lease was taken over never writes that camera again.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..folders import identity_running, machine_of, process_identity
from .engine import StoreError, calls_store, hide
from .schema import (
    ALERT_STATES,
    CAMERA_STATES,
    acknowledgements,
    alerts,
    camera_events,
    camera_leases,
    cameras,
)
from .schema import segment_scores as scores_table
from .verdicts import FeedbackRecords

SCORE_FIELDS = ("segment", "start_frame", "end_frame", "start_time", "end_time", "score")
ALERT_FIELDS = (
    "state",
    "start_segment",
    "end_segment",
    "start_frame",
    "end_frame",
    "start_time",
    "end_time",
    "peak_score",
    "peak_frame",
    "peak_time",
    "threshold",
)
# Alert ids per acknowledgements query: far below the bound parameters a statement may carry
# (SQLite 32766, PostgreSQL 65535), for an export of every alert.
ACK_QUERY_IDS = 1000


# Integers the databases store (64-bit): ids, offsets and limits beyond it match nothing.
INT64_MAX = 2**63 - 1
# Seconds a lease lasts unless renewed (a holder renews it three times as often).
LEASE_SECONDS = 30.0
# The cameras' columns that every revision of the store has (readers never migrate).
_CAMERA_COLUMNS = [c for c in cameras.c if c.name != "source_position"]

_calls_store = calls_store


def _bounded(value: int | None) -> int | None:
    """An offset, limit or segment number as the databases take it: 0 to INT64_MAX."""
    return None if value is None else max(0, min(int(value), INT64_MAX))


@dataclass(frozen=True)
class Holder:
    """A watcher process that may hold cameras' leases.

    Attributes:
        token: unique to this holder (a random UUID).
        host: the machine's name (for people).
        pid: the process.
        process: `folders.process_identity` of the process (None where /proc cannot say).
        command: what it runs (for people).
        lease_seconds: how long its leases last unless renewed (renew three times as often).
    """

    token: str
    host: str
    pid: int
    process: str | None
    command: str
    lease_seconds: float = LEASE_SECONDS

    @classmethod
    def this_process(
        cls, command: str = "arnet watch", lease_seconds: float = LEASE_SECONDS
    ) -> Holder:
        """A new holder for this process."""
        if not lease_seconds > 0:
            raise ValueError(f"a lease must last seconds > 0, got {lease_seconds!r}")
        return cls(
            uuid.uuid4().hex,
            socket.gethostname(),
            os.getpid(),
            process_identity(),
            command,
            lease_seconds,
        )

    def describe(self) -> str:
        return f"process {self.pid} ({self.command}) on {self.host}"


class CameraBusy(StoreError):
    """Another live watcher holds the camera's lease; the message names the camera and it."""


class LeaseLost(StoreError):
    """This watcher's lease of a camera was taken over (it was thought dead): it must stop
    writing that camera. The message names the camera and the new holder."""


@dataclass
class Claim:
    """What `claim_camera` found and did.

    Attributes:
        camera: the camera after registration (fields as in `cameras`, and
            `source_position`: how far its file or folder was read).
        previous_source: the source it was watched from before (None: a new camera).
        taken_from: the holder whose lease was taken over (a dead process, or an expired
            lease), None when the camera was free.
    """

    camera: dict[str, Any]
    previous_source: str | None
    taken_from: Holder | None


def _when(value: float | datetime | None) -> float | None:
    """Epoch seconds from a float or a datetime (naive datetimes are taken as UTC)."""
    if value is None or isinstance(value, (int, float)):
        return value
    if value.tzinfo is None:
        from datetime import timezone

        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


class EventStore(FeedbackRecords):
    """An open event store (from `open_store`). Safe to share between threads; each method
    takes its own connection from the engine's pool.

    Args:
        engine: a SQLAlchemy engine whose database is migrated to head.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.postgres = engine.url.get_backend_name() == "postgresql"
        self._insert = postgresql.insert if self.postgres else sqlite.insert

    @property
    def url(self) -> str:
        """The store's URL with the password hidden (for messages)."""
        return hide(self.engine.url)

    def close(self) -> None:
        """Release the pooled connections."""
        self.engine.dispose()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading
    @_calls_store
    def cameras(self) -> list[dict[str, Any]]:
        """Every camera ever watched, by name: id, name, source, state (starting, streaming,
        reconnecting, stopped, failed), state_detail, start_threshold, stop_threshold, fps,
        frames_per_segment, next_segment, next_frame, last_seen, last_score, open_alert_id
        (None when no alert is open), open_alert_acknowledged (whether someone has seen that
        alert), created, updated."""
        open_alert = (
            sa.select(sa.func.max(alerts.c.id))
            .where(alerts.c.camera_id == cameras.c.id, alerts.c.state == "open")
            .scalar_subquery()
        )
        seen = (
            sa.select(acknowledgements.c.id)
            .where(acknowledgements.c.alert_id == open_alert.correlate(cameras))
            .exists()
        )
        query = sa.select(
            *_CAMERA_COLUMNS,
            open_alert.label("open_alert_id"),
            seen.label("open_alert_acknowledged"),
        ).order_by(cameras.c.name)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row["open_alert_acknowledged"] = bool(row["open_alert_acknowledged"])
        return rows

    @_calls_store
    def camera(self, name: str) -> dict[str, Any] | None:
        """One camera by name (fields as in `cameras`), or None."""
        return next((c for c in self.cameras() if c["name"] == name), None)

    @_calls_store
    def scores(
        self,
        camera: str,
        since_segment: int | None = None,
        since_time: float | datetime | None = None,
        limit: int | None = 1000,
    ) -> list[dict[str, Any]]:
        """Segment scores of one camera in segment order: segment, start_frame, end_frame
        (inclusive), start_time, end_time, score.

        With `since_segment` (exclusive) or `since_time` (segments starting at or after it),
        the first `limit` newer segments; with neither, the newest `limit` segments (still in
        segment order). An unknown camera gives an empty list. `limit=None`: no limit.
        """
        cols = [scores_table.c[f] for f in SCORE_FIELDS]
        query = sa.select(*cols).join(cameras).where(cameras.c.name == camera)
        if since_segment is not None:
            query = query.where(scores_table.c.segment > _bounded(since_segment))
        if since_time is not None:
            query = query.where(scores_table.c.start_time >= _when(since_time))
        newest = since_segment is None and since_time is None
        query = query.order_by(scores_table.c.segment.desc() if newest else scores_table.c.segment)
        if limit is not None:
            query = query.limit(_bounded(limit))
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        return rows[::-1] if newest else rows

    def _alert_query(self) -> sa.Select:
        acked = sa.exists().where(acknowledgements.c.alert_id == alerts.c.id)
        return sa.select(
            alerts.c.id,
            cameras.c.name.label("camera"),
            *[alerts.c[f] for f in ALERT_FIELDS],
            (alerts.c.peak_image.is_not(None)).label("has_image"),
            acked.label("acknowledged"),
            alerts.c.created,
            alerts.c.updated,
        ).join(cameras, alerts.c.camera_id == cameras.c.id)

    @_calls_store
    def alerts(
        self,
        camera: str | None = None,
        since: float | datetime | None = None,
        until: float | datetime | None = None,
        acknowledged: bool | None = None,
        state: str | None = None,
        offset: int = 0,
        limit: int | None = 50,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of alerts, newest first, and how many match in all.

        Each alert: id, camera, state (open/closed), start/end segment, frame (inclusive)
        and time, peak_score, peak_frame, peak_time, threshold, has_image, acknowledged,
        created, updated. Filters: camera name; alerts starting at or after `since` and at
        or before `until`; acknowledged or not; state. `limit=None`: every match.

        Raises:
            ValueError: an unknown state.
        """
        if state is not None and state not in ALERT_STATES:
            raise ValueError(f"alert state must be one of {ALERT_STATES}, got {state!r}")
        query = self._alert_query()
        conditions = []
        if camera is not None:
            conditions.append(cameras.c.name == camera)
        if since is not None:
            conditions.append(alerts.c.start_time >= _when(since))
        if until is not None:
            conditions.append(alerts.c.start_time <= _when(until))
        if acknowledged is not None:
            acked = sa.exists().where(acknowledgements.c.alert_id == alerts.c.id)
            conditions.append(acked if acknowledged else ~acked)
        if state is not None:
            conditions.append(alerts.c.state == state)
        query = query.where(*conditions)
        count = (
            sa.select(sa.func.count())
            .select_from(alerts.join(cameras, alerts.c.camera_id == cameras.c.id))
            .where(*conditions)
        )
        page = query.order_by(alerts.c.start_time.desc(), alerts.c.id.desc())
        page = page.offset(_bounded(offset))
        if limit is not None:
            page = page.limit(_bounded(limit))
        with self.engine.connect() as conn:
            total = int(conn.execute(count).scalar_one())
            rows = [self._clean(r._mapping) for r in conn.execute(page)]
        return self.feedback_fields(rows), total

    @staticmethod
    def _clean(row: Mapping[Any, Any]) -> dict[str, Any]:
        out = dict(row)
        out["has_image"] = bool(out["has_image"])
        out["acknowledged"] = bool(out["acknowledged"])
        return out

    @_calls_store
    def alert(self, alert_id: int) -> dict[str, Any] | None:
        """One alert (fields as in `alerts`) with `segments`, its segment scores in order
        (fields as in `scores`), and `acknowledgements` (id, time, note, by; oldest first);
        None when there is no such alert."""
        if not 0 < alert_id <= INT64_MAX:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(self._alert_query().where(alerts.c.id == alert_id)).first()
            if row is None:
                return None
            out = self._clean(row._mapping)
            segs = conn.execute(
                sa.select(*[scores_table.c[f] for f in SCORE_FIELDS])
                .join(cameras)
                .where(
                    cameras.c.name == out["camera"],
                    scores_table.c.segment.between(out["start_segment"], out["end_segment"]),
                )
                .order_by(scores_table.c.segment)
            )
            out["segments"] = [dict(s._mapping) for s in segs]
            out["acknowledgements"] = self._acknowledgements(conn, [alert_id])[alert_id]
        return self.feedback_fields([out])[0]

    def acknowledgements(self, alert_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        """The acknowledgements of each alert (id, time, note, by; oldest first), in one
        query: {alert id: [...]} with every id given (an empty list when none)."""
        with self.engine.connect() as conn:
            return self._acknowledgements(conn, alert_ids)

    @staticmethod
    def _acknowledgements(
        conn: sa.Connection, alert_ids: Sequence[int]
    ) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {int(i): [] for i in alert_ids}
        ids = list(out)
        for start in range(0, len(ids), ACK_QUERY_IDS):
            rows = conn.execute(
                sa.select(
                    acknowledgements.c.alert_id,
                    acknowledgements.c.id,
                    acknowledgements.c.time,
                    acknowledgements.c.note,
                    acknowledgements.c.by,
                )
                .where(acknowledgements.c.alert_id.in_(ids[start : start + ACK_QUERY_IDS]))
                .order_by(acknowledgements.c.time, acknowledgements.c.id)
            )
            for row in rows:
                ack = dict(row._mapping)
                out[ack.pop("alert_id")].append(ack)
        return out

    @_calls_store
    def alert_image(self, alert_id: int) -> bytes | None:
        """The JPEG of an alert's peak frame, or None (no such alert, or no image)."""
        if not 0 < alert_id <= INT64_MAX:
            return None
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(alerts.c.peak_image).where(alerts.c.id == alert_id)
            ).scalar_one_or_none()

    @_calls_store
    def acknowledge(self, alert_id: int, note: str = "", by: str | None = None) -> dict[str, Any]:
        """Record that someone has seen an alert; returns the acknowledgement (id, alert_id,
        time, note, by). An alert may be acknowledged more than once (each is kept).

        Raises:
            KeyError: no alert with that id.
        """
        if not 0 < alert_id <= INT64_MAX:
            raise KeyError(f"no alert with id {alert_id}")
        now = time.time()
        with self.engine.begin() as conn:
            if conn.execute(sa.select(alerts.c.id).where(alerts.c.id == alert_id)).first() is None:
                raise KeyError(f"no alert with id {alert_id}")
            new_id = conn.execute(
                acknowledgements.insert()
                .values(alert_id=alert_id, time=now, note=note or "", by=by)
                .returning(acknowledgements.c.id)
            ).scalar_one()
        return {"id": new_id, "alert_id": alert_id, "time": now, "note": note or "", "by": by}

    @_calls_store
    def events(self, camera: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Camera events, newest first: id, camera, time, kind (connected, disconnected,
        unreachable, failed, stopped), detail, frame (the camera's frame count at the time)."""
        query = (
            sa.select(
                camera_events.c.id,
                cameras.c.name.label("camera"),
                camera_events.c.time,
                camera_events.c.kind,
                camera_events.c.detail,
                camera_events.c.frame,
            )
            .join(cameras)
            .order_by(camera_events.c.time.desc(), camera_events.c.id.desc())
            .limit(_bounded(limit))
        )
        if camera is not None:
            query = query.where(cameras.c.name == camera)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # ------------------------------------------------------------------ writing (watch)
    @_calls_store
    def register_camera(
        self,
        name: str,
        source: str,
        *,
        start_threshold: float | None = None,
        stop_threshold: float | None = None,
        fps: float | None = None,
        frames_per_segment: int | None = None,
    ) -> dict[str, Any]:
        """Create a camera, or update the source and settings of an existing one (its
        numbering and history are kept: a restarted watcher continues it); returns the
        camera (fields as in `cameras`)."""
        now = time.time()
        values = {
            "source": source,
            "start_threshold": start_threshold,
            "stop_threshold": stop_threshold,
            "fps": fps,
            "frames_per_segment": frames_per_segment,
            "updated": now,
        }
        statement = self._insert(cameras).values(
            name=name, state="starting", next_segment=0, next_frame=0, created=now, **values
        )
        statement = statement.on_conflict_do_update(index_elements=["name"], set_=values)
        with self.engine.begin() as conn:
            conn.execute(statement)
        found = self.camera(name)
        assert found is not None
        return found

    @_calls_store
    def set_state(
        self,
        camera_id: int,
        state: str,
        detail: str | None = None,
        event: str | None = None,
        frame: int | None = None,
        holder: Holder | None = None,
    ) -> None:
        """Set a camera's state (and detail); with `event`, also record a camera event of
        that kind (e.g. a disconnection, the start of a gap) in the same transaction. With
        `holder`, only while it holds the camera's lease (renewed; `LeaseLost` otherwise)."""
        if state not in CAMERA_STATES:
            raise ValueError(f"camera state must be one of {CAMERA_STATES}, got {state!r}")
        now = time.time()
        with self.engine.begin() as conn:
            if holder is not None:
                self._renew(conn, camera_id, holder)
            conn.execute(
                cameras.update()
                .where(cameras.c.id == camera_id)
                .values(state=state, state_detail=detail, updated=now)
            )
            if event is not None:
                conn.execute(
                    camera_events.insert().values(
                        camera_id=camera_id, time=now, kind=event, detail=detail, frame=frame
                    )
                )

    @_calls_store
    def add_event(
        self,
        camera_id: int,
        kind: str,
        detail: str | None = None,
        frame: int | None = None,
        holder: Holder | None = None,
        when: float | None = None,
    ) -> None:
        """Record a camera event (a skipped frame, a gap in the store's own availability)
        without changing the camera's state; with `holder`, only while it holds the lease."""
        with self.engine.begin() as conn:
            if holder is not None:
                self._renew(conn, camera_id, holder)
            conn.execute(
                camera_events.insert().values(
                    camera_id=camera_id,
                    time=time.time() if when is None else when,
                    kind=kind,
                    detail=detail,
                    frame=frame,
                )
            )

    # ------------------------------------------------------------------ leases (watch)
    def _db_now(self) -> sa.ColumnElement:
        """The database's clock in epoch seconds: one clock for the holders of every machine."""
        if self.postgres:
            return sa.func.extract("epoch", sa.func.clock_timestamp())
        return sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)")

    @_calls_store
    def claim_camera(
        self,
        name: str,
        source: str,
        holder: Holder,
        *,
        start_threshold: float | None = None,
        stop_threshold: float | None = None,
        fps: float | None = None,
        frames_per_segment: int | None = None,
    ) -> Claim:
        """Take camera `name`'s lease for `holder` and register it (a new camera is created;
        an existing one keeps its numbering and history, with the new source and settings),
        in one transaction.

        The lease is free, held by `holder` already, or taken over: from a process of this
        machine that is no longer running, or from one of another machine whose lease has
        expired. Otherwise nothing is changed.

        Raises:
            CameraBusy: another live process holds it (named, with its host and PID).
        """
        now = time.time()
        with self.engine.begin() as conn:
            # A write first: on SQLite it takes the database's write lock, so two processes
            # claiming at once take turns; PostgreSQL locks the camera's row below.
            conn.execute(
                self._insert(cameras)
                .values(
                    name=name,
                    source=source,
                    state="starting",
                    next_segment=0,
                    next_frame=0,
                    source_position=0,
                    created=now,
                    updated=now,
                )
                .on_conflict_do_nothing(index_elements=["name"])
            )
            query = sa.select(cameras.c.id, cameras.c.source, cameras.c.next_segment)
            query = query.where(cameras.c.name == name)
            row = conn.execute(query.with_for_update() if self.postgres else query).one()
            camera_id = row.id
            previous_source = row.source if row.next_segment else None
            clock = conn.execute(sa.select(self._db_now())).scalar_one()
            lease = conn.execute(
                sa.select(camera_leases).where(camera_leases.c.camera_id == camera_id)
            ).first()
            taken_from = None
            if lease is not None and lease.token != holder.token:
                other = Holder(lease.token, lease.host, lease.pid, lease.process, lease.command)
                if self._holder_alive(other, holder, float(lease.expires), float(clock)):
                    raise CameraBusy(
                        f"camera {name!r} is watched by {other.describe()} (in {self.url}); "
                        "stop that watcher first, or name this source otherwise (NAME=URL)"
                    )
                taken_from = other
            values = {
                "token": holder.token,
                "host": holder.host,
                "pid": holder.pid,
                "process": holder.process,
                "command": holder.command,
                "acquired": clock,
                "renewed": clock,
                "expires": float(clock) + holder.lease_seconds,
            }
            if lease is None:
                conn.execute(camera_leases.insert().values(camera_id=camera_id, **values))
            else:
                conn.execute(
                    camera_leases.update()
                    .where(camera_leases.c.camera_id == camera_id)
                    .values(**values)
                )
            conn.execute(
                cameras.update()
                .where(cameras.c.id == camera_id)
                .values(
                    source=source,
                    start_threshold=start_threshold,
                    stop_threshold=stop_threshold,
                    fps=fps,
                    frames_per_segment=frames_per_segment,
                    updated=now,
                )
            )
            camera = conn.execute(sa.select(cameras).where(cameras.c.id == camera_id)).one()
        found = self.camera(name)
        assert found is not None
        found["source_position"] = int(camera.source_position)
        return Claim(found, previous_source, taken_from)

    @staticmethod
    def _holder_alive(other: Holder, me: Holder, expires: float, clock: float) -> bool:
        """Whether `other` still holds a lease: a process of this machine while it runs (its
        PID, checked against its start time), any other until its lease expires."""
        here = machine_of(me.process)
        if here is not None and machine_of(other.process) == here:
            return identity_running(other.pid, other.process)
        if here is None and other.process is None and other.host == me.host:
            return identity_running(other.pid, None)
        return expires > clock

    def _renew(self, conn: sa.Connection, camera_id: int, holder: Holder) -> None:
        """Renew `holder`'s lease in the transaction of `conn`; LeaseLost when not its own."""
        done = conn.execute(
            camera_leases.update()
            .where(camera_leases.c.camera_id == camera_id, camera_leases.c.token == holder.token)
            .values(
                renewed=self._db_now(),
                expires=self._db_now() + holder.lease_seconds,
            )
        ).rowcount
        if done != 1:
            now = conn.execute(
                sa.select(camera_leases.c.host, camera_leases.c.pid, camera_leases.c.command).where(
                    camera_leases.c.camera_id == camera_id
                )
            ).first()
            name = conn.execute(
                sa.select(cameras.c.name).where(cameras.c.id == camera_id)
            ).scalar_one_or_none()
            who = (
                f"process {now.pid} ({now.command}) on {now.host}"
                if now
                else "no watcher (released)"
            )
            raise LeaseLost(
                f"camera {name!r}: its lease was taken over by {who}; this watcher stops writing it"
            )

    @_calls_store
    def renew_lease(self, camera_id: int, holder: Holder) -> None:
        """Extend `holder`'s lease of the camera to `holder.lease_seconds` from now (a
        heartbeat).

        Raises:
            LeaseLost: the lease is no longer `holder`'s.
        """
        with self.engine.begin() as conn:
            self._renew(conn, camera_id, holder)

    @_calls_store
    def release_camera(self, camera_id: int, holder: Holder) -> None:
        """Give the camera's lease up (when `holder` holds it; else nothing changes)."""
        with self.engine.begin() as conn:
            conn.execute(
                camera_leases.delete().where(
                    camera_leases.c.camera_id == camera_id, camera_leases.c.token == holder.token
                )
            )

    @_calls_store
    def lease(self, name: str) -> dict[str, Any] | None:
        """The lease of camera `name`: token, host, pid, process, command, acquired, renewed,
        expires (database clock); None when no watcher holds it."""
        query = (
            sa.select(camera_leases)
            .join(cameras, cameras.c.id == camera_leases.c.camera_id)
            .where(cameras.c.name == name)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else dict(row._mapping)

    @_calls_store
    def open_alert(self, camera_id: int) -> dict[str, Any] | None:
        """The camera's open alert (fields as in `alerts`), or None."""
        query = (
            self._alert_query()
            .where(alerts.c.camera_id == camera_id, alerts.c.state == "open")
            .order_by(alerts.c.start_segment.desc())
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else self._clean(row._mapping)

    @_calls_store
    def commit_segments(
        self,
        camera_id: int,
        segments: Sequence[Mapping[str, Any]],
        alert_rows: Sequence[Mapping[str, Any]] = (),
        *,
        holder: Holder | None = None,
        position: int | None = None,
        notify: Sequence[str] = (),
    ) -> list[int]:
        """Store scored segments and the alerts they open, update or close, atomically.

        Args:
            camera_id: the camera (from `register_camera` or `claim_camera`).
            segments: dicts with the `scores` fields; a segment already stored is kept as
                it is (a restart never duplicates one).
            alert_rows: dicts with the `alerts` fields (state "open" or "closed") and
                optionally `peak_image` (JPEG bytes; left unchanged when absent). An alert
                is identified by camera and start_segment: writing it again updates it.
            holder: write only while it holds the camera's lease (renewed by the write).
            position: how far the camera's file or folder has been read with these segments
                (kept as `source_position`, never lowered).
            notify: targets (`arnet watch --notify`) each alert event of `alert_rows` is to
                be delivered to: their pending deliveries are written in this transaction
                (`store.deliveries`).

        Returns:
            The ids of `alert_rows`, in order.

        Raises:
            LeaseLost: `holder` no longer holds the lease (nothing is written).
        """
        now = time.time()
        ids: list[int] = []
        greatest = sa.func.greatest if self.postgres else sa.func.max
        with self.engine.begin() as conn:
            if holder is not None:
                self._renew(conn, camera_id, holder)
            read = (
                {}
                if position is None
                else {"source_position": greatest(cameras.c.source_position, position)}
            )
            if read and not segments:
                conn.execute(cameras.update().where(cameras.c.id == camera_id).values(**read))
            if segments:
                rows = [
                    {"camera_id": camera_id, **{f: s[f] for f in SCORE_FIELDS}} for s in segments
                ]
                conn.execute(
                    self._insert(scores_table).on_conflict_do_nothing(
                        index_elements=["camera_id", "segment"]
                    ),
                    rows,
                )
                last = max(segments, key=lambda s: s["segment"])
                conn.execute(
                    cameras.update()
                    .where(cameras.c.id == camera_id)
                    .values(
                        next_segment=greatest(cameras.c.next_segment, last["segment"] + 1),
                        next_frame=greatest(cameras.c.next_frame, last["end_frame"] + 1),
                        last_seen=last["end_time"],
                        last_score=last["score"],
                        updated=now,
                        **read,
                    )
                )
            if notify and alert_rows:
                from . import deliveries

                prior = deliveries.prior_alerts(conn, camera_id, alert_rows)
                name = deliveries.camera_name(conn, camera_id)
            for row in alert_rows:
                if row["state"] not in ALERT_STATES:
                    raise ValueError(f"alert state must be one of {ALERT_STATES}")
                values = {f: row.get(f) for f in ALERT_FIELDS}
                if row.get("peak_image") is not None:
                    values["peak_image"] = row["peak_image"]
                statement = (
                    self._insert(alerts)
                    .values(camera_id=camera_id, created=now, updated=now, **values)
                    .on_conflict_do_update(
                        index_elements=["camera_id", "start_segment"],
                        set_={**values, "updated": now},
                    )
                    .returning(alerts.c.id)
                )
                ids.append(int(conn.execute(statement).scalar_one()))
                if notify:
                    before = prior.get(row["start_segment"])
                    deliveries.record(
                        conn, self._insert, camera_id, name, ids[-1], before, row, notify, now
                    )
                if row.get("detector") is not None or row.get("segment_features"):
                    self._write_alert_extras(conn, ids[-1], row)
        return ids


def check_camera_name(name: str) -> str:
    """A camera name as stored: non-empty, at most 200 characters, no control characters."""
    if not name or len(name) > 200 or any(ord(c) < 32 for c in name):
        raise StoreError(f"camera name {name!r}: 1 to 200 printable characters")
    return name
