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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXPORT_WHAT = "export alerts into a new or empty --export folder"


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
    fields: Sequence[str],
    iso: Callable[[float | None], str | None],
) -> dict[str, Any]:
    """Write the export; returns what was written (counts and the folder). `rows` are the
    alerts as `arnet alerts` exports them (`fields`, the CSV columns); `iso` writes a time.

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
                "acknowledgements": [{**k, "iso": iso(k["time"])} for k in acks[row["id"]]],
                "image": None,
                "clip": None,
            }
            image = store.alert_image(alert["id"]) if alert.get("has_image") else None
            if image:
                name = f"images/alert-{alert['id']}.jpg"
                write_atomic(out / name, lambda f, b=image: f.write(b), replace=False)
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
        columns = (*fields, "image", "clip")
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
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
