"""The dashboard's application: pages, the JSON API behind them, and who may use them.

Pages are static HTML and JavaScript shipped in the package (`static/`); every figure on them
comes from the JSON API under `/api/`, which OpenAPI documents (`/openapi.json`, and the `/api`
page reads it). Nothing is loaded from another site: FastAPI's own docs pages pull scripts from
a CDN, so they are switched off.
"""

from __future__ import annotations

import hmac
import importlib
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .. import __version__
from ..store import StoreError
from .events import events_router
from .media import media_router
from .runs import RunFolders, RunNotFound

STATIC = Path(__file__).parent / "static"
COOKIE = "arnet_token"
# Host names a loopback-only server answers to: a page of another site that renames itself to
# 127.0.0.1 (DNS rebinding) still arrives with its own name in Host, and is refused.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
# The dashboard runs only its own files: no inline script, nothing from another origin.
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
# A run's report.html has its own inline style and no script at all.
REPORT_POLICY = (
    "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'"
)
_PAGES = {
    "live": "live.html",
    "alerts": "alerts.html",
    "alert": "alert.html",
    "runs": "runs.html",
    "run": "run.html",
    "api": "api.html",
}


def check_token(token: str | None) -> None:
    """A token is sent in headers and cookies: visible ASCII characters only (HTTP headers
    carry no other text reliably), at least 16 of them.

    Raises:
        ValueError: naming what is wrong (never the token itself).
    """
    if token is None:
        return
    if not all(33 <= ord(c) <= 126 for c in token):
        raise ValueError(
            "the token must be visible ASCII characters only (no spaces, no accents): e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe())'"
        )
    if len(token) < 16:
        raise ValueError(
            "use at least 16 characters (e.g. python -c 'import secrets; "
            "print(secrets.token_urlsafe())')"
        )


def create_app(
    store: Any,
    runs: str | Path | None = None,
    *,
    token: str | None = None,
    allowed_hosts: list[str] | None = None,
    poll_seconds: float = 1.0,
) -> FastAPI:
    """The dashboard as an ASGI application.

    Args:
        store: an open event store (`arnet.store.open_store`), or None for runs only.
        runs: the folder holding training runs, or None.
        token: when set, every request must carry it (header `Authorization: Bearer T`, or the
            cookie that opening any page with `?token=T` sets).
        allowed_hosts: Host header values accepted; None accepts the loopback names only when
            there is no token, and any name when there is one.
        poll_seconds: how often the live stream looks for new scores and alerts.

    Raises:
        ValueError: a token that `check_token` refuses.
    """
    check_token(token)
    app = FastAPI(
        title="arnet dashboard",
        version=__version__,
        description="Cameras, scores and alerts of `arnet watch`, and training runs.",
        docs_url=None,
        redoc_url=None,
    )
    folders = RunFolders(runs)
    if runs is not None:
        # Ground truth is read with the dataset readers, which import torch: seconds on a busy
        # machine. Import them now, so the first score plot does not wait for it.
        threading.Thread(
            target=importlib.import_module, args=("arnet.formats",), daemon=True
        ).start()
    app.state.store = store
    app.state.runs = folders

    @app.exception_handler(StoreError)
    async def store_failed(_request: Request, exc: StoreError) -> PlainTextResponse:
        # the store's message names it (password hidden) and says why
        return PlainTextResponse(str(exc), status_code=503)

    # Set by whoever stops the server: open live streams end, so shutdown need not wait.
    app.state.closing = threading.Event()
    hosts = allowed_hosts or (["*"] if token else list(LOOPBACK_HOSTS))
    _guard(app, token)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    app.include_router(events_router(store, poll_seconds, app.state.closing), prefix="/api")
    app.include_router(media_router(store), prefix="/api")
    _runs_routes(app, folders)
    _pages(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _guard(app: FastAPI, token: str | None) -> None:
    """Refuse requests without the token; add the page security headers to every answer."""

    def valid(given: str | None) -> bool:
        # as bytes: compare_digest refuses str holding anything but ASCII (a 500, not a 401)
        return (
            token is not None
            and given is not None
            and hmac.compare_digest(given.encode("utf-8", "surrogatepass"), token.encode())
        )

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        if token is not None:
            given = request.query_params.get("token")
            if given is not None:
                if not valid(given):
                    return PlainTextResponse("wrong token", status_code=401)
                # Log in: keep the token in a cookie and drop it from the address bar.
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = request.url.path + ("?" + urlencode(rest) if rest else "")
                response = RedirectResponse(target, status_code=303)
                response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
                return response
            header = request.headers.get("authorization", "")
            bearer = header[7:] if header.lower().startswith("bearer ") else None
            if not (valid(bearer) or valid(request.cookies.get(COOKIE))):
                return PlainTextResponse(
                    "this dashboard needs its token: open any page with ?token=TOKEN once, "
                    "or send the header 'Authorization: Bearer TOKEN'",
                    status_code=401,
                )
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            # A page of another site can post forms and text/plain without asking; JSON needs
            # the browser's permission (CORS), which this server never gives.
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                return PlainTextResponse("send JSON (Content-Type: application/json)", 415)
        response = await call_next(request)
        path = request.url.path
        response.headers.setdefault(
            "Content-Security-Policy", REPORT_POLICY if path.startswith("/files/") else PAGE_POLICY
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response


def _runs_routes(app: FastAPI, folders: RunFolders) -> None:
    @app.get("/api/runs", tags=["runs"], summary="Every training run, newest first")
    def list_runs() -> list[dict[str, Any]]:
        return folders.list()

    @app.get(
        "/api/run",
        tags=["runs"],
        summary="A run's config, latest metrics, evaluations, training losses and videos",
    )
    def run_detail(
        name: str = Query(..., description="the run folder, relative to --runs"),
    ) -> dict[str, Any]:
        try:
            return folders.detail(name)
        except RunNotFound as exc:
            raise HTTPException(404, str(exc)) from None

    @app.get(
        "/api/run/video",
        tags=["runs"],
        summary="One test video's segment scores and anomalous frame spans",
    )
    def run_video(
        name: str = Query(..., description="the run folder, relative to --runs"),
        video: str = Query(..., description="the test video's name"),
    ) -> dict[str, Any]:
        try:
            return folders.video(name, video)
        except RunNotFound as exc:
            raise HTTPException(404, str(exc)) from None

    @app.get("/files/{path:path}", include_in_schema=False)
    def run_file(path: str) -> FileResponse:
        # report.html links its plots relatively, so the report works here as it does on disk.
        try:
            return FileResponse(folders.file(path))
        except RunNotFound as exc:
            raise HTTPException(404, str(exc)) from None


def _pages(app: FastAPI) -> None:
    def page(name: str) -> FileResponse:
        return FileResponse(STATIC / _PAGES[name], media_type="text/html")

    @app.get("/", include_in_schema=False)
    def live() -> FileResponse:
        return page("live")

    @app.get("/alerts", include_in_schema=False)
    def alerts() -> FileResponse:
        return page("alerts")

    @app.get("/alerts/{alert_id}", include_in_schema=False)
    def alert(alert_id: int) -> FileResponse:
        return page("alert")

    @app.get("/runs", include_in_schema=False)
    def runs() -> FileResponse:
        return page("runs")

    @app.get("/runs/view", include_in_schema=False)
    def run() -> FileResponse:
        return page("run")

    @app.get("/api", include_in_schema=False)
    def api() -> FileResponse:
        return page("api")
