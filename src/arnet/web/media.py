"""The API of what the store keeps for people to look at: an alert's clip (the MP4, streamed
with range requests so that a browser seeks in it) and a camera's mask.

The clip's file is found through its row in the store (`alert_clips`, written by the watcher
once the file is whole); only a regular `.mp4` file is ever sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse

from .runs import finite


def media_router(store: Any) -> APIRouter:
    """The /api routes of clips and masks over `store` (None: each answers 404)."""
    router = APIRouter()

    def need() -> Any:
        if store is None:
            raise HTTPException(404, "no event store: arnet serve --db STORE")
        return store

    def clip_row(alert_id: int) -> dict[str, Any]:
        from ..store.media import clip

        if not 0 < alert_id < 2**63:
            raise HTTPException(404, f"no alert {alert_id}")
        found = clip(need(), alert_id)
        if found is None:
            raise HTTPException(404, f"no clip of alert {alert_id}")
        return found

    @router.get(
        "/alerts/{alert_id}/clip/info",
        tags=["alerts"],
        summary="The alert's clip: its first and last frame, start time, rate, size and bytes "
        "(null when the alert has none)",
    )
    def clip_info(alert_id: int) -> dict[str, Any] | None:
        from ..store.media import clip

        if not 0 < alert_id < 2**63 or need().alert(alert_id) is None:
            raise HTTPException(404, f"no alert {alert_id}")
        found = clip(need(), alert_id)
        if found is None:
            return None
        path = Path(found.pop("path"))
        found["available"] = path.is_file()
        found["url"] = f"/api/alerts/{alert_id}/clip"
        return finite(found)

    @router.get(
        "/alerts/{alert_id}/clip",
        tags=["alerts"],
        summary="The alert's clip (H.264 MP4; Range requests answered)",
        response_class=FileResponse,
        responses={200: {"content": {"video/mp4": {}}}, 206: {"content": {"video/mp4": {}}}},
    )
    def clip_file(alert_id: int) -> FileResponse:
        path = Path(clip_row(alert_id)["path"])
        if path.suffix != ".mp4" or not path.is_file():
            raise HTTPException(404, f"the clip of alert {alert_id} is gone from the disk")
        return FileResponse(
            path,
            media_type="video/mp4",
            filename=f"alert-{alert_id}.mp4",
            content_disposition_type="inline",
        )

    @router.get(
        "/cameras/mask",
        tags=["live"],
        summary="A camera's mask: the cells (or pixels) that count for nothing; null if none",
    )
    def camera_mask(camera: str = Query(..., description="the camera's name")) -> Any:
        from ..store.media import mask

        return mask(need(), camera)

    return router
