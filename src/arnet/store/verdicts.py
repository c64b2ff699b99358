"""Operator feedback in the event store: which detector scored an alert, the features of the
alert's segments, and the operators' verdicts ("false-alarm" or "real") on it.

A verdict is kept with who gave it, when, and a note. An alert may be judged more than once
(two operators who disagree, or one who changes their mind): every verdict is kept, in order,
and the latest one counts (`latest`, and `feedback`, which a detector learns from).

A verdict may name the detector the operator means (`run`, `version`): when the alert was
scored by another one, the verdict is refused (`OtherDetector`), so that feedback never
teaches a detector about an alert it did not raise.

Stores of an earlier revision (before 0003) have none of these tables: readers see no detector
and no verdict; writing a verdict there is refused with the reason (`FeedbackUnavailable`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .engine import StoreError, calls_store
from .schema import (
    FEEDBACK_TABLES,
    VERDICTS,
    alert_detectors,
    alert_features,
    alerts,
    cameras,
    verdicts,
)

# Alert ids per query (far below the bound parameters a statement may carry).
_IDS_PER_QUERY = 1000


class OtherDetector(StoreError):
    """A verdict names a detector (run, version) that did not score the alert."""


class FeedbackUnavailable(StoreError):
    """The store predates verdicts (revision 0002 or older): a watcher migrates it."""


def encode_feature(feature: np.ndarray) -> tuple[str, bytes]:
    """A segment's feature (D,) or (V, D) -> (shape text, float32 little-endian bytes)."""
    array = np.ascontiguousarray(np.asarray(feature, dtype="<f4"))
    return "x".join(str(n) for n in array.shape), array.tobytes()


def decode_feature(shape: str, data: bytes) -> np.ndarray:
    """The inverse of `encode_feature`."""
    dims = tuple(int(n) for n in shape.split("x"))
    return np.frombuffer(data, dtype="<f4").reshape(dims).astype(np.float32)


def detector_name(run: str, version: int) -> str:
    """How a detector is named in messages: RUN, or RUN@VERSION after a change."""
    return run if not version else f"{run}@{version}"


class FeedbackRecords:
    """The feedback methods of `EventStore` (it sets `engine`)."""

    engine: sa.Engine
    _feedback_ok: bool | None = None

    def _has_feedback(self) -> bool:
        if self._feedback_ok is None:
            names = set(sa.inspect(self.engine).get_table_names())
            self._feedback_ok = all(t in names for t in FEEDBACK_TABLES)
        return self._feedback_ok

    def _need_feedback(self) -> None:
        if not self._has_feedback():
            url = getattr(self, "url", str(self.engine.url))
            raise FeedbackUnavailable(
                f"{url}: this event store predates verdicts (schema revision 0002 or older); "
                "run `arnet watch` on it once with this arnet to upgrade it"
            )

    # ------------------------------------------------------------------ writing (watch)
    @staticmethod
    def _write_alert_extras(conn: sa.Connection, alert_id: int, row: Mapping[str, Any]) -> None:
        """In `commit_segments`' transaction: the detector that opened the alert (the first
        one written is kept) and the features of its segments (each segment once)."""
        detector = row.get("detector")
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        if detector is not None:
            conn.execute(
                insert(alert_detectors)
                .values(alert_id=alert_id, run=str(detector[0]), version=int(detector[1]))
                .on_conflict_do_nothing(index_elements=["alert_id"])
            )
        features = row.get("segment_features") or {}
        if features:
            rows = []
            for segment, feature in sorted(features.items()):
                shape, data = encode_feature(feature)
                rows.append(
                    {"alert_id": alert_id, "segment": int(segment), "shape": shape, "feature": data}
                )
            conn.execute(
                insert(alert_features).on_conflict_do_nothing(
                    index_elements=["alert_id", "segment"]
                ),
                rows,
            )

    # ------------------------------------------------------------------ verdicts
    @calls_store
    def add_verdict(
        self,
        alert_id: int,
        verdict: str,
        *,
        by: str | None = None,
        note: str = "",
        run: str | None = None,
        version: int | None = None,
    ) -> dict[str, Any]:
        """Record an operator's verdict on an alert; returns it (id, alert_id, verdict, time,
        by, note, run, version: the detector that scored the alert, and `replaces`: the
        verdict it overrides, None when it is the first or the same).

        Args:
            run, version: the detector the operator judges; refused when another one scored
                the alert (None: any).

        Raises:
            KeyError: no such alert.
            ValueError: a verdict other than "false-alarm" or "real".
            OtherDetector: the alert was scored by another detector than `run`/`version`.
            FeedbackUnavailable: a store of an earlier revision.
        """
        if verdict not in VERDICTS:
            raise ValueError(f"a verdict is one of {', '.join(VERDICTS)}, got {verdict!r}")
        self._need_feedback()
        if not 0 < alert_id < 2**63:
            raise KeyError(f"no alert with id {alert_id}")
        now = time.time()
        with self.engine.begin() as conn:
            if conn.execute(sa.select(alerts.c.id).where(alerts.c.id == alert_id)).first() is None:
                raise KeyError(f"no alert with id {alert_id}")
            scored = conn.execute(
                sa.select(alert_detectors.c.run, alert_detectors.c.version).where(
                    alert_detectors.c.alert_id == alert_id
                )
            ).first()
            if run is not None:
                given = detector_name(run, version or 0) if version is not None else run
                if scored is None:
                    raise OtherDetector(
                        f"alert {alert_id} records no detector (scored before verdicts "
                        f"existed), so it cannot be a verdict on {given}; leave --run out"
                    )
                if scored.run != run or (version is not None and scored.version != version):
                    raised = detector_name(scored.run, scored.version)
                    raise OtherDetector(
                        f"alert {alert_id} was scored by {raised}, not {given}: a verdict "
                        "teaches only the detector that raised the alert"
                    )
            previous = conn.execute(
                sa.select(verdicts.c.verdict)
                .where(verdicts.c.alert_id == alert_id)
                .order_by(verdicts.c.id.desc())
                .limit(1)
            ).scalar_one_or_none()
            new_id = conn.execute(
                verdicts.insert()
                .values(alert_id=alert_id, verdict=verdict, time=now, by=by, note=note or "")
                .returning(verdicts.c.id)
            ).scalar_one()
        return {
            "id": int(new_id),
            "alert_id": alert_id,
            "verdict": verdict,
            "time": now,
            "by": by,
            "note": note or "",
            "run": None if scored is None else scored.run,
            "version": None if scored is None else int(scored.version),
            "replaces": previous if previous not in (None, verdict) else None,
        }

    @calls_store
    def verdicts(self, alert_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        """Every verdict of each alert (id, verdict, time, by, note; oldest first): {alert id:
        [...]} with every id given (empty lists on a store without verdicts)."""
        out: dict[int, list[dict[str, Any]]] = {int(i): [] for i in alert_ids}
        if not self._has_feedback():
            return out
        ids = list(out)
        with self.engine.connect() as conn:
            for start in range(0, len(ids), _IDS_PER_QUERY):
                rows = conn.execute(
                    sa.select(
                        verdicts.c.alert_id,
                        verdicts.c.id,
                        verdicts.c.verdict,
                        verdicts.c.time,
                        verdicts.c.by,
                        verdicts.c.note,
                    )
                    .where(verdicts.c.alert_id.in_(ids[start : start + _IDS_PER_QUERY]))
                    .order_by(verdicts.c.id)
                )
                for row in rows:
                    item = dict(row._mapping)
                    out[item.pop("alert_id")].append(item)
        return out

    @calls_store
    def detectors(self, alert_ids: Sequence[int]) -> dict[int, dict[str, Any] | None]:
        """The detector that scored each alert ({"run", "version"}), None where none is
        recorded (an alert of an earlier arnet, or a store without the table)."""
        out: dict[int, dict[str, Any] | None] = {int(i): None for i in alert_ids}
        if not self._has_feedback():
            return out
        ids = list(out)
        with self.engine.connect() as conn:
            for start in range(0, len(ids), _IDS_PER_QUERY):
                for row in conn.execute(
                    sa.select(alert_detectors).where(
                        alert_detectors.c.alert_id.in_(ids[start : start + _IDS_PER_QUERY])
                    )
                ):
                    out[row.alert_id] = {"run": row.run, "version": int(row.version)}
        return out

    def feedback_fields(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Alerts (dicts with `id`) with `detector` and `verdict` (the latest, or None) added;
        a single alert's dict also gets `verdicts` (all of them) when it has `segments`."""
        ids = [r["id"] for r in rows]
        found = self.verdicts(ids)
        scored = self.detectors(ids)
        for r in rows:
            history = found[r["id"]]
            r["detector"] = scored[r["id"]]
            r["verdict"] = history[-1]["verdict"] if history else None
            if "segments" in r:
                r["verdicts"] = history
        return rows

    # ------------------------------------------------------------------ learning from them
    @calls_store
    def latest_verdict_id(self, run: str) -> int:
        """The newest verdict id on alerts scored by `run` (any version); 0 when none (a
        cheap poll for new feedback)."""
        if not self._has_feedback():
            return 0
        query = (
            sa.select(sa.func.max(verdicts.c.id))
            .join(alert_detectors, alert_detectors.c.alert_id == verdicts.c.alert_id)
            .where(alert_detectors.c.run == run)
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one_or_none() or 0)

    @calls_store
    def feedback(self, run: str, after: int = 0) -> list[dict[str, Any]]:
        """The alerts of detector `run` (any version) judged since verdict id `after`, each
        with its latest verdict: alert_id, camera, version (that scored it), verdict,
        verdict_id, by, time, note, and `features` ((n, D) or (n, V, D) float32, its
        segments' in order; n may be 0 for an alert written without them)."""
        if not self._has_feedback():
            return []
        latest = (
            sa.select(verdicts.c.alert_id, sa.func.max(verdicts.c.id).label("verdict_id"))
            .group_by(verdicts.c.alert_id)
            .subquery()
        )
        query = (
            sa.select(
                latest.c.alert_id,
                latest.c.verdict_id,
                verdicts.c.verdict,
                verdicts.c.by,
                verdicts.c.time,
                verdicts.c.note,
                alert_detectors.c.version,
                cameras.c.name.label("camera"),
            )
            .join(verdicts, verdicts.c.id == latest.c.verdict_id)
            .join(alert_detectors, alert_detectors.c.alert_id == latest.c.alert_id)
            .join(alerts, alerts.c.id == latest.c.alert_id)
            .join(cameras, cameras.c.id == alerts.c.camera_id)
            .where(alert_detectors.c.run == run, latest.c.verdict_id > after)
            .order_by(latest.c.verdict_id)
        )
        with self.engine.connect() as conn:
            out = [dict(r._mapping) for r in conn.execute(query)]
            for item in out:
                item["features"] = self._features(conn, item["alert_id"])
        return out

    @calls_store
    def alert_features(self, alert_id: int) -> np.ndarray:
        """The features of an alert's segments, in segment order ((0, 0) when none)."""
        if not self._has_feedback():
            return np.zeros((0, 0), dtype=np.float32)
        with self.engine.connect() as conn:
            return self._features(conn, alert_id)

    @staticmethod
    def _features(conn: sa.Connection, alert_id: int) -> np.ndarray:
        rows = conn.execute(
            sa.select(alert_features.c.shape, alert_features.c.feature)
            .where(alert_features.c.alert_id == alert_id)
            .order_by(alert_features.c.segment)
        ).all()
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([decode_feature(r.shape, r.feature) for r in rows])
