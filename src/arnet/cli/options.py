"""The options of the `arnet` command line (the video commands' are in video_options), and
the parse types they share.

Each command's options are defined when that command is parsed (or its help shown), so that
`arnet --help` and `arnet --version` load nothing heavy: no torch, no video decoders. Options
that set a TrainConfig field take their choices and help from the field (arnet.config).

Every option of the reference implementation is accepted under its own spelling too
(`--model_name model_single --Lambda 1_20 --max-seqlen 300 --max_epoch 20 ...`), so a
reference user's command runs unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import warnings
from typing import Any

from ..config import COMPAT_PRESETS, SynthConfig, config_field

S = argparse.SUPPRESS  # options not given stay out of the namespace: explicit ones override

# Long enough for AR-Net to converge on the default synthetic data, short enough for a
# couple of minutes on two CPU cores (README: measured figures).
DEMO_ITERATIONS = 1200

# ---------------------------------------------------------------------- value types


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


def _model_arg(text: str, option: str = "--model-arg") -> tuple[str, Any]:
    """--model-arg key=value, the value parsed as JSON when it can be (numbers, true/false)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{option} takes KEY=VALUE, got {text!r}")
    words = {"true": True, "false": False, "none": None, "null": None}
    if value.strip().lower() in words:  # Python's spelling too: False must not be a string
        return key, words[value.strip().lower()]
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _device(text: str) -> str:
    """auto / cpu / cuda / cuda:N, or the reference's GPU number (--device 0)."""
    if text == "auto":
        return text
    import torch  # only for a device other than auto: checking it needs torch

    if text.isdigit():
        if torch.cuda.is_available():
            return f"cuda:{text}"
        warnings.warn(
            f"--device {text} names a GPU, but CUDA is not available: using the CPU", stacklevel=2
        )
        return "cpu"
    try:
        device = torch.device(text)
    except RuntimeError as exc:
        raise argparse.ArgumentTypeError(
            f"unknown device {text!r}: use auto, cpu, cuda, cuda:N or a GPU number"
        ) from exc
    if device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"device {text!r}: only cpu and cuda are supported")
    return text


def _real(text: str) -> float:
    """A finite number: NaN and infinities are never a setting."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _unit(text: str) -> float:
    """A threshold or a rate: a finite number in [0, 1]."""
    value = _real(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _fraction(text: str) -> float:
    """A share that cannot be all: a finite number in [0, 1)."""
    value = _real(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _positive_real(text: str) -> float:
    value = _real(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _at_least(minimum: int, maximum: int | None = None) -> Any:
    """An integer type with bounds (argparse names the option in its one-line error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
            raise argparse.ArgumentTypeError(f"expected an integer {bounds}, got {text!r}")
        return value

    return parse


# Smallest value of each integer TrainConfig option (the config validates the same).
_MINIMA = {"seed": 0, "keep_checkpoints": 0}
SEED_MAX = 2**32 - 1  # numpy's legacy generator takes 32-bit seeds


def _optional_path(text: str) -> str | None:
    """A path, or None for the reference's default spelling `None` (or an empty string)."""
    return None if text in ("", "None") else text


# ---------------------------------------------------------------------- TrainConfig options

Group = argparse.ArgumentParser | argparse._ArgumentGroup


# What a test run takes for the fields it may give anew (arnet.cli.training.run_test).
CHECKPOINT = "the checkpoint's"


def _shown_default(name: str, from_checkpoint: bool) -> str | None:
    """The default an option of the TrainConfig field `name` names in its help: the field's
    own, or, for `test` (`from_checkpoint`), the checkpoint's; None where there is nothing to
    name (a switch, or a field without a default outside `test`)."""
    f = config_field(name)
    value = None if f.default is dataclasses.MISSING else f.default
    if isinstance(value, bool):  # a switch: its help says what it turns on or off
        return None
    own = None if value is None else f"{value:g}" if isinstance(value, float) else str(value)
    if not (from_checkpoint and f.metadata.get("test")):
        return own
    if f.metadata.get("layout"):  # other data (--data) brings its own layout
        return CHECKPOINT + (f"; with --data, {own}" if own else ", unless --data is given")
    return CHECKPOINT


def _field_option(
    g: Group, name: str, *flags: str, from_checkpoint: bool = False, **kwargs: Any
) -> None:
    """An option that sets the TrainConfig field `name`, with the field's choices and help
    unless given here, and the field's default named in its help (`from_checkpoint`: the
    checkpoint's); absent from the namespace unless given on the command line."""
    meta = config_field(name).metadata
    if kwargs.get("type") is float:
        kwargs["type"] = _real
    elif kwargs.get("type") is int:
        kwargs["type"] = _at_least(_MINIMA.get(name, 1), SEED_MAX if name == "seed" else None)
    if meta.get("choices") is not None and "action" not in kwargs:
        kwargs.setdefault("choices", meta["choices"])
    kwargs.setdefault("help", meta.get("help"))
    shown = _shown_default(name, from_checkpoint)
    if shown is not None and kwargs.get("action") is None and kwargs["help"]:
        kwargs["help"] += f" (default: {shown})"
    g.add_argument(*flags, dest=name, default=S, **kwargs)


def _add_layout_options(g: Group, from_checkpoint: bool = False) -> None:
    """How to read a dataset: its layout and the options of each layout (arnet.formats)."""
    o = functools.partial(_field_option, g, from_checkpoint=from_checkpoint)
    from ..formats.registry import format_names  # the layout table, without its readers

    o("format", "--format", choices=("auto", *format_names()))
    o("feature_modal", "--feature_modal", "--feature-modal")
    o("feature_backbone", "--feature_pretrain_model", "--feature-backbone")
    o("feature_layer", "--feature_layer", "--feature-layer")
    o("test_list", "--test-list")
    o("ground_truth", "--gt", "--ground-truth")
    o("list_root", "--list-root", metavar="NEW|OLD=NEW")
    o("train_anomalous", "--train-anomalous", type=int, metavar="N")
    o("tail", "--tail")


def _add_data_options(p: argparse.ArgumentParser, from_checkpoint: bool = False) -> None:
    """The dataset and how it is read and scored; `from_checkpoint` (test): absent options
    keep the checkpoint's values."""
    g = p.add_argument_group("data")
    o = functools.partial(_field_option, g, from_checkpoint=from_checkpoint)
    o("data", "--data")
    g.add_argument(
        "--dataset_path",
        "--dataset-path",
        default=S,
        help="folder holding datasets; with --dataset_name gives --data",
    )
    g.add_argument(
        "--dataset_name", "--dataset-name", default=S, help="dataset under --dataset_path"
    )
    _add_layout_options(g, from_checkpoint)
    o("feature_dim", "--feature_size", "--feature-dim", type=int)
    o(
        "in_memory",
        "--larger_mem",
        type=_flag01,
        help="1: keep all features in memory (reference spelling of --in-memory)",
    )
    o("in_memory", "--in-memory", action="store_const", const=True)
    o("test_crop", "--test-crop")
    # a test runs on this machine's device, whatever the training ran on
    _field_option(g, "device", "--device", type=_device)
    o("precision", "--precision")
    o("compile", "--compile", action="store_const", const=True)
    o("reuse_memory", "--no-reuse-memory", action="store_const", const=False)
    o("features_on_device", "--no-features-on-device", action="store_const", const=False)
    o("frames_per_segment", "--frames-per-segment", type=int)
    o("threshold", "--threshold", type=_unit)
    o("fps", "--fps", type=_positive_real)


def _add_strict_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse split or list entries that read feature files outside the dataset's "
        "folders (../ or absolute paths elsewhere); without it they are warned about",
    )


def _add_plot_options(g: Group) -> None:
    _field_option(g, "plot", "--plot", type=_flag01)
    _field_option(g, "plot", "--no-plot", action="store_const", const=False, help="no score plots")


def _add_train_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and training")
    _field_option(g, "model", "--model", "--model_name")
    _field_option(
        g, "model_args", "--model-arg", type=_model_arg, action="append", metavar="KEY=VALUE"
    )
    _field_option(
        g,
        "objective_args",
        "--objective-arg",
        type=lambda text: _model_arg(text, "--objective-arg"),
        action="append",
        metavar="KEY=VALUE",
    )
    _field_option(g, "instances", "--instances")
    _field_option(g, "cells", "--cells", type=int, metavar="N")
    _field_option(g, "lr", "--lr", type=float)
    _field_option(g, "weight_decay", "--weight-decay", type=float)
    _field_option(g, "max_grad_norm", "--max-grad-norm", type=float, metavar="N")
    _field_option(g, "epochs", "--epochs", "--max_epoch", type=int)
    _field_option(g, "iterations", "--iterations", type=int)
    _field_option(g, "snapshot_every", "--snapshot", "--snapshot-every", type=int)
    _field_option(g, "keep_checkpoints", "--keep-checkpoints", type=int)
    _field_option(g, "seed", "--seed", type=int)
    _field_option(g, "val_fraction", "--val-fraction", type=_fraction, metavar="F")
    _field_option(g, "val_false_alarm_rate", "--val-false-alarm-rate", type=_fraction)
    _field_option(g, "videos_per_class", "--sample_size", "--videos-per-class", type=int)
    _field_option(g, "draws_per_step", "--batch_size", "--draws-per-step", type=int)
    _field_option(g, "max_segments", "--max-seqlen", "--max_seqlen", "--max-segments", type=int)
    _field_option(g, "uniform_segments", "--uniform-segments", type=int, metavar="N")
    _field_option(g, "sample_step", "--sample_step", "--sample-step", type=int)
    _field_option(g, "train_crop", "--train-crop")
    _field_option(g, "topk_divisor", "--k", "--topk-divisor", type=int)
    g.add_argument(
        "--Lambda",
        dest="loss_weights",
        type=_lambda,
        default=S,
        help="MIL_CENTER loss weights (default: "
        f"{config_field('mil_weight').default:g}_{config_field('center_weight').default:g})",
    )
    _field_option(g, "mil_weight", "--mil-weight", type=float)
    _field_option(g, "center_weight", "--center-weight", type=float)
    _field_option(g, "mil_loss", "--mil-loss")
    _field_option(g, "center_loss", "--center-loss")
    g.add_argument(
        "--compat",
        choices=tuple(COMPAT_PRESETS),
        default=S,
        help="reference: train as the reference AR-Net code does (its padded center loss, "
        "window and perturbed sampling, dropout masks and Adam); options given explicitly "
        "still apply",
    )
    _field_option(g, "window_start", "--window-start")
    _field_option(g, "strided_window", "--strided-window")
    _field_option(g, "perturbed_sampling", "--perturbed-sampling")
    _field_option(g, "dropout_mask", "--dropout-mask")
    _field_option(
        g,
        "fused_adam",
        "--no-fused-adam",
        action="store_const",
        const=False,
        help="torch's default per-parameter Adam update (the reference code's) instead of the "
        "fused one",
    )
    _field_option(g, "bas_base_weight", "--bas-base-weight", type=float)
    _field_option(g, "bas_suppressed_weight", "--bas-suppressed-weight", type=float)
    _field_option(g, "bas_foreground_weight", "--bas-foreground-weight", type=float)
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
    _field_option(g, "pretrained", "--pretrained_ckpt", "--pretrained", type=_optional_path)
    _add_plot_options(g)
    _field_option(g, "tensorboard", "--no-tensorboard", action="store_const", const=False)
    _field_option(g, "log_every", "--log-every", type=int)


def _add_output_options(p: argparse.ArgumentParser, out: str) -> None:
    p.add_argument("--out", default=S, help=out)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# ---------------------------------------------------------------------- commands' options


def _synth_options(p: argparse.ArgumentParser) -> None:
    d = SynthConfig()  # its defaults are the options' defaults
    g = p.add_argument_group("synthetic data")
    g.add_argument(
        "--train-videos",
        type=int,
        default=d.train_videos,
        help="training videos (default: %(default)s)",
    )
    g.add_argument(
        "--train-anomalous",
        type=int,
        default=d.train_anomalous,
        help="anomalous ones among them (default: %(default)s)",
    )
    g.add_argument(
        "--test-videos", type=int, default=d.test_videos, help="test videos (default: %(default)s)"
    )
    g.add_argument(
        "--test-anomalous",
        type=int,
        default=d.test_anomalous,
        help="anomalous ones among them (default: %(default)s)",
    )
    g.add_argument(
        "--dim", type=int, default=d.dim, help="feature dimension (default: %(default)s)"
    )
    g.add_argument(
        "--scenes",
        type=int,
        default=d.scenes,
        help="cameras, each with its own appearance (default: %(default)s)",
    )
    g.add_argument(
        "--min-segments",
        type=int,
        default=d.min_segments,
        help="shortest video, in segments (default: %(default)s)",
    )
    g.add_argument(
        "--max-video-segments",
        dest="max_video_segments",
        type=int,
        default=d.max_segments,
        help="longest video, in segments (default: %(default)s)",
    )
    g.add_argument(
        "--difficulty",
        type=_real,
        default=d.difficulty,
        help="scale of the per-segment noise: higher is harder (default: %(default)s)",
    )
    g.add_argument(
        "--distractor-rate",
        type=_unit,
        default=d.distractor_rate,
        help="share of videos with a rare normal event, which is not an anomaly "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--crops",
        type=_at_least(1),
        default=d.crops,
        help="views per segment: more than 1 writes (T, C, D) features, as ten-crop I3D "
        "features are (default: %(default)s)",
    )
    g.add_argument(
        "--data-seed",
        type=_at_least(0),
        default=d.seed,
        help="seed of the generator (default: %(default)s)",
    )


def _synth(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="dataset folder to create")
    _synth_options(p)
    p.add_argument(
        "--modal",
        default="combine",
        choices=config_field("feature_modal").metadata["choices"],
        help="feature folder to write the features under (default: %(default)s)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the synthetic dataset already in OUT (never another folder's content)",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _train(p: argparse.ArgumentParser) -> None:
    _add_data_options(p)
    _add_strict_option(p)
    _add_train_options(p)
    _add_output_options(p, "run folder, new or empty (default: a new folder under runs/)")
    p.add_argument(
        "--resume",
        default=S,
        metavar="RUN_OR_CHECKPOINT",
        help="continue a run exactly where it stopped",
    )
    p.add_argument(
        "--feedback",
        default=S,
        metavar="STORE",
        help="with --resume RUN: add the operators' verdicts on RUN's alerts in this event store "
        "as labelled videos (a false alarm's segments a normal video, a real alert's an "
        "anomalous one) and train on into a new version of RUN (RUN/versions/N)",
    )
    p.add_argument(
        "--seeds",
        default=S,
        metavar="LIST",
        help="one run per seed (1,2,3 or 1-5) under OUT/seed-N, and the mean ± std of every "
        "metric over them in OUT/seeds.json",
    )


def _test(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run folder")
    _add_data_options(p, from_checkpoint=True)
    _add_strict_option(p)
    _add_output_options(
        p, "results folder, new or empty (default: a new test-CHECKPOINT folder in the run)"
    )
    _add_plot_options(p)
    p.add_argument("--per-video", action="store_true", help="print the per-video table too")


def _demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=S, help="demo folder (default: a new folder under runs/)")
    p.add_argument(
        "--model",
        default="single",
        help="model to train (see `arnet models`; default: %(default)s)",
    )
    p.add_argument(
        "--model-arg",
        dest="model_args",
        type=_model_arg,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra model constructor argument (repeatable), e.g. hidden_dim=256",
    )
    p.add_argument(
        "--iterations",
        type=_at_least(1),
        default=DEMO_ITERATIONS,
        help="training iterations of each model (default: %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=_at_least(0, SEED_MAX),
        default=1,
        help="training seed (default: %(default)s)",
    )
    p.add_argument("--no-baseline", action="store_true", help="skip the naive baseline")
    p.add_argument(
        "--device",
        type=_device,
        default="auto",
        help="auto, cpu, cuda, cuda:N or a GPU number (default: %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _synth_options(p)


def _inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="dataset: AR-Net folder, train list, crops folder or store")
    _add_layout_options(p.add_argument_group("layout"))
    _field_option(p, "frames_per_segment", "--frames-per-segment", type=int)
    p.add_argument(
        "--skip-values", action="store_true", help="do not read every value (NaN/Inf check)"
    )
    _add_strict_option(p)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")


def _pack(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="SRC", help="dataset in any layout")
    p.add_argument("out", metavar="OUT", help="store folder to create")
    _add_layout_options(p.add_argument_group("layout"))
    _add_strict_option(p)
    _field_option(p, "frames_per_segment", "--frames-per-segment", type=int)
    p.add_argument(
        "--dtype",
        choices=("float16", "float32"),
        default="float16",
        help="stored precision: float16 halves the size, float32 keeps values exactly",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _models(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--feature-dim",
        type=int,
        default=2048,
        help="feature dimension to count parameters at (default: %(default)s, I3D combine)",
    )
    p.add_argument("--json", action="store_true", help="print the list as one JSON object")


def _serve(p: argparse.ArgumentParser) -> None:
    from ..web.serve import add_serve_arguments

    add_serve_arguments(p)
