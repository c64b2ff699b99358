"""Commands on live cameras: `arnet watch` (scores streams into an event store) and
`arnet alerts` (lists, filters, exports and acknowledges stored alerts).

Their options are defined here (`add_watch_arguments`, `add_alerts_arguments`, registered in
`cli/main.py`'s table); this module imports only the standard library and the torch-free
option definitions at load time, so that `arnet --help` stays light.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .alerts_export import EXPORT_FIELDS, _iso, export_row
from .media_options import (
    add_clip_arguments,
    add_mask_arguments,
    add_retention_arguments,
    clip_settings,
    masks,
    retention_policy,
)
from .options import _at_least, _positive_real, _real
from .video_options import _add_backbone_options, add_alert_options

DEFAULT_STORE = "arnet-events.db"


# ---------------------------------------------------------------------- watch


def add_watch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="[NAME=]URL: rtsp://, http(s)://, rtmp://, udp://, tcp://, srt:// streams, video "
        "files, /dev/videoN or device:N webcams, or folders that frames are written into",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint file, run folder, or an `arnet export` folder (its head scores)",
    )
    p.add_argument(
        "--db",
        default=DEFAULT_STORE,
        metavar="STORE",
        help="event store: a SQLite file or postgresql://USER:PW@HOST/DB "
        f"(default {DEFAULT_STORE})",
    )
    p.add_argument(
        "--cameras",
        default=None,
        metavar="FILE",
        help="a file of sources, one [NAME=]URL per line (# comments), added to SOURCE...",
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="watch every N-th source from the I-th (of --cameras and SOURCE..., in order): "
        "N watchers on N machines share one camera list and one PostgreSQL store",
    )
    add_alert_options(p, live=True)
    g = p.add_argument_group("streaming")
    g.add_argument(
        "--realtime", action="store_true", help="replay video files at their own frame rate"
    )
    g.add_argument(
        "--context",
        type=_at_least(1),
        default=64,
        help="temporal models: segments of left context per live score (default 64)",
    )
    g.add_argument(
        "--open-timeout",
        type=_positive_real,
        default=10.0,
        help="seconds to open or read a stream",
    )
    g.add_argument(
        "--idle-stop",
        type=_positive_real,
        default=None,
        metavar="S",
        help="a frame folder that gets no new frame for S seconds has ended (default: it "
        "waits for frames for ever)",
    )
    g.add_argument(
        "--no-learn",
        dest="learn",
        action="store_false",
        help="nearest-normal run folders: do not turn new verdicts into versions while "
        "watching (versions made by `arnet feedback apply` are still taken up)",
    )
    g.add_argument(
        "--reconnect-max",
        type=_positive_real,
        default=30.0,
        help="longest wait between reconnection attempts, seconds (backoff from 0.5 s)",
    )
    _add_notify_arguments(p)
    add_clip_arguments(p)
    add_retention_arguments(p)
    add_mask_arguments(p)
    _add_backbone_options(p, recorded=True)


def _add_notify_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("notify (alerts that go out; docs/notify.md)")
    g.add_argument(
        "--notify",
        action="append",
        default=[],
        metavar="URL",
        help="send each alert event (opened, updated, closed) to a webhook (http:// or "
        "https://: a JSON POST) or an MQTT broker (mqtt://HOST:PORT/TOPIC: QoS 1, retained "
        "camera state, Home Assistant discovery); repeatable. Pending deliveries are kept in "
        "the store and survive a restart",
    )
    g.add_argument(
        "--notify-secret-file",
        default=None,
        metavar="FILE",
        help="sign webhook bodies with the secret in FILE: header X-Arnet-Signature: "
        "sha256=HMAC-SHA256(secret, body)",
    )
    g.add_argument(
        "--notify-timeout",
        type=_positive_real,
        default=10.0,
        help="seconds for one delivery attempt (default 10)",
    )
    g.add_argument(
        "--notify-attempts",
        type=_at_least(1),
        default=12,
        help="attempts of a delivery before it is kept as a dead letter (default 12; backoff "
        "from --notify-retry-first doubling to 300 s)",
    )
    g.add_argument(
        "--notify-retry-first",
        type=_positive_real,
        default=1.0,
        help="seconds before a failed delivery is tried again, doubled each time (default 1)",
    )
    g.add_argument(
        "--notify-drain",
        type=_real,
        default=10.0,
        help="seconds a stopping watcher goes on sending pending deliveries (default 10; the "
        "rest stay pending for the next watcher)",
    )


def notify_sinks(args: argparse.Namespace) -> list:
    """The network sinks of `--notify` (checked before the model loads)."""
    from ..errors import NotifyError
    from ..live.notify import make_sinks
    from ..live.sinks import NotifyOptions, read_secret

    if args.notify_secret_file and not args.notify:
        raise NotifyError("--notify-secret-file: no --notify URL to sign for")
    secret = read_secret(args.notify_secret_file) if args.notify_secret_file else None
    options = NotifyOptions(
        timeout=args.notify_timeout,
        attempts=args.notify_attempts,
        first_delay=args.notify_retry_first,
        drain=args.notify_drain,
    )
    client_id = f"arnet-watch-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return make_sinks(args.notify, secret, options, client_id)


def _camera_lines(path: str) -> list[str]:
    from ..errors import ExtractError

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ExtractError(f"{path}: cannot read the camera list ({exc.strerror})") from None
    lines = [
        line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
        for line in text.splitlines()
    ]
    return [line for line in lines if line]


def watcher_say(text: str) -> None:
    import time

    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}", flush=True)


def run_watch(args: argparse.Namespace) -> int:
    from ..errors import ExtractError
    from ..extract.dataset import parse_shard
    from ..extract.video import find_inputs
    from ..live.scorer import SegmentScorer
    from ..live.sources import parse_sources
    from ..live.tracker import Thresholds
    from ..live.watch import Watcher, WatchOptions, install_signals
    from ..store import check_store, open_store
    from .video import alert_threshold, check_alert_arguments, detector_from_args

    # Arguments, sources and the store first: a mistake shows before the model loads; the
    # store is made only once the checkpoint has loaded too (a refused watch leaves no file).
    check_alert_arguments(args)
    sinks = notify_sinks(args)
    texts = (_camera_lines(args.cameras) if args.cameras else []) + list(args.sources)
    if not texts:
        raise ExtractError("no source to watch: give SOURCE... or --cameras FILE")
    if args.shard:
        index, count = parse_shard(args.shard)
        texts = texts[index::count]
        if not texts:
            raise ExtractError(f"--shard {args.shard}: no source falls in this shard")
    sources = parse_sources(texts, fps=args.fps, idle_stop=args.idle_stop)
    normal = find_inputs(args.calibrate, fps=args.fps) if args.calibrate else []
    if args.stop_threshold is not None and args.threshold is not None:
        Thresholds(args.threshold, args.stop_threshold).validate()
    options = WatchOptions(
        realtime=args.realtime,
        batch_size=args.batch_size,
        open_timeout=args.open_timeout,
        reconnect_max=args.reconnect_max,
        quiet=args.quiet or args.json,
        clips=clip_settings(args),
        retention=retention_policy(args),
    )
    check_store(args.db)
    from ..detection.exported import is_export

    if is_export(args.checkpoint):
        from .video import export_detector_from_args

        detector, _meta = export_detector_from_args(args)
    else:
        detector, _meta = detector_from_args(args)
    options.masks = masks(args, [s.name for s in sources], detector.cell_grid)
    scorer = SegmentScorer(detector, args.context)
    start, _calibration = alert_threshold(args, detector, normal)
    stop = args.stop_threshold if args.stop_threshold is not None else start
    thresholds = Thresholds(start, stop, args.min_alert_frames, args.merge_gap)
    thresholds.validate()
    store = open_store(args.db)
    try:
        from ..live.feedback import LiveFeedback

        say = (lambda _line: None) if options.quiet else watcher_say
        feedback = LiveFeedback(detector.model, args.checkpoint, store, args.learn, say)
        camera_list = None
        if args.cameras:

            def camera_list() -> list[Any]:
                listed = _camera_lines(args.cameras) + list(args.sources)
                if args.shard:
                    listed = listed[index::count]
                return parse_sources(listed, fps=args.fps, idle_stop=args.idle_stop)

        watcher = Watcher(scorer, store, sources, thresholds, options, sinks, feedback, camera_list)
        restore_signals = install_signals(watcher)
        kind = "per-segment" if scorer.independent else f"causal window of {args.context}"
        if not options.quiet:
            print(
                f"watching {len(sources)} source(s) into {store.url}: {scorer.model_name} "
                f"({kind}, {feedback.describe()}), threshold {start:.4f}"
                + (f", stop {stop:.4f}" if stop != start else "")
                + (" (calibrated)" if normal else ""),
                flush=True,
            )
        try:
            watcher.start()
            for line in watcher.check_started():
                print(f"arnet watch: warning: {line}; retrying in the background", file=sys.stderr)
            scored = watcher.run()
        finally:
            restore_signals()
            watcher.close()
    finally:
        store.close()
    summary = {
        "store": store.url,
        "cameras": [s.name for s in sources],
        "segments": scored,
        "alerts_opened": watcher.alerts_opened,
        "threshold": start,
        "stop_threshold": stop,
    }
    if args.json:
        print(json.dumps(summary))
    elif not options.quiet:
        print(f"stopped: {scored} segment(s) scored, {watcher.alerts_opened} alert(s) opened")
    return 0


# ---------------------------------------------------------------------- alerts


def _time(text: str) -> float:
    """An ISO date or time (UTC unless it says otherwise) or epoch seconds -> epoch seconds."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isnan(seconds):  # compares false with every time: would match nothing
            raise argparse.ArgumentTypeError(f"not a time: {text!r}")
        return seconds
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (use 2026-12-01T08:30, 2026-12-01 or epoch seconds)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def add_alerts_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        default=DEFAULT_STORE,
        metavar="STORE",
        help=f"event store: a SQLite file or postgresql://... (default {DEFAULT_STORE})",
    )
    p.add_argument("--camera", default=None, help="only this camera")
    p.add_argument("--since", type=_time, default=None, help="alerts starting at or after this")
    p.add_argument("--until", type=_time, default=None, help="alerts starting at or before this")
    ack = p.add_mutually_exclusive_group()
    ack.add_argument(
        "--acknowledged",
        dest="acknowledged",
        action="store_true",
        default=None,
        help="only acknowledged alerts",
    )
    ack.add_argument(
        "--unacknowledged",
        dest="acknowledged",
        action="store_false",
        help="only alerts nobody has acknowledged yet",
    )
    p.add_argument(
        "--state",
        choices=("open", "closed"),
        default=None,
        help="only open alerts (still going on) or closed ones",
    )
    p.add_argument("--limit", type=int, default=50, help="newest N alerts (0: all)")
    p.add_argument("--offset", type=int, default=0, help="skip the newest N first")
    _add_output_arguments(p)
    p.add_argument("--out", default=None, help="write the export to this file (not stdout)")
    p.add_argument(
        "--images",
        default=None,
        metavar="FOLDER",
        help="also write each alert's peak frame as FOLDER/alert-ID.jpg",
    )
    p.add_argument(
        "--ack",
        type=int,
        default=None,
        metavar="ALERT_ID",
        help="acknowledge this alert (with --note and --by) instead of listing",
    )
    p.add_argument(
        "--deliveries",
        action="store_true",
        help="show each alert's deliveries of `watch --notify` (pending, delivered, dead: a "
        "column of the table and CSV; every delivery, with its last error, in --json)",
    )
    p.add_argument(
        "--export",
        default=None,
        metavar="DIR",
        help="write the alerts listed as DIR/alerts.csv and alerts.json with each one's peak "
        "frame (images/) and clip (clips/); DIR must be new or empty",
    )
    p.add_argument(
        "--verdict",
        nargs=2,
        default=None,
        metavar=("ALERT_ID", "VERDICT"),
        help="judge this alert: false-alarm (its segments join a nearest-normal detector's "
        "normal examples) or real (kept as an anomalous example); with --note and --by. The "
        "latest verdict of an alert counts; every one is kept",
    )
    p.add_argument(
        "--run",
        default=None,
        metavar="RUN[@VERSION]",
        help="with --verdict: the detector judged; refused when another one scored the alert",
    )
    p.add_argument("--note", default="", help="note of an acknowledgement or a verdict")
    p.add_argument("--by", default=None, help="who acknowledges or judges")


def _add_output_arguments(p: argparse.ArgumentParser) -> None:
    """A table for people, or the alerts as one JSON object (`--json`, as every command's) or
    as CSV; `--format` is the older spelling of the same choice."""
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--json",
        dest="format",
        action="store_const",
        const="json",
        help="print the alerts as one JSON object (with --ack: the acknowledgement)",
    )
    out.add_argument(
        "--csv", dest="format", action="store_const", const="csv", help="print them as CSV"
    )
    out.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        help="table, csv (as --csv) or json (as --json); default: a table",
    )
    p.set_defaults(format="table")


def _table(rows: list[dict[str, Any]], total: int, deliveries: bool = False) -> str:
    """The alerts for a person: a count, a header row, one line each."""
    lines = [
        f"{len(rows)} of {total} alert(s)",
        f"{'id':>6}  {'camera':<16} {'state':<6} {'start (UTC)':<29}  {'duration':>9}  "
        f"{'peak':>5}  " + (f"{'deliveries':<28}  " if deliveries else "") + "acknowledged",
    ]
    for r in rows:
        ack = ""
        if r["acknowledged"]:
            ack = f"{r['acknowledged_iso']}" + (
                f" by {r['acknowledged_by']}" if r["acknowledged_by"] else ""
            )
            ack += f": {r['note']}" if r["note"] else ""
        if r.get("verdict"):
            ack = (ack + "  " if ack else "") + f"[{r['verdict']}]"
        lines.append(
            (
                f"{r['id']:>6}  {r['camera']:<16} {r['state']:<6} {r['start_iso']:<29}  "
                f"{r['duration_s']:7.2f} s  {r['peak_score']:.3f}  "
                + (f"{r['deliveries']:<28}  " if deliveries else "")
                + ack
            ).rstrip()
        )
    return "\n".join(lines) + "\n"


def parse_detector(text: str) -> tuple[str, int | None]:
    """`RUN` or `RUN@VERSION` -> (the run as the store records it: resolved, version)."""
    from ..errors import DataError
    from ..training.feedback import run_folder

    run, _, version = text.rpartition("@") if "@" in text else (text, "", "")
    number = None
    if version:
        if not version.isdigit():
            raise DataError(f"--run {text}: the version after @ is a number (RUN@3)")
        number = int(version)
    folder = run_folder(run)
    return str(folder or Path(run).expanduser().resolve()), number


def _verdict(args: argparse.Namespace) -> int:
    from ..errors import DataError
    from ..store import open_store
    from ..store.schema import VERDICTS

    if args.ack is not None:
        raise DataError("give --ack or --verdict, not both")
    text, verdict = args.verdict
    try:
        alert_id = int(text)
    except ValueError:
        raise DataError(f"--verdict {text} {verdict}: the alert id is a number") from None
    if verdict not in VERDICTS:
        raise DataError(f"--verdict {text} {verdict}: a verdict is {' or '.join(VERDICTS)}")
    run, version = parse_detector(args.run) if args.run else (None, None)
    with open_store(args.db, "write") as store:
        try:
            row = store.add_verdict(
                alert_id, verdict, by=args.by, note=args.note, run=run, version=version
            )
        except KeyError:
            raise DataError(f"--verdict {alert_id}: no such alert in {store.url}") from None
    if args.format == "json":
        print(json.dumps(row))
    else:
        scored = f" (scored by {row['run']}" + (
            f" version {row['version']})" if row["version"] else ")"
        )
        replaced = f"; replaces the earlier verdict {row['replaces']}" if row["replaces"] else ""
        print(f"alert {alert_id}: {verdict}{scored if row['run'] else ''}{replaced}")
    return 0


def run_alerts(args: argparse.Namespace) -> int:
    from ..atomic import csv_cell, write_atomic
    from ..errors import DataError
    from ..store import open_store

    if args.limit < 0 or args.offset < 0:
        raise DataError("--limit and --offset must be >= 0")
    if args.export and (args.out or args.images or args.ack is not None):
        raise DataError("--export DIR writes its own files: give it without --out, --images, --ack")
    if args.export:
        from ..folders import require_empty

        require_empty(Path(args.export), "export alerts into a new or empty --export folder")
    if args.out and Path(args.out).exists():
        raise DataError(f"{args.out}: exists; choose a new file (nothing is overwritten)")
    if args.verdict is not None:
        return _verdict(args)
    if args.run is not None:
        raise DataError("--run goes with --verdict")
    # A reader: an existing arnet store, never created, migrated or changed (but for --ack).
    with open_store(args.db, "write" if args.ack is not None else "read") as store:
        if args.camera is not None and store.camera(args.camera) is None:
            names = [c["name"] for c in store.cameras()]
            known = f"its cameras: {', '.join(names[:10])}" if names else "it has no camera yet"
            raise DataError(f"--camera {args.camera}: no such camera in {store.url} ({known})")
        if args.ack is not None:
            try:
                ack = store.acknowledge(args.ack, args.note, args.by)
            except KeyError:
                raise DataError(f"--ack {args.ack}: no such alert in {store.url}") from None
            print(json.dumps(ack) if args.format == "json" else f"alert {args.ack} acknowledged")
            return 0
        alerts, total = store.alerts(
            camera=args.camera,
            since=args.since,
            until=args.until,
            acknowledged=args.acknowledged,
            state=args.state,
            offset=args.offset,
            limit=args.limit or None,
        )
        if args.images:
            folder = Path(args.images)
            folder.mkdir(parents=True, exist_ok=True)
            for a in alerts:
                image = store.alert_image(a["id"])
                target = folder / f"alert-{a['id']}.jpg"
                if image and not target.exists():
                    with contextlib.suppress(FileExistsError):  # written meanwhile: kept
                        # mypy cannot type a lambda with a default argument (python/mypy#15459)
                        write_atomic(target, lambda f, b=image: f.write(b), replace=False)  # type: ignore[misc]
        acks = store.acknowledgements([a["id"] for a in alerts])
        judged = store.verdicts([a["id"] for a in alerts])
        sent: dict[int, list[dict[str, Any]]] = {}
        if args.deliveries:
            from ..store.deliveries import Deliveries, summarize

            sent = Deliveries(store).of_alerts([a["id"] for a in alerts])
        rows = [export_row(a, acks[a["id"]]) for a in alerts]
        if args.export:
            from .alerts_export import export_alerts

            done = export_alerts(store, args.export, alerts, rows, acks, total)
            print(
                json.dumps(done)
                if args.format == "json"
                else f"{done['alerts']} alert(s), {done['images']} image(s) and {done['clips']} "
                f"clip(s) exported into {done['folder']}"
            )
            return 0
    fields: tuple[str, ...] = EXPORT_FIELDS
    if args.deliveries:
        fields = (*EXPORT_FIELDS, "deliveries")
        for r in rows:
            r["deliveries"] = summarize(sent[r["id"]])
    if args.format == "json":
        listed = [
            {
                **r,
                "acknowledgements": [{**k, "iso": _iso(k["time"])} for k in acks[r["id"]]],
                "verdicts": [{**v, "iso": _iso(v["time"])} for v in judged[r["id"]]],
            }
            for r in rows
        ]
        if args.deliveries:
            for r in listed:
                r["deliveries"] = sent[r["id"]]
        text = json.dumps({"total": total, "alerts": listed}, indent=1) + "\n"
    elif args.format == "csv":
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        # camera names come from the store, which any program may write
        writer.writerows({k: csv_cell(v) for k, v in r.items()} for r in rows)
        text = buffer.getvalue()
    else:
        text = _table(rows, total, args.deliveries)
    if args.out:
        try:
            write_atomic(args.out, lambda f: f.write(text.encode()), replace=False)
        except FileExistsError:
            raise DataError(
                f"{args.out}: exists; choose a new file (nothing is overwritten)"
            ) from None
    else:
        sys.stdout.write(text)
    return 0
