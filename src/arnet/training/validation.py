"""Held-out training videos that choose a run's snapshot and alert threshold (`--val-fraction`).

`arnet train --val-fraction F` holds a share F of the training videos of each class out of
training before it starts: stratified by video label (at least one anomalous and one normal
video held out, at least one of each left to train on), drawn with the run's `--seed`, from
the training split only (never a test video, and never a training video's frame labels). At
every snapshot they are scored whole, as the test videos are (`evaluate.predict`), giving:

- `video_auc`: the ROC AUC of each held-out video's highest segment score against its label;
- `threshold`: the lowest threshold at which at most `--val-false-alarm-rate` (5%) of the
  held-out normal videos' frames alert (`metrics.calibrate_threshold`; at most 1);
- `false_alarm_rate`: the share of those frames scoring at or above it (at most the target,
  unless scores tie at the top);
- `anomalous_alerted`: the share of held-out anomalous videos with a segment at or above it.

The run's selected snapshot is the one with the best `video_auc`; of equal ones the later (the
held-out videos cannot tell them apart, and it has trained longer). Its weights go to
`checkpoints/selected.pt`, which `--keep-checkpoints` never prunes and which a run folder
stands for in `arnet test`, `arnet detect` and `arnet export`; its threshold is the run's alert
threshold (the checkpoint's `validation` record), used by those commands unless given
`--threshold`; and the run's test figures (metrics.json, per_video.csv, scores.npz, plots,
report.html) are the selected snapshot's, at that threshold. Nothing of the test split takes
part in the choice. Files in the run folder:

```
RUN/validation.json    the held-out videos (name, label), the fraction, seed and target rate
RUN/validation.jsonl   one row per snapshot (the figures above)
RUN/selected.json      the selected snapshot: its iteration, its row, the rule, its checkpoint
                       and its test metrics
```
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import write_json_atomic
from ..config import TrainConfig
from ..data.dataset import FeatureDataset
from ..errors import DataError, TrainingError
from ..evaluation.evaluate import predict
from ..evaluation.metrics import Metrics, calibrate_threshold, expand_to_frames, video_auc
from ..folders import RunFolder
from .checkpoint import save_checkpoint

VALIDATION_FILE = RunFolder.VALIDATION
VALIDATION_LOG = RunFolder.VALIDATION_LOG
SELECTED_FILE = RunFolder.SELECTION
RULE = "the best held-out video AUC; of equal ones the later snapshot"
# What a checkpoint of the selected snapshot keeps of a training checkpoint: no optimiser or
# random state (it is not resumed), the best weights instead of the current ones.
_MODEL_FIELDS = ("format", "version", "arnet_version", "model", "total_iterations", "config")


def split_held_out(
    names: list[str],
    labels: Iterable[int],
    fraction: float,
    seed: int,
    exclude: Iterable[str] = (),
) -> list[int]:
    """Indices of the videos to hold out: of each class round(fraction x its videos), at
    least one and all but one, drawn with `seed` from the videos sorted by name (the same
    videos whatever order the dataset lists them in). Videos named in `exclude` (the test
    split's) are never drawn.

    Raises:
        DataError: a class with fewer than two videos to draw from, naming --val-fraction.
    """
    labels = [int(y) for y in labels]
    excluded = set(exclude)
    rng = np.random.default_rng(seed)
    held: list[int] = []
    pools = {}
    for label in (1, 0):
        pools[label] = sorted(
            (i for i, y in enumerate(labels) if y == label and names[i] not in excluded),
            key=lambda i: names[i],
        )
    if min(len(p) for p in pools.values()) < 2:
        outside = " outside the test split" if excluded & set(names) else ""
        raise DataError(
            f"--val-fraction {fraction:g} holds out at least one anomalous and one normal "
            "training video and leaves at least one of each to train on, but the training set "
            f"has {len(pools[1])} anomalous and {len(pools[0])} normal video(s){outside}: "
            "train without --val-fraction"
        )
    for label in (1, 0):
        pool = pools[label]
        k = min(max(1, math.floor(fraction * len(pool) + 0.5)), len(pool) - 1)
        held += [pool[j] for j in rng.permutation(len(pool))[:k]]
    return sorted(held)


class Validation:
    """The held-out videos of one run, their figures at each snapshot and the best snapshot.

    Args:
        train_set: the training split; `train_set` here is what remains of it to train on.
        config: the run's configuration (val_fraction, seed, val_false_alarm_rate, test_crop,
            frames_per_segment).
        test_set: the test split (None: none), whose videos are never held out.
    """

    def __init__(
        self, train_set: FeatureDataset, config: TrainConfig, test_set: FeatureDataset | None
    ) -> None:
        exclude = test_set.names if test_set is not None else ()
        held = split_held_out(
            train_set.names, train_set.labels, config.val_fraction, config.seed, exclude
        )
        chosen = set(held)
        self.held_out = train_set.subset(held)
        self.held_out.frame_labels = [None] * len(held)  # video labels only, never frames
        self.train_set = train_set.subset([i for i in range(len(train_set)) if i not in chosen])
        self.fraction = config.val_fraction
        self.seed = config.seed
        self.target = config.val_false_alarm_rate
        self.crop_mode = config.test_crop
        self.frames_per_segment = config.frames_per_segment
        self.last: dict[str, Any] | None = None
        """The latest snapshot's row."""
        self.best: dict[str, Any] | None = None
        """The selected snapshot so far: its row, its test metrics ("test") and its weights
        ("state_dict", on the CPU)."""
        self.best_metrics: Metrics | None = None
        """The selected snapshot's test metrics, when it was evaluated by this process."""
        self.saved_iteration: int | None = None
        """The iteration whose weights this process wrote to selected.pt."""

    def describe(self) -> dict[str, Any]:
        """validation.json's content."""
        labels = self.held_out.labels.tolist()
        return {
            "fraction": self.fraction,
            "seed": self.seed,
            "false_alarm_rate_target": self.target,
            "selection": RULE,
            "held_out": [{"name": n, "label": y} for n, y in zip(self.held_out.names, labels)],
            "held_out_anomalous": int(sum(labels)),
            "held_out_normal": len(labels) - int(sum(labels)),
            "training_videos": len(self.train_set),
        }

    # -- scoring
    def score(self, model: nn.Module, device: torch.device | str, iteration: int) -> dict[str, Any]:
        """Score the held-out videos with `model`: the snapshot's row (see the module)."""
        scores = predict(model, self.held_out, device, self.crop_mode)
        labels = self.held_out.labels.tolist()
        peaks = [float(np.max(scores[n])) for n in self.held_out.names]
        normal = [  # float64, as every threshold is compared (a float32 one would round)
            expand_to_frames(scores[n].astype(np.float64), self.frames_per_segment)
            for n, y in zip(self.held_out.names, labels)
            if y == 0
        ]
        # A threshold above 1 is no alert threshold (scores lie in [0, 1]): at 1, only scores
        # of exactly 1 alert, which may then exceed the target (the row says by how much).
        threshold = min(calibrate_threshold(normal, self.target), 1.0)
        frames = np.concatenate(normal)
        alerted = [p >= threshold for p, y in zip(peaks, labels) if y == 1]
        self.last = {
            "iteration": int(iteration),
            "video_auc": video_auc(peaks, labels),
            "threshold": float(threshold),
            "false_alarm_rate": float(np.mean(frames >= threshold)),
            "anomalous_alerted": float(np.mean(alerted)),
        }
        return self.last

    def better(self, row: dict[str, Any]) -> bool:
        """Whether the snapshot of `row` replaces the selected one (ties: the later does)."""
        return self.best is None or row["video_auc"] >= self.best["video_auc"]

    def select(
        self,
        row: dict[str, Any],
        metrics: Metrics | None,
        state_dict: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Make the snapshot of `row` the selected one, with its test metrics and weights."""
        weights = None
        if state_dict is not None:
            weights = {k: v.detach().to("cpu", copy=True) for k, v in state_dict.items()}
        self.best = {**row, "test": metrics.summary() if metrics else None, "state_dict": weights}
        self.best_metrics = metrics

    def row(self, record: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """A selected snapshot's row without its weights and test metrics (default: the
        current selection's)."""
        record = self.best if record is None else record
        if record is None:
            return None
        return {k: v for k, v in record.items() if k not in ("state_dict", "test")}

    # -- checkpoints and resuming
    def state(self, iteration: int) -> dict[str, Any]:
        """A training checkpoint's fields at `iteration`: `selected` (the held-out names and
        the selection so far, for resuming) and, at a snapshot, `validation` (its own row)."""
        fields = {"selected": {"held_out": list(self.held_out.names), "best": self.best}}
        if self.last is not None and self.last["iteration"] == iteration:
            fields["validation"] = self.last
        return fields

    def load_state(self, state: Any, source: str) -> None:
        """Continue from a checkpoint's `state()`: the same held-out videos, the same choice.

        Raises:
            TrainingError: a checkpoint without one, or whose held-out videos differ from the
                ones this data gives (the training data changed).
        """
        if not isinstance(state, dict) or not isinstance(state.get("held_out"), list):
            raise TrainingError(
                f"{source}: holds no held-out videos (--val-fraction); cannot resume"
            )
        if state["held_out"] != list(self.held_out.names):
            raise TrainingError(
                f"{source}: the run held out {', '.join(map(str, state['held_out']))} for "
                f"--val-fraction, but this training data gives {', '.join(self.held_out.names)}: "
                "resume on the data the run trained on"
            )
        self.best = state.get("best")

    def save_selected(self, out_dir: Path, payload: dict[str, Any], again: bool) -> None:
        """Write checkpoints/selected.pt (the selected weights, with the model and config of
        the training checkpoint `payload`) and selected.json, when a snapshot is selected and
        (unless `again`) not yet written by this process."""
        if self.best is None or (self.best["iteration"] == self.saved_iteration and not again):
            return
        selected = {k: payload[k] for k in _MODEL_FIELDS if k in payload}
        selected.update(
            state_dict=self.best["state_dict"],
            iteration=self.best["iteration"],
            metrics=self.best["test"],
            validation=self.row(),
        )
        path = save_checkpoint(RunFolder(out_dir).selected, selected)
        self.write_selected(out_dir, path)
        self.saved_iteration = self.best["iteration"]

    def write_selected(self, out_dir: Path, checkpoint: Path) -> None:
        """selected.json: which snapshot, why, where its weights are and its test metrics."""
        assert self.best is not None
        row = self.row()
        assert row is not None  # the row of self.best
        write_json_atomic(
            Path(out_dir) / SELECTED_FILE,
            {
                **row,
                "rule": RULE,
                "false_alarm_rate_target": self.target,
                "checkpoint": str(checkpoint),
                "test_metrics": self.best["test"],
            },
        )
