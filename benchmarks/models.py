"""Test AUC and training speed of every registry model on the default synthetic data.

    python benchmarks/models.py                                   # the README table
    python benchmarks/models.py --device cuda                     # same, on a GPU
    python benchmarks/models.py --models single,mean --iterations 20    # a quick check
    python benchmarks/models.py --model-arg bas:hidden_dim=512    # a narrower BaS-Net

Writes the default synthetic dataset (`arnet.formats.synth.SynthConfig()`, what `arnet demo`
writes), then trains each model on it with the demo's schedule (`arnet.cli.options.DEMO_ITERATIONS`
iterations, seed 1, the paper's defaults otherwise). It prints one row per model:

- test AUC / AP: frame-level ROC AUC and average precision of the trained model on the test
  split, i.e. the figures `arnet demo --model NAME` reports at its last snapshot (the demo's
  intermediate evaluations do not change training);
- it/s: training iterations per second, over the training steps only (data sampling, forward,
  backward, optimiser step), without evaluations;
- the `arnet demo` command that reproduces the row's AUC.

The published widths are costly on a CPU: the temporal-conv models, the LSTM and BaS-Net
(2048-wide kernel-3 convolutions on both branches) run far slower there than `single`.
Figures depend on the machine and on torch's thread count; the header says which were used.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from arnet.cli.options import DEMO_ITERATIONS
from arnet.config import TrainConfig
from arnet.evaluation.evaluate import evaluate_model
from arnet.formats import open_dataset
from arnet.formats.synth import SynthConfig, write_synthetic
from arnet.models import count_parameters, create_model, list_models, resolve_model_name
from arnet.training.checkpoint import load_checkpoint, model_from_checkpoint
from arnet.training.runtime import resolve_device
from arnet.training.trainer import Trainer


def parse_model_args(items: list[str]) -> dict[str, dict[str, Any]]:
    """["bas:hidden_dim=512", ...] -> {"bas": {"hidden_dim": 512}}; values parsed as JSON."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, pair = item.partition(":")
        key, eq, value = pair.partition("=")
        if not sep or not eq or not key:
            raise SystemExit(f"--model-arg takes MODEL:KEY=VALUE, got {item!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(resolve_model_name(name), {})[key] = parsed
    return out


def demo_command(name: str, args: argparse.Namespace, model_args: dict[str, Any]) -> str:
    """The `arnet demo` line that trains the same run."""
    parts = ["arnet demo", f"--model {name}", "--no-baseline"]
    if args.iterations != DEMO_ITERATIONS:
        parts.append(f"--iterations {args.iterations}")
    if args.device != "auto":
        parts.append(f"--device {args.device}")
    parts += [f"--model-arg {k}={json.dumps(v)}" for k, v in model_args.items()]
    return " ".join(parts)


def run_one(
    name: str,
    model_args: dict[str, Any],
    data: Path,
    splits: tuple[Any, Any],
    out: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Train one model with the demo's schedule; its test figures and training speed."""
    train_set, test_set = splits
    config = TrainConfig(
        data=str(data),
        model=name,
        model_args=model_args,
        iterations=args.iterations,
        snapshot_every=args.iterations,  # one checkpoint at the end; evaluated below, untimed
        seed=args.seed,
        device=args.device,
        plot=False,
        tensorboard=False,
    )
    trainer = Trainer(config, train_set, None, out / name, progress=not args.quiet)
    started = time.perf_counter()
    result = trainer.run()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)
    seconds = time.perf_counter() - started
    model = model_from_checkpoint(load_checkpoint(result.checkpoint), trainer.device)
    metrics = evaluate_model(model, test_set, trainer.device).metrics
    return {
        "model": name,
        "parameters": count_parameters(model),
        "auc": metrics.auc,
        "ap": metrics.ap,
        "it_per_s": args.iterations / seconds,
        "train_seconds": seconds,
        "command": demo_command(name, args, model_args),
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = f"| {'model':<8} | {'parameters':>11} | test AUC | test AP | {'it/s':>7} | command |"
    lines = [head, "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r['model']:<8} | {r['parameters']:>11,} | {r['auc']:.4f} | {r['ap']:.4f} "
            f"| {r['it_per_s']:>7.2f} | `{r['command']}` |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        default=",".join(e.name for e in list_models()),
        help="comma-separated registry names (default: all)",
    )
    parser.add_argument("--iterations", type=int, default=DEMO_ITERATIONS)
    parser.add_argument("--seed", type=int, default=1, help="training seed (demo: 1)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="MODEL:KEY=VALUE",
        help="constructor argument for one model (repeatable), e.g. bas:hidden_dim=512",
    )
    parser.add_argument("--out", help="folder for the data and runs (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    names = [resolve_model_name(n.strip()) for n in args.models.split(",") if n.strip()]
    model_args = parse_model_args(args.model_arg)
    unknown = sorted(set(model_args) - set(names))
    if unknown:
        raise SystemExit(f"--model-arg names models that are not run: {', '.join(unknown)}")
    for name in names:  # fail on a bad constructor argument before hours of training
        create_model(name, 8, **model_args.get(name, {}))
    device = resolve_device(args.device)
    command = " ".join(["python benchmarks/models.py", *(sys.argv[1:] if argv is None else argv)])

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        synth = SynthConfig()
        data = write_synthetic(root / "data", synth)
        splits = open_dataset(data, in_memory=True)
        print(
            f"default synthetic data: {synth.train_videos} train / {synth.test_videos} test "
            f"videos, dim {synth.dim}; {args.iterations} iterations, seed {args.seed}\n"
            f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU "
            f"threads, Python {platform.python_version()}\n"
            f"measured with: {command}",
            flush=True,
        )
        rows = []
        for name in names:
            row = run_one(name, model_args.get(name, {}), data, splits, root / "runs", args)
            rows.append(row)
            print(
                f"{name}: AUC {row['auc']:.4f}, {row['it_per_s']:.2f} it/s "
                f"({row['train_seconds']:.0f} s)",
                flush=True,
            )
    print()
    print(table(rows))
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
