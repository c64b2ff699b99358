"""Operator feedback while watching: each alert records the detector version that scored it
and its segments' features; verdicts in the store become new versions of a `nearest-normal`
run, which the watcher takes up without a restart.

- `AlertFeatures` keeps the features of the segments of each camera's alert in progress and
  hands them to the alert rows written to the store (`segment_features`, with `detector`).
- `apply_verdicts` turns the verdicts on a run's alerts that no version has taken yet into a
  new version (`training.feedback`): a false alarm's segments become normal examples (they
  join the bank), a real alert's segments anomalous examples (kept, and guarding the bank:
  no normal example may hide them). The latest verdict of an alert counts: one called a false
  alarm and then real leaves the bank again in the next version.
- `LiveFeedback` is the watcher's side: every `interval` seconds (and on SIGHUP) it applies new
  verdicts (nearest-normal runs) and loads the version the run's pointer names when it changed
  (`arnet feedback undo`, or a version made by another process).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.normal import NearestNormal
from ..training import feedback as versions

log = logging.getLogger("arnet.watch")

# Seconds between looks at the store's verdicts and the run's version pointer.
FEEDBACK_POLL_SECONDS = 2.0


class AlertFeatures:
    """The features of the segments of each camera's current alert, until written."""

    def __init__(self) -> None:
        self.pending: dict[str, dict[int, np.ndarray]] = {}

    def take(
        self,
        camera: str,
        segment: int,
        feature: np.ndarray | None,
        rows: list[dict[str, Any]],
        in_alert: bool,
        detector: tuple[str, int] | None,
    ) -> None:
        """After the tracker took `segment`: keep its feature while an alert is in progress
        (or just ended with it), and attach what the alert rows span to them."""
        held = self.pending.setdefault(camera, {})
        if feature is not None and (in_alert or rows):
            held[segment] = feature
        for row in rows:
            span = range(row["start_segment"], row["end_segment"] + 1)
            mine = {i: held.pop(i) for i in list(held) if i in span}
            if mine:
                row["segment_features"] = mine
            if detector is not None:
                row["detector"] = detector
        if not in_alert:
            held.clear()


def apply_verdicts(
    run: str | Path, store: Any, model: NearestNormal, who: str = "arnet"
) -> dict[str, Any] | None:
    """A new version of nearest-normal run `run` from the verdicts on its alerts that no
    version has taken yet; returns its record, or None when they change nothing.

    Raises:
        DataError: examples that do not fit the run's bank.
    """
    run = Path(run)
    with versions.versions_lock(run):
        seen = versions.last_verdict(run)
        changes = store.feedback(str(run), after=seen)
        if not changes:
            return None
        parent = versions.current_version(run)
        before = versions.examples(run, parent)
        found = before.without({c["alert_id"] for c in changes})
        empty = []
        for c in changes:
            if not len(c["features"]):
                empty.append(c["alert_id"])
                continue
            kind = "normal" if c["verdict"] == "false-alarm" else "anomalous"
            found = found.add(kind, c["alert_id"], c["features"])
        keep = versions.guard(model, found.normal, found.anomalous)
        guarded = sorted({int(a) for a in found.normal_alerts[~keep]})
        found.normal, found.normal_alerts = found.normal[keep], found.normal_alerts[keep]
        if _same(before, found):
            return None
        record = {
            "what": f"{len(changes)} verdict(s) from {store.url}",
            "by": who,
            "store": store.url,
            "last_verdict": max(int(c["verdict_id"]) for c in changes),
            "verdicts": [
                {k: c[k] for k in ("alert_id", "verdict", "verdict_id", "by", "camera", "version")}
                for c in changes
            ],
            "guarded_alerts": guarded,
            "alerts_without_features": empty,
        }
        number = versions.write_version(run, parent, found, record)
    return versions.version_record(run, number)


def feedback_videos(store: Any, run: str | Path) -> tuple[list[str], list[int], list[np.ndarray]]:
    """The verdicts on `run`'s alerts as labelled videos (names `feedback-alert-ID`, labels:
    a false alarm 0 (normal), a real alert 1, features (n, D)), latest verdict of each alert;
    alerts stored without features are left out."""
    names, labels, features = [], [], []
    for c in store.feedback(str(run)):
        if len(c["features"]):
            names.append(f"feedback-alert-{c['alert_id']}")
            labels.append(0 if c["verdict"] == "false-alarm" else 1)
            features.append(np.asarray(c["features"], dtype=np.float32))
    return names, labels, features


def _same(a: versions.Examples, b: versions.Examples) -> bool:
    return all(
        np.array_equal(getattr(a, k), getattr(b, k)) for k in versions.Examples.__dataclass_fields__
    )


class LiveFeedback:
    """A watcher's detector version: which one scores, new verdicts applied, pointer followed.

    Args:
        model: the detector's model (changed in place when the version changes).
        checkpoint: the `--checkpoint` given (a run folder has versions; a file has only
            version 0).
        store: the watcher's event store.
        learn: apply new verdicts (nearest-normal runs only).
        say: prints a line for the operator.
        interval: seconds between polls.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        checkpoint: str | Path,
        store: Any,
        learn: bool = True,
        say: Callable[[str], None] = print,
        interval: float = FEEDBACK_POLL_SECONDS,
    ) -> None:
        self.model, self.store, self.say, self.interval = model, store, say, interval
        self.run = versions.run_folder(checkpoint)
        self.name = str(self.run or Path(checkpoint).expanduser().resolve())
        self.bank = isinstance(model, NearestNormal)
        self.learn = learn and self.bank and self.run is not None
        self.base_bank = model.bank.detach().clone() if isinstance(model, NearestNormal) else None
        self.base_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.version = 0
        self.seen = 0
        self.next_poll = 0.0
        self.failing: str | None = None
        if self.run is not None:
            self._load(versions.current_version(self.run))

    @property
    def identity(self) -> tuple[str, int]:
        """(run, version) recorded with every alert."""
        return self.name, self.version

    def describe(self) -> str:
        return self.name if not self.version else f"{self.name} version {self.version}"

    def poll(self, force: bool = False) -> bool:
        """Apply new verdicts and follow the pointer, at most every `interval` seconds (at
        once with `force`); True when the version changed. A failure (store away, unreadable
        pointer) is said once and tried again later; the current version keeps scoring."""
        if self.run is None:
            return False
        now = time.monotonic()
        if not force and now < self.next_poll:
            return False
        self.next_poll = now + self.interval
        try:
            if self.learn:
                latest = self.store.latest_verdict_id(self.name)
                if latest > self.seen:
                    assert isinstance(self.model, NearestNormal)  # self.learn: a bank
                    made = apply_verdicts(self.run, self.store, self.model, "arnet watch")
                    self.seen = latest
                    if made is not None:
                        self.say(
                            f"feedback: version {made['version']} of {self.name}: "
                            f"{made['normal_segments']} normal segment(s) from alert(s) "
                            f"{_ids(made['normal_alerts'])}, {made['anomalous_segments']} "
                            f"real segment(s)"
                        )
            number = versions.current_version(self.run)
            changed = number != self.version
            if changed:
                self._load(number)
                self.say(f"feedback: now scoring with {self.describe()}")
            self.failing = None
            return changed
        except Exception as exc:  # noqa: BLE001  (feedback must never stop the cameras)
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if reason != self.failing:
                self.failing = reason
                log.warning("feedback not applied (%s); the current version keeps scoring", reason)
                self.say(f"feedback: not applied ({reason}); version {self.version} keeps scoring")
            return False

    def _load(self, number: int) -> None:
        assert self.run is not None
        versions.use_version(self.model, self.run, number, self.base_bank, self.base_state)
        self.version = number


def _ids(ids: Sequence[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:8])
    return (shown + ", ...") if len(ids) > 8 else (shown or "none")
