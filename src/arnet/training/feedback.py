"""Versions of a detector in its run folder, made from operators' verdicts.

Every change to a run's detector is a new version; nothing is ever deleted, and which version
is in use is one pointer that `arnet feedback undo` and `use` move:

```
RUN/versions/current.json     {"version": N}  (absent: version 0, the run as trained)
RUN/versions/N/version.json   parent, when, what changed, from which alerts and verdicts
RUN/versions/N/examples.npz   every operator example of the version (cumulative):
                              normal (K, D) + normal_alerts (K,), anomalous (M, D) +
                              anomalous_alerts (M,)
RUN/versions/N/train/         (trained models: `train --resume RUN --feedback`) the training
                              continued on the verdicts' videos, a run folder of its own
```

A `nearest-normal` version is the run's bank plus the version's normal examples (the false
alarms' segments); its centre, scale and threshold stay those of the run, so a version changes
nothing but which segments count as normal. A false alarm's segment that lies within the
threshold distance of a segment an operator called real is left out (`guard`): with it in the
bank that real segment would no longer alert.

Versions are numbered 1, 2, ... in the order they were made; a version's parent is the one in
use when it was made (after an undo, the next version continues from the version undone to).
Writers take the run's versions lock (`versions_lock`), so two watchers or commands never make
the same number.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import write_atomic, write_json_atomic
from ..errors import CheckpointError, DataError
from ..models.normal import NearestNormal
from .checkpoint import load_checkpoint

VERSIONS = "versions"
POINTER = "current.json"
RECORD = "version.json"
EXAMPLES = "examples.npz"
VERSION_TRAINING = "train"


def run_folder(checkpoint: str | Path) -> Path | None:
    """The run folder a `--checkpoint` names (a folder holding `checkpoints/`, or a file in
    it), resolved; None for a checkpoint file outside a run folder."""
    path = Path(checkpoint).expanduser().resolve()
    if path.is_dir() and (path / "checkpoints").is_dir():
        return path
    if path.is_file() and path.parent.name == "checkpoints":
        return path.parent.parent
    return None


def versions_dir(run: str | Path) -> Path:
    return Path(run) / VERSIONS


def current_version(run: str | Path) -> int:
    """The version in use (0: the run as trained).

    Raises:
        DataError: an unreadable pointer, or one naming a version that is not there.
    """
    pointer = versions_dir(run) / POINTER
    if not pointer.is_file():
        return 0
    try:
        number = int(json.loads(pointer.read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{pointer}: not a version pointer ({exc})") from None
    if number and not (versions_dir(run) / str(number) / RECORD).is_file():
        raise DataError(f"{pointer}: names version {number}, which {versions_dir(run)} lacks")
    return number


def version_record(run: str | Path, number: int) -> dict[str, Any]:
    """What version `number` is (version.json; version 0: the run as trained)."""
    if number == 0:
        return {"version": 0, "parent": None, "what": "the run as trained"}
    path = versions_dir(run) / str(number) / RECORD
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{run}: no version {number} (arnet feedback list {run})") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from None


def list_versions(run: str | Path) -> list[dict[str, Any]]:
    """Every version, oldest first (version 0 included), each with `current`: in use."""
    numbers = []
    folder = versions_dir(run)
    if folder.is_dir():
        numbers = sorted(
            int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / RECORD).is_file()
        )
    now = current_version(run)
    return [{**version_record(run, n), "current": n == now} for n in [0, *numbers]]


@contextmanager
def versions_lock(run: str | Path) -> Iterator[None]:
    """The run's versions, for one writer at a time (an advisory lock, freed by a kill)."""
    folder = versions_dir(run)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def set_current(run: str | Path, number: int) -> int:
    """Put version `number` in use; returns the one it replaces.

    Raises:
        DataError: no such version.
    """
    version_record(run, number)  # refuses a version that is not there
    with versions_lock(run):
        before = current_version(run)
        write_json_atomic(versions_dir(run) / POINTER, {"version": int(number)})
    return before


def undo(run: str | Path) -> tuple[int, int]:
    """Go back from the version in use to its parent; returns (from, to). Nothing is deleted:
    `set_current(run, from)` puts it back.

    Raises:
        DataError: the run is at version 0 already.
    """
    now = current_version(run)
    if now == 0:
        raise DataError(f"{run}: at version 0 (the run as trained); there is nothing to undo")
    parent = int(version_record(run, now).get("parent") or 0)
    set_current(run, parent)
    return now, parent


@dataclass
class Examples:
    """The operators' examples of a version: segment features and the alert of each."""

    normal: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    normal_alerts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    anomalous: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    anomalous_alerts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def alerts(self, kind: str) -> set[int]:
        return {int(a) for a in getattr(self, f"{kind}_alerts")}

    def without(self, alert_ids: set[int]) -> Examples:
        keep_n = ~np.isin(self.normal_alerts, list(alert_ids))
        keep_a = ~np.isin(self.anomalous_alerts, list(alert_ids))
        return Examples(
            self.normal[keep_n],
            self.normal_alerts[keep_n],
            self.anomalous[keep_a],
            self.anomalous_alerts[keep_a],
        )

    def add(self, kind: str, alert_id: int, features: np.ndarray) -> Examples:
        rows = np.asarray(features, dtype=np.float32)
        rows = rows.reshape(len(rows), -1) if rows.size else rows.reshape(0, 0)
        old = getattr(self, kind)
        ids = getattr(self, f"{kind}_alerts")
        if not len(rows):
            return self
        if old.size and old.shape[1] != rows.shape[1]:
            raise DataError(
                f"alert {alert_id}: its segments have {rows.shape[1]} features, the "
                f"detector's examples {old.shape[1]}"
            )
        joined = np.concatenate([old, rows]) if old.size else rows
        joined_ids = np.concatenate([ids, np.full(len(rows), alert_id, np.int64)])
        fields = {"normal": self.normal, "normal_alerts": self.normal_alerts}
        fields.update(anomalous=self.anomalous, anomalous_alerts=self.anomalous_alerts)
        fields[kind], fields[f"{kind}_alerts"] = joined, joined_ids
        return Examples(**fields)


def examples(run: str | Path, number: int) -> Examples:
    """The examples of version `number` (version 0: none)."""
    if number == 0:
        return Examples()
    path = versions_dir(run) / str(number) / EXAMPLES
    try:
        with np.load(path, allow_pickle=False) as z:
            return Examples(*(np.asarray(z[k]) for k in Examples.__dataclass_fields__))
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: unreadable examples ({exc})") from None


def reserve_version(run: str | Path) -> int:
    """The number of a new version, its folder made (the caller holds `versions_lock`): a
    folder without version.json is no version yet (a training still under way, or killed)."""
    folder = versions_dir(run)
    folder.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name) for p in folder.iterdir() if p.name.isdigit()]
    number = max(taken, default=0) + 1
    (folder / str(number)).mkdir()
    return number


def write_version(
    run: str | Path,
    parent: int,
    found: Examples,
    record: dict[str, Any],
    number: int | None = None,
) -> int:
    """Write a new version (the caller holds `versions_lock`; `number` from
    `reserve_version`, or a new one) and put it in use; returns its number. The folder is
    complete before the pointer names it: a kill leaves at most a folder without version.json,
    never a pointer to half a version."""
    folder = versions_dir(run)
    if number is None:
        number = reserve_version(run)
    target = folder / str(number)
    arrays = {k: getattr(found, k) for k in Examples.__dataclass_fields__}
    write_atomic(target / EXAMPLES, lambda f: np.savez(f, **arrays))
    full = {
        "version": number,
        "parent": parent,
        "created": time.time(),
        "normal_segments": int(len(found.normal)),
        "anomalous_segments": int(len(found.anomalous)),
        "normal_alerts": sorted(found.alerts("normal")),
        "anomalous_alerts": sorted(found.alerts("anomalous")),
        **record,
    }
    write_json_atomic(target / RECORD, full)
    write_json_atomic(folder / POINTER, {"version": number})
    return number


def version_checkpoint(run: str | Path, number: int) -> Path | None:
    """The checkpoint of a trained version (its `train/` run folder), None when it has none."""
    folder = versions_dir(run) / str(number) / VERSION_TRAINING
    return folder if number and (folder / "checkpoints").is_dir() else None


def use_version(
    model: torch.nn.Module,
    run: str | Path,
    number: int,
    base_bank: torch.Tensor | None = None,
    base_state: dict[str, torch.Tensor] | None = None,
) -> None:
    """Make `model` score as version `number` of `run`: a `nearest-normal` bank gets the
    version's examples on `base_bank` (default: the model's own bank, version 0 as loaded); a
    trained model loads the version's weights (version 0: `base_state`, default its own)."""
    if isinstance(model, NearestNormal):
        bank = model.bank.detach().clone() if base_bank is None else base_bank
        apply_examples(model, bank, examples(run, number))
        return
    if number:
        path = version_checkpoint(run, number)
        if path is None:
            raise DataError(
                f"{versions_dir(run) / str(number)}: version {number} holds no trained model "
                "(a bank version of another run?)"
            )
        model.load_state_dict(load_checkpoint(path)["state_dict"])
    elif base_state is not None:
        model.load_state_dict(base_state)


def last_verdict(run: str | Path) -> int:
    """The newest store verdict id any version of the run was made from (0: none)."""
    return max((int(v.get("last_verdict") or 0) for v in list_versions(run)), default=0)


# ---------------------------------------------------------------------- nearest-normal


def scaled(model: NearestNormal, rows: np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(rows, dtype=np.float32))
    return (x - model.center) / model.scale


def guard(model: NearestNormal, normal: np.ndarray, anomalous: np.ndarray) -> np.ndarray:
    """Which normal examples may join a nearest-normal bank: (K,) bool, False for a segment
    closer than the threshold to a segment an operator called real (it would hide it)."""
    keep = np.ones(len(normal), dtype=bool)
    if not len(normal) or not len(anomalous):
        return keep
    d = torch.cdist(scaled(model, normal), scaled(model, anomalous)).min(dim=1).values
    return (d >= model.threshold).numpy()


def apply_examples(model: NearestNormal, base_bank: torch.Tensor, found: Examples) -> int:
    """Make `model` (nearest-normal) the version of `found`: its bank is the run's
    (`base_bank`), its operator examples (`NearestNormal.examples`, each counted as a nearest
    neighbour of its own) the normal examples; returns the normal segments it holds.

    Raises:
        CheckpointError: examples of another feature size than the bank's.
    """
    extra = base_bank.new_zeros((0, base_bank.shape[1]))
    if len(found.normal):
        if found.normal.shape[1] != base_bank.shape[1]:
            raise CheckpointError(
                f"the version's examples have {found.normal.shape[1]} features, the run's bank "
                f"{base_bank.shape[1]}"
            )
        extra = torch.as_tensor(found.normal, dtype=base_bank.dtype, device=base_bank.device)
    model.bank = base_bank
    model.examples = extra
    return int(base_bank.shape[0] + extra.shape[0])
