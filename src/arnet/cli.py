"""The `arnet` command line: synth, train, test, demo, models.

Every option of the reference implementation is accepted under its own spelling too
(`--model_name model_single --Lambda 1_20 --max-seqlen 300 --max_epoch 20 ...`), so a
reference user's command runs unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .config import NAIVE_BASELINE, TrainConfig

# ---------------------------------------------------------------------- option parsing


def _lambda(text: str) -> tuple[float, float]:
    """--Lambda 1_20 -> (1.0, 20.0)."""
    try:
        mil, center = (float(x) for x in text.split("_"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--Lambda takes MIL_CENTER weights like 1_20, got {text!r}"
        ) from None
    return mil, center


def _flag01(text: str) -> bool:
    """The reference's 0/1 switches (--plot 1, --larger_mem 0)."""
    if text not in ("0", "1"):
        raise argparse.ArgumentTypeError(f"expected 0 or 1, got {text!r}")
    return text == "1"


def _model_arg(text: str) -> tuple[str, Any]:
    """--model-arg key=value, the value parsed as JSON when it can be (numbers, true/false)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--model-arg takes KEY=VALUE, got {text!r}")
    words = {"true": True, "false": False, "none": None, "null": None}
    if value.strip().lower() in words:  # Python's spelling too: False must not be a string
        return key, words[value.strip().lower()]
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _device(text: str) -> str:
    """auto / cpu / cuda / cuda:N, or the reference's GPU number (--device 0)."""
    if text.isdigit():
        import torch

        if torch.cuda.is_available():
            return f"cuda:{text}"
        warnings.warn(
            f"--device {text} names a GPU, but CUDA is not available: using the CPU", stacklevel=2
        )
        return "cpu"
    if text != "auto":
        import torch

        try:
            device = torch.device(text)
        except RuntimeError as exc:
            raise argparse.ArgumentTypeError(
                f"unknown device {text!r}: use auto, cpu, cuda, cuda:N or a GPU number"
            ) from exc
        if device.type not in ("cpu", "cuda"):
            raise argparse.ArgumentTypeError(f"device {text!r}: only cpu and cuda are supported")
    return text


def _optional_path(text: str) -> str | None:
    """A path, or None for the reference's default spelling `None` (or an empty string)."""
    return None if text in ("", "None") else text


S = argparse.SUPPRESS  # options not given stay out of the namespace: explicit ones override


def _add_layout_options(g: argparse._ArgumentGroup) -> None:
    """How to read a dataset: its layout and the options of each layout (arnet.formats)."""
    g.add_argument(
        "--format",
        default=S,
        choices=("auto", "arnet", "list", "csv", "crops", "packed"),
        help="dataset layout (default: auto-detect)",
    )
    g.add_argument(
        "--feature_modal",
        "--feature-modal",
        dest="feature_modal",
        default=S,
        choices=("rgb", "flow", "combine"),
    )
    g.add_argument(
        "--feature_pretrain_model",
        "--feature-backbone",
        dest="feature_backbone",
        default=S,
        help="feature folder under features_video/: i3d, c3d, or an `arnet extract` backbone "
        "such as efficientnet-lite0",
    )
    g.add_argument(
        "--feature_layer",
        "--feature-layer",
        dest="feature_layer",
        default=S,
        choices=("fc6", "fc7"),
    )
    g.add_argument("--test-list", dest="test_list", default=S, help="list layouts: the test list")
    g.add_argument(
        "--gt",
        "--ground-truth",
        dest="ground_truth",
        default=S,
        help="frame ground truth: masks folder, .npz, concatenated gt .npy, .pickle, .json, "
        "or UCF-Crime / XD-Violence annotation .txt",
    )
    g.add_argument(
        "--list-root",
        dest="list_root",
        default=S,
        metavar="NEW|OLD=NEW",
        help="list layouts: re-root the listed feature paths",
    )
    g.add_argument(
        "--train-anomalous",
        dest="train_anomalous",
        type=int,
        default=S,
        metavar="N",
        help="text lists: the first N lines of the train list are anomalous",
    )
    g.add_argument(
        "--tail",
        choices=("drop", "pad"),
        default=S,
        help="frames that fill no last 16-frame segment: dropped (default) or padded into one",
    )


def _add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--data", default=S, help="dataset: AR-Net folder, train list, crops folder or store"
    )
    g.add_argument(
        "--dataset_path",
        "--dataset-path",
        default=S,
        help="folder holding datasets; with --dataset_name gives --data",
    )
    g.add_argument(
        "--dataset_name", "--dataset-name", default=S, help="dataset under --dataset_path"
    )
    _add_layout_options(g)
    g.add_argument(
        "--feature_size",
        "--feature-dim",
        dest="feature_dim",
        type=int,
        default=S,
        help="expected feature dimension (checked against the data)",
    )
    g.add_argument(
        "--larger_mem",
        dest="in_memory",
        type=_flag01,
        default=S,
        help="1: keep all features in memory (reference spelling of --in-memory)",
    )
    g.add_argument(
        "--in-memory",
        dest="in_memory",
        action="store_const",
        const=True,
        default=S,
        help="keep all features in memory instead of memory-mapping them",
    )
    g.add_argument("--test-crop", dest="test_crop", choices=("mean", "per_crop"), default=S)
    g.add_argument(
        "--device", type=_device, default=S, help="auto, cpu, cuda, cuda:N or a GPU number"
    )
    g.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default=S,
        help="model arithmetic: fp32 (default), bf16 autocast (CPU with AVX512-BF16/AMX, GPU), "
        "fp16 autocast with loss scaling (CUDA); weights, losses and scores stay float32",
    )
    g.add_argument(
        "--compile",
        action="store_const",
        const=True,
        default=S,
        help="torch.compile the model (compiles at the first step)",
    )
    g.add_argument(
        "--no-reuse-memory",
        dest="reuse_memory",
        action="store_const",
        const=False,
        default=S,
        help="return freed tensor memory to the system every step (slower on the CPU)",
    )
    g.add_argument(
        "--no-features-on-device",
        dest="features_on_device",
        action="store_const",
        const=False,
        default=S,
        help="CUDA: keep the training features in host memory, copying each batch over",
    )
    g.add_argument("--frames-per-segment", dest="frames_per_segment", type=int, default=S)
    g.add_argument("--threshold", type=float, default=S, help="threshold of the false-alarm rates")


def _add_train_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and training")
    g.add_argument(
        "--model",
        "--model_name",
        dest="model",
        default=S,
        help="model name (see `arnet models`); reference names like model_single too",
    )
    g.add_argument(
        "--model-arg",
        dest="model_args",
        type=_model_arg,
        action="append",
        default=S,
        metavar="KEY=VALUE",
        help="extra model constructor argument (repeatable)",
    )
    g.add_argument("--lr", type=float, default=S)
    g.add_argument("--weight-decay", dest="weight_decay", type=float, default=S)
    g.add_argument("--epochs", "--max_epoch", dest="epochs", type=int, default=S)
    g.add_argument("--iterations", type=int, default=S, help="total iterations (overrides epochs)")
    g.add_argument("--snapshot", "--snapshot-every", dest="snapshot_every", type=int, default=S)
    g.add_argument("--keep-checkpoints", dest="keep_checkpoints", type=int, default=S)
    g.add_argument("--seed", type=int, default=S)
    g.add_argument(
        "--sample_size", "--videos-per-class", dest="videos_per_class", type=int, default=S
    )
    g.add_argument(
        "--batch_size",
        "--draws-per-step",
        dest="draws_per_step",
        type=int,
        default=S,
        help="balanced draws per iteration",
    )
    g.add_argument(
        "--max-seqlen", "--max_seqlen", "--max-segments", dest="max_segments", type=int, default=S
    )
    g.add_argument("--sample_step", "--sample-step", dest="sample_step", type=int, default=S)
    g.add_argument("--train-crop", dest="train_crop", choices=("random", "mean"), default=S)
    g.add_argument("--k", "--topk-divisor", dest="topk_divisor", type=int, default=S)
    g.add_argument(
        "--Lambda",
        dest="loss_weights",
        type=_lambda,
        default=S,
        help="MIL_CENTER loss weights, e.g. 1_20",
    )
    g.add_argument("--mil-weight", dest="mil_weight", type=float, default=S)
    g.add_argument("--center-weight", dest="center_weight", type=float, default=S)
    g.add_argument("--mil-loss", dest="mil_loss", choices=("bce", "mse", "hinge"), default=S)
    g.add_argument(
        "--bas-base-weight",
        dest="bas_base_weight",
        type=float,
        default=S,
        help="model bas: weight of the base-branch loss (default 1)",
    )
    g.add_argument(
        "--bas-suppressed-weight",
        dest="bas_suppressed_weight",
        type=float,
        default=S,
        help="model bas: weight of the suppressed-branch loss (default 1)",
    )
    g.add_argument(
        "--bas-foreground-weight",
        dest="bas_foreground_weight",
        type=float,
        default=S,
        help="model bas: weight of the L1 norm of the foreground weights (default 1e-4)",
    )
    g.add_argument(
        "--loss_type",
        dest="loss_type",
        choices=("DMIL_C", "DMIL"),
        default=S,
        help="DMIL_C: top-k MIL + center loss (reference); DMIL: without center loss",
    )
    g.add_argument(
        "--label_type",
        dest="label_type",
        choices=("unary",),
        default=S,
        help="video labels as one anomaly target (the only kind the losses use)",
    )
    g.add_argument(
        "--pretrained_ckpt",
        "--pretrained",
        dest="pretrained",
        type=_optional_path,
        default=S,
        help="initialise from this checkpoint or state dict",
    )
    g.add_argument("--plot", type=_flag01, default=S, help="1: plot every test video (default)")
    g.add_argument("--no-plot", dest="plot", action="store_const", const=False, default=S)
    g.add_argument(
        "--no-tensorboard", dest="tensorboard", action="store_const", const=False, default=S
    )
    g.add_argument("--log-every", dest="log_every", type=int, default=S)


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=S, help="run folder (default: a new folder under runs/)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arnet", description="Weakly supervised video anomaly detection (AR-Net and beyond)."
    )
    parser.add_argument("--version", action="version", version=f"arnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="write a synthetic dataset in the AR-Net layout")
    p.add_argument("out", help="dataset folder to create")
    _add_synth_options(p)
    p.add_argument(
        "--modal",
        default="combine",
        choices=("rgb", "flow", "combine"),
        help="feature folder to write the features under",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the synthetic dataset already in OUT (never another folder's content)",
    )
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("train", help="train a model on segment features")
    _add_data_options(p)
    _add_train_options(p)
    _add_output_options(p)
    p.add_argument(
        "--resume",
        default=S,
        metavar="RUN_OR_CHECKPOINT",
        help="continue a run exactly where it stopped",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("test", help="score the test videos with a checkpoint and evaluate")
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run folder")
    _add_data_options(p)
    _add_output_options(p)
    p.add_argument("--plot", type=_flag01, default=S)
    p.add_argument("--no-plot", dest="plot", action="store_const", const=False, default=S)
    p.add_argument("--per-video", action="store_true", help="print the per-video table too")
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("demo", help="synthetic data -> AR-Net and a naive baseline -> metrics")
    p.add_argument("--out", default=S, help="demo folder (default: a new folder under runs/)")
    p.add_argument("--model", default="single", help="model to train (see `arnet models`)")
    p.add_argument(
        "--model-arg",
        dest="model_args",
        type=_model_arg,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra model constructor argument (repeatable), e.g. hidden_dim=256",
    )
    p.add_argument("--iterations", type=int, default=DEMO_ITERATIONS)
    p.add_argument("--seed", type=int, default=1, help="training seed")
    p.add_argument("--no-baseline", action="store_true", help="skip the naive baseline")
    p.add_argument("--device", type=_device, default="auto")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    _add_synth_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("inspect", help="validate a dataset in any layout and report what it holds")
    p.add_argument("data", help="dataset: AR-Net folder, train list, crops folder or store")
    _add_layout_options(p.add_argument_group("layout"))
    p.add_argument("--frames-per-segment", dest="frames_per_segment", type=int, default=S)
    p.add_argument(
        "--skip-values", action="store_true", help="do not read every value (NaN/Inf check)"
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("pack", help="convert a dataset into one memory-mapped arnet store")
    p.add_argument("data", metavar="SRC", help="dataset in any layout")
    p.add_argument("out", metavar="OUT", help="store folder to create")
    _add_layout_options(p.add_argument_group("layout"))
    p.add_argument("--frames-per-segment", dest="frames_per_segment", type=int, default=S)
    p.add_argument(
        "--dtype",
        choices=("float16", "float32"),
        default="float16",
        help="stored precision: float16 halves the size, float32 keeps values exactly",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_pack)

    from .extract.command import add_detect_arguments, add_extract_arguments

    p = sub.add_parser(
        "extract", help="extract segment features from videos or frame folders (AR-Net layout)"
    )
    add_extract_arguments(p)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser(
        "detect", help="per-frame anomaly scores and alert intervals for videos, from a checkpoint"
    )
    add_detect_arguments(p)
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("models", help="list the models")
    p.add_argument(
        "--feature-dim",
        type=int,
        default=2048,
        help="feature dimension to count parameters at (default: I3D combine)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)
    return parser


def _add_synth_options(p: argparse.ArgumentParser) -> None:
    from .synth import SynthConfig

    d = SynthConfig()
    g = p.add_argument_group("synthetic data")
    g.add_argument("--train-videos", type=int, default=d.train_videos)
    g.add_argument("--train-anomalous", type=int, default=d.train_anomalous)
    g.add_argument("--test-videos", type=int, default=d.test_videos)
    g.add_argument("--test-anomalous", type=int, default=d.test_anomalous)
    g.add_argument("--dim", type=int, default=d.dim, help="feature dimension")
    g.add_argument("--scenes", type=int, default=d.scenes)
    g.add_argument("--min-segments", type=int, default=d.min_segments)
    g.add_argument(
        "--max-video-segments", dest="max_video_segments", type=int, default=d.max_segments
    )
    g.add_argument("--difficulty", type=float, default=d.difficulty)
    g.add_argument("--distractor-rate", type=float, default=d.distractor_rate)
    g.add_argument("--data-seed", type=int, default=d.seed, help="seed of the generator")


def _synth_config(args: argparse.Namespace) -> Any:
    from .synth import SynthConfig

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
        seed=args.data_seed,
    )


# ---------------------------------------------------------------------- config assembly

_DATA_FIELDS = (
    "format",
    "feature_modal",
    "feature_backbone",
    "feature_layer",
    "feature_dim",
    "in_memory",
    "test_list",
    "ground_truth",
    "list_root",
    "train_anomalous",
    "tail",
    "test_crop",
    "device",
    "precision",
    "compile",
    "reuse_memory",
    "features_on_device",
    "frames_per_segment",
    "threshold",
)
# Options that describe one dataset's layout rather than its features.
_LAYOUT_FIELDS = ("format", "test_list", "ground_truth", "list_root", "train_anomalous")
_PATH_FIELDS = ("data", "pretrained", "test_list", "ground_truth")
# What may change when a run is resumed: how long it runs and how it reports, not what it learns.
_RESUMABLE_FIELDS = {
    "iterations",
    "epochs",
    "device",
    "precision",
    "compile",
    "reuse_memory",
    "features_on_device",
    "plot",
    "tensorboard",
    "log_every",
    "snapshot_every",
    "keep_checkpoints",
    "data",
    "in_memory",
    "list_root",
    "test_list",
    "ground_truth",
}


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """TrainConfig fields given explicitly on the command line."""
    given = dict(vars(args))
    out: dict[str, Any] = {}
    if "dataset_path" in given or "dataset_name" in given:
        if "data" in given:
            raise ValueError("give either --data or --dataset_path/--dataset_name, not both")
        if "dataset_path" not in given:
            raise ValueError("--dataset_name needs --dataset_path")
        out["data"] = str(Path(given["dataset_path"]) / given.get("dataset_name", "shanghaitech"))
    if "loss_weights" in given:
        both = sorted({"mil_weight", "center_weight"} & set(given))
        if both:
            raise ValueError(f"give either --Lambda or --{both[0].replace('_', '-')}, not both")
        out["mil_weight"], out["center_weight"] = given["loss_weights"]
    if given.get("loss_type") == "DMIL":
        if given.get("center_weight", 0.0) != 0.0:
            raise ValueError("--loss_type DMIL turns the center loss off: drop --center-weight")
        out["center_weight"] = 0.0
    if "model_args" in given:
        out["model_args"] = dict(given["model_args"])
    if "model" in given:
        from .models import resolve_model_name

        out["model"] = resolve_model_name(given["model"])
    fields = set(TrainConfig.__dataclass_fields__)
    for key, value in given.items():
        if key in fields and key not in out:
            out[key] = value
    for key in _PATH_FIELDS:  # saved with the run: valid from any working directory
        if out.get(key):
            out[key] = str(Path(out[key]).absolute())
    return out


def _new_run_folder(prefix: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path("runs") / f"{prefix}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = Path("runs") / f"{prefix}-{stamp}-{n}"
    return path


def _layout(config: TrainConfig) -> dict[str, Any]:
    """The arguments of arnet.formats.build_catalog / open_dataset held by a config."""
    return {
        "modal": config.feature_modal,
        "backbone": config.feature_backbone,
        "layer": config.feature_layer,
        "test_list": config.test_list,
        "ground_truth": config.ground_truth,
        "list_root": config.list_root,
        "train_anomalous": config.train_anomalous,
        "tail": config.tail,
        "frames_per_segment": config.frames_per_segment,
    }


def _open(config: TrainConfig, split: str | None = None) -> Any:
    from .formats import open_dataset

    if not config.data:
        raise ValueError("no dataset: give --data DIR (or --dataset_path and --dataset_name)")
    return open_dataset(
        config.data,
        config.format,
        feature_dim=config.feature_dim,
        in_memory=config.in_memory,
        split=split,
        **_layout(config),
    )


def _emit(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps(payload))
    else:
        print(text)


# ---------------------------------------------------------------------- commands


def cmd_synth(args: argparse.Namespace) -> int:
    from .synth import write_synthetic

    cfg = _synth_config(args)
    out = Path(args.out)
    if out.is_dir() and any(out.iterdir()):
        if not (args.overwrite and (out / "synth_config.json").is_file()):
            hint = "only a synthetic dataset" if args.overwrite else "a synthetic dataset"
            raise ValueError(
                f"{out} is not empty: choose a new folder (--overwrite replaces {hint})"
            )
        shutil.rmtree(out)
    out = write_synthetic(out, cfg, modal=args.modal)
    print(
        f"wrote a synthetic dataset to {out} "
        f"({cfg.train_videos} train / {cfg.test_videos} test videos, dim {cfg.dim})"
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .report import metrics_table
    from .train import Trainer, load_checkpoint

    overrides = _overrides(args)
    resume = getattr(args, "resume", None)
    payload = None
    if resume:
        payload = load_checkpoint(resume)
        saved = payload["config"]
        fixed = sorted(
            k for k, v in overrides.items() if k not in _RESUMABLE_FIELDS and saved.get(k) != v
        )
        if fixed:
            raise ValueError(f"cannot change {', '.join(fixed)} when resuming a run")
        config = TrainConfig.from_dict({**payload["config"], **overrides})
        out = Path(getattr(args, "out", None) or Path(payload["path"]).parent.parent)
    else:
        config = TrainConfig(**overrides)
        out = Path(getattr(args, "out", None) or _new_run_folder(config.model))
    config.validate()
    train_set, test_set = _open(config)
    trainer = Trainer(
        config,
        train_set,
        test_set,
        out,
        progress=False if (args.quiet or args.json) else None,
        resume_from=payload,
    )
    result = trainer.run()
    summary = result.metrics.summary() if result.metrics else None
    text = f"run folder: {result.out_dir}\ncheckpoint: {result.checkpoint}"
    if result.metrics:
        text = (
            metrics_table(result.metrics, f"test set, iteration {result.iterations}") + "\n" + text
        )
    _emit(
        args,
        {
            "out": str(result.out_dir),
            "checkpoint": str(result.checkpoint),
            "iterations": result.iterations,
            "metrics": summary,
        },
        text,
    )
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, predict
    from .report import metrics_table, per_video_table, write_evaluation
    from .runtime import keep_freed_memory, prepare_model, resolve_device
    from .train import load_checkpoint, model_from_checkpoint

    payload = load_checkpoint(args.checkpoint)
    overrides = {"plot": True}  # a test run plots unless told not to, whatever training did
    overrides.update(
        {k: v for k, v in _overrides(args).items() if k in _DATA_FIELDS + ("data", "plot")}
    )
    saved = dict(payload["config"])
    if "data" in overrides:  # the training data's layout options do not describe new data
        for name in _LAYOUT_FIELDS:
            saved.pop(name, None)
    # Where and how the training ran says nothing about this machine: the device is this
    # command's (default auto), the features are read lazily unless --larger_mem 1 is given.
    saved.pop("device", None)
    saved.pop("in_memory", None)
    config = TrainConfig.from_dict({**saved, **overrides})
    device = resolve_device(config.device)
    if config.precision == "fp16" and device.type != "cuda":
        warnings.warn("the run trained in fp16, which needs CUDA: testing in fp32", stacklevel=1)
        config = dataclasses.replace(config, precision="fp32")
    model = model_from_checkpoint(payload, device)
    test_set = _open(config, split="test")
    if test_set.dim != payload["model"]["kwargs"].get("feature_dim", test_set.dim):
        raise ValueError(
            f"{payload['path']}: the model takes {payload['model']['kwargs']['feature_dim']}-d "
            f"features, the test set has {test_set.dim}-d ({test_set.sources[0]})"
        )
    ckpt_path = Path(payload["path"])
    out = Path(getattr(args, "out", None) or ckpt_path.parent.parent / f"test-{ckpt_path.stem}")
    if config.reuse_memory:
        keep_freed_memory()
    run_model = prepare_model(model, device, config.precision, config.compile)
    scores = predict(run_model, test_set, device, config.test_crop)
    metrics = evaluate(scores, test_set, config.frames_per_segment, config.threshold)
    write_evaluation(
        out,
        scores,
        test_set,
        metrics,
        iteration=payload["iteration"],
        plot=config.plot,
        frames_per_segment=config.frames_per_segment,
        threshold=config.threshold,
    )
    text = metrics_table(metrics, f"{ckpt_path} (iteration {payload['iteration']})")
    if args.per_video:
        text += "\n\n" + per_video_table(metrics)
    text += f"\nresults: {out}" + (f"\nplots: {out / 'plots'}" if config.plot else "")
    _emit(
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


# Long enough for AR-Net to converge on the default synthetic data, short enough for a
# couple of minutes on two CPU cores (README: measured figures).
DEMO_ITERATIONS = 1200


def cmd_demo(args: argparse.Namespace) -> int:
    from .formats import open_dataset
    from .models import model_entry, resolve_model_name
    from .report import metrics_table
    from .synth import write_synthetic
    from .train import train

    out = Path(getattr(args, "out", None) or _new_run_folder("demo"))
    progress = False if (args.quiet or args.json) else None
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, flush=True))
    data = write_synthetic(out / "data", _synth_config(args))
    log(f"synthetic dataset: {data}")
    train_set, test_set = open_dataset(data, in_memory=True)
    model = resolve_model_name(args.model)
    runs = {"arnet": {}}
    if not args.no_baseline and model_entry(model).objective != "mil":
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
        result = train(config, train_set, test_set, out / name.replace(" ", "_"), progress=progress)
        seconds = time.perf_counter() - started
        results[name] = {
            "metrics": result.metrics.summary(),
            "seconds": round(seconds, 1),
            "out": str(result.out_dir),
        }
        texts.append(metrics_table(result.metrics, f"{name}: {model}, {seconds:.0f} s"))
        texts.append(
            f"plots: {result.out_dir / 'plots'}\nreport: {result.out_dir / 'report.html'}\n"
        )
    _emit(args, {"data": str(data), "model": model, "results": results}, "\n".join(texts))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .formats import build_catalog
    from .formats.validate import inspect_catalog, render

    config = TrainConfig(**_overrides(args))
    catalog = build_catalog(config.data, config.format, **_layout(config))
    report = inspect_catalog(catalog, values=not args.skip_values)
    _emit(args, report.to_dict(), render(report))
    return 0 if report.ok else 1


def cmd_pack(args: argparse.Namespace) -> int:
    from .formats import build_catalog, open_catalog
    from .formats.packed import pack_catalog

    config = TrainConfig(**_overrides(args))
    catalog = open_catalog(build_catalog(config.data, config.format, **_layout(config)))
    out = pack_catalog(catalog, args.out, args.dtype, args.overwrite)
    size = sum(f.stat().st_size for f in out.iterdir())
    counts = {split: len(catalog.split(split)) for split in ("train", "test")}
    segments = sum(v.segments for v in catalog.videos)
    _emit(
        args,
        {"out": str(out), "dtype": args.dtype, "bytes": size, "segments": segments, **counts},
        f"packed {counts['train']} train and {counts['test']} test videos ({segments:,} "
        f"segments, {args.dtype}) into {out} ({size / 2**20:.1f} MiB)",
    )
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from .extract.command import run_extract

    return run_extract(args)


def cmd_detect(args: argparse.Namespace) -> int:
    from .extract.command import run_detect

    return run_detect(args)


def cmd_models(args: argparse.Namespace) -> int:
    from .models import count_parameters, create_model, list_models

    rows = []
    for entry in list_models():
        params = count_parameters(create_model(entry.name, args.feature_dim))
        rows.append({"name": entry.name, "parameters": params, "description": entry.description})
    width = max(len(r["name"]) for r in rows)
    text = "\n".join(
        f"{r['name']:<{width}}  {r['parameters']:>11,}  {r['description']}" for r in rows
    )
    _emit(
        args,
        {"feature_dim": args.feature_dim, "models": rows},
        f"models (parameters at feature dimension {args.feature_dim}):\n{text}",
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    from .errors import CheckpointError, DataError, TrainingError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (DataError, CheckpointError, TrainingError, ValueError, FileNotFoundError) as exc:
        print(f"arnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"arnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
