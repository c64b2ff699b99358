"""What the `peers_NAME.py` drivers share (see `benchmarks/peers.py` for the interface).

- `reference_code(checkout, modules, argv)`: imports a method's own (CUDA-only) modules from
  its checkout and lets them run on the CPU, their files untouched: `Tensor.cuda()` returns
  the tensor, `torch.set_default_tensor_type('torch.cuda.FloatTensor')` is ignored, the
  loggers they import (visdom, tensorboardX) are inert stand-ins, `sys.argv` is what their
  `option.py` parses at import. Everything is put back on exit.
- `peer_data(...)`: a synthetic ten-crop set (`arnet synth --crops 10`), cached.
- `uniform_crops(dataset, n)`: each training video as (C, n, D), the 32 uniform segments per
  crop their loaders feed (arnet's `UniformSegments`, the same rule as their `process_feat`).
- `score_with_our_metrics(...)`: their model's segment scores of the test videos, measured
  with arnet's frame-level metrics.
- `train_ours(...)`: arnet's own training of the same method, same data and iterations.
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


class _Inert:
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
    saved_env = os.environ.get("CUDA_VISIBLE_DEVICES")
    theirs = {m.split(".")[0] for m in modules} | {"option", "config", "utils", "model", "train"}

    def cpu_default(kind: Any) -> None:
        if "cuda" not in str(kind):
            saved_default(kind)

    try:
        for name in list(sys.modules):
            if name.split(".")[0] in theirs:
                del sys.modules[name]
        sys.modules["visdom"] = _stub("visdom", Visdom=_Inert)
        sys.modules["tensorboardX"] = _stub("tensorboardX", SummaryWriter=_Inert)
        torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
        torch.set_default_tensor_type = cpu_default  # type: ignore[assignment]
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
                name.split(".")[0] in theirs | {"visdom", "tensorboardX"}
                or where.startswith(str(checkout))
            ) and saved_modules.get(name) is not module:
                del sys.modules[name]
        for name, module in saved_modules.items():
            if name.split(".")[0] in theirs | {"visdom", "tensorboardX"}:
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
