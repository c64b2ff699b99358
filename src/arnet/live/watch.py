"""`Watcher`: cameras -> segments -> scores -> alerts in the event store, until stopped.

```
CameraWorker (a thread per source) --segments--> queue --batch--> SegmentScorer
   --scores--> AlertTracker (per camera) --rows--> Outbox --> EventStore.commit_segments
                                                              (one transaction per batch)
```

An alert's picture is its peak segment's first frame; with a checkpoint that maps cells (a cell
model or nearest-normal on grid features, `Detector.cell_grid`) the heat map of the segment's
cells is drawn beside it, as `detect` draws it.

Each batch's scores, and the alerts they open, update or close, are committed per camera in
one transaction before the next batch: a watcher killed at any moment leaves whole segments
and alerts, and a restarted one continues each camera's numbering, resumes a file or frame
folder where it stopped and continues an open alert instead of opening it again. While the
store is unavailable the watcher keeps scoring and the batches wait in the `Outbox`.

The watcher holds each camera's lease in the store (`EventStore.claim_camera`) from start to
stop, renewed by every commit and by a heartbeat thread: a second watcher of the same camera
is refused at its start, and one whose lease was taken over stops writing that camera.
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
from ..folders import notice
from ..store.events import LEASE_SECONDS, CameraBusy, Holder
from ..store.retention import Pruner, RetentionPolicy, RetentionThread
from .camera import Backoff, CameraWorker, Segment, SourceEnded
from .clips import ClipRecorder, ClipSettings
from .feedback import AlertFeatures, LiveFeedback
from .masks import Mask
from .outbox import HELD_SEGMENTS, Outbox
from .scorer import SegmentScorer
from .sinks import AlertSink, Sinks
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
    lease_seconds: float = LEASE_SECONDS
    held_segments: int = HELD_SEGMENTS
    store_retry_max: float = 30.0
    clips: ClipSettings | None = None  # a clip per alert (`--clip-before/--clip-after`)
    retention: RetentionPolicy | None = None  # pruning while watching (`--keep-days/-gb`)
    masks: dict[str, Mask] | None = None  # per camera, what counts for nothing (`--mask`)

    def __post_init__(self) -> None:
        Backoff(self.reconnect_first, self.reconnect_max)  # refuses delays of 0 or less
        Backoff(0.5, self.store_retry_max)
        if not self.lease_seconds > 0:
            raise ValueError(f"a lease must last seconds > 0, got {self.lease_seconds!r}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not self.open_timeout > 0:
            raise ValueError(f"--open-timeout must be seconds > 0, got {self.open_timeout!r}")


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
        sinks: told of each alert opened, updated and closed once the store holds it (the
            network sinks of `--notify` send it; `live.sinks`).
        feedback: the detector's version (recorded with every alert; new verdicts and
            versions taken up while watching), or None.
        camera_list: re-reads the camera list (on SIGHUP: cameras added and removed), or None.
    """

    def __init__(
        self,
        scorer: SegmentScorer,
        store: Any,
        sources: Sequence[Source],
        thresholds: Thresholds,
        options: WatchOptions | None = None,
        sinks: Sequence[AlertSink] = (),
        feedback: LiveFeedback | None = None,
        camera_list: Callable[[], list[Source]] | None = None,
    ) -> None:
        self.scorer, self.store, self.sources = scorer, store, list(sources)
        self.feedback, self.camera_list = feedback, camera_list
        self.alert_features = AlertFeatures()
        self.reload = threading.Event()  # SIGHUP: re-read the camera list, look for versions
        self.ended: set[str] = set()
        self.removed: set[str] = set()  # cameras taken off the list while watching
        self.thresholds = thresholds
        self.options = options or WatchOptions()
        self.queue: queue.Queue = queue.Queue(maxsize=max(4 * self.options.batch_size, 64))
        self.stopping = threading.Event()
        self.ids: dict[str, int] = {}
        self.trackers: dict[str, AlertTracker] = {}
        self.workers: dict[str, CameraWorker] = {}
        self.announced: dict[str, set[int]] = {}  # open alerts already reported, per camera
        self.names: dict[int, str] = {}  # camera id -> name
        self.segments_scored = 0
        self.alerts_opened = 0
        self.holder = Holder.this_process("arnet watch", self.options.lease_seconds)
        self.outbox = Outbox(
            store,
            self.holder,
            self._written,
            self._lost,
            self.options.held_segments,
            Backoff(0.5, self.options.store_retry_max),
        )
        self._beating = threading.Event()
        self.sinks = Sinks(sinks)
        self.outbox.notify = self.sinks.targets  # their deliveries are stored with the alerts
        clips = self.options.clips
        self.clips = None if clips is None else ClipRecorder(clips, store, self._say)
        self.retention: RetentionThread | None = None
        self.masks = dict(self.options.masks or {})

    def stop(self, *_: object) -> None:
        """Stop reading; segments already read are still scored and stored."""
        self.stopping.set()
        for worker in list(self.workers.values()):
            worker.stopping.set()

    def _say(self, text: str) -> None:
        if not self.options.quiet:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            print(f"{stamp} {text}", flush=True)

    def _on_state(
        self, camera: str, state: str, detail: str | None, event: str | None, frame: int | None
    ) -> None:
        try:
            self.outbox.state(self.ids[camera], state, detail, event, frame)
        except Exception as exc:  # noqa: BLE001  (the store failing must not kill a camera)
            log.warning("camera %s: state not stored (%s)", camera, exc)
        if event is not None or state in ("reconnecting", "failed"):
            self._say(f"{camera}: {state}" + (f" ({detail})" if detail else ""))

    def _on_event(self, camera: str, kind: str, detail: str, frame: int | None) -> None:
        try:
            self.outbox.state(self.ids[camera], None, detail, kind, frame)
        except Exception as exc:  # noqa: BLE001
            log.warning("camera %s: event not stored (%s)", camera, exc)
        self._say(f"{camera}: {kind} ({detail})")

    def _lost(self, camera_id: int, message: str) -> None:
        """Another watcher took the camera over (this one was thought dead): stop it."""
        name = self.names[camera_id]
        notice(f"arnet watch: {message}")
        worker = self.workers.get(name)
        if worker is not None:
            worker.stopping.set()

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        """Register every camera in the store and start its reader thread."""
        claims = {}
        try:
            for source in self.sources:
                claims[source.name] = self._claim(source)
        except CameraBusy:
            self.outbox.release()  # nothing is watched: the cameras taken are freed
            raise
        for source in self.sources:
            self._prepare(source, claims[source.name])
        if self.clips is not None:
            self.clips.start([s.name for s in self.sources])
        for source in self.sources:
            self._store_mask(source.name)
        policy = self.options.retention
        if policy is not None and policy.active:  # the cameras held: their clips are here
            pruner = Pruner(self.store, policy, list(self.ids.values()))
            self.retention = RetentionThread(pruner, self._say)
            self.retention.start()
        threading.Thread(target=self._heartbeat, name="lease-heartbeat", daemon=True).start()
        if self.sinks.targets:
            from ..store.deliveries import Deliveries

            self.sinks.start(Deliveries(self.store), self.names)
        self.scorer.warm_up()
        for worker in self.workers.values():
            if self.stopping.is_set():
                worker.stopping.set()
            worker.start()

    def _store_mask(self, camera: str) -> None:
        """The camera's mask, stored for the dashboard (none given: none stored)."""
        from ..store.media import set_mask

        mask = self.masks.get(camera)
        set_mask(self.store, self.ids[camera], None if mask is None else mask.describe())

    def _claim(self, source: Source) -> Any:
        t = self.thresholds
        pp = self.scorer.detector.extractor.config.preprocessing
        claim = self.store.claim_camera(
            source.name,
            source.url,
            self.holder,
            start_threshold=t.start,
            stop_threshold=t.stop,
            fps=source.fps,
            frames_per_segment=pp.frames_per_segment,
        )
        self.ids[source.name] = claim.camera["id"]
        self.names[self.ids[source.name]] = source.name
        self.outbox.add_camera(self.ids[source.name])
        return claim

    def _prepare(self, source: Source, claim: Any) -> None:
        """The tracker and reader thread (not started) of a claimed camera."""
        t, o = self.thresholds, self.options
        camera = claim.camera
        if claim.taken_from is not None:
            notice(
                f"arnet watch: camera {source.name!r}: taking over from "
                f"{claim.taken_from.describe()}, which stopped without releasing it"
            )
        resume = self.store.open_alert(camera["id"])
        self.announced[source.name] = {resume["start_segment"]} if resume else set()
        self.sinks.resume(source.name, resume)
        # the frames scored after the open alert's last one were quiet (a restart)
        quiet = camera["next_frame"] - resume["end_frame"] - 1 if resume else 0
        # mypy cannot type a lambda with a default argument (python/mypy#15459)
        self.trackers[source.name] = AlertTracker(
            t,
            lambda s, q=o.jpeg_quality: alert_picture(s, q),  # type: ignore[misc]
            resume,
            quiet,
        )
        if camera["next_segment"]:
            self._say(
                f"{source.name}: continuing at segment {camera['next_segment']} "
                f"(frame {camera['next_frame']})"
                + (f", alert {resume['id']} still open" if resume else "")
            )
        same_file = source.exact and claim.previous_source == source.url
        self.workers[source.name] = CameraWorker(
            source,
            self.scorer.detector.extractor.config,
            "flow" in self.scorer.detector.extractor.backbones,
            self.queue,
            threading.Event(),  # its own: a camera taken over stops alone
            self._on_state,
            next_frame=camera["next_frame"],
            next_segment=camera["next_segment"],
            resume=camera["source_position"] if same_file else 0,
            last_seen=camera["last_seen"] if source.live else None,
            frame_stride=self.scorer.frame_stride,
            realtime=o.realtime,
            backoff=Backoff(o.reconnect_first, o.reconnect_max),
            timeout=o.open_timeout,
            on_event=self._on_event,
            on_frame=None if self.clips is None else self.clips.frame,
        )

    def _heartbeat(self) -> None:
        """Renew the leases three times per lease, until the watcher has stopped."""
        while not self._beating.wait(self.options.lease_seconds / 3):
            try:
                self.outbox.heartbeat()
            except Exception as exc:  # noqa: BLE001  (a failing store is said by the outbox)
                log.warning("leases not renewed (%s)", exc)

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
            for name, worker in self.workers.items():  # not left "reconnecting" in the store
                self._on_state(name, "failed", worker.first_error, "failed", worker.frame)
            raise DataError(
                failed[0] if len(failed) == 1 else "no source could be opened: " + "; ".join(failed)
            )
        return failed

    # ------------------------------------------------------------------ main loop
    def run(self) -> int:
        """Score until every camera has ended; returns the number of segments scored."""
        ended = self.ended
        while len(ended) < len(self.workers):
            self._housekeeping()
            batch: list[Segment] = []
            try:
                item = self.queue.get(timeout=0.2)
            except queue.Empty:
                self.outbox.flush()  # a store that was unavailable is tried when due
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
        self._drain()
        return self.segments_scored

    def _drain(self) -> None:
        """Write what waits for the store (retrying while it is unavailable), then give the
        leases up. Interrupted by a second signal (the held segments are then not stored)."""
        said = False
        while not self.outbox.flush():
            if not said:
                said = True
                print(
                    f"arnet watch: {self.outbox.held()} segment(s) wait for the event store; "
                    "stop again to exit without them",
                    file=sys.stderr,
                    flush=True,
                )
            time.sleep(max(0.05, min(1.0, self.outbox.next_try - time.monotonic())))
        self.close()

    def close(self) -> None:
        """Stop the sinks (sending what is pending for a while), the heartbeat, and give the
        cameras' leases up (again: nothing happens)."""
        self.sinks.stop()
        self._beating.set()
        if self.retention is not None:
            self.retention.stop()
            self.retention.join(timeout=60)
        if self.clips is not None:
            self.clips.close(timeout=120)
        self.outbox.release()

    def _finish(self, batch: list[Segment]) -> None:
        if not batch:
            return
        for s in batch:
            if s.gap_frames:
                self.scorer.forget(s.camera)
            if s.camera in self.masks:  # masked pixels blanked before the backbone
                self.masks[s.camera].apply(s)
        scores, cells = self.scorer.score_and_locate(batch)
        if self.masks:
            cells = [
                m.blank_cells(c) if (m := self.masks.get(s.camera)) else c
                for s, c in zip(batch, cells)
            ]
        per_camera: dict[str, tuple[list[dict], list[dict]]] = {}
        positions: dict[str, int] = {}
        features = self.scorer.last_features
        identity = None if self.feedback is None else self.feedback.identity
        for i, (s, score, where) in enumerate(zip(batch, scores.tolist(), cells)):
            s.cells = where
            segs, alerts = per_camera.setdefault(s.camera, ([], []))
            positions[s.camera] = max(positions.get(s.camera, 0), s.end_position)
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
            rows = self.trackers[s.camera].update(s, score)
            feature = features[i] if i < len(features) else None
            in_alert = self.trackers[s.camera].alert is not None
            self.alert_features.take(s.camera, s.index, feature, rows, in_alert, identity)
            alerts += rows
        for camera, (segs, alerts) in per_camera.items():
            exact = self.workers[camera].source.exact if camera in self.workers else False
            self._commit(camera, segs, alerts, positions[camera] if exact else None)
            if self.clips is not None:  # after the alerts it opened: their pre-roll is kept
                self.clips.scored(camera, segs[-1]["end_frame"] + 1)
        self.segments_scored += len(batch)

    def _commit(
        self, camera: str, segs: list[dict], alerts: list[dict], position: int | None = None
    ) -> None:
        if self.clips is not None:  # every camera's alerts get a clip: notifications name it
            from ..store.deliveries import RECORDS_CLIP

            alerts = [{**row, RECORDS_CLIP: True} for row in alerts]
        self.outbox.batch(self.ids[camera], segs, alerts, position)

    def _written(self, camera_id: int, rows: list[dict], ids: list[int]) -> None:
        """A batch is in the store: say which alerts it opened and closed."""
        camera = self.names[camera_id]
        for row, alert_id in zip(rows, ids):
            if self.clips is not None:
                self.clips.alert(camera, alert_id, row)
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
        self.sinks.written(camera, rows, ids)

    def _housekeeping(self) -> None:
        """Between batches: after SIGHUP, the camera list re-read and versions looked for at
        once; otherwise new verdicts and versions looked for when due (`LiveFeedback.poll`)."""
        forced = self.reload.is_set()
        if forced:
            self.reload.clear()
            if self.camera_list is not None:
                self._reload_cameras()
        if self.feedback is not None:
            self.feedback.poll(force=forced)

    def _reload_cameras(self) -> None:
        """Start the cameras added to the list, stop those removed (one line each)."""
        assert self.camera_list is not None
        try:
            wanted = {s.name: s for s in self.camera_list()}
        except Exception as exc:  # noqa: BLE001  (a bad edit must not stop the watched cameras)
            self._say(f"camera list not re-read ({exc}); the cameras watched are kept")
            return
        for name, worker in list(self.workers.items()):
            if name not in wanted and name not in self.removed and name not in self.ended:
                self.removed.add(name)
                worker.stopping.set()
                self._say(f"{name}: removed from the camera list; stopping it")
        for name, source in wanted.items():
            held = self.workers.get(name)
            if held is not None and name not in self.removed:
                if held.source.url != source.url:
                    self._say(f"{name}: now {source.url} in the list; restart to watch it")
                continue
            if held is not None and name not in self.ended:
                continue  # removed and still stopping: added again on a later SIGHUP
            try:
                claim = self._claim(source)
            except Exception as exc:  # noqa: BLE001  (busy elsewhere, store away: said)
                self._say(f"{name}: not added ({exc})")
                continue
            self.removed.discard(name)
            self.ended.discard(name)
            self._prepare(source, claim)
            # what the cameras given at the start have: its mask stored, clips, retention
            self._store_mask(name)
            if self.clips is not None:
                self.clips.add_camera(name)
            if self.retention is not None:
                self.retention.pruner.add_camera(self.ids[name])
            self.workers[name].start()
            self._say(f"{name}: added from the camera list ({source.url})")

    def _end(self, camera: str) -> None:
        """A camera delivers no more segments: close its alert (the footage it watched ended,
        or the watcher stops)."""
        rows = self.trackers[camera].close()
        if rows:
            self._commit(camera, [], rows)
        if self.clips is not None:
            self.clips.camera_ended(camera)
        if self.stopping.is_set():
            self._on_state(camera, "stopped", "the watcher stopped", "stopped", None)
        elif camera in self.removed:
            self._on_state(camera, "stopped", "removed from the camera list", "stopped", None)


def install_signals(watcher: Watcher) -> Callable[[], None]:
    """SIGTERM and SIGINT (Ctrl-C) stop the watcher cleanly; a second one exits at once. SIGHUP
    re-reads the camera list and looks for a new detector version. An ignored signal stays
    ignored (nohup, background jobs). Returns a function that puts the
    previous handlers back."""

    def handler(signum: int, _frame: object) -> None:
        if watcher.stopping.is_set():
            held = watcher.outbox.held()
            lost = f" ({held} segment(s) not stored)" if held else ""
            print(f"arnet watch: stopped at once{lost}", file=sys.stderr)
            raise SystemExit(130)
        watcher.stop()

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, handler)
    hangup = getattr(signal, "SIGHUP", None)
    if hangup is not None and signal.getsignal(hangup) is not signal.SIG_IGN:
        previous[hangup] = signal.signal(hangup, lambda *_: watcher.reload.set())

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
