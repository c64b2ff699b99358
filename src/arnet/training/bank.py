"""A run of a model fitted without gradients (`nearest-normal`): same run folder as training;
and what a run reads of its training data's extraction.json (feature groups, grid cells).

`arnet train --model nearest-normal` comes here instead of the gradient loop: the model is
fitted once on the training videos (video labels only), checkpointed as `last.pt` (iteration
0, readable by `arnet test` and `arnet detect`), and the test split is scored and written
like any snapshot (metrics.json, per_video.csv, scores.npz, plots, results.jsonl). What the
fit chose (its threshold and how) goes to `fit.json`.

With `--val-fraction`, the held-out videos (`validation`) stay out of the bank and of the
fit's own threshold; they are scored once (validation.jsonl, one row at iteration 0), and the
alert threshold chosen on their normal frames is the run's (the checkpoint's `validation`
record, used by `arnet test` and `arnet detect`, and the test figures' threshold). There is
no snapshot to choose: selected.json names last.pt.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..atomic import write_json_atomic
from ..config import TrainConfig
from ..data.dataset import FeatureDataset
from ..errors import DataError, TrainingError
from ..evaluation.evaluate import TrainResult, evaluate_model
from ..folders import RunFolder
from ..formats.extraction import ExtractionRecord
from ..formats.layout import backbone_folder, extraction_record, video_record
from ..models import model_entry, model_spec, objective_entry
from ..models.normal import DEFAULT_SCALING, SCALINGS, check_options, fit_bank
from .checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, save_checkpoint
from .runlog import RunLog
from .validation import VALIDATION_LOG, Validation


def training_record(config: TrainConfig) -> ExtractionRecord | None:
    """The training data's extraction record; None for data not made by `arnet extract` (a
    packed store, a list)."""
    if not config.data:
        return None
    return ExtractionRecord.of_dataset(config.data, config.feature_backbone)


def event_fps(config: TrainConfig, dataset: FeatureDataset) -> float | dict[str, float] | None:
    """The frame rate of the event figures' times for `dataset` (the run's test videos):
    `config.fps` when given; else the rate `arnet extract` recorded for each video
    (OUT/features_video/BACKBONE/videos/VIDEO.json), when every video has one; else None
    (the event figures then count frames)."""
    if config.fps is not None:
        return float(config.fps)
    if not config.data or not Path(config.data).is_dir():
        return None
    folder = backbone_folder(config.data, config.feature_backbone)
    rates: dict[str, float] = {}
    for name in dataset.names:
        record = video_record(folder, name)
        try:
            rate = float(json.loads(record.read_text()).get("fps"))
        except (OSError, ValueError, TypeError, AttributeError):
            return None  # a video without a readable record: no rate for the whole set
        if not (np.isfinite(rate) and rate > 0):
            return None
        rates[name] = rate
    return rates or None


def extraction_groups(config: TrainConfig) -> list[int] | None:
    """Feature groups of a grid backbone (motion-grid), from the training data's
    extraction.json; None (one group) for other features or when none is recorded."""
    record = training_record(config)
    return None if record is None else record.feature_groups(config.feature_modal)


def resolve_instances(config: TrainConfig, dim: int) -> TrainConfig:
    """The config with the cells of `--instances cells` filled in (`cells`, `cell_widths`),
    from the training data's extraction.json (the grid its backbones recorded) or from
    `--cells` for data without one; unchanged for `--instances segment`.

    Raises:
        DataError: features without a grid (naming --instances cells and the record), a
            `--cells` the record or the feature size contradicts.
        ValueError: a model that does not train with the MIL objective.
    """
    if config.instances != "cells":
        return config
    objective = model_entry(config.model).objective
    if not objective_entry(objective).scores_only:
        raise ValueError(
            f"--instances cells trains the model on each cell with top-k MIL and the center "
            f"loss; model {config.model!r} is trained by its own objective ({objective})"
        )
    record = training_record(config)
    layout = None if record is None else record.cell_layout(config.feature_modal)
    where = record.where if record is not None else "--cells"
    if layout is None:
        if record is not None or config.cells is None:
            expected = (
                None
                if not config.data
                else extraction_record(backbone_folder(config.data, config.feature_backbone))
            )
            missing = (
                f"{record.where} records no grid for {config.feature_modal} features"
                if record is not None
                else "the training data has no extraction record"
                + (f" ({expected} not found)" if expected is not None else "")
                + "; give --cells N to read each segment as N equal cells"
            )
            raise DataError(
                "--instances cells needs features on a grid (motion-grid, or efficientnet-lite0 "
                f"extracted with --grid): {missing}"
            )
        if dim % config.cells:
            raise DataError(
                f"--cells {config.cells}: the {dim} features per segment do not split into "
                f"{config.cells} equal cells"
            )
        cells, widths = config.cells, [dim // config.cells]
    else:
        cells, widths = layout
        if config.cells is not None and config.cells != cells:
            raise DataError(f"--cells {config.cells}, but {where} records {cells} cells")
    if config.cell_widths is not None and list(config.cell_widths) != widths:
        raise DataError(
            f"the run's cells hold {config.cell_widths} numbers each, but {where} gives {widths}"
        )
    if cells * sum(widths) != dim:
        raise DataError(
            f"{where}: {cells} cells x {sum(widths)} numbers make {cells * sum(widths)} "
            f"features per segment, but the training features have {dim}"
        )
    return dataclasses.replace(config, cells=cells, cell_widths=widths)


def fit_run(
    config: TrainConfig,
    train_set: FeatureDataset,
    test_set: FeatureDataset | None,
    out_dir: str | Path,
    validation: Validation | None = None,
) -> TrainResult:
    """Fit a normal bank on `train_set`, checkpoint it and evaluate it; with `validation`,
    its held-out videos choose the alert threshold."""
    config.validate()
    out = Path(out_dir)
    last = RunFolder(out).last
    if last.exists():
        raise TrainingError(f"{out} already holds a run ({last}); choose another --out")
    groups = extraction_groups(config)
    if groups is not None and len(groups) != train_set.dim:
        groups = None  # features not laid out as recorded (e.g. another modal): one group
    if train_set.crops:
        raise DataError(
            f"{train_set.sources[0]}: nearest-normal takes one vector per segment, not "
            f"{train_set.crops} crops"
        )
    options = dict(config.model_args)
    unknown = sorted(set(options) - {"scaling", "neighbours"})
    if unknown:
        raise ValueError(
            f"--model-arg {unknown[0]}: nearest-normal takes scaling={'|'.join(SCALINGS)} and "
            "neighbours=K"
        )
    try:  # the options themselves first: an error about them names --model-arg
        k = options.get("neighbours")
        check_options(options.get("scaling", DEFAULT_SCALING), 1 if k is None else k)
    except ValueError as exc:
        raise ValueError(f"--model-arg: {exc}") from exc
    videos = [np.asarray(train_set.features(i), dtype=np.float32) for i in range(len(train_set))]
    try:
        model, fit = fit_bank(videos, train_set.labels.tolist(), groups, **options)
    except ValueError as exc:
        held = "" if validation is None else " (after --val-fraction held some out)"
        raise DataError(f"{train_set.sources[0]}: {exc}{held}") from exc
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / RunFolder.CONFIG)
    record = {**fit.to_dict(), "groups": "per statistic" if groups else "one"}
    write_json_atomic(out / "fit.json", record)
    threshold, row = config.threshold, None
    if validation is not None:
        with torch.no_grad():
            row = validation.score(model, "cpu", 0)
        threshold = row["threshold"]
        RunLog(out, tensorboard=False).append(VALIDATION_LOG, row)
    metrics = None
    history: list[dict[str, Any]] = []
    if test_set is not None:
        with torch.no_grad():
            metrics = evaluate_model(
                model,
                test_set,
                "cpu",
                crop_mode=config.test_crop,
                frames_per_segment=config.frames_per_segment,
                threshold=threshold,
                out_dir=out,
                plot=config.plot,
                iteration=0,
                require_labels=False,
                snapshot=None if row is None else "selected (selected.json)",
                fps=event_fps(config, test_set),
            ).metrics
        if metrics is not None:
            history.append({"iteration": 0, **metrics.summary()})
            with (out / RunFolder.RESULTS).open("a") as f:
                f.write(json.dumps(history[-1], default=float) + "\n")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "arnet_version": __version__,
        "model": model_spec(model),
        "state_dict": model.state_dict(),
        "iteration": 0,
        "total_iterations": 0,
        "config": config.to_dict(),
        "metrics": metrics.summary() if metrics else None,
        "fit": record,
        **({} if row is None else {"validation": row}),
    }
    save_checkpoint(last, payload)
    if validation is not None:
        assert row is not None  # scored above
        validation.select(row, metrics)
        validation.write_selected(out, last)
    return TrainResult(out, 0, last, metrics, history, 0, row)
