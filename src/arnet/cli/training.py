"""Commands on models: `arnet train`, `arnet test`, `arnet demo`, `arnet models`."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import NAIVE_BASELINE, TrainConfig, config_fields
from ..evaluation.evaluate import evaluate_model
from ..evaluation.report import metrics_table, per_video_table
from ..folders import RunFolder, claim_empty_folder, removed_if_left_empty, require_empty
from ..formats import open_dataset
from ..formats.synth import write_synthetic
from ..models import (
    count_parameters,
    create_model,
    list_models,
    model_entry,
    objective_entry,
    resolve_model_name,
)
from ..models.cells import input_dim
from ..training.bank import event_fps
from ..training.checkpoint import load_checkpoint
from ..training.runtime import keep_freed_memory, prepare_model, resolve_device
from ..training.sweep import parse_seeds, seeds_table, train_seeds
from ..training.trainer import Trainer, train
from .common import config_overrides, emit, new_run_folder, open_data, output_folder, progress
from .data import synth_config


def run_train(args: argparse.Namespace) -> int:
    overrides = config_overrides(args)
    resume = getattr(args, "resume", None)
    payload = None
    out: Path | None
    if resume:
        payload = load_checkpoint(resume, resume=True)
        saved = payload["config"]
        resumable = set(config_fields("resumable"))
        fixed = sorted(k for k, v in overrides.items() if k not in resumable and saved.get(k) != v)
        if fixed:
            raise ValueError(f"cannot change {', '.join(fixed)} when resuming a run")
        config = TrainConfig.from_dict({**payload["config"], **overrides})
        checkpoint = payload.path
        own = payload.run_folder.path if payload.run_folder is not None else None
        given = getattr(args, "out", None)
        if given is None and own is None:
            raise ValueError(
                f"{checkpoint} is not in a run folder (RUN/checkpoints/): give --out, a new or "
                "empty folder to continue the run in"
            )
        source = given or own
        assert source is not None  # checked above
        out = Path(source)
        if own is None or out.absolute().resolve() != own.absolute().resolve():
            # Continuing elsewhere copies the run: only into a folder holding nothing else.
            require_empty(
                out,
                f"a resumed run continues in its own folder ({own or checkpoint}) or, as a "
                "copy, in a new or empty --out",
            )
    else:
        config = TrainConfig(**overrides)
        out = Path(args.out) if getattr(args, "out", None) else None
        if out is not None:
            last = RunFolder(out).last
            if last.exists():  # the Trainer refuses it too; this says how in the CLI's words
                raise ValueError(
                    f"{out} already holds a run ({last}); resume it with --resume or choose "
                    "another --out"
                )
            require_empty(out, "train into a new or empty --out, or resume a run with --resume")
    config.validate()
    if config.val_fraction and "threshold" in overrides:
        raise ValueError(
            "give --threshold or --val-fraction, not both: with --val-fraction the threshold is "
            "chosen on the held-out videos (--val-false-alarm-rate)"
        )
    seeds = getattr(args, "seeds", None)
    if seeds is not None:
        return _train_seeds(args, config, parse_seeds(seeds), out, payload)
    if getattr(args, "feedback", None) is not None:
        return _train_feedback(args, config, payload)
    train_set, test_set = open_data(config, strict=args.strict)
    fresh = out is None
    if fresh:  # made only now: a command refused above leaves no empty folder behind
        out = new_run_folder(config.model)
    assert out is not None  # given or made
    # and one refused below (a --val-fraction the training set cannot take) takes it back
    with removed_if_left_empty(out) if fresh else contextlib.nullcontext():
        trainer = Trainer(
            config, train_set, test_set, out, progress=progress(args), resume_from=payload
        )
        result = trainer.run()
    summary = result.metrics.summary() if result.metrics else None
    text = f"run folder: {result.out_dir}\ncheckpoint: {result.checkpoint}"
    chosen = result.validation
    if chosen:
        text = (
            f"selected snapshot: iteration {result.snapshot} (held-out video AUC "
            f"{chosen['video_auc']:.4f}; threshold {chosen['threshold']:.4f} at a held-out false-"
            f"alarm rate of {chosen['false_alarm_rate']:.4f})\n" + text
        )
    if result.metrics:
        what = "selected snapshot" if chosen else "last snapshot"
        title = f"test set, {what}, iteration {result.snapshot}"
        text = metrics_table(result.metrics, title) + "\n" + text
    emit(
        args,
        {
            "out": str(result.out_dir),
            "checkpoint": str(result.checkpoint),
            "iterations": result.iterations,
            "snapshot_iteration": result.snapshot,
            "validation": chosen,
            "metrics": summary,
        },
        text,
    )
    return 0


def _train_feedback(
    args: argparse.Namespace, config: TrainConfig, payload: Mapping[str, Any] | None
) -> int:
    """`train --resume RUN --feedback STORE`: the run's training videos plus the verdicts'
    (`live.feedback.feedback_videos`), trained on from RUN's checkpoint into a new version
    RUN/versions/N (its `train/` folder a run folder of its own), put in use once done."""
    from ..data.dataset import FeatureDataset
    from ..errors import DataError
    from ..live.feedback import feedback_videos
    from ..store import open_store
    from ..training import feedback as versions

    if payload is None:
        raise ValueError("--feedback STORE goes with --resume RUN (the run the verdicts judge)")
    if getattr(args, "out", None) is not None:
        raise ValueError(
            "--feedback trains into a new version of the run (RUN/versions/N): no --out"
        )
    run = versions.run_folder(args.resume)
    if run is None:
        raise ValueError(f"--resume {args.resume}: --feedback needs the run folder, not a file")
    if not objective_entry(model_entry(config.model).objective).gradient:
        raise ValueError(
            f"{config.model} learns from verdicts without training: arnet feedback apply {run} "
            f"--db {args.feedback} (or a watcher of the run applies them)"
        )
    train_set, test_set = open_data(config, strict=args.strict)
    with open_store(args.feedback, "read") as store:
        names, labels, features = feedback_videos(store, run)
        last = store.latest_verdict_id(str(run))
        where = store.url
    if not names:
        raise DataError(f"{where}: no verdict with segments on alerts of {run}")
    if features[0].shape[1:] != train_set.features(0).shape[1:]:
        raise DataError(
            f"{where}: the alerts' segments have {features[0].shape[1:]} features, the run's "
            f"training videos {train_set.features(0).shape[1:]}"
        )
    n = len(train_set)
    videos = FeatureDataset(
        train_set.names + names,
        [*train_set.labels.tolist(), *labels],
        [train_set.features(i) for i in range(n)] + features,
        [*train_set.frame_labels, *([None] * len(names))],
        [*train_set.sources, *(f"{where} ({name})" for name in names)],
    )
    with versions.versions_lock(run):
        parent = versions.current_version(run)
        number = versions.reserve_version(run)
    out = versions.versions_dir(run) / str(number) / versions.VERSION_TRAINING
    result = Trainer(
        config, videos, test_set, out, progress=progress(args), resume_from=payload
    ).run()
    found = versions.Examples()
    for name, label, rows in zip(names, labels, features):
        found = found.add("anomalous" if label else "normal", int(name.rsplit("-", 1)[1]), rows)
    record = {
        "what": f"trained on from iteration {payload['iteration']} to {result.iterations} with "
        f"{len(names)} verdict video(s) from {where}",
        "by": "arnet train --feedback",
        "store": where,
        "last_verdict": last,
        "checkpoint": str(result.checkpoint),
        "metrics": result.metrics.summary() if result.metrics else None,
    }
    with versions.versions_lock(run):
        versions.write_version(run, parent, found, record, number)
    summary = result.metrics.summary() if result.metrics else None
    text = f"version {number} of {run} in use (from {parent}): {len(names)} verdict video(s)"
    text += f"\ncheckpoint: {result.checkpoint}"
    if result.metrics:
        text = metrics_table(result.metrics, f"test set, version {number}") + "\n" + text
    emit(args, {"run": str(run), "version": number, "parent": parent, "metrics": summary}, text)
    return 0


def _train_seeds(
    args: argparse.Namespace,
    config: TrainConfig,
    seeds: list[int],
    out: Path | None,
    payload: Mapping[str, Any] | None,
) -> int:
    if payload is not None:
        raise ValueError("--seeds starts new runs; resume one seed's run folder instead")
    train_set, test_set = open_data(config, strict=args.strict)
    fresh = out is None
    if fresh:
        out = new_run_folder(config.model)
    assert out is not None  # given or made
    with removed_if_left_empty(out) if fresh else contextlib.nullcontext():
        summary = train_seeds(config, seeds, train_set, test_set, out, progress(args))
    text = seeds_table(summary) + f"\nruns: {out}/seed-N; summary: {out / 'seeds.json'}"
    emit(args, {"out": str(out), **summary}, text)
    return 0


def run_test(args: argparse.Namespace) -> int:
    payload = load_checkpoint(args.checkpoint)
    overrides = {"plot": True}  # a test run plots unless told not to, whatever training did
    given = config_overrides(args)
    overrides.update({k: given[k] for k in config_fields("test") if k in given})
    saved = dict(payload["config"])
    if "data" in overrides:  # the training data's layout options do not describe new data
        for name in config_fields("layout"):
            saved.pop(name, None)
    # Where and how the training ran says nothing about this machine: the device is this
    # command's (default auto), the features are read lazily unless --larger_mem 1 is given.
    saved.pop("device", None)
    saved.pop("in_memory", None)
    # The threshold the run chose on its held-out videos (--val-fraction) unless one is given.
    saved["threshold"] = payload.threshold
    config = TrainConfig.from_dict({**saved, **overrides})
    config.validate()
    device = resolve_device(config.device)
    if config.precision == "fp16" and device.type != "cuda":
        warnings.warn("the run trained in fp16, which needs CUDA: testing in fp32", stacklevel=1)
        config = dataclasses.replace(config, precision="fp32")
    model = payload.model(device)
    test_set = open_data(config, split="test", strict=args.strict)
    takes = input_dim(model) or test_set.dim
    if test_set.dim != takes:
        raise ValueError(
            f"{payload['path']}: the model takes {takes}-d features, the test set has "
            f"{test_set.dim}-d ({test_set.sources[0]})"
        )
    ckpt_path = payload.path
    run = payload.run_folder.path if payload.run_folder is not None else ckpt_path.parent
    what = "write test results into a new or empty --out (or leave --out out)"
    out = output_folder(getattr(args, "out", None), run, f"test-{ckpt_path.stem}", what)
    if config.reuse_memory:
        keep_freed_memory()
    with claim_empty_folder(out, "arnet test", what):
        result = evaluate_model(
            prepare_model(model, device, config.precision, config.compile),
            test_set,
            device,
            crop_mode=config.test_crop,
            frames_per_segment=config.frames_per_segment,
            threshold=config.threshold,
            out_dir=out,
            plot=config.plot,
            iteration=payload["iteration"],
            fps=event_fps(config, test_set),
        )
    metrics = result.metrics
    assert metrics is not None  # labels are required: a video without them raised
    text = metrics_table(metrics, f"{ckpt_path} (iteration {payload['iteration']})")
    if args.per_video:
        text += "\n\n" + per_video_table(metrics)
    text += f"\nresults: {out}" + (f"\nplots: {out / 'plots'}" if config.plot else "")
    emit(
        args,
        {
            "out": str(out),
            "checkpoint": str(ckpt_path),
            "metrics": metrics.summary(),
            "per_video": [vars(v) for v in metrics.per_video] if args.per_video else None,
        },
        text,
    )
    return 0


def run_demo(args: argparse.Namespace) -> int:
    given = getattr(args, "out", None)
    if given:
        require_empty(Path(given), "write the demo into a new or empty --out")
    out = Path(given) if given else new_run_folder("demo")
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, flush=True))
    data = write_synthetic(out / "data", synth_config(args))
    log(f"synthetic dataset: {data}")
    train_set, test_set = open_dataset(data, in_memory=True)
    model = resolve_model_name(args.model)
    runs: dict[str, dict[str, Any]] = {"arnet": {}}
    takes = objective_entry(model_entry(model).objective).arguments()
    if not args.no_baseline and not set(NAIVE_BASELINE) <= set(takes):
        # The baseline changes MIL options, which a model with its own losses ignores.
        log(f"no naive baseline for {model}: it trains with its own losses, not MIL")
    elif not args.no_baseline:
        # Each video's label on all of its segments: top-k with k = 1 takes every segment.
        runs["naive baseline"] = NAIVE_BASELINE
    results, texts = {}, []
    for name, changes in runs.items():
        config = TrainConfig(
            data=str(data),
            model=model,
            model_args=dict(args.model_args),
            iterations=args.iterations,
            snapshot_every=max(args.iterations // 3, 1),
            seed=args.seed,
            device=args.device,
            tensorboard=False,
            **changes,
        )
        started = time.perf_counter()
        log(f"training {name} ({model}, {args.iterations} iterations)")
        result = train(
            config, train_set, test_set, out / name.replace(" ", "_"), progress=progress(args)
        )
        seconds = time.perf_counter() - started
        assert result.metrics is not None  # the synthetic test videos have frame labels
        results[name] = {
            "metrics": result.metrics.summary(),
            "seconds": round(seconds, 1),
            "out": str(result.out_dir),
        }
        texts.append(metrics_table(result.metrics, f"{name}: {model}, {seconds:.0f} s"))
        texts.append(
            f"plots: {result.out_dir / 'plots'}\nreport: {result.out_dir / 'report.html'}\n"
        )
    emit(args, {"data": str(data), "model": model, "results": results}, "\n".join(texts))
    return 0


def run_models(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    for entry in list_models():
        params = count_parameters(create_model(entry.name, args.feature_dim))
        options = objective_entry(entry.objective).arguments()
        rows.append(
            {
                "name": entry.name,
                "parameters": params,
                "description": entry.description,
                "objective": entry.objective,
                "objective_options": options,
                "train_defaults": dict(entry.train_defaults),
                "citation": entry.citation,
            }
        )
    width = max(len(r["name"]) for r in rows)
    text = "\n".join(
        f"{r['name']:<{width}}  {r['parameters']:>11,}  {r['description']}" for r in rows
    )
    objectives = {r["objective"]: r["objective_options"] for r in rows}
    text += "\n\nobjectives and their options (--objective-arg KEY=VALUE):\n" + "\n".join(
        f"{name}: " + (", ".join(f"{k}={v}" for k, v in opts.items()) or "none (fitted in one go)")
        for name, opts in objectives.items()
    )
    own = [r for r in rows if r["train_defaults"]]
    text += "\n\ntraining defaults of their own (any option given wins):\n" + "\n".join(
        f"{r['name']}: "
        + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in r["train_defaults"].items())
        for r in own
    )
    emit(
        args,
        {"feature_dim": args.feature_dim, "models": rows},
        f"models (parameters at feature dimension {args.feature_dim}):\n{text}",
    )
    return 0
