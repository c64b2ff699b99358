"""Retention: old scores, events, alerts with their images and clips, pruned in small batches
while watching (`arnet watch --keep-days N --keep-gb X --keep-acknowledged-days M`).

Never a long lock, never a VACUUM: each batch is one short transaction deleting at most
`batch` rows (500 by default), with a pause between batches, so the watcher's own commits and
readers (`arnet alerts`, the dashboard) go on between them. SQLite reuses the freed pages;
PostgreSQL's autovacuum does the same for its tables.

What goes, for the cameras this watcher holds (their clips are on its disk):

- by age (`keep_days`): segment scores and camera events older than that; closed alerts that
  ended before it, with their image and clip, unless acknowledged: an acknowledged alert is kept
  `keep_acknowledged_days` (4 x `keep_days` unless given), and the scores of its span with it.
  An open alert is never pruned.
- by size (`keep_gb`): while the cameras' data exceed it, the oldest first (scores, and closed
  unacknowledged alerts with their clips), acknowledged alerts only once nothing else is left.
  The size is the clips' bytes plus the alerts' images plus the rows at the bytes a row takes
  in a SQLite store (`ROW_BYTES`, measured by `benchmarks/retention.py`): the same count on
  SQLite and PostgreSQL, which frees the deleted rows' room for new ones, not for the disk.

A clip file is removed before its alert's row: a pruner killed between the two leaves an alert
whose clip is missing, which the next batch removes, never a file that no row names.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..errors import DataError
from .engine import store_failure
from .schema import acknowledgements, alert_clips, alerts, camera_events
from .schema import segment_scores as scores

log = logging.getLogger("arnet.watch")

DAY = 86400.0
# Bytes a row takes in a SQLite store, index entries included (benchmarks/retention.py).
ROW_BYTES = {"segment_scores": 90, "camera_events": 150, "alerts": 260}
_CLIP_NAME = re.compile(r"^alert-\d+\.mp4$")


@dataclass
class RetentionPolicy:
    """What is kept (None: kept forever) and how the pruning paces itself."""

    keep_days: float | None = None
    keep_gb: float | None = None
    keep_acknowledged_days: float | None = None
    batch: int = 500
    pause: float = 0.05  # seconds between two batches
    interval: float = 60.0  # seconds between two rounds while watching

    def __post_init__(self) -> None:
        for option, value in (
            ("--keep-days", self.keep_days),
            ("--keep-gb", self.keep_gb),
            ("--keep-acknowledged-days", self.keep_acknowledged_days),
        ):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise DataError(f"{option}: a number > 0, got {value!r}")
        if self.keep_acknowledged_days is not None and self.keep_days is None:
            if self.keep_gb is None:
                raise DataError("--keep-acknowledged-days needs --keep-days (or --keep-gb)")
        if self.keep_days is not None and self.keep_acknowledged_days is None:
            self.keep_acknowledged_days = 4 * self.keep_days
        if (
            self.keep_days is not None
            and self.keep_acknowledged_days is not None
            and self.keep_acknowledged_days < self.keep_days
        ):
            raise DataError(
                f"--keep-acknowledged-days {self.keep_acknowledged_days:g} is shorter than "
                f"--keep-days {self.keep_days:g}: acknowledged alerts are kept longer, not less"
            )
        if self.batch < 1:
            raise ValueError(f"a retention batch must be >= 1 row, got {self.batch}")

    @property
    def active(self) -> bool:
        return self.keep_days is not None or self.keep_gb is not None


@dataclass
class Pruned:
    """What a round removed."""

    scores: int = 0
    events: int = 0
    alerts: int = 0
    clips: int = 0
    clip_bytes: int = 0
    batches: int = 0
    size_before: int | None = None
    size_after: int | None = None
    seconds: list[float] = field(default_factory=list)  # each batch's transaction

    @property
    def rows(self) -> int:
        return self.scores + self.events + self.alerts


class Pruner:
    """Prunes the store's rows of some cameras in small batches.

    Args:
        store: an open EventStore (written).
        policy: what is kept.
        camera_ids: the cameras pruned (a watcher's own).
        on_batch: called after each batch's transaction with (kind, rows removed) (tests).
        clock: the time now (tests).
    """

    def __init__(
        self,
        store: Any,
        policy: RetentionPolicy,
        camera_ids: Sequence[int],
        on_batch: Callable[[str, int], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.policy = store, policy
        self.camera_ids = list(camera_ids)
        self.on_batch = on_batch
        self.clock = clock
        self.stopping = threading.Event()

    def add_camera(self, camera_id: int) -> None:
        """Prune this camera's rows too from the next round on (added while watching). The
        list is replaced, not grown, so that a round in progress keeps the one it read."""
        if camera_id not in self.camera_ids:
            self.camera_ids = [*self.camera_ids, camera_id]

    # ------------------------------------------------------------------ size
    def size(self) -> int:
        """The cameras' data in bytes: clips, images and rows (see the module's text)."""
        ids = self.camera_ids
        try:
            with self.store.engine.connect() as conn:
                total = 0
                for table, key in (
                    (scores, scores.c.camera_id),
                    (camera_events, camera_events.c.camera_id),
                ):
                    n = conn.execute(
                        sa.select(sa.func.count()).select_from(table).where(key.in_(ids))
                    )
                    total += int(n.scalar_one()) * ROW_BYTES[table.name]
                n_alerts, images = conn.execute(
                    sa.select(
                        sa.func.count(),
                        sa.func.coalesce(sa.func.sum(sa.func.length(alerts.c.peak_image)), 0),
                    ).where(alerts.c.camera_id.in_(ids))
                ).one()
                total += int(n_alerts) * ROW_BYTES["alerts"] + int(images)
                clip_bytes = conn.execute(
                    sa.select(sa.func.coalesce(sa.func.sum(alert_clips.c.bytes), 0))
                    .join(alerts, alerts.c.id == alert_clips.c.alert_id)
                    .where(alerts.c.camera_id.in_(ids))
                ).scalar_one()
                return total + int(clip_bytes)
        except sa.exc.DBAPIError as exc:
            raise store_failure(self.store.engine.url, exc) from exc

    # ------------------------------------------------------------------ a round
    def round(self, max_batches: int | None = None) -> Pruned:
        """Prune what the policy says, batch by batch (at most `max_batches`), pausing between
        them; stops early when `stopping` is set."""
        done = Pruned()
        p = self.policy
        now = self.clock()
        budget = [max_batches if max_batches is not None else 10**9]

        def more() -> bool:
            return budget[0] > 0 and not self.stopping.is_set()

        if p.keep_days is not None:
            cutoff = now - p.keep_days * DAY
            ack_cutoff = now - (p.keep_acknowledged_days or p.keep_days) * DAY
            steps = (
                lambda d: self._old_scores(d, cutoff),
                lambda d: self._old_events(d, cutoff),
                lambda d: self._old_alerts(d, cutoff, False),
                lambda d: self._old_alerts(d, ack_cutoff, True),
            )
            for step in steps:
                while more() and self._batch(done, budget, step):
                    pass
        if p.keep_gb is not None and more():
            limit = int(p.keep_gb * 1e9)
            size = self.size()
            done.size_before = size
            while size > limit and more():
                removed = self._oldest(done, budget)
                if not removed:
                    break
                size = self.size()
            done.size_after = size
        return done

    def _batch(self, done: Pruned, budget: list[int], step: Callable[[Pruned], tuple]) -> bool:
        """One batch of `step`'s rows removed in one transaction; False when none was left."""
        started = time.perf_counter()
        kind, removed = step(done)
        if not removed:
            return False
        done.seconds.append(time.perf_counter() - started)
        done.batches += 1
        budget[0] -= 1
        setattr(done, kind, getattr(done, kind) + removed)
        if self.on_batch is not None:
            self.on_batch(kind, removed)
        self.stopping.wait(self.policy.pause)
        return True

    def _run(self, work: Callable[[sa.Connection], int]) -> int:
        try:
            with self.store.engine.begin() as conn:
                return work(conn)
        except sa.exc.DBAPIError as exc:
            raise store_failure(self.store.engine.url, exc) from exc

    def _protected(self) -> sa.ColumnElement:
        """A score inside an acknowledged alert that is still kept."""
        return (
            sa.select(alerts.c.id)
            .join(acknowledgements, acknowledgements.c.alert_id == alerts.c.id)
            .where(
                alerts.c.camera_id == scores.c.camera_id,
                scores.c.segment.between(alerts.c.start_segment, alerts.c.end_segment),
            )
            .exists()
        )

    def _delete_scores(self, where: Sequence[sa.ColumnElement]) -> int:
        """A batch of the oldest scores matching `where`, camera by camera (each camera's
        index on its start times is read in order: no sort of a large backlog)."""

        def work(conn: sa.Connection) -> int:
            ids: list[int] = []
            for camera_id in self.camera_ids:
                left = self.policy.batch - len(ids)
                if left <= 0:
                    break
                ids += [
                    r[0]
                    for r in conn.execute(
                        sa.select(scores.c.id)
                        .where(scores.c.camera_id == camera_id, ~self._protected(), *where)
                        .order_by(scores.c.start_time)
                        .limit(left)
                    )
                ]
            if ids:
                conn.execute(scores.delete().where(scores.c.id.in_(ids)))
            return len(ids)

        return self._run(work)

    def _old_scores(self, _done: Pruned, cutoff: float) -> tuple[str, int]:
        return "scores", self._delete_scores([scores.c.start_time < cutoff])

    def _old_events(self, _done: Pruned, cutoff: float) -> tuple[str, int]:
        def work(conn: sa.Connection) -> int:
            ids = [
                r[0]
                for r in conn.execute(
                    sa.select(camera_events.c.id)
                    .where(
                        camera_events.c.camera_id.in_(self.camera_ids),
                        camera_events.c.time < cutoff,
                    )
                    .limit(self.policy.batch)
                )
            ]
            if ids:
                conn.execute(camera_events.delete().where(camera_events.c.id.in_(ids)))
            return len(ids)

        return "events", self._run(work)

    def _alert_ids(
        self, conn: sa.Connection, acknowledged: bool, ended_before: float | None
    ) -> list[tuple[int, str | None]]:
        acked = sa.exists().where(acknowledgements.c.alert_id == alerts.c.id)
        query = (
            sa.select(alerts.c.id, alert_clips.c.path)
            .outerjoin(alert_clips, alert_clips.c.alert_id == alerts.c.id)
            .where(
                alerts.c.camera_id.in_(self.camera_ids),
                alerts.c.state == "closed",
                acked if acknowledged else ~acked,
            )
            .order_by(alerts.c.end_time)
            .limit(max(1, self.policy.batch // 10))  # an alert carries an image and a clip
        )
        if ended_before is not None:
            query = query.where(alerts.c.end_time < ended_before)
        return [(r[0], r[1]) for r in conn.execute(query)]

    def _delete_alerts(
        self, acknowledged: bool, ended_before: float | None
    ) -> tuple[int, int, int]:
        """(alerts, clips, clip bytes) removed: the clips' files first, then the rows."""
        with self.store.engine.connect() as conn:
            found = self._alert_ids(conn, acknowledged, ended_before)
        files = n_bytes = 0
        for alert_id, path in found:
            if path is None:
                continue
            clip = Path(path)
            if (
                clip.suffix == ".mp4"
                and _CLIP_NAME.match(clip.name)
                and clip.name == f"alert-{alert_id}.mp4"
            ):
                with contextlib.suppress(FileNotFoundError):
                    n_bytes += clip.stat().st_size
                    clip.unlink()
                    files += 1
        ids = [a for a, _ in found]

        def work(conn: sa.Connection) -> int:
            if not ids:
                return 0
            # the rows that cascade, explicitly (a SQLite connection without foreign keys too)
            conn.execute(alert_clips.delete().where(alert_clips.c.alert_id.in_(ids)))
            conn.execute(acknowledgements.delete().where(acknowledgements.c.alert_id.in_(ids)))
            return conn.execute(alerts.delete().where(alerts.c.id.in_(ids))).rowcount

        return self._run(work), files, n_bytes

    def _old_alerts(self, done: Pruned, cutoff: float, acknowledged: bool) -> tuple[str, int]:
        removed, files, n_bytes = self._delete_alerts(acknowledged, cutoff)
        done.clips += files
        done.clip_bytes += n_bytes
        return "alerts", removed

    def _oldest(self, done: Pruned, budget: list[int]) -> bool:
        """One batch of the oldest data (for the size budget); False when nothing is left."""
        with self.store.engine.connect() as conn:
            oldest_score = conn.execute(
                sa.select(sa.func.min(scores.c.start_time)).where(
                    scores.c.camera_id.in_(self.camera_ids), ~self._protected()
                )
            ).scalar_one_or_none()
            found = self._alert_ids(conn, False, None)
            oldest_alert = None
            if found:
                oldest_alert = conn.execute(
                    sa.select(alerts.c.end_time).where(alerts.c.id == found[0][0])
                ).scalar_one()
        if oldest_score is not None and (oldest_alert is None or oldest_score <= oldest_alert):
            # the scores up to the oldest alert (or a batch of them)
            before = [
                scores.c.start_time <= (oldest_alert if oldest_alert is not None else math.inf)
            ]
            return self._batch(done, budget, lambda _d: ("scores", self._delete_scores(before)))
        if oldest_alert is not None:  # the alerts older than every score left
            until = math.nextafter(oldest_score, math.inf) if oldest_score is not None else math.inf
            return self._batch(done, budget, lambda d: self._old_alerts(d, until, False))
        # nothing but acknowledged alerts (and their scores) left
        return self._batch(done, budget, lambda d: self._old_alerts(d, math.inf, True))


class RetentionThread(threading.Thread):
    """Runs a `Pruner` round every `policy.interval` seconds until stopped; a failing store is
    said once per outage (the watcher's outbox says the rest) and tried again next round."""

    def __init__(self, pruner: Pruner, say: Callable[[str], None] | None = None) -> None:
        super().__init__(name="retention", daemon=True)
        self.pruner = pruner
        self.say = say or (lambda _text: None)
        self.rounds = 0
        self.total = Pruned()
        self.failing = False

    def stop(self) -> None:
        self.pruner.stopping.set()

    def run(self) -> None:
        first = min(5.0, self.pruner.policy.interval)  # soon after the start, never at it
        wait = first
        while not self.pruner.stopping.wait(wait):
            wait = self.pruner.policy.interval
            try:
                done = self.pruner.round()
            except Exception as exc:  # noqa: BLE001  (the store away: next round)
                if not self.failing:
                    log.warning("retention: %s; tried again in %g s", exc, wait)
                self.failing = True
                continue
            self.failing = False
            self.rounds += 1
            for name in ("scores", "events", "alerts", "clips", "clip_bytes", "batches"):
                setattr(self.total, name, getattr(self.total, name) + getattr(done, name))
            if done.rows:
                self.say(
                    f"retention: pruned {done.scores} score(s), {done.events} event(s), "
                    f"{done.alerts} alert(s) and {done.clips} clip(s) in {done.batches} batch(es)"
                )
