"""`Watcher`: cameras -> segments -> scores -> alerts in the event store, until stopped.

```
CameraWorker (a thread per source) --segments--> queue --batch--> SegmentScorer
   --scores--> AlertTracker (per camera) --rows--> EventStore.commit_segments (one transaction)
```

An alert's picture is its peak segment's first frame; with a checkpoint that maps cells (a cell
model or nearest-normal on grid features, `Detector.cell_grid`) the heat map of the segment's
cells is drawn beside it, as `detect` draws it.

Each batch's scores, and the alerts they open, update or close, are committed per camera in
one transaction before the next batch: a watcher killed at any moment leaves whole segments
and alerts, and a restarted one continues each camera's numbering, resumes a file where it
stopped and continues an open alert instead of opening it again.
"""

from __future__ import annotations

import logging
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..detection.heatmaps import heat_picture, jpeg_bytes
from ..errors import DataError
from .camera import Backoff, CameraWorker, Segment, SourceEnded
from .scorer import SegmentScorer
from .sources import Source
from .tracker import AlertTracker, Thresholds

log = logging.getLogger("arnet.watch")


@dataclass
class WatchOptions:
    """How the watcher runs (see `arnet watch --help`)."""

    realtime: bool = False
    batch_size: int = 16
    max_wait: float = 0.05
    open_timeout: float = 10.0
    reconnect_first: float = 0.5
    reconnect_max: float = 30.0
    jpeg_quality: int = 85
    quiet: bool = False


def alert_picture(segment: Segment, quality: int = 85) -> bytes:
    """The JPEG an alert keeps of its peak segment: the segment's first frame, and beside it
    the same frame under the heat map of the segment's cells when the scorer located them
    (`heatmaps.heat_picture`, as `detect` draws its heat maps)."""
    frame = segment.first_frame
    picture = frame if segment.cells is None else heat_picture(frame, segment.cells)
    return jpeg_bytes(picture, quality)


class Watcher:
    """Runs the cameras until every source has ended (files) or `stop()` is called.

    Args:
        scorer: the checkpoint's segment scorer.
        store: an open EventStore.
        sources: the cameras.
        thresholds: the alert rule.
        options: run settings.
    """

    def __init__(
        self,
        scorer: SegmentScorer,
        store: Any,
        sources: Sequence[Source],
        thresholds: Thresholds,
        options: WatchOptions | None = None,
    ) -> None:
        self.scorer, self.store, self.sources = scorer, store, list(sources)
        self.thresholds = thresholds
        self.options = options or WatchOptions()
        self.queue: queue.Queue = queue.Queue(maxsize=max(4 * self.options.batch_size, 64))
        self.stopping = threading.Event()
        self.ids: dict[str, int] = {}
        self.trackers: dict[str, AlertTracker] = {}
        self.workers: dict[str, CameraWorker] = {}
        self.announced: dict[str, set[int]] = {}  # open alerts already reported, per camera
        self.segments_scored = 0
        self.alerts_opened = 0

    def stop(self, *_: object) -> None:
        """Stop reading; segments already read are still scored and stored."""
        self.stopping.set()

    def _say(self, text: str) -> None:
        if not self.options.quiet:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            print(f"{stamp} {text}", flush=True)

    def _on_state(
        self, camera: str, state: str, detail: str | None, event: str | None, frame: int | None
    ) -> None:
        try:
            self.store.set_state(self.ids[camera], state, detail, event, frame)
        except Exception as exc:  # noqa: BLE001  (the store being busy must not kill a camera)
            log.warning("camera %s: state not stored (%s)", camera, exc)
        if event is not None or state in ("reconnecting", "failed"):
            self._say(f"{camera}: {state}" + (f" ({detail})" if detail else ""))

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        """Register every camera in the store and start its reader thread."""
        t, o = self.thresholds, self.options
        pp = self.scorer.detector.extractor.config.preprocessing
        for source in self.sources:
            before = self.store.camera(source.name)  # the source it watched last time
            camera = self.store.register_camera(
                source.name,
                source.url,
                start_threshold=t.start,
                stop_threshold=t.stop,
                fps=source.fps,
                frames_per_segment=pp.frames_per_segment,
            )
            self.ids[source.name] = camera["id"]
            resume = self.store.open_alert(camera["id"])
            self.announced[source.name] = {resume["start_segment"]} if resume else set()
            self.trackers[source.name] = AlertTracker(
                t, lambda s, q=o.jpeg_quality: alert_picture(s, q), resume
            )
            if camera["next_segment"]:
                self._say(
                    f"{source.name}: continuing at segment {camera['next_segment']} "
                    f"(frame {camera['next_frame']})"
                    + (f", alert {resume['id']} still open" if resume else "")
                )
            same_file = (
                source.kind in ("file", "folder")
                and before is not None
                and before["source"] == source.url
            )
            self.workers[source.name] = CameraWorker(
                source,
                self.scorer.detector.extractor.config,
                "flow" in self.scorer.detector.extractor.backbones,
                self.queue,
                self.stopping,
                self._on_state,
                next_frame=camera["next_frame"],
                next_segment=camera["next_segment"],
                resume=camera["next_frame"] if same_file else 0,
                last_seen=camera["last_seen"] if source.live else None,
                frame_stride=self.scorer.frame_stride,
                realtime=o.realtime,
                backoff=Backoff(o.reconnect_first, o.reconnect_max),
                timeout=o.open_timeout,
            )
        self.scorer.warm_up()
        for worker in self.workers.values():
            worker.start()

    def check_started(self) -> list[str]:
        """Wait for every camera's first connection attempt; the lines of those that failed.

        Raises:
            DataError: no camera could be opened (nothing can run).
        """
        for worker in self.workers.values():
            worker.connected_once.wait()
        failed = [
            w.first_error
            for w in self.workers.values()
            if w.first_error and w.frame == 0 and (not w.is_alive() or w.reader is None)
        ]
        failed = [f for f in failed if f]
        if failed and len(failed) == len(self.workers):
            self.stop()
            raise DataError(
                failed[0] if len(failed) == 1 else "no source could be opened: " + "; ".join(failed)
            )
        return failed

    # ------------------------------------------------------------------ main loop
    def run(self) -> int:
        """Score until every camera has ended; returns the number of segments scored."""
        ended: set[str] = set()
        while len(ended) < len(self.workers):
            batch: list[Segment] = []
            try:
                item = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            deadline = time.monotonic() + self.options.max_wait
            while True:
                if isinstance(item, SourceEnded):
                    self._finish(batch)
                    batch = []
                    self._end(item.camera)
                    ended.add(item.camera)
                else:
                    batch.append(item)
                if len(batch) >= self.options.batch_size:
                    break
                try:
                    item = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
            self._finish(batch)
        return self.segments_scored

    def _finish(self, batch: list[Segment]) -> None:
        if not batch:
            return
        for s in batch:
            if s.gap_frames:
                self.scorer.forget(s.camera)
        scores, cells = self.scorer.score_and_locate(batch)
        per_camera: dict[str, tuple[list[dict], list[dict]]] = {}
        for s, score, where in zip(batch, scores.tolist(), cells):
            s.cells = where
            segs, alerts = per_camera.setdefault(s.camera, ([], []))
            segs.append(
                {
                    "segment": s.index,
                    "start_frame": s.start_frame,
                    "end_frame": s.end_frame,
                    "start_time": s.start_time,
                    "end_time": s.end_time,
                    "score": score,
                }
            )
            alerts += self.trackers[s.camera].update(s, score)
        for camera, (segs, alerts) in per_camera.items():
            self._commit(camera, segs, alerts)
        self.segments_scored += len(batch)

    def _commit(self, camera: str, segs: list[dict], alerts: list[dict]) -> None:
        # one row per alert: the last state of each in this batch
        last: dict[int, dict] = {}
        for row in alerts:
            merged = {**last.get(row["start_segment"], {}), **row}
            if row.get("peak_image") is None and "peak_image" in last.get(row["start_segment"], {}):
                merged["peak_image"] = last[row["start_segment"]]["peak_image"]
            last[row["start_segment"]] = merged
        rows = list(last.values())
        ids = self.store.commit_segments(self.ids[camera], segs, rows)
        for row, alert_id in zip(rows, ids):
            announced = self.announced[camera]
            if row["start_segment"] not in announced:
                announced.add(row["start_segment"])
                self.alerts_opened += 1
                self._say(
                    f"{camera}: alert {alert_id} open at frame {row['start_frame']} "
                    f"(score {row['peak_score']:.3f})"
                )
            if row["state"] == "closed":
                announced.discard(row["start_segment"])
                self._say(
                    f"{camera}: alert {alert_id} closed, frames {row['start_frame']}-"
                    f"{row['end_frame']}, peak {row['peak_score']:.3f} at frame {row['peak_frame']}"
                )

    def _end(self, camera: str) -> None:
        """A camera delivers no more segments: close its alert (the footage it watched ended,
        or the watcher stops)."""
        rows = self.trackers[camera].close()
        if rows:
            self._commit(camera, [], rows)
        if self.stopping.is_set():
            self._on_state(camera, "stopped", "the watcher stopped", "stopped", None)


def install_signals(watcher: Watcher) -> Callable[[], None]:
    """SIGTERM and SIGINT (Ctrl-C) stop the watcher cleanly; a second one exits at once. An
    ignored signal stays ignored (nohup, background jobs). Returns a function that puts the
    previous handlers back."""

    def handler(signum: int, _frame: object) -> None:
        if watcher.stopping.is_set():
            print("arnet watch: stopped at once", file=sys.stderr)
            raise SystemExit(130)
        watcher.stop()

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
