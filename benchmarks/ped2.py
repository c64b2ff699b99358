"""UCSD Ped2, weakly supervised: real frames -> features -> AR-Net, beside two baselines.

    python benchmarks/ped2.py                                     # every variant (slow)
    python benchmarks/ped2.py --variants motion-flow,motion-combine --random-seeds 1

1. Extract features of all 28 videos (cached: a second run reuses them). Variants:
   - pooled: EfficientNet-Lite0, whole frame (--crop full, short side 224), each frame's
     feature map max-pooled over space (--spatial max), averaged per 16-frame segment;
   - motion-rgb, motion-flow, motion-combine: the motion-grid backbone (no weights) on frames
     resized to a short side of 120 with Farneback flow: per cell of an 8 x 12 grid, frame
     differences (rgb), flow magnitude, moving fraction, speed and direction (flow), or both.
2. Per variant and per split, three methods, video labels only:
   - AR-Net: the `single` model with the paper's losses and optimiser, 200 iterations (the
     paper's 20 epochs of 10 videos), the last snapshot (fixed in advance), one run per seed;
   - naive: the same model trained with every segment labelled with its video's label;
   - nearest normal (`arnet train --model nearest-normal`): no training; a segment's mean
     distance to its k = 20 nearest normal training segments, each statistic scaled by its
     spread over the normal training segments, alert threshold chosen on the training videos
     (arnet/models/normal.py: between the largest leave-one-video-out normal distance and the
     smallest peak of an anomalous training video); `--nearest group:1,plain:1,...` adds rows
     of other scalings (group, feature, plain: none) and k, `--ablations` rows with each
     statistic dropped or alone and scales fitted on every video (docs/ped2.md);
   - any registered model name (`arnet models`: rtfm, mgfn, urdmu, bnwvad, ...): that model
     with its registry `train_defaults` (its paper's schedule: learning rate, weight decay,
     uniform segments, crops), capped where two shared CPU cores cannot run it
     (benchmarks/schedules.py, as benchmarks/methods.py caps it), for the same --iterations
     as AR-Net. It scores whole segments: a grid feature (all cells of a segment, one vector)
     is one view of the whole frame, as the papers' single-crop features are
     (docs/methods.md, "On UCSD Ped2"). benchmarks/methods_ped2.py makes the methods table
     from the --json files.
3. Splits: the literature's weak split, and --random-splits (default 20) random weak splits
   (6 anomalous + 4 normal training videos drawn with numpy's default_rng(r), r = 1..N; every
   other video is a test video). The nearest-normal rows are compared by leave-one-split-out:
   for each random split, the row with the best mean AUC over the other splits, scored on it.

Event figures (arnet.evaluation.metrics.event_metrics) at each method's threshold, at --fps
(default 10): event recall (share of anomalous ranges with an alert overlapping), false alerts
per hour of normal test video, mean delay from an event's start to its first alert.

Options for the trained methods: `--instances cells` scores every cell of the grid variants
(`arnet train --instances cells`: a segment is its highest cell); `--val-fraction F` holds out
a share of the training videos (`arnet train --val-fraction`), which choose the snapshot (best
held-out video AUC) and the alert threshold (at most 5% of held-out normal frames above it);
snapshots then come every `--iterations / 10` iterations.

Frame-level AUC, AP and false-alarm rates at 0.5 (for the nearest normal: at its threshold
chosen on training videos; for AR-Net: the fixed 0.5, or with --val-fraction the threshold
chosen on the held-out videos) as mean ± sample std over seeds, and
over random splits of each split's mean. No figure is chosen on test labels. The published
weakly supervised Ped2 figure is AUC 93.2% (Zhong et al., CVPR 2019, TSN features).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # schedules.py, beside this file
DEFAULT_DATA = Path(os.environ.get("ARNET_PED2", REPO.parent / "shared" / "data" / "ucsd-ped2"))
DEFAULT_CACHE = REPO / "benchmarks" / ".cache" / "ped2"
METRICS = ("auc", "auc_anomalous", "ap", "far_all", "far_normal", "far_anomalous")
VARIANTS = ("pooled", "motion-rgb", "motion-flow", "motion-combine")
METHODS = ("arnet", "naive", "nearest")  # and any registered model name (method_names)
TABLE_METRICS = ("auc", "ap", "far_all", "far_normal", "event_recall", "false_alerts_per_hour",
                 "event_delay_s")  # fmt: skip
LABELS = {
    "arnet": "AR-Net (single, DMIL + center)",
    "naive": "naive (video label)",
    "nearest": "nearest normal (no training)",
}


def extract(args: argparse.Namespace, variant: str) -> tuple[Path, str, str, float, bool, int]:
    """Features of every Ped2 video under the cache.

    Returns (folder, backbone, modal, seconds, were cached, frames)."""
    from arnet.extract import (
        ExtractConfig,
        FeatureExtractor,
        Preprocessing,
        create_backbone,
        extract_dataset,
        find_inputs,
    )
    from arnet.extract.flow import FlowSettings
    from arnet.extract.video import check_frame_counts
    from arnet.formats.ped2 import read_frame_dataset
    from arnet.training.runtime import resolve_device

    dataset = read_frame_dataset(args.data)
    check_frame_counts(dataset)
    frames = sum(a.frames for a in dataset.annotations.values())
    if variant == "pooled":
        spatial = "" if args.spatial == "mean" else f"-{args.spatial}"
        tag = f"{args.backbone}-{args.pool}{spatial}-s{args.short_side}-{args.crop}"
        if args.crop != "full":
            tag += f"{args.crop_size}"
        if args.frame_stride > 1:
            tag += f"-k{args.frame_stride}"
        if args.runtime != "torch":  # same features to float rounding: its own cache, to compare
            tag += f"-{args.runtime}"
        runtime = {} if args.runtime == "torch" else {"runtime": args.runtime}
        backbone, modal = args.backbone, "rgb"
        backbones = {
            "rgb": create_backbone(backbone, pool=args.pool, spatial=args.spatial, **runtime)
        }
        pre = Preprocessing(
            short_side=args.short_side,
            crop=args.crop,
            crop_size=args.crop_size,
            frame_stride=args.frame_stride,
        )
        flow = FlowSettings()
    else:  # one extraction gives the three motion variants
        tag = f"motion-grid-{args.grid}-s{args.motion_short_side}-farneback"
        backbone, modal = "motion-grid", variant.split("-")[1]
        backbones = {m: create_backbone(backbone, m, grid=args.grid) for m in ("rgb", "flow")}
        pre = Preprocessing(short_side=args.motion_short_side, crop="full")
        flow = FlowSettings(method="farneback")
    out = Path(args.cache) / tag
    timing = out / "extraction_seconds.json"
    config = ExtractConfig(pre, flow=flow, batch_size=args.batch_size)
    extractor = FeatureExtractor(backbones, config, resolve_device(args.device))
    videos = find_inputs([str(p) for p in dataset.videos.values()])
    summary = extract_dataset(
        videos,
        out,
        extractor,
        annotations=dataset.annotations,
        splits=dataset.splits,
        progress=not args.quiet,
    )
    if summary.extracted:
        previous = json.loads(timing.read_text()) if timing.is_file() and summary.skipped else {}
        seconds = previous.get("seconds", 0.0) + summary.seconds
        timing.write_text(json.dumps({"seconds": seconds}) + "\n")
        return out, backbone, modal, seconds, False, frames
    seconds = json.loads(timing.read_text())["seconds"] if timing.is_file() else float("nan")
    return out, backbone, modal, seconds, True, frames


def feature_groups(features: Path, backbone: str, modal: str) -> list[int] | None:
    """The statistic of each feature of a grid backbone (None: one group), as recorded."""
    from arnet.formats.extraction import feature_groups as groups_of

    meta = json.loads((features / "features_video" / backbone / "extraction.json").read_text())
    return groups_of(meta.get("backbones", {}), modal)


def random_splits(train, test, n: int) -> list[tuple[str, list[str], list[str]]]:
    """The weak split and n random weak splits (6 anomalous + 4 normal training videos)."""
    names = train.names + test.names
    labels = dict(zip(names, [*train.labels.tolist(), *test.labels.tolist()]))
    anomalous = sorted(v for v in names if labels[v])
    normal = sorted(v for v in names if not labels[v])
    out = [("weak", list(train.names), list(test.names))]
    for r in range(1, n + 1):
        rng = np.random.default_rng(r)
        chosen = [*rng.choice(anomalous, 6, replace=False), *rng.choice(normal, 4, replace=False)]
        chosen = [str(v) for v in chosen]
        out.append((f"random{r}", chosen, [v for v in anomalous + normal if v not in chosen]))
    return out


def nearest_normal(train, test, groups, scaling=None, neighbours=None, keep=None, scale=None):
    """Training-free baseline, as `arnet train --model nearest-normal` fits it (its defaults
    unless `scaling` / `neighbours` are given). Ablations: `keep`, the feature columns to use
    (the others dropped before the fit); `scale`, per-feature scales replacing the fitted ones
    (the threshold is then refitted on them)."""
    import torch

    from arnet.evaluation.evaluate import predict
    from arnet.models.normal import DEFAULT_NEIGHBOURS, DEFAULT_SCALING, fit_bank

    scaling = DEFAULT_SCALING if scaling is None else scaling
    neighbours = DEFAULT_NEIGHBOURS if neighbours is None else neighbours
    cols = slice(None) if keep is None else np.asarray(keep)
    videos = [np.asarray(train.features(i), dtype=np.float32)[:, cols] for i in range(len(train))]
    if scale is not None:  # fixed scales: divide first, then fit without scaling
        videos = [v / scale[cols] for v in videos]
        test = _scaled(test, scale, cols)
        scaling = "plain"
    elif keep is not None:
        test = _scaled(test, np.ones(train.dim, dtype=np.float32), cols)
    kept_groups = None if groups is None else [int(g) for g in np.asarray(groups)[cols]]
    model, fit = fit_bank(videos, train.labels.tolist(), kept_groups, scaling, neighbours)
    with torch.no_grad():
        scores = predict(model, test)
    return scores, fit.to_dict()


def _scaled(dataset, scale, cols):
    from arnet.data.dataset import FeatureDataset

    return FeatureDataset(
        dataset.names,
        dataset.labels.tolist(),
        [
            np.asarray(dataset.features(i), np.float32)[:, cols] / scale[cols]
            for i in range(len(dataset))
        ],
        dataset.frame_labels,
        dataset.sources,
    )


def nearest_variants(text: str) -> dict[str, tuple[str, int]]:
    """ "group:1,none:1" -> {"nearest-group-k1": ("group", 1), ...}."""
    from arnet.models.normal import SCALINGS

    out = {}
    for item in (t for t in text.split(",") if t):
        scaling, _, k = item.partition(":")
        if scaling not in SCALINGS or not k.isdigit() or int(k) < 1:
            raise ValueError(f"--nearest {item!r}: SCALING:K with SCALING in {SCALINGS}, K >= 1")
        out[f"nearest-{scaling}-k{int(k)}"] = (scaling, int(k))
    return out


def method_fields(method: str) -> tuple[dict, dict, dict]:
    """TrainConfig fields of a trained method (model, model_args, its schedule), the caps
    applied and the narrowed constructor arguments. arnet: `single` with the config's
    defaults (the paper's); naive: the same with every segment labelled with its video's
    label; a registry name: that model with its registry `train_defaults` (its paper's
    schedule), capped as in benchmarks/methods.py (`schedules.CAPS`, `NARROW`), the
    iteration count left to the caller (every trained method gets the same budget)."""
    from arnet.config import NAIVE_BASELINE

    if method == "arnet":
        return {"model": "single"}, {}, {}
    if method == "naive":
        return {"model": "single", **NAIVE_BASELINE}, {}, {}
    from schedules import schedule

    fields, capped, narrowed = schedule(method)
    fields.pop("iterations", None)
    return fields, capped, narrowed


def train_and_score(train, test, seed: int, iterations: int, method: str, options: dict):
    """One trained run of `method` (arnet, naive or a registry model, `method_fields`);
    `options`: device, instances, val_fraction, fps, and the features' data /
    feature_backbone / feature_modal (where --instances cells reads the grid)."""
    from arnet.config import TrainConfig
    from arnet.training.trainer import train as run_training

    fields, _, _ = method_fields(method)
    every = max(1, iterations // 10) if options.get("val_fraction") else iterations
    config = TrainConfig(
        iterations=iterations,
        snapshot_every=every,
        seed=seed,
        plot=False,
        tensorboard=False,
        log_every=max(iterations, 1),
        **{**fields, **options},  # --lr, when given, wins over a method's own
    )
    with tempfile.TemporaryDirectory(prefix="ped2-run-") as folder:
        started = time.perf_counter()
        result = run_training(config, train, test, folder, progress=False)
        seconds = time.perf_counter() - started
    if result.metrics is None:
        raise RuntimeError("training ended without an evaluation of the test split")
    return result.metrics, seconds


def method_cost(method: str, train, options: dict) -> dict:
    """A trained method's parameters (built for the features) and seconds per 1,000
    training iterations on the weak split's training videos (10 steps after 2 warm-up
    steps, `schedules.seconds_per_1000`), with its schedule and caps."""
    from schedules import parameters, seconds_per_1000

    fields, capped, narrowed = method_fields(method)
    run_fields = {**fields, **options, "seed": 1, "plot": False, "tensorboard": False}
    dim = train.dim if options.get("instances") != "cells" else None
    return {
        "model": fields["model"],
        "parameters": parameters(fields["model"], dim, narrowed) if dim else None,
        "seconds_per_1000": seconds_per_1000(run_fields, train),
        "capped": capped,
        "narrowed": narrowed,
        "schedule": {k: v for k, v in fields.items() if k not in ("model", "model_args")},
        # a step draws min(videos_per_class, class size) videos of each class
        "train_videos": {"anomalous": int(train.labels.sum()), "all": len(train)},
    }


def trains_on_cells(method: str) -> bool:
    """Whether --instances cells can train `method` (its objective reads scores only)."""
    from arnet.models import model_entry
    from arnet.models.registry import objective_entry

    if method in METHODS:
        return True
    return objective_entry(model_entry(method).objective).scores_only


def method_names() -> tuple[str, ...]:
    """What --methods accepts: arnet, naive, nearest, and every registered model."""
    from arnet.models import list_models

    return (*METHODS, *(e.name for e in list_models() if e.name not in METHODS))


def mean_std(values: list[float]) -> tuple[float, float]:
    clean = [v for v in values if v is not None and np.isfinite(v)]
    if not clean:
        return float("nan"), float("nan")
    return statistics.fmean(clean), statistics.stdev(clean) if len(clean) > 1 else 0.0


def _percent(stat: tuple[float, float], with_std: bool, width: int) -> str:
    mean, std = stat
    if not np.isfinite(mean):
        return f"{'-':>{width}}"
    text = f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if with_std else "")
    return f"{text:>{width}}"


def run_variant(args, variant: str, device: str) -> dict:
    """Every method on every split of one feature variant: {"runs": ..., "table": ...}."""
    from arnet.evaluation.evaluate import evaluate
    from arnet.formats.ped2 import load_ped2

    features, backbone, modal, extraction_s, cached, frames = extract(args, variant)
    train, test = load_ped2(args.data, features, backbone=backbone, modal=modal)
    groups = feature_groups(features, backbone, modal)
    options = {
        "device": device,
        "instances": args.instances if variant != "pooled" else "segment",  # pooled: no grid
        "val_fraction": args.val_fraction,
        "fps": args.fps,
        "data": str(features),
        "feature_backbone": backbone,
        "feature_modal": modal,
        **({} if args.lr is None else {"lr": args.lr}),
    }
    every = {"weak": (train, test)}
    whole_names = train.names + test.names
    whole = [(train, i) for i in range(len(train))] + [(test, i) for i in range(len(test))]
    for name, tr, te in random_splits(train, test, args.random_splits)[args.splits_from :]:
        tr_ds = _subset(whole, whole_names, tr)
        te_ds = _subset(whole, whole_names, te)
        every[name] = (tr_ds, te_ds)
    iterations = args.iterations or 20 * len(train)  # one epoch = one pass of training videos
    fitted = nearest_methods(args, features, backbone, modal, groups, [train, test])
    methods = [m for m in args.methods if m != "nearest"]
    runs: dict[str, dict[str, list]] = {m: {} for m in [*fitted, *methods]}
    costs = {m: method_cost(m, train, options) for m in methods}
    for split, (tr, te) in every.items():
        seeds = args.seeds if split == "weak" else args.random_seeds
        for method, kwargs in fitted.items():
            started = time.perf_counter()
            scores, fit = nearest_normal(tr, te, groups, **kwargs)
            summary = evaluate(scores, te, fps=args.fps).summary()
            summary.update(seconds=time.perf_counter() - started, fit=fit)
            runs[method][split] = [summary]
        for method in methods:
            for seed in range(1, seeds + 1):
                metrics, s = train_and_score(tr, te, seed, iterations, method, options)
                runs[method].setdefault(split, []).append({**metrics.summary(), "seconds": s})
                if not args.quiet:
                    print(f"  {variant} {split} {method} seed {seed}: AUC {metrics.auc:.4f}",
                          file=sys.stderr)  # fmt: skip
        if args.json:  # what a long run has measured so far, split by split
            partial = Path(args.json).with_suffix(".partial.json")
            partial.write_text(json.dumps({"variant": variant, "runs": runs}, default=float) + "\n")
    return {
        "nearest_methods": {
            k: {a: str(b) for a, b in v.items() if a != "keep"} for k, v in fitted.items()
        },
        "features": {
            "backbone": backbone,
            "modal": modal,
            "dim": train.dim,
            "extraction_seconds": extraction_s,
            "extraction_ms_per_frame": 1000 * extraction_s / frames,
            "extraction_cached": cached,
            "groups": "per statistic" if groups else "one",
        },
        "iterations": iterations,
        "costs": costs,
        "runs": runs,
    }


def nearest_methods(args, features, backbone, modal, groups, datasets) -> dict[str, dict]:
    """The nearest-normal rows to run: {method: nearest_normal keyword arguments}.

    "nearest" (the defaults) when asked for; the --nearest variants; with --ablations on a
    grid variant, all at k = 1 (the recipe before k-nearest averaging): each statistic dropped
    ("k1-drop-STAT", group scaling), each statistic alone unscaled ("k1-plain-only-STAT"), and
    the per-statistic scales fitted on all 28 videos' features instead of the four normal
    training videos ("k1-scale-all-videos": a diagnostic that sees test features, never
    labels)."""
    out: dict[str, dict] = {}
    if "nearest" in args.methods:
        out["nearest"] = {}
    for name, (scaling, k) in nearest_variants(args.nearest).items():
        out[name] = {"scaling": scaling, "neighbours": k}
    if args.ablations and groups is not None:
        meta = json.loads((features / "features_video" / backbone / "extraction.json").read_text())
        stats = [s for part in ("rgb", "flow") if part in modal or modal == "combine"
                 for s in meta["backbones"][part]["stats"]]  # fmt: skip
        ids = np.asarray(groups)
        for g, stat in enumerate(stats):  # at k = 1: the recipe whose losses are explained
            out[f"k1-drop-{stat}"] = {"keep": np.flatnonzero(ids != g), "neighbours": 1}
            out[f"k1-plain-only-{stat}"] = {
                "keep": np.flatnonzero(ids == g),
                "scaling": "plain",
                "neighbours": 1,
            }
        every = np.concatenate(
            [np.asarray(ds.features(i), np.float64) for ds in datasets for i in range(len(ds))]
        )
        scale = np.ones(every.shape[1], dtype=np.float32)
        for g in np.unique(ids):
            sd = float(every[:, ids == g].std())
            scale[ids == g] = sd if sd > 0 else 1.0
        out["k1-scale-all-videos"] = {"scale": scale, "neighbours": 1}
    return out


def leave_one_split_out(runs: dict, candidates: list[str]) -> dict:
    """The nearest-normal default chosen without the reported split's labels: for each random
    split, the candidate with the best mean AUC over the *other* random splits, and its AUC on
    the split; also the choice made on the first half of the splits, reported on the second."""
    names = [k for k in runs[candidates[0]] if k != "weak"]
    auc = {c: {k: runs[c][k][0]["auc"] for k in names} for c in candidates}
    folds = []
    for k in names:
        best = max(candidates, key=lambda c: statistics.fmean(auc[c][o] for o in names if o != k))
        folds.append({"split": k, "chosen": best, "auc": auc[best][k]})
    half = len(names) // 2
    first, second = names[:half], names[half:]
    chosen = (
        max(candidates, key=lambda c: statistics.fmean(auc[c][o] for o in first)) if first else None
    )
    return {
        "folds": folds,
        "loso_auc": mean_std([f["auc"] for f in folds]),
        "chosen_every_fold": sorted({f["chosen"] for f in folds}),
        "first_half": first,
        "chosen_on_first_half": chosen,
        "second_half_auc": mean_std([auc[chosen][k] for k in second]) if chosen else None,
        "second_half_auc_all": {c: mean_std([auc[c][k] for k in second]) for c in candidates},
    }


def _subset(whole, names: list[str], chosen: list[str]):
    from arnet.data.dataset import FeatureDataset

    rows = [whole[names.index(v)] for v in chosen]
    return FeatureDataset(
        chosen,
        [int(ds.labels[i]) for ds, i in rows],
        [ds.features(i) for ds, i in rows],
        [ds.frame_labels[i] for ds, i in rows],
        [ds.sources[i] for ds, i in rows],
    )


def table(result: dict) -> dict:
    """Per method: weak-split mean ± std over seeds; random splits: mean ± std of split means."""
    out = {}
    for method, per_split in result["runs"].items():
        row: dict = {}
        weak = per_split.get("weak", [])
        for m in TABLE_METRICS:
            row[f"weak_{m}"] = mean_std([r[m] for r in weak])
            split_means = [
                mean_std([r[m] for r in v])[0] for k, v in per_split.items() if k != "weak"
            ]
            row[f"random_{m}"] = mean_std(split_means)
            finite = [v for v in split_means if np.isfinite(v)]
            row[f"random_{m}_min"] = min(finite) if finite else float("nan")
            row[f"random_{m}_max"] = max(finite) if finite else float("nan")
        row["runs_weak"] = len(weak)
        row["runs_random"] = sum(len(v) for k, v in per_split.items() if k != "weak")
        out[method] = row
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="the ucsd-ped2 folder (ARNET_PED2)")
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="where features are cached")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"among {', '.join(VARIANTS)}")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"among {', '.join(METHODS)}, or any registered model name (`arnet "
                   "models`: trained with its paper's schedule, capped where too slow here, "
                   "for --iterations)")  # fmt: skip
    p.add_argument("--seeds", type=int, default=5, help="training seeds 1..N on the weak split")
    p.add_argument("--random-splits", type=int, default=20, help="random weak splits (0: none)")
    p.add_argument("--nearest", default="",
                   help="nearest-normal variants beside the default row, SCALING:K,... (scaling "
                   "group, feature or none; K nearest normal segments averaged)")  # fmt: skip
    p.add_argument("--ablations", action="store_true",
                   help="grid variants: nearest normal with each statistic dropped, each alone "
                   "unscaled, and scales fitted on every video's features")  # fmt: skip
    p.add_argument("--fps", type=float, default=10.0,
                   help="frame rate of the event figures (UCSD Ped2: 10)")  # fmt: skip
    p.add_argument("--splits-from", type=int, default=1, metavar="K",
                   help="run the random splits K..N only (to add splits to an earlier run; "
                   "--seeds 0 skips the weak split)")  # fmt: skip
    p.add_argument("--random-seeds", type=int, default=1, help="training seeds per random split")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate of every trained method (default: its own)")  # fmt: skip
    p.add_argument("--iterations", type=int, default=None,
                   help="training iterations (default: the paper's 20 epochs = 200)")  # fmt: skip
    p.add_argument("--backbone", default="efficientnet-lite0", help="pooled variant's backbone")
    p.add_argument("--pool", default="mean", choices=("mean", "mean_std", "mean_diff"))
    p.add_argument("--spatial", default="max", choices=("mean", "max"),
                   help="pooling of each frame's feature map over space")  # fmt: skip
    p.add_argument("--short-side", type=int, default=224, help="pooled variant")
    p.add_argument("--crop", default="full", choices=("full", "center", "ten"))
    p.add_argument("--crop-size", type=int, default=224)
    p.add_argument("--grid", default="8x12", help="motion variants: cells, ROWSxCOLS")
    p.add_argument("--motion-short-side", type=int, default=120, help="motion variants")
    p.add_argument("--batch-size", type=int, default=8, help="segments per forward pass")
    p.add_argument("--runtime", default="torch", choices=("torch", "onnxruntime", "openvino"))
    p.add_argument("--frame-stride", type=int, default=1, help="encode every k-th frame")
    p.add_argument(
        "--instances",
        default="segment",
        choices=("segment", "cells"),
        help="trained methods on the motion variants: score segments or cells",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        help="trained methods: held-out training videos choose the snapshot and threshold",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the figures here")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    args.methods = [m for m in args.methods.split(",") if m]
    try:
        nearest_variants(args.nearest)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    for given, allowed, option in ((args.variants, VARIANTS, "--variants"),
                                   (args.methods, method_names(), "--methods")):  # fmt: skip
        bad = [v for v in given if v not in allowed]
        if bad or not given:
            print(f"{option}: {bad[0] if bad else 'nothing'} is not among {allowed}",
                  file=sys.stderr)  # fmt: skip
            return 2
    if not 1 <= args.splits_from <= max(1, args.random_splits) or args.seeds < 0:
        print(f"--splits-from {args.splits_from} / --seeds {args.seeds}: need 1 <= K <= "
              f"--random-splits and seeds >= 0", file=sys.stderr)  # fmt: skip
        return 2
    if args.instances == "cells":
        own = [m for m in args.methods if not trains_on_cells(m)]
        if own:
            print(f"--methods: {own[0]} trains with its own objective, which --instances cells "
                  "cannot train on each cell; run it with --instances segment",
                  file=sys.stderr)  # fmt: skip
            return 2
    if not (Path(args.data) / "labels.json").is_file():
        print(f"UCSD Ped2 not found at {args.data} (set ARNET_PED2 or --data)", file=sys.stderr)
        return 2
    device = "cpu" if args.device == "auto" else args.device  # tiny model: the CPU is fastest
    torch_threads(1 if device == "cpu" else None)

    results = {}
    for variant in args.variants:
        results[variant] = run_variant(args, variant, device)
        results[variant]["table"] = table(results[variant])
        candidates = [m for m in results[variant]["runs"]
                      if m == "nearest" or m.startswith("nearest-")]  # fmt: skip
        if candidates and args.random_splits > 1:
            results[variant]["selection"] = leave_one_split_out(
                results[variant]["runs"], candidates
            )
        if args.json:  # after every variant, so that a long run keeps what it measured
            Path(args.json).write_text(json.dumps({"settings": vars(args), "variants": results},
                                                  indent=1, default=float) + "\n")  # fmt: skip
    print("UCSD Ped2, weakly supervised: frame-level figures in %; weak split: mean ± std over "
          f"seeds 1..{args.seeds}; {args.random_splits} random weak splits: mean ± std of the "
          f"splits' means ({args.random_seeds} seed(s) each) and the worst split; events at "
          f"{args.fps:g} fps")  # fmt: skip
    for variant, result in results.items():
        f = result["features"]
        print(f"\n{variant}: {f['backbone']} {f['modal']}, {f['dim']} features, extraction "
              f"{f['extraction_ms_per_frame']:.1f} ms/frame"
              + (" (cached)" if f["extraction_cached"] else ""))  # fmt: skip
        print(format_table(result["table"]))
        sel = result.get("selection")
        if sel:
            among = [c for c in result["table"] if c == "nearest" or c.startswith("nearest-")]
            print(f"\nleave-one-split-out choice of the nearest-normal default among "
                  f"{', '.join(among)}: "
                  f"chosen {', '.join(sel['chosen_every_fold'])} "
                  f"(AUC on the left-out splits {_percent(sel['loso_auc'], True, 0)}); "
                  f"chosen on splits {sel['first_half'][0]}..{sel['first_half'][-1]}: "
                  f"{sel['chosen_on_first_half']}, on the others "
                  f"{_percent(sel['second_half_auc'], True, 0)}")  # fmt: skip
    chosen = (
        f"the threshold chosen on their {args.val_fraction:g} held-out training videos"
        if args.val_fraction
        else "the fixed threshold 0.5"
    )
    print(f"\nFAR: false alarms on normal test videos; the trained methods at {chosen}, nearest "
          "normal at its threshold chosen on the training videos")  # fmt: skip
    print(f"trained methods score {args.instances}s")
    print("published (weakly supervised, Zhong et al. CVPR 2019, TSN features): AUC 93.2")
    return 0


COLUMNS = (  # header, key, with std, width
    ("AUC weak", "weak_auc", True, 15),
    ("FAR n weak", "weak_far_normal", False, 11),
    ("AUC random", "random_auc", True, 15),
    ("worst", "random_auc_min", False, 7),
    ("FAR normal", "random_far_normal", False, 11),
    ("event recall", "random_event_recall", False, 13),
    ("false/h", "random_false_alerts_per_hour", False, 9),
    ("delay s", "random_event_delay_s", False, 8),
)


def format_table(rows: dict) -> str:
    """The rows of `table` as text: weak split, then the random splits' mean, worst, false
    alarms on normal frames, event recall, false alerts per hour of normal video and the mean
    delay to the first alert (the last three not in %)."""
    width = max(32, *(len(LABELS.get(m, m)) + 2 for m in rows))
    head = f"{'method':<{width}}" + "".join(f"{h:>{w}}" for h, _, _, w in COLUMNS)
    lines = [head, "-" * len(head)]
    for method, row in rows.items():
        many = row["runs_weak"] > 1
        cells = []
        for _, key, std, w in COLUMNS:
            value = row[key] if isinstance(row[key], tuple) else (row[key], 0.0)
            if key.endswith(("per_hour", "delay_s")):
                text = (
                    "-"
                    if not np.isfinite(value[0])
                    else f"{value[0]:.1f}"
                    if key.endswith("hour")
                    else f"{value[0]:.2f}"
                )
                cells.append(f"{text:>{w}}")
            else:
                cells.append(_percent(value, std and (many or key.startswith("random")), w))
        lines.append(f"{LABELS.get(method, method):<{width}}" + "".join(cells))
    return "\n".join(lines)


def torch_threads(n: int | None) -> None:
    import torch

    if n is not None:
        torch.set_num_threads(n)


if __name__ == "__main__":
    sys.exit(main())
