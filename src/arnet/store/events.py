"""`EventStore`: what `arnet watch` writes and what dashboards and `arnet alerts` read.

Every returned row is a plain dict (JSON-ready apart from image bytes); times are seconds
since the Unix epoch, UTC. Each write method is one transaction, so a reader never sees a
segment's score without the alert it opened, and a process killed at any point leaves only
whole transactions behind.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .engine import StoreError, hide
from .schema import ALERT_STATES, CAMERA_STATES, acknowledgements, alerts, camera_events, cameras
from .schema import segment_scores as scores_table

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


def _when(value: float | datetime | None) -> float | None:
    """Epoch seconds from a float or a datetime (naive datetimes are taken as UTC)."""
    if value is None or isinstance(value, (int, float)):
        return value
    if value.tzinfo is None:
        from datetime import timezone

        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


class EventStore:
    """An open event store (from `open_store`). Safe to share between threads; each method
    takes its own connection from the engine's pool.

    Args:
        engine: a SQLAlchemy engine whose database is migrated to head.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._insert = (
            postgresql.insert if engine.url.get_backend_name() == "postgresql" else sqlite.insert
        )

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
            cameras, open_alert.label("open_alert_id"), seen.label("open_alert_acknowledged")
        ).order_by(cameras.c.name)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row["open_alert_acknowledged"] = bool(row["open_alert_acknowledged"])
        return rows

    def camera(self, name: str) -> dict[str, Any] | None:
        """One camera by name (fields as in `cameras`), or None."""
        return next((c for c in self.cameras() if c["name"] == name), None)

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
            query = query.where(scores_table.c.segment > since_segment)
        if since_time is not None:
            query = query.where(scores_table.c.start_time >= _when(since_time))
        newest = since_segment is None and since_time is None
        query = query.order_by(scores_table.c.segment.desc() if newest else scores_table.c.segment)
        if limit is not None:
            query = query.limit(limit)
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
        page = query.order_by(alerts.c.start_time.desc(), alerts.c.id.desc()).offset(offset)
        if limit is not None:
            page = page.limit(limit)
        with self.engine.connect() as conn:
            total = int(conn.execute(count).scalar_one())
            rows = [self._clean(r._mapping) for r in conn.execute(page)]
        return rows, total

    @staticmethod
    def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(row)
        out["has_image"] = bool(out["has_image"])
        out["acknowledged"] = bool(out["acknowledged"])
        return out

    def alert(self, alert_id: int) -> dict[str, Any] | None:
        """One alert (fields as in `alerts`) with `segments`, its segment scores in order
        (fields as in `scores`), and `acknowledgements` (id, time, note, by; oldest first);
        None when there is no such alert."""
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
        return out

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

    def alert_image(self, alert_id: int) -> bytes | None:
        """The JPEG of an alert's peak frame, or None (no such alert, or no image)."""
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(alerts.c.peak_image).where(alerts.c.id == alert_id)
            ).scalar_one_or_none()

    def acknowledge(self, alert_id: int, note: str = "", by: str | None = None) -> dict[str, Any]:
        """Record that someone has seen an alert; returns the acknowledgement (id, alert_id,
        time, note, by). An alert may be acknowledged more than once (each is kept).

        Raises:
            KeyError: no alert with that id.
        """
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
            .limit(limit)
        )
        if camera is not None:
            query = query.where(cameras.c.name == camera)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # ------------------------------------------------------------------ writing (watch)
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

    def set_state(
        self,
        camera_id: int,
        state: str,
        detail: str | None = None,
        event: str | None = None,
        frame: int | None = None,
    ) -> None:
        """Set a camera's state (and detail); with `event`, also record a camera event of
        that kind (e.g. a disconnection, the start of a gap) in the same transaction."""
        if state not in CAMERA_STATES:
            raise ValueError(f"camera state must be one of {CAMERA_STATES}, got {state!r}")
        now = time.time()
        with self.engine.begin() as conn:
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

    def commit_segments(
        self,
        camera_id: int,
        segments: Sequence[Mapping[str, Any]],
        alert_rows: Sequence[Mapping[str, Any]] = (),
    ) -> list[int]:
        """Store scored segments and the alerts they open, update or close, atomically.

        Args:
            camera_id: the camera (from `register_camera`).
            segments: dicts with the `scores` fields; a segment already stored is kept as
                it is (a restart never duplicates one).
            alert_rows: dicts with the `alerts` fields (state "open" or "closed") and
                optionally `peak_image` (JPEG bytes; left unchanged when absent). An alert
                is identified by camera and start_segment: writing it again updates it.

        Returns:
            The ids of `alert_rows`, in order.
        """
        now = time.time()
        ids: list[int] = []
        with self.engine.begin() as conn:
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
                        next_segment=sa.func.max(cameras.c.next_segment, last["segment"] + 1)
                        if self._insert is sqlite.insert
                        else sa.func.greatest(cameras.c.next_segment, last["segment"] + 1),
                        next_frame=sa.func.max(cameras.c.next_frame, last["end_frame"] + 1)
                        if self._insert is sqlite.insert
                        else sa.func.greatest(cameras.c.next_frame, last["end_frame"] + 1),
                        last_seen=last["end_time"],
                        last_score=last["score"],
                        updated=now,
                    )
                )
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
        return ids


def check_camera_name(name: str) -> str:
    """A camera name as stored: non-empty, at most 200 characters, no control characters."""
    if not name or len(name) > 200 or any(ord(c) < 32 for c in name):
        raise StoreError(f"camera name {name!r}: 1 to 200 printable characters")
    return name
