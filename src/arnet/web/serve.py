"""`arnet serve`: the dashboard over an event store and a folder of training runs."""

from __future__ import annotations

import argparse
import ipaddress
import math
import sys
from pathlib import Path
from typing import Any

# The live stream's shortest wait between looks at the store.
MIN_POLL = 0.05


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `arnet serve`."""
    parser.add_argument(
        "--db",
        required=True,
        metavar="STORE",
        help="the event store of arnet watch: a SQLite file or a postgresql:// URL",
    )
    parser.add_argument(
        "--runs", metavar="DIR", help="folder of training runs to show (arnet train --out ...)"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only); any other "
        "address needs --token or --token-file",
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    token = parser.add_mutually_exclusive_group()
    token.add_argument(
        "--token", help="every request must carry this token (open a page once with ?token=T)"
    )
    token.add_argument("--token-file", metavar="FILE", help="read the token from this file")
    parser.add_argument(
        "--poll",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often the live view looks for new scores and alerts (default 1)",
    )


def is_loopback(host: str) -> bool:
    """Whether `host` listens on this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _fail(message: str) -> int:
    print(f"arnet serve: error: {message}", file=sys.stderr)
    return 2


def _read_token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        path = Path(args.token_file)
        try:
            text = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--token-file {path}: cannot read it ({exc})") from None
        if not text:
            raise ValueError(f"--token-file {path}: the file is empty")
        return text
    if args.token is not None and not args.token.strip():
        raise ValueError("--token: empty")
    return args.token


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """Ends the live streams when asked to stop: they would otherwise hold it up."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            # config.app: our FastAPI app (uvicorn types it as any app or an import string)
            self.config.app.state.closing.set()  # type: ignore[union-attr]
            super().handle_exit(sig, frame)

    return Server


def run_serve(args: argparse.Namespace) -> int:
    """Check the options, open the store and serve until interrupted; the exit status."""
    try:
        import uvicorn

        from .app import LOOPBACK_HOSTS, check_token, create_app
    except ImportError as exc:
        return _fail(f"the web extra is not installed ({exc}): pip install 'arnet-vad[web]'")
    from ..store import StoreError, open_store

    try:
        token = _read_token(args)
    except ValueError as exc:
        return _fail(str(exc))
    if not 0 < args.port < 65536:
        return _fail(f"--port {args.port}: choose 1 to 65535")
    if not MIN_POLL <= args.poll < math.inf:  # NaN too: the live stream could not wait it
        return _fail(f"--poll {args.poll}: seconds from {MIN_POLL} (a busy loop below) on")
    try:
        check_token(token)
    except ValueError as exc:
        return _fail(
            f"{'--token-file ' + args.token_file if args.token_file else '--token'}: {exc}"
        )
    if not is_loopback(args.host) and token is None:
        return _fail(
            f"--host {args.host}: listening beyond this machine needs --token or --token-file"
        )
    if args.runs is not None and not Path(args.runs).is_dir():
        return _fail(f"--runs {args.runs}: no such folder")
    try:
        # A dashboard reads, and writes only acknowledgements: a mistyped path must not become
        # a new, empty store, nor another program's database gain arnet's tables.
        store = open_store(args.db, "write")
    except StoreError as exc:
        return _fail(f"--db: {exc}")  # the message names the store, its password hidden
    hosts = None if token else [*LOOPBACK_HOSTS, args.host]
    app = create_app(store, args.runs, token=token, allowed_hosts=hosts, poll_seconds=args.poll)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"arnet serve: http://{shown}:{args.port}/ (Ctrl-C stops)", file=sys.stderr)
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=5
    )
    try:
        _server_class()(config).run()
    finally:
        store.close()
    return 0
