"""Alerts going out, durably: the `deliveries` table (`arnet watch --notify`).

Each alert event (an alert `opened`, `updated` with a higher peak, `closed`) is one row per
target, inserted by `EventStore.commit_segments` in the transaction that writes the alert row:
a watcher killed at any moment leaves either the alert and its pending deliveries or neither.
The row keeps the JSON body that is sent (so a retry, by this watcher or the next, sends the
same bytes) and the event id receivers deduplicate on (`alert-ID-KIND[-SEGMENT]`).

A delivery is `pending` until the receiver acknowledges it (`delivered`), or `dead` once its
attempts are spent (with the last error): a dead letter that `arnet alerts --deliveries` shows.
Delivery is at least once: a receiver may see an event twice (a watcher killed after sending
it but before recording it), never with another event id.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa

from .engine import store_failure
from .schema import DELIVERY_STATES, alerts, cameras, deliveries

EVENT_KINDS = ("opened", "updated", "closed")
PAYLOAD_VERSION = 1

_F = TypeVar("_F", bound=Callable[..., Any])


def _calls_store(method: _F) -> _F:
    """A database error of `method` as StoreUnavailable or StoreError naming the store."""

    @functools.wraps(method)
    def call(self: Deliveries, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sa.exc.DBAPIError as exc:
            raise store_failure(self.engine.url, exc) from exc

    return call  # type: ignore[return-value]


def alert_events(prior: Mapping[str, Any] | None, row: Mapping[str, Any]) -> list[str]:
    """The events an alert row reports, given the alert's row before it (None: a new alert):
    `opened` for a new alert, `updated` when an open alert's peak rose, `closed` once."""
    kinds = []
    if prior is None:
        kinds.append("opened")
    elif row["state"] == "open" and row["peak_score"] > prior["peak_score"]:
        kinds.append("updated")
    if row["state"] == "closed" and (prior is None or prior["state"] != "closed"):
        kinds.append("closed")
    return kinds


RECORDS_CLIP = "records_clip"
"""Key of an alert row the watcher writes while it records a clip of the alert (never stored):
the payload then names where the dashboard serves the clip."""


def event_id(alert_id: int, kind: str, row: Mapping[str, Any]) -> str:
    """The id receivers deduplicate on: one per alert and event (an update per segment)."""
    if kind == "updated":
        return f"alert-{alert_id}-updated-{row['end_segment']}"
    return f"alert-{alert_id}-{kind}"


def payload(
    alert_id: int, camera: str, kind: str, row: Mapping[str, Any], now: float
) -> dict[str, Any]:
    """The JSON body of an alert event (docs/notify.md lists its fields)."""
    has_image = row.get("peak_image") is not None or bool(row.get("has_image"))
    return {
        "version": PAYLOAD_VERSION,
        "event_id": event_id(alert_id, kind, row),
        "event": kind,
        "time": now,
        "camera": camera,
        "alert_id": alert_id,
        "state": row["state"],
        "start_time": row["start_time"],
        "end_time": row["end_time"],
        "start_frame": row["start_frame"],
        "end_frame": row["end_frame"],
        "peak_score": row["peak_score"],
        "peak_frame": row["peak_frame"],
        "peak_time": row["peak_time"],
        "threshold": row.get("threshold"),
        "image": f"/api/alerts/{alert_id}/image" if has_image else None,
        "clip": f"/api/alerts/{alert_id}/clip" if row.get(RECORDS_CLIP) else None,
    }


def prior_alerts(
    conn: sa.Connection, camera_id: int, rows: Sequence[Mapping[str, Any]]
) -> dict[int, dict[str, Any]]:
    """The stored state and peak of the alerts `rows` write (by start segment), before."""
    starts = sorted({r["start_segment"] for r in rows})
    found = conn.execute(
        sa.select(alerts.c.start_segment, alerts.c.state, alerts.c.peak_score).where(
            alerts.c.camera_id == camera_id, alerts.c.start_segment.in_(starts)
        )
    )
    return {r.start_segment: dict(r._mapping) for r in found}


def camera_name(conn: sa.Connection, camera_id: int) -> str:
    return conn.execute(sa.select(cameras.c.name).where(cameras.c.id == camera_id)).scalar_one()


def record(
    conn: sa.Connection,
    insert: Any,
    camera_id: int,
    camera: str,
    alert_id: int,
    prior: Mapping[str, Any] | None,
    row: Mapping[str, Any],
    targets: Sequence[str],
    now: float,
) -> int:
    """Insert the pending deliveries of one alert row (in the caller's transaction); an event
    already recorded for a target (a write retried) is kept as it is. Returns the rows."""
    values = []
    kinds = alert_events(prior, row)
    if kinds and row.get("peak_image") is None:  # a picture written with an earlier row?
        stored = sa.select(alerts.c.peak_image.is_not(None)).where(alerts.c.id == alert_id)
        row = {**row, "has_image": bool(conn.execute(stored).scalar_one())}
    for kind in kinds:
        body = json.dumps(payload(alert_id, camera, kind, row, now), sort_keys=True)
        for target in targets:
            values.append(
                {
                    "camera_id": camera_id,
                    "alert_id": alert_id,
                    "event_id": event_id(alert_id, kind, row),
                    "kind": kind,
                    "target": target,
                    "payload": body,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt": now,
                    "created": now,
                }
            )
    if values:
        conn.execute(
            insert(deliveries).on_conflict_do_nothing(index_elements=["event_id", "target"]),
            values,
        )
    return len(values)


class Deliveries:
    """The deliveries of an open store (SQLite or PostgreSQL), for the senders of one
    watcher and for readers.

    Args:
        store: an open `EventStore`.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self.engine = store.engine

    def present(self) -> bool:
        """Whether the store has the table (a store of an older arnet, opened by a reader
        that never migrates, has not)."""
        with self.engine.connect() as conn:
            return sa.inspect(conn).has_table("deliveries")

    @_calls_store
    def pending(self, target: str, camera_ids: Sequence[int], limit: int = 50) -> list[dict]:
        """The oldest pending deliveries of `target` for these cameras, in the order their
        events happened: id, camera_id, alert_id, event_id, kind, payload, attempts,
        next_attempt (epoch seconds: not to be tried before)."""
        if not camera_ids:
            return []
        d = deliveries.c
        query = (
            sa.select(
                d.id,
                d.camera_id,
                d.alert_id,
                d.event_id,
                d.kind,
                d.payload,
                d.attempts,
                d.next_attempt,
            )  # fmt: skip
            .where(d.target == target, d.status == "pending", d.camera_id.in_(list(camera_ids)))
            .order_by(d.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    @_calls_store
    def delivered(self, delivery_id: int) -> None:
        """The receiver acknowledged it."""
        d = deliveries.c
        with self.engine.begin() as conn:
            conn.execute(
                deliveries.update()
                .where(d.id == delivery_id)
                .values(status="delivered", attempts=d.attempts + 1, finished=time.time())
            )

    @_calls_store
    def failed(self, delivery_id: int, error: str, retry_at: float | None) -> None:
        """An attempt failed with `error`: tried again from `retry_at`, or (None) given up:
        a dead letter."""
        d = deliveries.c
        values: dict[str, Any] = {"attempts": d.attempts + 1, "last_error": error[:2000]}
        if retry_at is None:
            values.update(status="dead", finished=time.time())
        else:
            values["next_attempt"] = retry_at
        with self.engine.begin() as conn:
            conn.execute(deliveries.update().where(d.id == delivery_id).values(**values))

    @_calls_store
    def of_alerts(self, alert_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        """Every delivery of each alert (target, event_id, kind, status, attempts,
        last_error, created, finished; oldest first): {alert id: [...]}, with every id given.
        A store without the table has none."""
        out: dict[int, list[dict[str, Any]]] = {int(i): [] for i in alert_ids}
        if not out or not self.present():
            return out
        d = deliveries.c
        ids = list(out)
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 1000):
                rows = conn.execute(
                    sa.select(
                        d.alert_id,
                        d.target,
                        d.event_id,
                        d.kind,
                        d.status,
                        d.attempts,
                        d.last_error,
                        d.created,
                        d.finished,
                    )  # fmt: skip
                    .where(d.alert_id.in_(ids[start : start + 1000]))
                    .order_by(d.id)
                )
                for r in rows:
                    row = dict(r._mapping)
                    out[row.pop("alert_id")].append(row)
        return out

    @_calls_store
    def counts(self, target: str | None = None) -> dict[str, int]:
        """How many deliveries are pending, delivered and dead (of one target, or all)."""
        out = dict.fromkeys(DELIVERY_STATES, 0)
        if not self.present():
            return out
        d = deliveries.c
        query = sa.select(d.status, sa.func.count()).group_by(d.status)
        if target is not None:
            query = query.where(d.target == target)
        with self.engine.connect() as conn:
            for status, count in conn.execute(query):
                out[status] = int(count)
        return out


def summarize(rows: Sequence[Mapping[str, Any]]) -> str:
    """An alert's deliveries in a few words: `3 delivered, 1 pending, 1 dead`, or `-`."""
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in DELIVERY_STATES}
    text = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return text or "-"
