"""What the store keeps beside scores for people to look at: each alert's clip (the MP4 file's
path and the frames it shows) and each camera's mask.

Both live in tables of their own (`alert_clips`, `camera_masks`, migration 0004_clips): a store
of an earlier revision is read as it is, with no clip and no mask, and its readers never migrate it.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa

from .engine import store_failure
from .schema import alert_clips, alerts, camera_masks, cameras

CLIP_FIELDS = ("path", "start_frame", "end_frame", "start_time", "fps", "width", "height", "bytes")

_F = TypeVar("_F", bound=Callable[..., Any])


def _calls_store(function: _F) -> _F:
    """A database error as StoreUnavailable or StoreError naming the store."""

    @functools.wraps(function)
    def call(store: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(store, *args, **kwargs)
        except sa.exc.DBAPIError as exc:
            raise store_failure(store.engine.url, exc) from exc

    return call  # type: ignore[return-value]


@functools.lru_cache(maxsize=64)
def _tables_of(engine: sa.Engine) -> frozenset[str]:
    return frozenset(sa.inspect(engine).get_table_names())


def has_media(store: Any) -> bool:
    """Whether the store's revision has the clip and mask tables (0003 or later). A watcher's
    store always has (`open_store` migrates it); a reader's may not."""
    tables = _tables_of(store.engine)
    if "alert_clips" in tables:
        return True
    _tables_of.cache_clear()  # a reader opened before a watcher migrated the store
    return "alert_clips" in _tables_of(store.engine)


@_calls_store
def record_clip(store: Any, alert_id: int, clip: dict[str, Any]) -> None:
    """Record (or replace) alert `alert_id`'s clip: `clip` has the `CLIP_FIELDS`. Nothing is
    recorded when the alert is gone (pruned meanwhile): the caller removes the file."""
    values = {f: clip[f] for f in CLIP_FIELDS}
    with store.engine.begin() as conn:
        if conn.execute(sa.select(alerts.c.id).where(alerts.c.id == alert_id)).first() is None:
            raise KeyError(f"no alert {alert_id}")
        statement = (
            store._insert(alert_clips)
            .values(alert_id=alert_id, created=time.time(), **values)
            .on_conflict_do_update(index_elements=["alert_id"], set_=values)
        )
        conn.execute(statement)


@_calls_store
def clips(store: Any, alert_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The clips of these alerts that have one: {alert id: clip fields}."""
    if not alert_ids or not has_media(store):
        return {}
    out: dict[int, dict[str, Any]] = {}
    ids = [int(i) for i in alert_ids]
    with store.engine.connect() as conn:
        for start in range(0, len(ids), 1000):
            rows = conn.execute(
                sa.select(alert_clips).where(alert_clips.c.alert_id.in_(ids[start : start + 1000]))
            )
            for row in rows:
                values = dict(row._mapping)
                out[values.pop("alert_id")] = values
    return out


def clip(store: Any, alert_id: int) -> dict[str, Any] | None:
    """Alert `alert_id`'s clip (path, start_frame, end_frame, start_time, fps, width, height,
    bytes, created), or None."""
    return clips(store, [alert_id]).get(int(alert_id))


@_calls_store
def set_mask(store: Any, camera_id: int, mask: dict[str, Any] | None) -> None:
    """Store a camera's mask (JSON-ready; see `arnet.live.masks.Mask.describe`), or remove it
    (None): a watcher started without `--mask` leaves the camera unmasked."""
    with store.engine.begin() as conn:
        conn.execute(camera_masks.delete().where(camera_masks.c.camera_id == camera_id))
        if mask is not None:
            conn.execute(
                camera_masks.insert().values(
                    camera_id=camera_id, mask=json.dumps(mask), updated=time.time()
                )
            )


@_calls_store
def mask(store: Any, camera: str) -> dict[str, Any] | None:
    """Camera `camera`'s mask as stored, or None (none, or a store of an earlier revision)."""
    if not has_media(store):
        return None
    query = (
        sa.select(camera_masks.c.mask)
        .join(cameras, cameras.c.id == camera_masks.c.camera_id)
        .where(cameras.c.name == camera)
    )
    with store.engine.connect() as conn:
        text = conn.execute(query).scalar_one_or_none()
    return None if text is None else json.loads(text)
