"""BN-WVAD against its own public code (github cool-xuan/BN-WVAD), on the CPU.

    git clone /work/.mirror/cool-xuan+BN-WVAD/repo /tmp/bnwvad      # never committed
    python benchmarks/peers_bnwvad.py --reference /tmp/bnwvad --data SYNTH --lockstep 20
    python benchmarks/peers_bnwvad.py --reference /tmp/bnwvad --data SYNTH --iterations 300 \
        --seeds 1,2,3
    (or through the dispatcher: benchmarks/peers.py --method bnwvad ...)

The same driver as benchmarks/peers_urdmu.py (their code unchanged, `.cuda()` a no-op, wandb
and ipdb stubbed, their batch composition): their `WSAD` (models/), `LossComputer` (losses/)
and `train` step (Adam, gradient norm clipped at 1) against our `bnwvad` model and objective
(`compat=True` for their local attention in the lockstep). Their test score is the summed
BatchNorm divergence times the head's score; ours maps it by z / (1 + z), so the lockstep
compares `raw_scores` and the AUCs are unaffected.
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers_urdmu as common  # noqa: E402
from peers_urdmu import (  # noqa: E402
    NoPlots,
    TheirBatches,
    as_batch,
    evaluate,
    load_data,
    reference_on_cpu,
    score_their_way,
    their_to_ours,
)

from arnet.config import TrainConfig  # noqa: E402
from arnet.models import build_objective, create_model  # noqa: E402

del NoPlots  # their BN-WVAD step logs nothing


def their_args(dim: int) -> types.SimpleNamespace:
    """Their options.py defaults that the network and loss read."""
    return types.SimpleNamespace(
        len_feature=dim, ratio_sample=0.2, ratio_batch=0.4, ratios=[16, 32], kernel_sizes=[1, 1, 1]
    )


def _their_bnwvad():
    import losses as their_losses  # their losses/ package
    import models as their_models  # their models/ package
    import train as their_train  # their train.py

    return their_models, their_losses, their_train


def lockstep(
    checkout: str | Path,
    data: str | Path,
    iterations: int = 20,
    seed: int = 1,
    videos: int = 8,
    segments: int = 32,
    compat: bool = True,
) -> dict[str, Any]:
    """Identical weights (BatchNorm statistics included) and batches into theirs and ours,
    each step clipped at norm 1 as their `train` does; largest differences of the loss, its
    parts, the BatchNorm running means and the test-mode scores of a probe batch."""
    train_set, _ = load_data(data)
    with reference_on_cpu(checkout):
        their_models, their_losses, _ = _their_bnwvad()
        torch.manual_seed(seed)
        net = their_models.WSAD(train_set.dim, flag="Train", args=their_args(train_set.dim))
        ours = create_model("bnwvad", train_set.dim, compat=compat)
        ours.load_state_dict(their_to_ours(net.state_dict()), strict=True)
        criterion = their_losses.LossComputer()
        loss_fn = build_objective("bnwvad", TrainConfig(model="bnwvad"))
        opt_t = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=5e-5)
        opt_o = torch.optim.Adam(ours.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=5e-5)
        batches = TheirBatches(train_set, videos, segments, seed)
        probe, _ = TheirBatches(train_set, videos, segments, seed + 1000).next()
        rows = []
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
            rows.append(
                {
                    "iteration": step + 1,
                    "loss_theirs": cost_t.item(),
                    "loss_ours": cost_o.item(),
                    "loss_diff": abs(cost_t.item() - cost_o.item()),
                    "parts_diff": max(
                        abs(parts_t["normal_loss"].item() - parts_o["normal"].item()),
                        abs(parts_t["mpp_loss"].item() - parts_o["mpp"].item()),
                    ),
                    "bn_mean_diff": max(
                        float((a - b).abs().max()) for a, b in zip(means_t, means_o)
                    ),
                    "score_diff": float((s_t - s_o).abs().max()),
                    "score_scale": float(s_t.abs().max()),
                }
            )
    return {
        "method": "bnwvad",
        "compat": compat,
        "iterations": iterations,
        "seed": seed,
        "max_loss_diff": max(r["loss_diff"] for r in rows),
        "max_parts_diff": max(r["parts_diff"] for r in rows),
        "max_score_diff": max(r["score_diff"] for r in rows),
        "rows": rows,
    }


def run_reference(
    checkout: str | Path,
    data: str | Path,
    iterations: int,
    seed: int,
    out: str | Path | None = None,
    videos: int = 8,
    segments: int = 32,
) -> dict[str, Any]:
    """Their network, loss and `train` step (clipping included) for `iterations` steps, then
    scored their way (every crop, divergence x score averaged) by our metrics."""
    train_set, test_set = load_data(data)
    with reference_on_cpu(checkout):
        their_models, their_losses, their_train = _their_bnwvad()
        import utils as their_utils

        their_utils.set_seed(seed)
        net = their_models.WSAD(train_set.dim, flag="Train", args=their_args(train_set.dim))
        criterion = their_losses.LossComputer()
        optimizer = torch.optim.Adam(
            net.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=5e-5
        )
        batches = TheirBatches(train_set, videos, segments, seed)
        start = time.perf_counter()
        for _ in range(iterations):
            x, y = batches.next()
            normal = iter([(x[:videos], y[:videos])])
            anomalous = iter([(x[videos:], y[videos:])])
            their_train.train(net, normal, anomalous, optimizer, criterion)
        seconds = time.perf_counter() - start
        net.eval()
        net.flag = "Test"
        metrics = evaluate(score_their_way(net, test_set), test_set)
    record = {"method": "bnwvad", "side": "theirs", "seed": seed, "iterations": iterations,
              "auc": metrics.auc, "ap": metrics.ap, "train_seconds": seconds}  # fmt: skip
    if out:
        common._append(out, record)
    return record


if __name__ == "__main__":
    raise SystemExit(common.main(method="bnwvad", module=sys.modules[__name__]))
