"""What a watcher writes to its event store, held in memory while the store is unavailable.

A watcher keeps scoring when its store stops answering (a PostgreSQL server stopped, a full
disk, a lock held too long): each batch's writes wait here, per camera and in order, and are
tried again with backoff (`Backoff`: 0.5 s doubling to 30 s). When the store answers again
they are written in order, each batch in one transaction as before, so a reader never sees a
segment's score without the alert it opened; the outage is recorded as a `store-outage`
camera event (when it began, how long it lasted, what was held and what was dropped).

Nothing committed is lost and nothing is written twice: segment scores are kept once per
camera and segment, alerts are identified by camera and first segment, and a write whose
outcome is unknown (the connection dropped during its commit) is simply written again.

Memory is bounded: beyond `limit` held segments, the oldest batches' segment scores are
dropped (counted, and said in the outage event); their alert rows are kept (folded into the
next batch), so no alert is lost or changed by an outage.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..store import StoreUnavailable
from ..store.events import Holder, LeaseLost
from .camera import Backoff

log = logging.getLogger("arnet.watch")

# Segments held in memory in all (about 200 bytes each: ~20 MB), and written per transaction.
HELD_SEGMENTS = 100_000
SEGMENTS_PER_WRITE = 500
# Camera events held per camera (a camera flapping during an outage): the oldest go first.
HELD_EVENTS = 200


@dataclass
class _Batch:
    """One batch's writes for one camera: segment scores, alert rows, read position."""

    segments: list[dict[str, Any]]
    alerts: dict[int, dict[str, Any]]  # start_segment -> the last row of that alert
    position: int | None


@dataclass
class _State:
    """A camera state change (and event) to write, in order with the batches."""

    state: str | None
    detail: str | None
    event: str | None
    frame: int | None
    when: float


@dataclass
class _Camera:
    writes: deque = field(default_factory=deque)  # _Batch and _State, oldest first
    dropped: int = 0  # segments whose scores were dropped during the outage
    held: int = 0  # segments written after waiting here


def merge_alerts(rows: list[dict[str, Any]], into: dict[int, dict[str, Any]]) -> None:
    """Fold alert rows into one row per alert (its last state); an alert's picture, written
    with the peak that made it, is kept when a later row has none, and the features of its
    segments are gathered from every row."""
    for row in rows:
        earlier = into.get(row["start_segment"], {})
        merged = {**earlier, **row}
        if row.get("peak_image") is None and earlier.get("peak_image") is not None:
            merged["peak_image"] = earlier["peak_image"]
        if earlier.get("segment_features") and row.get("segment_features") is not None:
            # each row carries the features of the segments it added (live.feedback)
            merged["segment_features"] = {**earlier["segment_features"], **row["segment_features"]}
        elif earlier.get("segment_features"):
            merged["segment_features"] = earlier["segment_features"]
        into[row["start_segment"]] = merged


class Outbox:
    """The writes of one watcher to its store.

    Args:
        store: the open EventStore.
        holder: the watcher's lease holder (every write checks its lease).
        written: callback(camera_id, alert rows, their ids) once a batch is stored.
        lost: callback(camera_id, message) when the camera's lease was taken over: its
            writes are dropped, and the watcher stops the camera.
        limit: segments held in memory at most.
        backoff: delays between attempts while the store is unavailable.
    """

    def __init__(
        self,
        store: Any,
        holder: Holder | None,
        written: Callable[[int, list[dict[str, Any]], list[int]], None],
        lost: Callable[[int, str], None],
        limit: int = HELD_SEGMENTS,
        backoff: Backoff | None = None,
    ) -> None:
        self.store, self.holder = store, holder
        self.written, self.lost = written, lost
        self.limit = limit
        self.backoff = backoff or Backoff(0.5, 30.0)
        self.cameras: dict[int, _Camera] = {}
        self.lock = threading.RLock()  # camera threads add states; the main loop flushes
        self.down_since: float | None = None
        self.reason: str | None = None
        self.next_try = 0.0
        self.gone: set[int] = set()  # cameras whose lease was taken over
        self.released = False  # the leases were given up: no heartbeat renews them
        self._held = 0  # segments waiting, in all
        # targets of `--notify`: each alert event's deliveries are written with the alert
        self.notify: tuple[str, ...] = ()

    # ------------------------------------------------------------------ adding
    def add_camera(self, camera_id: int) -> None:
        """A camera whose lease this watcher holds: renewed by `heartbeat`, given up by
        `release`, from now on."""
        with self.lock:
            self._camera(camera_id)

    def batch(
        self,
        camera_id: int,
        segments: list[dict[str, Any]],
        alerts: list[dict[str, Any]],
        position: int | None,
    ) -> None:
        """Queue one batch of a camera (its scores, alert rows and read position), then try
        to write what is waiting."""
        with self.lock:
            if camera_id in self.gone:
                return
            rows: dict[int, dict[str, Any]] = {}
            merge_alerts(alerts, rows)
            self._camera(camera_id).writes.append(_Batch(list(segments), rows, position))
            self._held += len(segments)
            self._bound()
        self.flush()

    def state(
        self,
        camera_id: int,
        state: str | None,
        detail: str | None = None,
        event: str | None = None,
        frame: int | None = None,
    ) -> None:
        """Queue a state change (`state` None: an event alone), then try to write."""
        with self.lock:
            if camera_id in self.gone:
                return
            writes = self._camera(camera_id).writes
            writes.append(_State(state, detail, event, frame, time.time()))
            states = [w for w in writes if isinstance(w, _State)]
            if len(states) > HELD_EVENTS:
                writes.remove(states[0])
            if self.down_since is not None:  # the main loop tries again when it is due
                return
        self.flush()

    def _camera(self, camera_id: int) -> _Camera:
        return self.cameras.setdefault(camera_id, _Camera())

    def held(self) -> int:
        """Segments waiting to be written."""
        return self._held

    def pending(self) -> bool:
        """Whether anything waits to be written."""
        with self.lock:
            return any(c.writes for c in self.cameras.values())

    def _bound(self) -> None:
        """Drop the oldest batches' scores beyond `limit` held segments (alerts kept)."""
        while self._held > self.limit:
            firsts = [
                (i, c)
                for c in self.cameras.values()
                for i in [next((i for i, w in enumerate(c.writes) if _scored(w)), None)]
                if i is not None
            ]
            i, camera = min(firsts, key=lambda f: f[1].writes[f[0]].segments[0]["end_time"])
            writes = camera.writes
            first = writes[i]
            camera.dropped += len(first.segments)
            self._held -= len(first.segments)
            first.segments = []
            if i + 1 < len(writes) and isinstance(writes[i + 1], _Batch):
                following = writes[i + 1]  # takes over the alert rows and read position
                rows: dict[int, dict[str, Any]] = {}
                merge_alerts(list(first.alerts.values()), rows)
                merge_alerts(list(following.alerts.values()), rows)
                following.alerts = rows
                if following.position is None:
                    following.position = first.position
                del writes[i]

    # ------------------------------------------------------------------ writing
    def flush(self, force: bool = False) -> bool:
        """Write what waits, in order, when the store is up or its retry is due (`force`:
        now); True when nothing waits any more."""
        with self.lock:
            if not self.pending():
                return True
            if self.down_since is not None and not force and time.monotonic() < self.next_try:
                return False
            try:
                for camera_id in list(self.cameras):
                    self._write(camera_id)
            except StoreUnavailable as exc:
                self._failed(str(exc))
                return False
            if self.down_since is not None:
                self._recovered()
            return True

    def _write(self, camera_id: int) -> None:
        camera = self.cameras[camera_id]
        while camera.writes:
            first = camera.writes[0]
            try:
                if isinstance(first, _State):
                    self._write_state(camera_id, first)
                    camera.writes.popleft()
                    continue
                taken: list[_Batch] = []
                segments: list[dict[str, Any]] = []
                rows: dict[int, dict[str, Any]] = {}
                position: int | None = None
                for w in camera.writes:  # consecutive batches in one transaction
                    if not isinstance(w, _Batch) or len(segments) >= SEGMENTS_PER_WRITE:
                        break
                    taken.append(w)
                    segments += w.segments
                    merge_alerts(list(w.alerts.values()), rows)
                    position = w.position if w.position is not None else position
                alert_rows = list(rows.values())
                extra = {"notify": self.notify} if self.notify else {}
                ids = self.store.commit_segments(
                    camera_id, segments, alert_rows, holder=self.holder, position=position, **extra
                )
            except LeaseLost as exc:
                self._forget(camera_id, str(exc))
                return
            for _ in taken:
                camera.writes.popleft()
            self._held -= len(segments)
            if self.down_since is not None:
                camera.held += len(segments)
            self.written(camera_id, alert_rows, ids)

    def _write_state(self, camera_id: int, write: _State) -> None:
        if write.state is None:
            self.store.add_event(
                camera_id, write.event, write.detail, write.frame, self.holder, write.when
            )
        else:
            self.store.set_state(
                camera_id, write.state, write.detail, write.event, write.frame, self.holder
            )

    def _failed(self, reason: str) -> None:
        first = self.down_since is None
        if first:
            self.down_since = time.time()
        self.reason = reason
        delay = self.backoff.next()
        self.next_try = time.monotonic() + delay
        # always said (not only without --quiet): the operator must know scores are waiting
        print(
            f"arnet watch: warning: {reason}; {self.held()} segment(s) held in memory, "
            f"retrying in {delay:.1f} s",
            file=sys.stderr,
            flush=True,
        )

    def _recovered(self) -> None:
        """The store answers again: record the outage on every camera that waited."""
        began, reason = self.down_since, self.reason
        assert began is not None
        lasted = time.time() - began
        self.down_since, self.reason = None, None
        self.backoff.reset()
        print(
            f"arnet watch: the event store answers again after {lasted:.1f} s; every held "
            "segment is written",
            file=sys.stderr,
            flush=True,
        )
        for camera_id, camera in self.cameras.items():
            if camera_id in self.gone:
                continue
            detail = (
                f"the event store was unavailable for {lasted:.1f} s ({reason}); "
                f"{camera.held} segment(s) held in memory and written"
                + (f", {camera.dropped} dropped (memory bound)" if camera.dropped else "")
            )
            camera.held = camera.dropped = 0
            try:
                self.store.add_event(camera_id, "store-outage", detail, None, self.holder, began)
            except StoreUnavailable as exc:  # down again at once: said on the next failure
                self._failed(str(exc))
                return
            except LeaseLost as exc:
                self._forget(camera_id, str(exc))

    def _forget(self, camera_id: int, message: str) -> None:
        """The camera's lease was taken over: drop its writes, and say so."""
        camera = self.cameras[camera_id]
        self._held -= sum(len(w.segments) for w in camera.writes if isinstance(w, _Batch))
        camera.writes.clear()
        self.gone.add(camera_id)
        self.lost(camera_id, message)

    def heartbeat(self) -> None:
        """Renew the leases of the cameras (a store that is down is tried on the next one)."""
        if self.holder is None:
            return
        with self.lock:
            if self.down_since is not None or self.released:
                return
            for camera_id in list(self.cameras):
                if camera_id in self.gone:
                    continue
                try:
                    self.store.renew_lease(camera_id, self.holder)
                except StoreUnavailable:
                    return
                except LeaseLost as exc:
                    self._forget(camera_id, str(exc))

    def release(self) -> None:
        """Give up every lease still held (best effort: a lease not released expires, and a
        process of this machine is known dead by its PID)."""
        if self.holder is None:
            return
        with self.lock:  # a heartbeat under way finishes first, and none follows
            self.released = True
        try:
            for camera_id in self.cameras:
                if camera_id not in self.gone:
                    self.store.release_camera(camera_id, self.holder)
        except Exception as exc:  # noqa: BLE001  (stopping: said, not raised)
            print(
                f"arnet watch: the cameras' leases were not released ({exc}); the next watcher "
                "of this machine takes them over",
                file=sys.stderr,
                flush=True,
            )


def _scored(write: _Batch | _State) -> bool:
    return isinstance(write, _Batch) and bool(write.segments)
