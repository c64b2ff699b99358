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
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .options import _at_least, _positive_real
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
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run folder")
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
        "--reconnect-max",
        type=_positive_real,
        default=30.0,
        help="longest wait between reconnection attempts, seconds (backoff from 0.5 s)",
    )
    _add_backbone_options(p, recorded=True)


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
    texts = (_camera_lines(args.cameras) if args.cameras else []) + list(args.sources)
    if not texts:
        raise ExtractError("no source to watch: give SOURCE... or --cameras FILE")
    if args.shard:
        index, count = parse_shard(args.shard)
        texts = texts[index::count]
        if not texts:
            raise ExtractError(f"--shard {args.shard}: no source falls in this shard")
    sources = parse_sources(texts, fps=args.fps)
    normal = find_inputs(args.calibrate, fps=args.fps) if args.calibrate else []
    if args.stop_threshold is not None and args.threshold is not None:
        Thresholds(args.threshold, args.stop_threshold).validate()
    options = WatchOptions(
        realtime=args.realtime,
        batch_size=args.batch_size,
        open_timeout=args.open_timeout,
        reconnect_max=args.reconnect_max,
        quiet=args.quiet or args.json,
    )
    check_store(args.db)
    detector, _meta = detector_from_args(args)
    scorer = SegmentScorer(detector, args.context)
    start, _calibration = alert_threshold(args, detector, normal)
    stop = args.stop_threshold if args.stop_threshold is not None else start
    thresholds = Thresholds(start, stop, args.min_alert_frames, args.merge_gap)
    thresholds.validate()
    store = open_store(args.db)
    try:
        watcher = Watcher(scorer, store, sources, thresholds, options)
        restore_signals = install_signals(watcher)
        kind = "per-segment" if scorer.independent else f"causal window of {args.context}"
        if not options.quiet:
            print(
                f"watching {len(sources)} source(s) into {store.url}: {scorer.model_name} "
                f"({kind}), threshold {start:.4f}"
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
    p.add_argument("--note", default="", help="note of an acknowledgement")
    p.add_argument("--by", default=None, help="who acknowledges")


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


EXPORT_FIELDS = (
    "id",
    "camera",
    "state",
    "start_iso",
    "end_iso",
    "duration_s",
    "start_frame",
    "end_frame",
    "peak_score",
    "peak_frame",
    "peak_iso",
    "threshold",
    "acknowledged",
    "acknowledged_iso",
    "acknowledged_by",
    "note",
    "start_time",
    "end_time",
    "peak_time",
    "acknowledged_time",
)
"""The columns of `arnet alerts --csv` and the fields of each alert of `--json` (which adds
`acknowledgements`: every one, oldest first); `acknowledged_*` and `note` are those of the
latest acknowledgement (empty when there is none)."""


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds")


def export_row(alert: dict[str, Any], acks: list[dict[str, Any]]) -> dict[str, Any]:
    """An alert from the store as exported: ISO times (UTC) beside the epoch seconds, and who
    acknowledged it, when and with what note (the latest of `acks`, oldest first)."""
    latest = acks[-1] if acks else {}
    return {
        **{k: alert[k] for k in EXPORT_FIELDS if k in alert},
        "start_iso": _iso(alert["start_time"]),
        "end_iso": _iso(alert["end_time"]),
        "peak_iso": _iso(alert["peak_time"]),
        "duration_s": round(alert["end_time"] - alert["start_time"], 3),
        "acknowledged_time": latest.get("time"),
        "acknowledged_iso": _iso(latest.get("time")),
        "acknowledged_by": latest.get("by"),
        "note": latest.get("note"),
    }


def _table(rows: list[dict[str, Any]], total: int) -> str:
    """The alerts for a person: a count, a header row, one line each."""
    lines = [
        f"{len(rows)} of {total} alert(s)",
        f"{'id':>6}  {'camera':<16} {'state':<6} {'start (UTC)':<29}  {'duration':>9}  "
        f"{'peak':>5}  acknowledged",
    ]
    for r in rows:
        ack = ""
        if r["acknowledged"]:
            ack = f"{r['acknowledged_iso']}" + (
                f" by {r['acknowledged_by']}" if r["acknowledged_by"] else ""
            )
            ack += f": {r['note']}" if r["note"] else ""
        lines.append(
            f"{r['id']:>6}  {r['camera']:<16} {r['state']:<6} {r['start_iso']:<29}  "
            f"{r['duration_s']:7.2f} s  {r['peak_score']:.3f}  {ack}".rstrip()
        )
    return "\n".join(lines) + "\n"


def run_alerts(args: argparse.Namespace) -> int:
    from ..atomic import csv_cell, write_atomic
    from ..errors import DataError
    from ..store import open_store

    if args.limit < 0 or args.offset < 0:
        raise DataError("--limit and --offset must be >= 0")
    if args.out and Path(args.out).exists():
        raise DataError(f"{args.out}: exists; choose a new file (nothing is overwritten)")
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
    rows = [export_row(a, acks[a["id"]]) for a in alerts]
    if args.format == "json":
        listed = [
            {**r, "acknowledgements": [{**k, "iso": _iso(k["time"])} for k in acks[r["id"]]]}
            for r in rows
        ]
        text = json.dumps({"total": total, "alerts": listed}, indent=1) + "\n"
    elif args.format == "csv":
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS)
        writer.writeheader()
        # camera names come from the store, which any program may write
        writer.writerows({k: csv_cell(v) for k, v in r.items()} for r in rows)
        text = buffer.getvalue()
    else:
        text = _table(rows, total)
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
