"""What the `peers_NAME.py` drivers share (see `benchmarks/peers.py` for the interface).

- `reference_code(checkout, modules, argv)`: imports a method's own (CUDA-only) modules from
  its checkout and lets them run on the CPU, their files untouched: `Tensor.cuda()` and
  `Module.cuda()` return what they were given, `torch.set_default_tensor_type(...)` is
  ignored (their CUDA float type; the caller's default dtype stays, float64 included), the
  loggers and debuggers they import (`STUBBED`) are inert stand-ins, `sys.argv` is what their
  `option.py` parses at import. Everything is put back on exit.
- `peer_data(...)`: a synthetic ten-crop set (`arnet synth --crops 10`), cached.
- `uniform_crops(dataset, n)`: each training video as (C, n, D), the 32 uniform segments per
  crop their loaders feed (arnet's `UniformSegments`, the same rule as their `process_feat`).
- `score_with_our_metrics(...)`: their model's segment scores of the test videos, measured
  with arnet's frame-level metrics.
- `train_ours(...)`: arnet's own training of the same method, same data and iterations.
- For the lockstep: `normal_first(batch)` (their batches' order), `record_scores(model, into)`
  (arnet's scores of each training pass), `GradientTap` (a model's gradients of the first
  step, taken as its optimizer steps) and `largest_difference(theirs, ours)` (the worst
  tensor of two state or gradient dicts under arnet's names).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "benchmarks" / ".cache" / "peers"


STUBBED = ("visdom", "tensorboardX", "ipdb", "wandb")
"""Loggers and debuggers their modules import at the top: inert stand-ins while they run."""


class PeerError(Exception):
    """A bad --reference, --method or --data: one line for the user."""


def require_checkout(checkout: str | Path, files: Sequence[str], repository: str) -> Path:
    """The checkout folder, holding `files`; PeerError naming what is missing otherwise."""
    path = Path(checkout)
    if not path.is_dir():
        raise PeerError(f"--reference {path}: no such folder (a checkout of {repository})")
    missing = [f for f in files if not (path / f).is_file()]
    if missing:
        raise PeerError(
            f"--reference {path}: not a checkout of {repository} ({', '.join(missing)} missing)"
        )
    return path.resolve()


def _stub(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


class Inert:
    """Accepts any call and attribute (their Visualizer / SummaryWriter)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *a, **k: None


@contextlib.contextmanager
def reference_code(
    checkout: Path, modules: Sequence[str], argv: Sequence[str] = ()
) -> Iterator[dict[str, types.ModuleType]]:
    """Their modules (`modules`, dotted names inside the checkout), imported fresh, usable on
    the CPU while the context lasts (see the module docstring)."""
    import torch

    saved_modules = dict(sys.modules)
    saved_argv, saved_path, saved_cwd = list(sys.argv), list(sys.path), os.getcwd()
    saved_cuda, saved_default = torch.Tensor.cuda, torch.set_default_tensor_type
    saved_module_cuda = torch.nn.Module.cuda
    saved_env = os.environ.get("CUDA_VISIBLE_DEVICES")
    theirs = {m.split(".")[0] for m in modules} | {"option", "config", "utils", "model", "train"}

    def keep_default(kind: Any) -> None:
        pass

    try:
        for name in list(sys.modules):
            if name.split(".")[0] in theirs:
                del sys.modules[name]
        for name in STUBBED:
            sys.modules[name] = _stub(name, Visdom=Inert, SummaryWriter=Inert)
        torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
        torch.nn.Module.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
        torch.set_default_tensor_type = keep_default  # type: ignore[assignment]
        sys.argv = ["main.py", *argv]
        # their top-level names (models, utils, ...) must not find ours (benchmarks/models.py)
        here = Path(__file__).resolve().parent
        sys.path[:] = [str(checkout)] + [
            p for p in saved_path if p not in ("", ".") and Path(p).resolve() != here
        ]
        os.chdir(checkout)  # they read list/... relative to their folder
        if not hasattr(np, "int"):  # their process_feat spells np.int (removed in numpy 1.24)
            np.int = int  # type: ignore[attr-defined]
        yield {m: importlib.import_module(m) for m in modules}
    finally:
        os.chdir(saved_cwd)
        sys.argv, sys.path[:] = saved_argv, saved_path
        torch.Tensor.cuda = saved_cuda  # type: ignore[method-assign]
        torch.nn.Module.cuda = saved_module_cuda  # type: ignore[method-assign]
        torch.set_default_tensor_type = saved_default  # type: ignore[assignment]
        if saved_env is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved_env
        # drop their modules and the stand-ins, nothing else: a library module imported
        # meanwhile (torch's, lazily) must stay, or importing it again breaks it
        for name, module in list(sys.modules.items()):
            where = str(getattr(module, "__file__", None) or "")
            if (
                name.split(".")[0] in theirs | set(STUBBED) or where.startswith(str(checkout))
            ) and saved_modules.get(name) is not module:
                del sys.modules[name]
        for name, module in saved_modules.items():
            if name.split(".")[0] in theirs | set(STUBBED):
                sys.modules[name] = module


# ---------------------------------------------------------------------- data


def peer_data(name: str, **synth: Any) -> Path:
    """A cached `arnet synth` set for `name` (SynthConfig fields `synth`)."""
    from arnet.config import SynthConfig
    from arnet.formats.synth import write_synthetic

    cfg = SynthConfig(**synth)
    key = "-".join(f"{k}{v}" for k, v in sorted(synth.items()))
    folder = CACHE / f"{name}-{key}"
    if not (folder / "synth.json").is_file() and not folder.is_dir():
        write_synthetic(folder, cfg)
    elif not any(folder.iterdir()):
        folder.rmdir()
        write_synthetic(folder, cfg)
    return folder


def open_peer_data(data: str | Path) -> tuple[Any, Any]:
    """(train, test) datasets of `data`, in memory; PeerError unless ten-crop-like."""
    from arnet.formats import open_dataset

    try:
        train, test = open_dataset(str(data), in_memory=True)
    except (ValueError, OSError) as exc:  # arnet's DataError is a ValueError
        raise PeerError(f"--data {data}: {exc}") from None
    if train.crops is None:
        raise PeerError(f"--data {data}: features are (T, D); these methods train on crops "
                        "(T, C, D): make a set with `arnet synth --crops 10`")  # fmt: skip
    return train, test


def uniform_crops(dataset: Any, n: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Every video of `dataset` as (C, n, D) uniform segments per crop, and its labels."""
    from arnet.data.dataset import UniformSegments

    feats = [np.asarray(UniformSegments(dataset.features(i), n)) for i in range(len(dataset))]
    return np.stack([f.transpose(1, 0, 2) for f in feats]), dataset.labels.copy()


def score_with_our_metrics(
    score_video: Callable[[np.ndarray], np.ndarray], test: Any
) -> dict[str, float]:
    """Frame-level metrics (arnet's) of `score_video((T, C, D) features) -> (T,) scores`."""
    from arnet.evaluation.evaluate import evaluate

    scores = {name: np.asarray(score_video(np.asarray(test.features(i))), dtype=np.float64)
              for i, name in enumerate(test.names)}  # fmt: skip
    m = evaluate(scores, test)
    return {"auc": float(m.auc), "ap": float(m.ap), "auc_anomalous": float(m.auc_anomalous)}


def train_ours(
    model: str,
    data: str | Path,
    iterations: int,
    seed: int,
    out: str | Path,
    **overrides: Any,
) -> dict[str, Any]:
    """arnet's training of `model` at its train_defaults, `overrides` on top, on the CPU;
    returns the final snapshot's metrics and the time per iteration."""
    from arnet.config import TrainConfig
    from arnet.models import model_entry
    from arnet.training.trainer import train

    train_set, test_set = open_peer_data(data)
    values = {
        **model_entry(model).train_defaults,
        **overrides,
        "data": str(data),
        "model": model,
        "iterations": iterations,
        "snapshot_every": iterations,
        "seed": seed,
        "device": "cpu",
        "plot": False,
        "tensorboard": False,
    }
    config = TrainConfig(**values)
    started = time.perf_counter()
    result = train(config, train_set, test_set, Path(out), progress=False)
    seconds = time.perf_counter() - started
    m = result.metrics
    return {
        "auc": float(m.auc),
        "ap": float(m.ap),
        "auc_anomalous": float(m.auc_anomalous),
        "seconds": seconds,
    }


# ---------------------------------------------------------------------- lockstep


def in_default_dtype(x: Any) -> Any:
    """A floating tensor in torch's default dtype (float64 under `peers.py --float64`)."""
    import torch

    return x.to(torch.get_default_dtype()) if x.is_floating_point() else x


def normal_first(batch: Any) -> Any:
    """An arnet batch (anomalous videos first, then as many normal ones, each video's crops
    contiguous) in their order, the normal videos first, in torch's default dtype."""
    import torch

    from arnet.data.dataset import Batch

    V, C = batch.videos, batch.crops or 1
    order = np.r_[np.arange(V // 2, V), np.arange(V // 2)]
    rows = torch.from_numpy((order[:, None] * C + np.arange(C)).reshape(-1))
    return Batch(in_default_dtype(batch.features[rows]), batch.mask[rows], batch.lengths[rows],
                 in_default_dtype(batch.labels[rows]), batch.crops)  # fmt: skip


def record_scores(model: Any, into: dict[str, Any]) -> None:
    """Keep `model`'s segment scores of every `embed` pass in `into["ours"]` (detached)."""
    embed = model.embed

    def recorded(features: Any, mask: Any) -> Any:
        scores, feats = embed(features, mask)
        into["ours"] = scores.detach()
        return scores, feats

    model.embed = recorded


class GradientTap:
    """The gradients of `model`'s parameters at the first `optimizer.step()` (taken just
    before it steps), by parameter name: where a training step of their code runs inside
    their function, what its backward pass gave."""

    def __init__(self, optimizer: Any, model: Any) -> None:
        self.grads: dict[str, Any] = {}
        step = optimizer.step

        def tapped(*args: Any, **kwargs: Any) -> Any:
            if not self.grads:
                self.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()
                              if p.grad is not None}  # fmt: skip
            return step(*args, **kwargs)

        optimizer.step = tapped


def largest_difference(theirs: dict[str, Any], ours: dict[str, Any]) -> tuple[float, str]:
    """(the largest relative difference of one tensor, its name) between two dicts of tensors
    under arnet's names: the L2 norm of the difference over the norm of ours; a tensor one side
    lacks counts as a difference of 1 (inf when ours is zero)."""
    worst, name = 0.0, ""
    for key in sorted(set(theirs) | set(ours)):
        if key not in theirs or key not in ours:
            value = 1.0
        else:
            a, b = theirs[key].double(), ours[key].double()
            scale = float(b.norm())
            diff = float((a - b).norm())
            value = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
        if value > worst or not name:
            worst, name = value, key
    return worst, name


def lockstep_result(
    steps: list[dict[str, Any]],
    to_ours: Callable[[dict[str, Any]], dict[str, Any]],
    grads: tuple[dict[str, Any], dict[str, Any]],
    states: tuple[dict[str, Any], dict[str, Any]],
) -> dict[str, Any]:
    """A driver's lockstep answer (see benchmarks/peers.py): the per-step records; the worst
    tensor of the first step's gradients and of the last step's weights (`grads`, `states`:
    theirs under their names, ours; `to_ours` renames theirs); and the largest value over the
    steps of every other `*_abs_diff` a record holds (loss parts, BatchNorm statistics)."""
    g, g_name = largest_difference(to_ours(grads[0]), grads[1])
    w, w_name = largest_difference(to_ours(states[0]), states[1])
    extra = sorted(
        {k for r in steps for k in r if k.endswith("_abs_diff")} - {"scores_max_abs_diff"}
    )
    return {"iterations": steps, "grads_max_rel_diff_first_step": g, "grads_worst_tensor": g_name,
            "weights_max_rel_diff_after": w, "weights_worst_tensor": w_name,
            **{k: max(r[k] for r in steps) for k in extra}}  # fmt: skip
