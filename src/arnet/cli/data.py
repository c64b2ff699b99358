"""Commands on datasets: `arnet synth`, `arnet inspect`, `arnet pack`."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..config import TrainConfig
from ..formats import build_catalog, open_catalog
from ..formats.packed import pack_catalog
from ..formats.synth import SynthConfig, write_synthetic
from ..formats.validate import inspect_catalog, render
from .common import config_overrides, emit, layout


def synth_config(args: argparse.Namespace) -> SynthConfig:
    """The SynthConfig of the synthetic-data options (`arnet synth`, `arnet demo`)."""
    return SynthConfig(
        train_videos=args.train_videos,
        train_anomalous=args.train_anomalous,
        test_videos=args.test_videos,
        test_anomalous=args.test_anomalous,
        dim=args.dim,
        scenes=args.scenes,
        min_segments=args.min_segments,
        max_segments=args.max_video_segments,
        difficulty=args.difficulty,
        distractor_rate=args.distractor_rate,
        crops=args.crops,
        seed=args.data_seed,
    )


def run_synth(args: argparse.Namespace) -> int:
    cfg = synth_config(args)
    out = write_synthetic(Path(args.out), cfg, modal=args.modal, overwrite=args.overwrite)
    emit(
        args,
        {"out": str(out), "modal": args.modal, "config": dataclasses.asdict(cfg)},
        f"wrote a synthetic dataset to {out} "
        f"({cfg.train_videos} train / {cfg.test_videos} test videos, dim {cfg.dim})",
    )
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    config = TrainConfig(**config_overrides(args))
    assert config.data is not None  # DATA is a required argument
    catalog = build_catalog(config.data, config.format, strict=args.strict, **layout(config))
    report = inspect_catalog(catalog, values=not args.skip_values)
    emit(args, report.to_dict(), render(report))
    return 0 if report.ok else 1


def run_pack(args: argparse.Namespace) -> int:
    config = TrainConfig(**config_overrides(args))
    assert config.data is not None  # SRC is a required argument
    catalog = open_catalog(
        build_catalog(config.data, config.format, strict=args.strict, **layout(config))
    )
    out = pack_catalog(catalog, args.out, args.dtype, args.overwrite)
    size = sum(f.stat().st_size for f in out.iterdir())
    counts = {split: len(catalog.split(split)) for split in ("train", "test")}
    segments = sum(v.segments for v in catalog.videos)
    emit(
        args,
        {"out": str(out), "dtype": args.dtype, "bytes": size, "segments": segments, **counts},
        f"packed {counts['train']} train and {counts['test']} test videos ({segments:,} "
        f"segments, {args.dtype}) into {out} ({size / 2**20:.1f} MiB)",
    )
    return 0
