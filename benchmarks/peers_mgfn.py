"""MGFN's own code (github carolchenyx/MGFN.: models/mgfn.py, train.py, utils/utils.py) run on
the CPU beside arnet's `mgfn`; the interface is `benchmarks/peers.py`'s.

Their code is imported from the checkout, never copied: `mgfn(dims=...)` and `train(nloader,
aloader, model, batch_size, optimizer, device)`, called as their main.py calls them (Adam, lr
1e-3, weight decay 5e-4; a normal and an anomalous loader of `batch_size` videos each, NOT
shuffled (their main.py: shuffle=False), one pass of zip(normal, anomalous) per epoch).
Their data path is replaced by the same arrays: each crop's 32 uniform segments (their
`process_feat`, arnet's `UniformSegments`) with its L2 norm appended as one more channel, as
their dataset.py does; their test path by arnet's metrics on their crop-averaged scores.

What had to change to run on a CPU: nothing in their files; `reference_code` makes `.cuda()`
a no-op and ignores `set_default_tensor_type('torch.cuda.FloatTensor')`. Their forward
slices the features as `x[:, :2048]` (I3D's width), so the data are 2048-wide. Their stage
widths (64, 128, 1024) are a constructor argument: both sides use `DIMS` (narrower, for a
CPU), their batch of 16 + 16 videos is `BATCH` + `BATCH`. With unshuffled loaders zipped,
their code sees only the first min(#normal, #anomalous) // batch batches of each list: the
default set has as many normal as anomalous training videos, so every video is seen.
"""

from __future__ import annotations

import itertools
import random
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peerkit import (
    GradientTap,
    lockstep_result,
    normal_first,
    open_peer_data,
    record_scores,
    reference_code,
    require_checkout,
    score_with_our_metrics,
    uniform_crops,
)

REPOSITORY = "carolchenyx/MGFN."
FILES = ("models/mgfn.py", "train.py", "utils/utils.py", "option.py")
MODEL = "mgfn"
BATCH = 4
"""Videos per class per step, both sides (theirs: 16)."""
DIMS = (64, 64, 128)
"""Stage widths, both sides (theirs: 64, 128, 1024); 64 per attention head as theirs."""
OURS = {"videos_per_class": BATCH, "model_args": {"dims": list(DIMS)}}
SYNTH = {
    "train_videos": 24,
    "train_anomalous": 12,
    "test_videos": 20,
    "test_anomalous": 8,
    "dim": 2048,
    "crops": 10,
    "min_segments": 32,
    "max_segments": 64,
    "event_strength": 0.8,
    "seed": 2502,
}
ARGV = ["--batch_size", str(BATCH)]


def _state_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Their mgfn's state dict under arnet's MgfnNet names."""
    rules = [
        (r"^stages\.(\d)\.0\.layers\.(\d+)\.0\.", r"stages.\1.\2.conv."),
        (r"^stages\.(\d)\.0\.layers\.(\d+)\.1\.norm\.g$", r"stages.\1.\2.aggregate.norm.weight"),
        (r"^stages\.(\d)\.0\.layers\.(\d+)\.1\.norm\.b$", r"stages.\1.\2.aggregate.norm.bias"),
        (r"^stages\.(\d)\.0\.layers\.(\d+)\.1\.", r"stages.\1.\2.aggregate."),
        (r"^stages\.(\d)\.0\.layers\.(\d+)\.2\.0\.g$", r"stages.\1.\2.ff.0.weight"),
        (r"^stages\.(\d)\.0\.layers\.(\d+)\.2\.0\.b$", r"stages.\1.\2.ff.0.bias"),
        (r"^stages\.(\d)\.0\.layers\.(\d+)\.2\.1\.", r"stages.\1.\2.ff.1."),
        (r"^stages\.(\d)\.0\.layers\.(\d+)\.2\.4\.", r"stages.\1.\2.ff.3."),
        (r"^stages\.(\d)\.1\.0\.g$", r"widen.\1.0.weight"),
        (r"^stages\.(\d)\.1\.0\.b$", r"widen.\1.0.bias"),
        (r"^stages\.(\d)\.1\.1\.", r"widen.\1.1."),
        (r"^to_logits\.0\.", "norm."),
    ]
    out = {}
    for key, value in state.items():
        new = key
        for pattern, repl in rules:
            if re.match(pattern, key):
                new = re.sub(pattern, repl, key)
                break
        out[new] = value.clone()
    return out


def _with_magnitude(x: np.ndarray) -> np.ndarray:
    """Features (..., D) with their L2 norm appended, as their dataset.py feeds them."""
    return np.concatenate((x, np.linalg.norm(x, axis=-1, keepdims=True)), axis=-1)


def _their_scores(model: Any, features: np.ndarray) -> np.ndarray:
    """(T, C, D) -> (T,) crop-averaged scores, as their test.py computes them."""
    x = _with_magnitude(features.astype(np.float32)).transpose(1, 0, 2)  # (C, T, D + 1)
    with torch.no_grad():
        scores = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None])[4]
    return scores[0, :, 0].numpy()


def _their_model(mods: dict[str, Any]) -> Any:
    return mods["models.mgfn"].mgfn(dims=DIMS)


def run_reference(
    checkout: str | Path, data: str | Path, iterations: int, seed: int, out: str | Path
) -> dict[str, Any]:
    """Train their mgfn with their train() for `iterations` steps on `data`; arnet's metrics."""
    checkout = require_checkout(checkout, FILES, REPOSITORY)
    train_set, test_set = open_peer_data(data)
    feats, labels = uniform_crops(train_set, 32)
    feats = _with_magnitude(feats)
    from torch.utils.data import DataLoader, TensorDataset

    with reference_code(checkout, ["models.mgfn", "train"], ARGV) as mods:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        model = _their_model(mods)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.0005)

        def loader(label: int) -> DataLoader:
            idx = np.flatnonzero(labels == label)
            ds = TensorDataset(torch.from_numpy(feats[idx]), torch.full((len(idx),), float(label)))
            return DataLoader(ds, batch_size=BATCH, shuffle=False, drop_last=True)

        nloader, aloader = loader(0), loader(1)
        started, done = time.perf_counter(), 0
        while done < iterations:  # their main.py: one train() call = one pass of zip(...)
            steps = min(len(nloader), len(aloader), iterations - done)
            mods["train"].train(
                itertools.islice(nloader, steps), aloader, model, BATCH, optimizer, "cpu"
            )
            done += steps
        seconds = time.perf_counter() - started
        model.eval()
        metrics = score_with_our_metrics(lambda f: _their_scores(model, f), test_set)
    return {**metrics, "seconds": seconds}


def lockstep(
    checkout: str | Path, data: str | Path, iterations: int, seed: int, compat: bool = True
) -> dict[str, Any]:
    """Identical weights and batches into their code and arnet's (`compat`: their code's
    behaviours), each step under the same torch seed; loss and scores compared per step, the
    gradients of the first step, the weights after the last."""
    from arnet.config import TrainConfig
    from arnet.data.sampling import BalancedBatchSampler
    from arnet.models import build_objective, create_model
    from arnet.training.runtime import make_adam

    checkout = require_checkout(checkout, FILES, REPOSITORY)
    train_set, _ = open_peer_data(data)
    uniform = train_set.uniform_segments(32).to_memory()
    sampler = BalancedBatchSampler(uniform, BATCH, 32, crop_mode="all", seed=seed)
    records = []
    with reference_code(checkout, ["models.mgfn", "train"], ARGV) as mods:
        torch.manual_seed(seed)
        theirs = _their_model(mods)
        ours = create_model(MODEL, train_set.dim, dims=list(DIMS))
        ours.load_state_dict(_state_to_ours(theirs.state_dict()))
        opt_theirs = torch.optim.Adam(theirs.parameters(), lr=1e-3, weight_decay=0.0005)
        opt_ours = make_adam(ours, 1e-3, 0.0005, fused=False)
        taps = GradientTap(opt_theirs, theirs), GradientTap(opt_ours, ours)
        objective = build_objective(
            MODEL, TrainConfig(model=MODEL, objective_args={"compat": compat})
        )
        captured: dict[str, torch.Tensor] = {}
        theirs.register_forward_hook(lambda m, i, o: captured.update(theirs=o[4].detach()))
        record_scores(ours, captured)
        C = train_set.crops
        for it in range(iterations):
            batch = normal_first(uniform.batch(sampler.sample(), crop_mode="all"))
            V = batch.videos
            x = batch.features.view(V, C, 32, -1)
            x = torch.cat((x, x.norm(dim=-1, keepdim=True)), dim=-1)  # their magnitude channel
            torch.manual_seed(seed * 1000 + it)
            loss_theirs, _, _ = mods["train"].train(
                [(x[: V // 2], torch.zeros(V // 2))],
                [(x[V // 2 :], torch.ones(V // 2))],
                theirs, BATCH, opt_theirs, "cpu",
            )  # fmt: skip
            torch.manual_seed(seed * 1000 + it)
            ours.train()
            loss, _ = objective(ours, batch)
            opt_ours.zero_grad()
            loss.backward()
            opt_ours.step()
            ours_scores = captured["ours"].view(V, C, -1).mean(dim=1)
            records.append({
                "iteration": it + 1,
                "loss_theirs": float(loss_theirs),
                "loss_ours": loss.item(),
                "scores_max_abs_diff": float((captured["theirs"][..., 0] - ours_scores)
                                             .abs().max()),
            })  # fmt: skip
        states = theirs.state_dict(), ours.state_dict()
    return lockstep_result(records, _state_to_ours, (taps[0].grads, taps[1].grads), states)
