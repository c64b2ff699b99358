"""The JSON API over the event store of `arnet watch`: cameras, scores, alerts, and a live
stream of them as server-sent events.

`arnet watch` writes the store from another process (or machine), so the stream polls it: each
open stream asks the store for what changed every `poll_seconds` and sends only that.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..store import StoreError
from .runs import finite

# Scores a camera's chart holds: the live view scrolls through the newest this many segments.
WINDOW = 300
# Unacknowledged alerts the live view lists at most.
OPEN_ALERTS = 100
# Seconds between keep-alive comments on a quiet stream (proxies close silent connections).
KEEPALIVE = 15.0


def parse_time(value: str | None, option: str) -> float | None:
    """Epoch seconds from seconds or ISO 8601 (a time without zone is UTC); 400 when neither."""
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if seconds == seconds:  # NaN compares false with every time
            return seconds
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(
            400, f"{option}: expected seconds since 1970 or an ISO 8601 time, got {value!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _no_store() -> HTTPException:
    return HTTPException(404, "no event store: arnet serve --db STORE")


def events_router(
    store: Any, poll_seconds: float = 1.0, closing: threading.Event | None = None
) -> APIRouter:
    """The /api routes over `store` (None: every store route answers 404). Live streams end
    when `closing` is set, so a server stops without waiting for its open dashboards."""
    closing = closing or threading.Event()
    router = APIRouter()

    def need() -> Any:
        if store is None:
            raise _no_store()
        return store

    @router.get("/cameras", tags=["live"], summary="Every camera with its state and last score")
    def cameras() -> list[dict[str, Any]]:
        return finite(need().cameras())

    @router.get(
        "/scores",
        tags=["live"],
        summary="A camera's segment scores in segment order (the newest `limit` by default)",
    )
    def scores(
        camera: str = Query(..., description="the camera's name"),
        since_segment: int | None = Query(None, description="only segments after this one"),
        since_time: str | None = Query(
            None, description="only segments starting at or after (epoch s or ISO 8601)"
        ),
        limit: int = Query(WINDOW, ge=1, le=100_000),
    ) -> list[dict[str, Any]]:
        when = parse_time(since_time, "since_time")
        return finite(
            need().scores(camera, since_segment=since_segment, since_time=when, limit=limit)
        )

    @router.get("/alerts", tags=["alerts"], summary="A page of alerts, newest first, and the total")
    def alerts(
        camera: str | None = Query(None, description="only this camera's alerts"),
        since: str | None = Query(None, description="starting at or after (epoch s or ISO 8601)"),
        until: str | None = Query(None, description="starting at or before (epoch s or ISO 8601)"),
        state: str | None = Query(None, pattern="^(open|closed)$", description="open or closed"),
        acknowledged: bool | None = Query(None, description="acknowledged or not"),
        offset: int = Query(0, ge=0),
        limit: int = Query(50, ge=1, le=500),
    ) -> dict[str, Any]:
        rows, total = need().alerts(
            camera=camera or None,
            since=parse_time(since, "since"),
            until=parse_time(until, "until"),
            acknowledged=acknowledged,
            state=state,
            offset=offset,
            limit=limit,
        )
        return finite({"alerts": rows, "total": total, "offset": offset, "limit": limit})

    @router.get(
        "/alerts/{alert_id}",
        tags=["alerts"],
        summary="One alert with its segment scores and acknowledgements",
    )
    def alert(alert_id: int) -> dict[str, Any]:
        found = need().alert(alert_id)
        if found is None:
            raise HTTPException(404, f"no alert {alert_id}")
        camera = need().camera(found["camera"])
        # The curve around the alert: as long again before and after it, for context.
        length = found["end_segment"] - found["start_segment"] + 1
        found["context"] = need().scores(
            found["camera"], since_segment=found["start_segment"] - length - 1, limit=3 * length
        )
        found["camera_threshold"] = (camera or {}).get("start_threshold")
        return finite(found)

    @router.get(
        "/alerts/{alert_id}/image",
        tags=["alerts"],
        summary="The JPEG of the alert's peak frame",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    def alert_image(alert_id: int) -> Response:
        image = need().alert_image(alert_id)
        if image is None:
            raise HTTPException(404, f"no image of alert {alert_id}")
        return Response(image, media_type="image/jpeg")

    @router.post(
        "/alerts/{alert_id}/acknowledge",
        tags=["alerts"],
        summary="Acknowledge an alert with a note; stored with the time",
    )
    def acknowledge(
        alert_id: int,
        note: str = Body("", embed=True, max_length=2000),
        by: str | None = Body(None, embed=True, max_length=200),
    ) -> dict[str, Any]:
        try:
            return finite(need().acknowledge(alert_id, note, by=by or None))
        except KeyError:
            raise HTTPException(404, f"no alert {alert_id}") from None

    @router.post(
        "/alerts/{alert_id}/verdict",
        tags=["alerts"],
        summary="An operator's verdict on an alert: false-alarm (its segments join a "
        "nearest-normal detector's normal examples) or real; every verdict is kept, the latest "
        "counts",
    )
    def verdict(
        alert_id: int,
        verdict: str = Body(..., embed=True, pattern="^(false-alarm|real)$"),
        note: str = Body("", embed=True, max_length=2000),
        by: str | None = Body(None, embed=True, max_length=200),
        run: str | None = Body(
            None, embed=True, max_length=4000, description="refused unless this run scored it"
        ),
        version: int | None = Body(None, embed=True, ge=0),
    ) -> dict[str, Any]:
        from ..store.verdicts import FeedbackUnavailable, OtherDetector

        try:
            return finite(
                need().add_verdict(
                    alert_id, verdict, by=by or None, note=note, run=run or None, version=version
                )
            )
        except KeyError:
            raise HTTPException(404, f"no alert {alert_id}") from None
        except (OtherDetector, FeedbackUnavailable) as exc:
            raise HTTPException(409, str(exc)) from None

    @router.get(
        "/events",
        tags=["live"],
        summary="Server-sent events: `cameras`, `scores` (per camera, new segments), `alerts` "
        "(the unacknowledged ones, when they change)",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def events(request: Request) -> StreamingResponse:
        need()
        return StreamingResponse(
            _stream(store, request, poll_seconds, closing),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(finite(data), separators=(',', ':'))}\n\n"


def _changes(store: Any, last: dict[str, int], sent: dict[str, Any]) -> list[str]:
    """What changed in the store since the last call, as SSE messages (runs in a thread)."""
    out = []
    cameras = store.cameras()
    if cameras != sent.get("cameras"):
        sent["cameras"] = cameras
        out.append(_event("cameras", cameras))
    for camera in cameras:
        name, newest = camera["name"], camera["next_segment"] - 1
        seen = last.get(name)
        if newest < 0 or (seen is not None and newest <= seen):
            continue
        rows = store.scores(name, since_segment=seen, limit=WINDOW)
        if rows:
            last[name] = rows[-1]["segment"]
            out.append(_event("scores", {"camera": name, "scores": rows}))
    rows, total = store.alerts(acknowledged=False, limit=OPEN_ALERTS)
    if (rows, total) != sent.get("alerts"):
        sent["alerts"] = (rows, total)
        out.append(_event("alerts", {"alerts": rows, "total": total}))
    return out


async def _stream(
    store: Any, request: Request, poll_seconds: float, closing: threading.Event
) -> AsyncIterator[str]:
    last: dict[str, int] = {}
    sent: dict[str, Any] = {}
    quiet = 0.0
    # The browser reconnects by itself after a dropped connection; this is how soon.
    yield f"retry: {int(max(poll_seconds, 1.0) * 1000)}\n\n"
    while not closing.is_set() and not await request.is_disconnected():
        try:
            messages = await run_in_threadpool(_changes, store, last, sent)
        except StoreError as exc:  # the store is away: a comment, and a look again later
            messages = [f": {' '.join(str(exc).split())}\n\n"]
        for message in messages:
            yield message
        quiet = 0.0 if messages else quiet + poll_seconds
        if quiet >= KEEPALIVE:
            quiet = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(poll_seconds)
