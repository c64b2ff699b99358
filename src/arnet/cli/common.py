"""What the commands share: options -> TrainConfig fields, the dataset they name, and output."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Literal

from ..config import COMPAT_PRESETS, TrainConfig, absolute_paths
from ..folders import fresh_folder, require_empty
from ..formats import open_dataset
from ..models import model_entry, resolve_model_name


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
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
    for key in ("model_args", "objective_args"):  # KEY=VALUE pairs, repeated
        if key in given:
            out[key] = dict(given[key])
    if "model" in given:
        out["model"] = resolve_model_name(given["model"])
    fields = set(TrainConfig.__dataclass_fields__)
    for key, value in given.items():
        if key in fields and key not in out:
            out[key] = value
    if "compat" in given:  # a preset of fields; the options given explicitly win
        for key, value in COMPAT_PRESETS[given["compat"]].items():
            out.setdefault(key, value)
    if "model" in out:  # how its paper trains it, where the options do not say
        for key, value in model_entry(out["model"]).train_defaults.items():
            out.setdefault(key, value)
    return absolute_paths(out)  # saved with the run: valid from any working directory


def new_run_folder(prefix: str) -> Path:
    """Create runs/PREFIX-YYYYmmdd-HHMMSS, numbered -2, -3, ... when taken (one mkdir each:
    two commands started in the same second get different folders)."""
    return fresh_folder("runs", f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}")


def output_folder(given: str | None, default_parent: Path, default_name: str, what: str) -> Path:
    """The folder a command writes its results into: `given` must be new or empty (results of
    one command never replace another's); without it, a fresh DEFAULT_PARENT/DEFAULT_NAME
    (numbered -2, -3, ... when taken)."""
    if given:
        require_empty(Path(given), f"{what} into a new or empty --out")
        return Path(given)
    return fresh_folder(default_parent, default_name)


def layout(config: TrainConfig) -> dict[str, Any]:
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


def open_data(
    config: TrainConfig, split: Literal["train", "test"] | None = None, strict: bool = False
) -> Any:
    """The train and test sets of the config's dataset, or only `split` ("train" or "test");
    `strict` refuses entries reading files outside the dataset (`--strict`)."""
    if not config.data:
        raise ValueError("no dataset: give --data DIR (or --dataset_path and --dataset_name)")
    return open_dataset(
        config.data,
        config.format,
        feature_dim=config.feature_dim,
        in_memory=config.in_memory,
        split=split,
        strict=strict,
        **layout(config),
    )


def progress(args: argparse.Namespace) -> bool | None:
    """Progress bars: off for --quiet and --json, else on a terminal only."""
    return False if (args.quiet or args.json) else None


def emit(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    """Print the result: one JSON object with --json, else text for a person."""
    print(json.dumps(payload) if args.json else text)
