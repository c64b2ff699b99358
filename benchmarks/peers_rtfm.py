"""RTFM's own code (github tianyu0207/RTFM: model.py, train.py) run on the CPU beside arnet's
`rtfm`; the interface is `benchmarks/peers.py`'s.

Their code is imported from the checkout, never copied: `Model(n_features, batch_size)` and
`train(nloader, aloader, model, batch_size, optimizer, viz, device)`, called as their
main.py calls them (Adam, lr 1e-3, weight decay 5e-3; a normal and an anomalous loader of
`batch_size` videos each, shuffled, re-iterated when spent). Their data path is replaced by
the same arrays: each training video's ten crops as 32 uniform segments (their
`process_feat`, arnet's `UniformSegments`), their test path by arnet's metrics on their
model's crop-averaged scores of every whole test video.

What had to change to run on a CPU at all: nothing in their files; `reference_code` makes
`.cuda()` a no-op. Their Aggregate hard-codes I3D's 2048 channels (`Conv1d(in_channels=2048,
...)`, `BatchNorm1d(2048)`): with 2048-wide data their model runs as written; with narrower
data (the default set is 128-wide: at 2048 a step of 4 + 4 ten-crop videos took 80 s on this
shared machine) their model module is handed a `torch.nn` whose Conv1d and BatchNorm1d take
the data's width where their code means the features' 2048, nothing else changed
(`_NarrowNN`). Their
batch of 32 + 32 videos is `BATCH` + `BATCH` here, on both sides.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peerkit import (
    GradientTap,
    Inert,
    lockstep_result,
    normal_first,
    open_peer_data,
    record_scores,
    reference_code,
    require_checkout,
    uniform_crops,
)

REPOSITORY = "tianyu0207/RTFM"
FILES = ("model.py", "train.py")
MODEL = "rtfm"
BATCH = 4
"""Videos per class per step, both sides (theirs: 32)."""
OURS = {"videos_per_class": BATCH}
"""arnet's training at equal settings: its train_defaults (their schedule) with their batch."""
SYNTH = {
    "train_videos": 40,
    "train_anomalous": 12,
    "test_videos": 30,
    "test_anomalous": 10,
    "dim": 128,
    "crops": 10,
    "min_segments": 32,
    "max_segments": 96,
    "event_strength": 0.8,
    "seed": 2501,
}
"""The synthetic set `peers.py` makes when given no --data (`arnet synth --crops 10`)."""


def _state_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Their Model's state dict under arnet's RtfmNet names."""
    names = {"Aggregate.conv_4.0.": "temporal.reduce.", "Aggregate.conv_5.0.": "temporal.fuse.",
             "Aggregate.conv_5.2.": "temporal.fuse_bn.",
             "Aggregate.non_local.W.0.": "temporal.non_local.out.",
             "Aggregate.non_local.W.1.": "temporal.non_local.out_bn.",
             "Aggregate.non_local.": "temporal.non_local."}  # fmt: skip
    for i in range(3):
        names[f"Aggregate.conv_{i + 1}.0."] = f"temporal.dilated.{i}."
        names[f"Aggregate.conv_{i + 1}.2."] = f"temporal.dilated_bn.{i}."
    out = {}
    for key, value in state.items():
        new = key
        for old, ours in names.items():
            if key.startswith(old):
                new = ours + key[len(old) :]
                break
        out[new] = value.clone()
    return out


class _NarrowNN:
    """torch.nn for their model module, 2048 channels read as `dim` (see the docstring)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def Conv1d(self, in_channels: int, out_channels: int, *args: Any, **kw: Any) -> Any:  # noqa: N802
        # conv_4 (2048 -> 512) reads the features; conv_5 (2048 -> 2048) reads the four
        # 512-wide branches (2048 whatever the features' width) and writes the features
        if out_channels == 2048:
            out_channels = self.dim
        elif in_channels == 2048:
            in_channels = self.dim
        return torch.nn.Conv1d(in_channels, out_channels, *args, **kw)

    def BatchNorm1d(self, n: int, *args: Any, **kw: Any) -> Any:  # noqa: N802
        return torch.nn.BatchNorm1d(self.dim if n == 2048 else n, *args, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(torch.nn, name)


def _their_model(mods: dict[str, Any], dim: int) -> Any:
    """Their Model(dim, BATCH), its hard-coded 2048 channels read as `dim` when it differs."""
    if dim != 2048:
        mods["model"].nn = _NarrowNN(dim)
    return mods["model"].Model(dim, BATCH)


def _recording(mods: dict[str, Any]) -> dict[str, float]:
    """Wrap their loss pieces (module attributes their train() looks up when called) so that
    the total it back-propagates is known."""
    train_mod, seen = mods["train"], {}
    loss_cls, sparsity, smooth = train_mod.RTFM_loss, train_mod.sparsity, train_mod.smooth

    forward = loss_cls.forward

    def recorded_forward(self: Any, *args: Any) -> torch.Tensor:
        out = forward(self, *args)
        seen["rtfm"] = float(out.detach())
        return out

    def rec(fn: Any, name: str) -> Any:
        def wrapped(*args: Any) -> torch.Tensor:
            out = fn(*args)
            seen[name] = float(out.detach())
            return out

        return wrapped

    loss_cls.forward = recorded_forward  # their freshly imported class, discarded after
    train_mod.sparsity = rec(sparsity, "sparsity")
    train_mod.smooth = rec(smooth, "smooth")
    return seen


def _their_scores(model: Any, features: np.ndarray) -> np.ndarray:
    """(T, C, D) -> (T,) crop-averaged scores, as their test_10crop.py computes them."""
    x = torch.from_numpy(np.ascontiguousarray(features.transpose(1, 0, 2)))[None]  # (1, C, T, D)
    with torch.no_grad():
        scores = model(inputs=x)[6]  # (1, T, 1)
    return scores[0, :, 0].numpy()


def run_reference(
    checkout: str | Path, data: str | Path, iterations: int, seed: int, out: str | Path
) -> dict[str, Any]:
    """Train their Model with their train() for `iterations` steps on `data`; arnet's metrics."""
    checkout = require_checkout(checkout, FILES, REPOSITORY)
    train_set, test_set = open_peer_data(data)
    feats, labels = uniform_crops(train_set, 32)
    from torch.utils.data import DataLoader, TensorDataset

    with reference_code(checkout, ["model", "train"]) as mods:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        model = _their_model(mods, train_set.dim)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.005)

        def loader(label: int) -> DataLoader:
            idx = np.flatnonzero(labels == label)
            ds = TensorDataset(torch.from_numpy(feats[idx]), torch.full((len(idx),), float(label)))
            return DataLoader(ds, batch_size=BATCH, shuffle=True, drop_last=True)

        nloader, aloader = loader(0), loader(1)
        started = time.perf_counter()
        for step in range(1, iterations + 1):  # their main.py's loop
            if (step - 1) % len(nloader) == 0:
                niter = iter(nloader)
            if (step - 1) % len(aloader) == 0:
                aiter = iter(aloader)
            mods["train"].train(niter, aiter, model, BATCH, optimizer, Inert(), "cpu")
        seconds = time.perf_counter() - started
        model.eval()
        from peerkit import score_with_our_metrics

        metrics = score_with_our_metrics(lambda f: _their_scores(model, f), test_set)
    return {**metrics, "seconds": seconds}


def lockstep(
    checkout: str | Path, data: str | Path, iterations: int, seed: int, compat: bool = True
) -> dict[str, Any]:
    """Identical weights and batches into their code and arnet's (`compat`: their code's
    behaviours), each step under the same torch seed (dropout masks alike); loss and scores
    compared per step, the gradients of the first step, the weights after the last."""
    from arnet.config import TrainConfig
    from arnet.data.sampling import BalancedBatchSampler
    from arnet.models import build_objective, create_model
    from arnet.training.runtime import make_adam

    checkout = require_checkout(checkout, FILES, REPOSITORY)
    train_set, _ = open_peer_data(data)
    uniform = train_set.uniform_segments(32).to_memory()
    sampler = BalancedBatchSampler(uniform, BATCH, 32, crop_mode="all", seed=seed)
    records = []
    with reference_code(checkout, ["model", "train"]) as mods:
        torch.manual_seed(seed)
        theirs = _their_model(mods, train_set.dim)
        ours = create_model(MODEL, train_set.dim)
        ours.load_state_dict(_state_to_ours(theirs.state_dict()))
        opt_theirs = torch.optim.Adam(theirs.parameters(), lr=1e-3, weight_decay=0.005)
        opt_ours = make_adam(ours, 1e-3, 0.005, fused=False)
        taps = GradientTap(opt_theirs, theirs), GradientTap(opt_ours, ours)
        objective = build_objective(
            MODEL, TrainConfig(model=MODEL, objective_args={"compat": compat})
        )
        seen = _recording(mods)
        captured: dict[str, torch.Tensor] = {}
        theirs.register_forward_hook(lambda m, i, o: captured.update(theirs=o[6].detach()))
        record_scores(ours, captured)
        C = train_set.crops
        for it in range(iterations):
            batch = normal_first(uniform.batch(sampler.sample(), crop_mode="all"))
            V = batch.videos
            x = batch.features.view(V, C, 32, -1)
            normal, anomalous = x[: V // 2], x[V // 2 :]
            torch.manual_seed(seed * 1000 + it)
            mods["train"].train(
                iter([(normal, torch.zeros(V // 2))]),
                iter([(anomalous, torch.ones(V // 2))]),
                theirs, BATCH, opt_theirs, Inert(), "cpu",
            )  # fmt: skip
            loss_theirs = seen["rtfm"] + seen["smooth"] + seen["sparsity"]
            torch.manual_seed(seed * 1000 + it)
            ours.train()
            loss, _ = objective(ours, batch)
            opt_ours.zero_grad()
            loss.backward()
            opt_ours.step()
            ours_scores = captured["ours"].view(V, C, -1).mean(dim=1)
            records.append({
                "iteration": it + 1,
                "loss_theirs": loss_theirs,
                "loss_ours": loss.item(),
                "scores_max_abs_diff": float((captured["theirs"][..., 0] - ours_scores)
                                             .abs().max()),
            })  # fmt: skip
        states = theirs.state_dict(), ours.state_dict()
    return lockstep_result(records, _state_to_ours, (taps[0].grads, taps[1].grads), states)
