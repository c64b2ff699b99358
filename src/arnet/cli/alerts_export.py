"""`arnet alerts --export DIR`: the listed alerts as `alerts.csv` and `alerts.json`, each one's
peak frame (`images/alert-ID.jpg`) and clip (`clips/alert-ID.mp4`), in a new or empty folder.

The folder follows the rules of every command that writes results: new or empty, held by this
process while it is written (`folders.claim_empty_folder`), nothing in it or anywhere else
deleted or overwritten; each file is written under a temporary name and renamed when whole.
A clip whose file is gone from the disk is said (one line each) and left out; the export goes on.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

EXPORT_WHAT = "export alerts into a new or empty --export folder"

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
    "verdict",
    "detector_run",
    "detector_version",
)
"""The columns of `arnet alerts --csv` and the fields of each alert of `--json` (which adds
`acknowledgements` and `verdicts`: every one, oldest first); `acknowledged_*` and `note` are
those of the latest acknowledgement (empty when there is none); `verdict` is the latest
verdict (false-alarm, real or empty), `detector_*` the run and version that scored it."""


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
        "verdict": alert.get("verdict"),
        "detector_run": (alert.get("detector") or {}).get("run"),
        "detector_version": (alert.get("detector") or {}).get("version"),
    }


def _copy(source: Path, target: Path) -> None:
    from ..atomic import write_atomic

    def write(f: Any) -> None:
        with source.open("rb") as src:
            shutil.copyfileobj(src, f, 1 << 20)

    write_atomic(target, write, replace=False)


def export_alerts(
    store: Any,
    folder: str | Path,
    alerts: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    acks: dict[int, list[dict[str, Any]]],
    total: int,
) -> dict[str, Any]:
    """Write the export; returns what was written (counts and the folder).

    Raises:
        FolderError: the folder holds something, or another process holds it.
    """
    from ..atomic import csv_cell, write_atomic
    from ..folders import claim_empty_folder, notice
    from ..store.media import clips

    found = clips(store, [a["id"] for a in alerts])
    images = clips_copied = 0
    missing = []
    with claim_empty_folder(folder, "arnet alerts --export", EXPORT_WHAT) as out:
        listed = []
        for alert, row in zip(alerts, rows):
            entry = {
                **row,
                "acknowledgements": [{**k, "iso": _iso(k["time"])} for k in acks[row["id"]]],
                "image": None,
                "clip": None,
            }
            image = store.alert_image(alert["id"]) if alert.get("has_image") else None
            if image:
                name = f"images/alert-{alert['id']}.jpg"
                # mypy cannot type a lambda with a default argument (python/mypy#15459)
                write_atomic(out / name, lambda f, b=image: f.write(b), replace=False)  # type: ignore[misc]
                entry["image"] = name
                images += 1
            c = found.get(alert["id"])
            if c is not None:
                source = Path(c["path"])
                name = f"clips/alert-{alert['id']}.mp4"
                if source.is_file():
                    _copy(source, out / name)
                    entry["clip"] = name
                    entry["clip_start_frame"], entry["clip_end_frame"] = (
                        c["start_frame"],
                        c["end_frame"],
                    )
                    clips_copied += 1
                else:
                    missing.append(alert["id"])
                    notice(f"alert {alert['id']}: its clip {source} is gone; exported without it")
            listed.append(entry)
        text = json.dumps({"total": total, "alerts": listed}, indent=1) + "\n"
        write_atomic(out / "alerts.json", lambda f: f.write(text.encode()), replace=False)
        buffer = io.StringIO(newline="")
        fields = (*EXPORT_FIELDS, "image", "clip")
        writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: csv_cell(v) for k, v in e.items()} for e in listed)
        data = buffer.getvalue().encode()
        write_atomic(out / "alerts.csv", lambda f: f.write(data), replace=False)
    return {
        "folder": str(Path(folder)),
        "alerts": len(listed),
        "images": images,
        "clips": clips_copied,
        "clips_missing": missing,
    }
