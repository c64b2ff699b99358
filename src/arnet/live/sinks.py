"""Where a watcher's alerts go: the `AlertSink` protocol, and the senders of `--notify`.

```
Outbox --commit_segments (alert rows + their pending deliveries, one transaction)--> store
   --Watcher._written--> Sinks.written --opened/updated/closed--> each AlertSink
        NetworkSink: a bounded queue --its own thread--> the store's pending deliveries
                     --Sender.send (webhook POST, MQTT publish QoS 1)--> delivered / retried / dead
```

The store is the first sink: an alert and the deliveries of its event to every target are
written together (`store.deliveries`), before any other sink hears of it. A network sink's
`opened`/`updated`/`closed` only put the event on its bounded queue (never blocking: a full
queue drops the wake-up, the delivery is in the store); its thread sends the pending
deliveries of its target in the order their events happened, retrying with exponential
backoff, and records each answer in the store. A slow or dead receiver delays only its own
thread; scoring and committing go on. Deliveries still pending when the watcher stops (or is
killed) are sent by the next watcher of those cameras.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from ..errors import NotifyError
from ..store import StoreUnavailable

log = logging.getLogger("arnet.watch")

SCHEMES = ("http", "https", "mqtt", "mqtts")


@runtime_checkable
class AlertSink(Protocol):
    """Something told of each alert event once the store holds it.

    Each method takes the alert as stored: its `alerts` fields (state, start/end segment,
    frame and time, peak score, frame and time, threshold), `id` and `camera`. None may block
    for long: the watch loop calls them between batches."""

    def opened(self, alert: Mapping[str, Any]) -> None: ...

    def updated(self, alert: Mapping[str, Any]) -> None: ...

    def closed(self, alert: Mapping[str, Any]) -> None: ...

    def stop(self) -> None: ...


@dataclass
class NotifyOptions:
    """How deliveries are tried (see `arnet watch --help`, group "notify").

    Attributes:
        timeout: seconds for one attempt (connect, send, answer).
        attempts: attempts of one delivery before it is a dead letter.
        first_delay: seconds before the second attempt; doubled for each next one...
        max_delay: ...up to this.
        drain: seconds a stopping watcher goes on sending what is pending.
        queue_size: events waiting for a sender's thread (beyond: taken from the store).
    """

    timeout: float = 10.0
    attempts: int = 12
    first_delay: float = 1.0
    max_delay: float = 300.0
    drain: float = 10.0
    queue_size: int = 1000

    def __post_init__(self) -> None:
        for name in ("timeout", "first_delay", "max_delay"):
            value = getattr(self, name)
            if not value > 0:
                raise NotifyError(f"--notify-{name.replace('_', '-')} must be > 0, got {value!r}")
        if self.attempts < 1:
            raise NotifyError(f"--notify-attempts must be >= 1, got {self.attempts}")
        if not self.drain >= 0:
            raise NotifyError(f"--notify-drain must be >= 0, got {self.drain!r}")

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed attempt (1, 2, ...)."""
        return min(self.max_delay, self.first_delay * 2.0 ** max(0, attempts - 1))


class DeliveryFailed(Exception):
    """One attempt failed; the message says why in a few words (no secret)."""


class Sender(Protocol):
    """The network side of a target: one attempt per `send`, in the sink's thread."""

    target: str  # the target as stored and shown (no password)

    def connect(self, cameras: Mapping[int, str], states: Mapping[str, bool]) -> None: ...

    def send(self, delivery: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


def _say(message: str) -> None:
    print(f"arnet watch: {message}", file=sys.stderr, flush=True)


class NetworkSink:
    """The deliveries of one target (a webhook URL, an MQTT broker and topic), sent by a
    thread of its own from the store's pending rows.

    Args:
        sender: the target's network side.
        options: timeouts, retries and backoff.
    """

    def __init__(self, sender: Sender, options: NotifyOptions | None = None) -> None:
        self.sender = sender
        self.target = sender.target
        self.options = options or NotifyOptions()
        self.queue: queue.Queue = queue.Queue(maxsize=self.options.queue_size)
        self.deliveries: Any = None
        self.cameras: dict[int, str] = {}
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.failing_since: float | None = None
        self.sent = 0
        self.dead = 0
        self.dropped_wakeups = 0

    # ------------------------------------------------------------------ the protocol
    def opened(self, alert: Mapping[str, Any]) -> None:
        self._wake(alert)

    def updated(self, alert: Mapping[str, Any]) -> None:
        self._wake(alert)

    def closed(self, alert: Mapping[str, Any]) -> None:
        self._wake(alert)

    def _wake(self, alert: Mapping[str, Any]) -> None:
        try:
            self.queue.put_nowait(alert.get("id"))
        except queue.Full:  # the delivery is in the store: the thread finds it there
            self.dropped_wakeups += 1

    # ------------------------------------------------------------------ running
    def start(self, deliveries: Any, cameras: Mapping[int, str]) -> None:
        """Start sending the pending deliveries of these cameras (this watcher's) from the
        store, those a killed watcher left first.

        Args:
            deliveries: the store's `store.deliveries.Deliveries`.
            cameras: camera id -> name.
        """
        self.deliveries, self.cameras = deliveries, dict(cameras)
        states = {}
        for camera_id, name in self.cameras.items():
            try:
                states[name] = deliveries.store.open_alert(camera_id) is not None
            except StoreUnavailable:
                pass
        self.sender.connect(self.cameras, states)
        self.thread = threading.Thread(target=self._run, name=f"notify {self.target}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Send what is pending for at most `options.drain` seconds, then stop (what is left
        stays pending in the store for the next watcher)."""
        thread, self.thread = self.thread, None
        if thread is None:  # not started, or stopped already (a second stop returns at once)
            return
        self.stopping.set()
        self._wake({})
        thread.join(self.options.drain + self.options.timeout + 5)
        self.sender.close()

    def _run(self) -> None:
        deadline: float | None = None
        wait = 0.0
        store_backoff = self.options.first_delay
        while True:
            try:
                self.queue.get(timeout=max(0.0, wait))
                while True:  # every wake-up waiting: one pass sends them all
                    self.queue.get_nowait()
            except queue.Empty:
                pass
            if self.stopping.is_set() and deadline is None:
                deadline = time.monotonic() + self.options.drain
            try:
                next_due = self._pass(deadline)
                store_backoff = self.options.first_delay
            except StoreUnavailable as exc:
                log.warning("notify %s: the store is unavailable (%s)", self.target, exc)
                next_due = time.time() + store_backoff
                store_backoff = min(self.options.max_delay, store_backoff * 2)
            except Exception as exc:  # noqa: BLE001  (a sender's bug must not stop the others)
                _say(f"notify {self.target}: sending stopped by an error: {exc!r}")
                next_due = time.time() + self.options.max_delay
            if deadline is not None:
                left = deadline - time.monotonic()
                if next_due is None or left <= 0 or next_due - time.time() > left:
                    self._left()
                    return
            wait = 5.0 if next_due is None else min(5.0, max(0.0, next_due - time.time()))

    def _pass(self, deadline: float | None) -> float | None:
        """Send the pending deliveries that are due, in order, until one fails or one is not
        due yet; returns when the next one is due (None: nothing pending)."""
        while True:
            rows = self.deliveries.pending(self.target, list(self.cameras))
            if not rows:
                return None
            for row in rows:
                if row["next_attempt"] > time.time():
                    return row["next_attempt"]
                if deadline is not None and time.monotonic() > deadline:
                    return time.time()
                if not self._attempt(row):  # the later events wait for it (order kept)
                    return self._next_due()

    def _next_due(self) -> float | None:
        rows = self.deliveries.pending(self.target, list(self.cameras), limit=1)
        return rows[0]["next_attempt"] if rows else None

    def _attempt(self, row: Mapping[str, Any]) -> bool:
        """One attempt; False when it is to be tried again (a dead letter is done with)."""
        try:
            self.sender.send(row)
        except DeliveryFailed as exc:
            return self._failed(row, str(exc))
        self.deliveries.delivered(row["id"])
        self.sent += 1
        if self.failing_since is not None:
            lasted = time.time() - self.failing_since
            self.failing_since = None
            _say(f"notify {self.target}: delivering again (after {lasted:.1f} s of failures)")
        return True

    def _failed(self, row: Mapping[str, Any], error: str) -> bool:
        """Record a failed attempt: True when the delivery is given up (a dead letter)."""
        attempts = row["attempts"] + 1
        event = f"alert {row['alert_id']} {row['kind']} (event {row['event_id']})"
        if attempts >= self.options.attempts:
            self.deliveries.failed(row["id"], error, None)
            self.dead += 1
            _say(
                f"notify {self.target}: gave up on {event} after {attempts} attempt(s): "
                f"{error}; kept in the store as a dead letter (arnet alerts --deliveries)"
            )
            return True
        delay = self.options.delay(attempts)
        self.deliveries.failed(row["id"], error, time.time() + delay)
        if self.failing_since is None:
            self.failing_since = time.time()
            _say(
                f"warning: notify {self.target}: {event} not delivered ({error}); "
                f"retrying in {delay:.1f} s, up to {self.options.attempts} attempts"
            )
        return False

    def _left(self) -> None:
        try:
            left = len(self.deliveries.pending(self.target, list(self.cameras), limit=10_000))
        except StoreUnavailable:
            return
        if left:
            _say(
                f"notify {self.target}: {left} delivery(ies) still pending; the next watcher of "
                "these cameras sends them"
            )


class Sinks:
    """The sinks of one watcher, told of each alert event once the store holds it.

    Classifies the alert rows the store wrote as `store.deliveries` does (a new alert is
    opened, a higher peak of an open one updated, a closing closed), from what it has seen
    and the open alerts a restarted watcher continues (`resume`)."""

    def __init__(self, sinks: Sequence[AlertSink] = ()) -> None:
        self.sinks = list(sinks)
        self.seen: dict[tuple[str, int], dict[str, Any]] = {}

    @property
    def targets(self) -> tuple[str, ...]:
        """The targets whose deliveries the store records with each alert."""
        return tuple(s.target for s in self.sinks if isinstance(s, NetworkSink))

    def resume(self, camera: str, alert: Mapping[str, Any] | None) -> None:
        """The camera's open alert in the store, continued by this watcher."""
        if alert is not None:
            self.seen[(camera, alert["start_segment"])] = dict(alert)

    def start(self, deliveries: Any, cameras: Mapping[int, str]) -> None:
        for sink in self.sinks:
            if isinstance(sink, NetworkSink):
                sink.start(deliveries, cameras)

    def written(self, camera: str, rows: Sequence[Mapping[str, Any]], ids: Sequence[int]) -> None:
        """Alert rows the store has written (with their ids): tell every sink."""
        from ..store.deliveries import RECORDS_CLIP, alert_events

        for row, alert_id in zip(rows, ids):
            key = (camera, row["start_segment"])
            kinds = alert_events(self.seen.get(key), row)
            alert = {k: v for k, v in row.items() if k not in ("peak_image", RECORDS_CLIP)}
            alert.update(id=alert_id, camera=camera)
            if row["state"] == "closed":
                self.seen.pop(key, None)
            else:
                self.seen[key] = {"state": row["state"], "peak_score": row["peak_score"]}
            for kind in kinds:
                for sink in self.sinks:
                    try:
                        getattr(sink, kind)(alert)
                    except Exception as exc:  # noqa: BLE001  (a sink never stops the watcher)
                        log.warning("alert sink %r failed on %s: %s", sink, kind, exc)

    def stop(self) -> None:
        """Stop every sink, once (the network ones send what is pending for a while first)."""
        sinks, self.sinks = self.sinks, []
        threads = []

        def stop(sink: AlertSink) -> None:
            try:
                sink.stop()
            except Exception as exc:  # noqa: BLE001
                log.warning("alert sink %r failed to stop: %s", sink, exc)

        for sink in sinks:  # drained together, not one after the other
            t = threading.Thread(target=stop, args=(sink,), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join()


# ---------------------------------------------------------------------- targets


def shown(url: str) -> str:
    """A target URL as stored and shown: any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_target(url: str) -> str:
    """Refuse a `--notify` URL that cannot be a target (one line naming it); its scheme.

    Raises:
        NotifyError: an unsupported scheme, no host, a bad port, an MQTT URL without topic.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise NotifyError(f"--notify {shown(url)}: not a URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise NotifyError(
            f"--notify {shown(url)}: unsupported scheme {parts.scheme or '(none)'!r}; give "
            "http://, https:// (a webhook) or mqtt://, mqtts:// (a broker and topic)"
        )
    if not parts.hostname:
        raise NotifyError(f"--notify {shown(url)}: no host")
    if port == 0:
        raise NotifyError(f"--notify {shown(url)}: port 0")
    if scheme.startswith("mqtt"):
        topic = parts.path.strip("/")
        if not topic:
            raise NotifyError(
                f"--notify {shown(url)}: no topic; give mqtt://HOST:PORT/TOPIC (events go to "
                "TOPIC/CAMERA/events)"
            )
        if any(c in topic for c in "+#\0"):
            raise NotifyError(f"--notify {shown(url)}: a topic cannot hold + # or NUL")
        if parts.query or parts.fragment:
            raise NotifyError(f"--notify {shown(url)}: an MQTT URL takes no ?query or #fragment")
    return scheme


def read_secret(path: str) -> bytes:
    """The webhook secret of `--notify-secret-file` (surrounding white space removed).

    Raises:
        NotifyError: the file cannot be read or is empty.
    """
    try:
        with open(path, "rb") as f:
            secret = f.read().strip()
    except OSError as exc:
        raise NotifyError(f"--notify-secret-file {path}: cannot read it ({exc.strerror})") from None
    if not secret:
        raise NotifyError(f"--notify-secret-file {path}: the file is empty")
    return secret
