"""BN-WVAD's own code (github cool-xuan/BN-WVAD: models/, losses/, train.py) run on the CPU
beside arnet's `bnwvad`; the interface is `benchmarks/peers.py`'s.

    python benchmarks/peers.py --method bnwvad --reference CHECKOUT --lockstep --iterations 20
    python benchmarks/peers.py --method bnwvad --reference CHECKOUT --iterations 200

The same arrangement as benchmarks/peers_urdmu.py (their code unchanged and imported from the
checkout, their batch composition, the same synthetic set and batch): their `WSAD`
(models/), `LossComputer` (losses/) and `train` step (Adam, gradient norm clipped at 1)
against our `bnwvad` model and objective (`compat=True` for their local attention in the
lockstep). Their test score is the summed BatchNorm divergence times the head's score; ours
maps it by z / (1 + z), so the lockstep compares `raw_scores` and the AUCs are unaffected.
"""

from __future__ import annotations

import time
import types
from pathlib import Path
from typing import Any

import torch
from peerkit import (
    lockstep_result,
    open_peer_data,
    reference_code,
    require_checkout,
)
from peers_urdmu import (
    ADAM,
    BATCH,
    COMPAT,
    OURS,
    SEGMENTS,
    SYNTH,
    TheirBatches,
    as_batch,
    first_grads,
    score_their_way,
    their_to_ours,
    value,
)

REPOSITORY = "cool-xuan/BN-WVAD"
FILES = ("models/__init__.py", "losses/__init__.py", "train.py", "utils.py")
MODEL = "bnwvad"
THEIR_MODULES = ["models", "losses", "train", "utils"]
__all__ = ["COMPAT", "OURS", "SYNTH", "lockstep", "run_reference"]


def their_args(dim: int) -> types.SimpleNamespace:
    """Their options.py defaults that the network and loss read."""
    return types.SimpleNamespace(
        len_feature=dim, ratio_sample=0.2, ratio_batch=0.4, ratios=[16, 32], kernel_sizes=[1, 1, 1]
    )


def lockstep(
    checkout: str | Path, data: str | Path, iterations: int, seed: int, compat: bool = True
) -> dict[str, Any]:
    """Identical weights (BatchNorm statistics included) and batches into theirs and ours,
    each step clipped at norm 1 as their `train` does; per step the loss, the largest
    difference of a loss part, of the BatchNorm running means and of the probe batch's
    test-mode raw scores."""
    from arnet.config import TrainConfig
    from arnet.models import build_objective, create_model

    checkout = require_checkout(checkout, FILES, REPOSITORY)
    train_set, _ = open_peer_data(data)
    with reference_code(checkout, THEIR_MODULES) as mods:
        torch.manual_seed(seed)
        net = mods["models"].WSAD(train_set.dim, flag="Train", args=their_args(train_set.dim))
        ours = create_model(MODEL, train_set.dim, compat=compat)
        ours.load_state_dict(their_to_ours(net.state_dict()), strict=True)
        criterion = mods["losses"].LossComputer()
        loss_fn = build_objective(MODEL, TrainConfig(model=MODEL))
        opt_t = torch.optim.Adam(net.parameters(), **ADAM)
        opt_o = torch.optim.Adam(ours.parameters(), **ADAM)
        batches = TheirBatches(train_set, BATCH, SEGMENTS, seed)
        probe, _ = TheirBatches(train_set, BATCH, SEGMENTS, seed + 1000).next()
        rows: list[dict[str, Any]] = []
        grads: list[dict[str, torch.Tensor]] = []  # the first step's: theirs, ours
        for step in range(iterations):
            x, y = batches.next()
            net.train()
            net.flag = "Train"
            ours.train()
            cost_t, parts_t = criterion(net(x))
            cost_o, parts_o = loss_fn(ours, as_batch(x, y))
            for opt, model, cost in ((opt_t, net, cost_t), (opt_o, ours, cost_o)):
                opt.zero_grad()
                cost.backward()
                if step == 0:
                    grads.append(first_grads(model))
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
            net.eval()
            net.flag = "Test"
            ours.eval()
            with torch.no_grad():
                s_t = net(probe)
                s_o = ours.raw_scores(probe, torch.ones(probe.shape[:2], dtype=torch.bool))
            means_t = [bn.running_mean for bn in net.normal_head.bns]
            means_o = [bn.running_mean for bn in ours.head.norms]
            rows.append({
                "iteration": step + 1,
                "loss_theirs": cost_t.item(),
                "loss_ours": cost_o.item(),
                "parts_max_abs_diff": max(
                    abs(value(parts_t["normal_loss"]) - value(parts_o["normal"])),
                    abs(value(parts_t["mpp_loss"]) - value(parts_o["mpp"])),
                ),
                "bn_means_max_abs_diff": max(float((a - b).abs().max())
                                             for a, b in zip(means_t, means_o)),
                "scores_max_abs_diff": float((s_t - s_o).abs().max()),
                "scores_scale": float(s_t.abs().max()),
            })  # fmt: skip
        states = net.state_dict(), ours.state_dict()
    return lockstep_result(rows, their_to_ours, (grads[0], grads[1]), states)


def run_reference(
    checkout: str | Path, data: str | Path, iterations: int, seed: int, out: str | Path
) -> dict[str, Any]:
    """Their network, loss and `train` step (clipping included) for `iterations` steps, then
    scored their way (every crop, divergence x score averaged) by our metrics."""
    checkout = require_checkout(checkout, FILES, REPOSITORY)
    train_set, test_set = open_peer_data(data)
    with reference_code(checkout, THEIR_MODULES) as mods:
        mods["utils"].set_seed(seed)
        net = mods["models"].WSAD(train_set.dim, flag="Train", args=their_args(train_set.dim))
        criterion = mods["losses"].LossComputer()
        optimizer = torch.optim.Adam(net.parameters(), **ADAM)
        batches = TheirBatches(train_set, BATCH, SEGMENTS, seed)
        start = time.perf_counter()
        for _ in range(iterations):
            x, y = batches.next()
            normal = iter([(x[:BATCH], y[:BATCH])])
            anomalous = iter([(x[BATCH:], y[BATCH:])])
            mods["train"].train(net, normal, anomalous, optimizer, criterion)
        seconds = time.perf_counter() - start
        net.eval()
        net.flag = "Test"
        metrics = score_their_way(net, test_set)
    return {**metrics, "seconds": seconds}
