"""The event store per camera-day, and what pruning it costs.

    python benchmarks/retention.py                       # a SQLite store in a temporary folder
    python benchmarks/retention.py --db postgresql://USER:PW@HOST/DB   # an empty database

1. A day of one camera written as `arnet watch` writes it: 25 fps in 16-frame segments =
   135,000 segment scores, committed `--per-commit` at a time (16: a watcher's batch), with
   `--alerts-per-day` alerts (each with the JPEG of a UCSD Ped2 test frame, as a watcher keeps
   its peak frame) and a camera event an hour. Reported: the seconds the commits took (and the
   camera-days a second of the store's time writes), the rows, the store's bytes (SQLite: the
   pages in use; the file), bytes per score row, and the size `Pruner.size` counts for it.
2. A clip: Ped2 test frames (360x240) through `ClipRecorder` (PyAV, libx264, the watcher's
   defaults): bytes per second of clip, so per alert with 5 s before and after.
3. Pruning: half of the day pruned (`--keep-days`), `--batch` rows a transaction; each batch's
   seconds (median, p95, max) and the rows per second; while a reader (`EventStore.alerts` +
   `scores(limit=300)`, what a dashboard asks) loops: its slowest call during the pruning
   beside its slowest call with nothing pruning (the baseline).

Every figure is printed by this run; nothing is tuned on it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from arnet.store import open_store  # noqa: E402
from arnet.store.retention import DAY, ROW_BYTES, Pruner, RetentionPolicy  # noqa: E402

PED2 = REPO.parent / "shared" / "data" / "ucsd-ped2" / "frames"
SEGMENTS_PER_DAY = int(DAY * 25 / 16)  # 135,000


def ped2_frames(video: str = "Test001", count: int = 180) -> list[np.ndarray]:
    import cv2

    folder = PED2 / video
    files = sorted(folder.glob("*.jpg")) or sorted(folder.glob("*.tif"))
    if not files:
        raise SystemExit(f"UCSD Ped2 frames not found under {folder}")
    return [cv2.imread(str(f))[:, :, ::-1].copy() for f in files[:count]]


def jpeg(frame: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return data.tobytes()


def write_day(store, camera: str, t0: float, per_commit: int, alerts_per_day: int, images):  # noqa: ANN001, ANN201
    cam = store.register_camera(camera, "bench")
    step = 16 / 25
    alert_every = SEGMENTS_PER_DAY // max(1, alerts_per_day)
    started = time.perf_counter()
    commits = 0
    for first in range(0, SEGMENTS_PER_DAY, per_commit):
        segs = [
            {
                "segment": i,
                "start_frame": 16 * i,
                "end_frame": 16 * i + 15,
                "start_time": t0 + i * step,
                "end_time": t0 + i * step + step,
                "score": 0.1,
            }
            for i in range(first, min(SEGMENTS_PER_DAY, first + per_commit))
        ]
        rows = []
        for s in segs:
            if s["segment"] % alert_every == 0:  # an alert of 8 segments, written closed
                i = s["segment"]
                rows.append(
                    {
                        "state": "closed",
                        "start_segment": i,
                        "end_segment": i + 7,
                        "start_frame": 16 * i,
                        "end_frame": 16 * i + 127,
                        "start_time": s["start_time"],
                        "end_time": s["start_time"] + 8 * step,
                        "peak_score": 0.9,
                        "peak_frame": 16 * i,
                        "peak_time": s["start_time"],
                        "threshold": 0.5,
                        "peak_image": images[(i // alert_every) % len(images)],
                    }
                )
        store.commit_segments(cam["id"], segs, rows)
        commits += 1
        if first % int(3600 / step) < per_commit:
            store.add_event(cam["id"], "connected", "25 fps", when=segs[0]["start_time"])
    return cam["id"], time.perf_counter() - started, commits


def sqlite_bytes(store) -> dict[str, int]:  # noqa: ANN001
    with store.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        pages = raw.execute("PRAGMA page_count").fetchone()[0]
        free = raw.execute("PRAGMA freelist_count").fetchone()[0]
        size = raw.execute("PRAGMA page_size").fetchone()[0]
    return {"used": (pages - free) * size, "file": pages * size}


def clip_rate(folder: Path, frames: list[np.ndarray], store, camera_id: int) -> dict:  # noqa: ANN001
    from arnet.live.clips import ClipRecorder, ClipSettings
    from arnet.store.media import clip

    recorder = ClipRecorder(ClipSettings(folder, before=5, after=5), store)
    name = "clip-bench"
    recorder.start([name])
    (alert_id,) = store.commit_segments(
        camera_id,
        [],
        [
            {
                "state": "closed",
                "start_segment": 10**6,
                "end_segment": 10**6,
                "start_frame": 0,
                "end_frame": 1,
                "start_time": 0.0,
                "end_time": 1.0,
                "peak_score": 0.9,
                "peak_frame": 0,
                "peak_time": 0.0,
                "threshold": 0.5,
            }
        ],
    )
    started = time.perf_counter()
    for i, f in enumerate(frames):
        recorder.frame(name, i, time.time(), f, 25.0, None)
    recorder.alert(
        name, alert_id, {"state": "closed", "start_frame": 0, "end_frame": len(frames) - 1}
    )
    recorder.camera_ended(name)
    recorder.close(timeout=600)
    seconds = time.perf_counter() - started
    c = clip(store, alert_id)
    length = (c["end_frame"] - c["start_frame"] + 1) / c["fps"]
    return {
        "frames": c["end_frame"] - c["start_frame"] + 1,
        "size": f"{c['width']}x{c['height']}",
        "bytes": c["bytes"],
        "bytes_per_second": round(c["bytes"] / length),
        "encode_seconds_per_clip_second": round(seconds / length, 4),
    }


def reader_loop(db: str, stop: threading.Event, out: list[float]) -> None:
    with open_store(db, "read") as reader:
        while not stop.is_set():
            t = time.perf_counter()
            reader.alerts(limit=50)
            reader.scores("cam", limit=300)
            out.append(time.perf_counter() - t)


def slowest(db: str, seconds: float | None, work=None) -> tuple[float, int, object]:  # noqa: ANN001
    stop, times = threading.Event(), []
    thread = threading.Thread(target=reader_loop, args=(db, stop, times))
    thread.start()
    result = None
    if work is None:
        time.sleep(seconds)
    else:
        result = work()
    stop.set()
    thread.join()
    return max(times), len(times), result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", default=None, help="an empty PostgreSQL database (default: SQLite)")
    p.add_argument("--per-commit", type=int, default=16)
    p.add_argument("--alerts-per-day", type=int, default=24)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="arnet-retention-"))
    db = args.db or str(folder / "events.db")
    frames = ped2_frames()
    images = [jpeg(f) for f in frames[::30]]
    t0 = time.time() - 2 * DAY
    out: dict = {"backend": "postgresql" if args.db else "sqlite", "per_commit": args.per_commit}
    with open_store(db) as store:
        camera_id, seconds, commits = write_day(
            store, "cam", t0, args.per_commit, args.alerts_per_day, images
        )
        alerts = store.alerts(limit=None)[1]
        out["day"] = {
            "segments": SEGMENTS_PER_DAY,
            "alerts": alerts,
            "image_bytes_mean": round(sum(map(len, images)) / len(images)),
            "commits": commits,
            "write_seconds": round(seconds, 2),
            "camera_days_per_store_second": round(1 / seconds, 4),
            "segments_per_second": round(SEGMENTS_PER_DAY / seconds),
            "cameras_at_25fps_one_store_sustains": round(SEGMENTS_PER_DAY / seconds / (25 / 16)),
        }
        counted = Pruner(store, RetentionPolicy(keep_gb=1), [camera_id]).size()
        out["size"] = {"counted_by_pruner": counted, "row_bytes_assumed": ROW_BYTES}
        if not args.db:
            b = sqlite_bytes(store)
            image_bytes = sum(len(images[(i) % len(images)]) for i in range(alerts))
            out["size"].update(
                {
                    "sqlite_used_bytes": b["used"],
                    "sqlite_file_bytes": b["file"],
                    "bytes_per_score_row": round((b["used"] - image_bytes) / SEGMENTS_PER_DAY, 1),
                    "mb_per_camera_day": round(b["used"] / 1e6, 2),
                }
            )
        out["clip"] = clip_rate(folder / "clips", frames, store, camera_id)
        out["clip"]["mb_per_alert_10s"] = round(out["clip"]["bytes_per_second"] * 10 / 1e6, 3)
        base_max, base_n, _ = slowest(db, 5.0)
        policy = RetentionPolicy(keep_days=1.5, batch=args.batch, pause=0.05)
        pruner = Pruner(store, policy, [camera_id])
        during_max, during_n, done = slowest(db, None, pruner.round)
        batch = sorted(done.seconds)
        out["prune"] = {
            "rows": done.rows,
            "scores": done.scores,
            "alerts": done.alerts,
            "batches": done.batches,
            "batch_seconds_median": round(statistics.median(batch), 4),
            "batch_seconds_p95": round(batch[int(0.95 * (len(batch) - 1))], 4),
            "batch_seconds_max": round(batch[-1], 4),
            "rows_per_second_in_transactions": round(done.rows / sum(batch)),
            "reader_slowest_call_s_while_pruning": round(during_max, 4),
            "reader_calls_while_pruning": during_n,
            "reader_slowest_call_s_baseline": round(base_max, 4),
            "reader_calls_baseline_5s": base_n,
        }
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
