"""UR-DMU's own code (github henrryzh1/UR-DMU: model.py, train.py) run on the CPU beside
arnet's `urdmu`; the interface is `benchmarks/peers.py`'s.

    python benchmarks/peers.py --method urdmu --reference URDMU_CHECKOUT --lockstep --iterations 20
    python benchmarks/peers.py --method urdmu --reference URDMU_CHECKOUT --iterations 200

Their code is imported from the checkout, never copied: `WSAD(dim, flag, a_nums, n_nums)`,
`AD_Loss` and `train(net, normal, abnormal, optimizer, criterion, plotter, index)`, as their
ucf_main.py calls them (Adam, lr 1e-4, betas (0.9, 0.999), weight decay 5e-5; their seeding,
`utils.set_seed`, before the network is built). `peerkit.reference_code` runs them on the
CPU (`.cuda()` a no-op, their visdom / ipdb / wandb imports inert). Their data path is
replaced by the same arrays in their composition (`TheirBatches`: n normal then n anomalous
crop files, shuffled per epoch, drop_last, each file as `SEGMENTS` uniform segments), their
test by arnet's metrics on every crop of a whole test video, scores averaged over crops.

- `lockstep`: their WSAD and AD_Loss and our `urdmu` (`compat=True`: their local-attention
  normalisation) from the same weights (theirs copied into ours), on the same batches and
  random streams (dropout, the Gaussian sample), stepping the same Adam; per step the loss,
  each of its parts and the test-mode scores of a fixed probe batch, the first step's
  gradients.
- `run_reference`: their training loop for `iterations` steps, scored their way.

Sizes: their network is 512 wide whatever the data; `BATCH` + `BATCH` videos of `SEGMENTS`
segments per step (theirs: 64 + 64 of 200) keep a step near a second on one core.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peerkit import (
    Inert,
    in_default_dtype,
    lockstep_result,
    open_peer_data,
    reference_code,
    require_checkout,
    score_with_our_metrics,
)

from arnet.data.dataset import Batch, FeatureDataset

REPOSITORY = "henrryzh1/UR-DMU"
FILES = ("model.py", "train.py", "memory.py", "translayer.py", "utils.py")
MODEL = "urdmu"
BATCH = 8
"""Videos per class per step, both sides (theirs: 64)."""
SEGMENTS = 32
"""Uniform segments per video, both sides (theirs: 200)."""
OURS = {"videos_per_class": BATCH, "uniform_segments": SEGMENTS}
"""arnet's training at equal settings: its train_defaults (their schedule) with their batch."""
COMPAT = {"model_args": {"compat": True}}
"""compat is a model option here (their local attention), not the objective's."""
SYNTH = {
    "train_videos": 80,
    "train_anomalous": 24,
    "test_videos": 40,
    "test_anomalous": 12,
    "dim": 64,
    "crops": 10,
    "min_segments": 24,
    "max_segments": 96,
}
"""The synthetic set `peers.py` makes when given no --data (`arnet synth --crops 10`)."""
ADAM = {"lr": 1e-4, "betas": (0.9, 0.999), "weight_decay": 5e-5}
"""Their optimiser (both methods' main.py)."""


# ---------------------------------------------------------------------- their data handling


def uniform(features: np.ndarray, n: int) -> np.ndarray:
    """Their loaders' n segments: the mean of rows [r_i, r_(i+1)), r = linspace(0, T, n + 1)
    cast to integers, or row r_i when that range is empty."""
    r = np.linspace(0, len(features), n + 1).astype(np.int64)
    out = np.zeros((n, features.shape[-1]), dtype=np.float32)
    for i in range(n):
        out[i] = features[r[i] : r[i + 1]].mean(0) if r[i] != r[i + 1] else features[r[i]]
    return out


class CropFiles:
    """Their training list of one class: every (video, crop) pair is one item, shuffled per
    epoch (DataLoader shuffle, drop_last), `n` per batch, each seen as `segments` segments."""

    def __init__(self, dataset: FeatureDataset, label: int, n: int, segments: int, rng) -> None:
        self.dataset, self.n, self.segments, self.rng = dataset, n, segments, rng
        crops = dataset.crops or 1
        self.items = [(int(v), c) for v in dataset.indices_of(label) for c in range(crops)]
        if len(self.items) < n:
            raise SystemExit(f"class {label}: {len(self.items)} crop files, fewer than {n}")
        self.order: list[int] = []

    def next(self) -> np.ndarray:
        if len(self.order) < self.n:  # a new epoch (drop_last: the rest is dropped)
            self.order = list(self.rng.permutation(len(self.items)))
        take, self.order = self.order[: self.n], self.order[self.n :]
        rows = []
        for i in take:
            v, c = self.items[i]
            f = np.asarray(self.dataset.features(v), dtype=np.float32)
            rows.append(uniform(f[:, c] if f.ndim == 3 else f, self.segments))
        return np.stack(rows)


class TheirBatches:
    """n normal then n anomalous videos per step, as their `train` concatenates them."""

    def __init__(self, dataset: FeatureDataset, n: int, segments: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.normal = CropFiles(dataset, 0, n, segments, rng)
        self.anomalous = CropFiles(dataset, 1, n, segments, rng)
        self.n = n

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        data = np.concatenate((self.normal.next(), self.anomalous.next()))
        labels = torch.cat((torch.zeros(self.n), torch.ones(self.n)))
        return in_default_dtype(torch.from_numpy(data)), labels


def as_batch(data: torch.Tensor, labels: torch.Tensor) -> Batch:
    """Their batch (B, T, D) as arnet's, every segment real."""
    B, T, _ = data.shape
    mask = torch.ones(B, T, dtype=torch.bool)
    return Batch(data, mask, torch.full((B,), T), in_default_dtype(labels))


def score_their_way(net_scores: Any, test_set: FeatureDataset) -> dict[str, float]:
    """arnet's metrics of each test video whole, every crop, scores averaged over crops
    (their test); `net_scores` maps (C, T, D) to (C, T)."""

    def video(features: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(features.transpose(1, 0, 2), np.float32))
        with torch.no_grad():
            return net_scores(x).mean(0).numpy()

    return score_with_our_metrics(video, test_set)


# ---------------------------------------------------------------------- weights across


def their_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Their state dict under our parameter names (UR-DMU and BN-WVAD share the backbone)."""
    out = {}
    for key, value in state.items():
        k = key.replace("embedding.conv_1.0.", "embedding.conv.")
        k = k.replace("cls_head.mlp.", "classifier.")
        k = k.replace("Amemory.memory_block", "abnormal_memory.memory")
        k = k.replace("Nmemory.memory_block", "normal_memory.memory")
        k = k.replace("encoder_mu.0.", "encoder_mu.").replace("encoder_var.0.", "encoder_var.")
        k = k.replace("normal_head.", "head.")
        if k.startswith("selfatt.layers."):
            parts = k.split(".")  # selfatt layers I BLOCK ...
            layer, block, rest = parts[2], parts[3], parts[4:]
            if rest[0] == "norm":
                k = f"transformer.{'attn' if block == '0' else 'ff'}_norms.{layer}.{rest[1]}"
            elif block == "0" and rest[1] == "to_qkv":
                k = f"transformer.attns.{layer}.to_qkvt.{rest[2]}"
            elif block == "0":  # fn.to_out.0.P
                k = f"transformer.attns.{layer}.to_out.{rest[3]}"
            else:  # fn.net.0.P / fn.net.3.P
                k = f"transformer.ffs.{layer}.{ {'0': 'fc1', '3': 'fc2'}[rest[2]] }.{rest[3]}"
        out[k] = value.clone()
    return out


def value(x: Any) -> float:
    """A loss part (a tensor or a number) as a float."""
    return float(x.detach()) if torch.is_tensor(x) else float(x)


def first_grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


# ---------------------------------------------------------------------- UR-DMU

THEIR_MODULES = ["model", "train", "utils"]


def lockstep(
    checkout: str | Path, data: str | Path, iterations: int, seed: int, compat: bool = True
) -> dict[str, Any]:
    """Identical weights, batches and random streams into theirs and ours (compat=True: their
    local attention; False measures what our fix changes); per step the loss, the largest
    difference of a loss part and of the probe batch's scores."""
    from arnet.config import TrainConfig
    from arnet.models import build_objective, create_model

    checkout = require_checkout(checkout, FILES, REPOSITORY)
    train_set, _ = open_peer_data(data)
    with reference_code(checkout, THEIR_MODULES) as mods:
        torch.manual_seed(seed)
        net = mods["model"].WSAD(train_set.dim, flag="Train", a_nums=60, n_nums=60)
        ours = create_model(MODEL, train_set.dim, compat=compat)
        ours.load_state_dict(their_to_ours(net.state_dict()), strict=True)
        criterion = mods["train"].AD_Loss()
        opt_t = torch.optim.Adam(net.parameters(), **ADAM)
        opt_o = torch.optim.Adam(ours.parameters(), **ADAM)
        loss_fn = build_objective(MODEL, TrainConfig(model=MODEL))
        batches = TheirBatches(train_set, BATCH, SEGMENTS, seed)
        probe, _ = TheirBatches(train_set, BATCH, SEGMENTS, seed + 1000).next()
        rows: list[dict[str, Any]] = []
        grads: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] = ({}, {})
        names = {"att_loss": "mil", "A_loss": "a_memory", "N_Aatt": "a_normal_memory",
                 "N_loss": "n_memory", "A_Nloss": "n_abnormal_memory", "triplet": "triplet",
                 "kl_loss": "kl"}  # fmt: skip
        for step in range(iterations):
            x, y = batches.next()
            net.train()
            net.flag = "Train"
            ours.train()
            torch.manual_seed(seed * 7919 + step)
            result = net(x)
            cost_t, parts_t = criterion(result, y)
            torch.manual_seed(seed * 7919 + step)
            cost_o, parts_o = loss_fn(ours, as_batch(x, y))
            for opt, cost in ((opt_t, cost_t), (opt_o, cost_o)):
                opt.zero_grad()
                cost.backward()
            if step == 0:
                grads = first_grads(net), first_grads(ours)
            opt_t.step()
            opt_o.step()
            net.eval()
            net.flag = "Test"
            ours.eval()
            with torch.no_grad():
                s_t = net(probe)["frame"]
                s_o = ours(probe, torch.ones(probe.shape[:2], dtype=torch.bool))
            rows.append({
                "iteration": step + 1,
                "loss_theirs": cost_t.item(),
                "loss_ours": cost_o.item(),
                "parts_max_abs_diff": max(abs(value(parts_t[a]) - value(parts_o[b]))
                                          for a, b in names.items()),
                "distance_abs_diff": abs(value(result["distance"]) - value(parts_o["distance"])),
                "scores_max_abs_diff": float((s_t - s_o).abs().max()),
            })  # fmt: skip
        states = net.state_dict(), ours.state_dict()
    return lockstep_result(rows, their_to_ours, grads, states)


def run_reference(
    checkout: str | Path, data: str | Path, iterations: int, seed: int, out: str | Path
) -> dict[str, Any]:
    """Their model, loss and training step for `iterations` steps (their seeding: set_seed
    before building the network), the final network scored their way, by our metrics."""
    checkout = require_checkout(checkout, FILES, REPOSITORY)
    train_set, test_set = open_peer_data(data)
    with reference_code(checkout, THEIR_MODULES) as mods:
        mods["utils"].set_seed(seed)
        net = mods["model"].WSAD(train_set.dim, flag="Train", a_nums=60, n_nums=60)
        criterion = mods["train"].AD_Loss()
        optimizer = torch.optim.Adam(net.parameters(), **ADAM)
        batches = TheirBatches(train_set, BATCH, SEGMENTS, seed)
        start = time.perf_counter()
        for _ in range(iterations):
            x, y = batches.next()
            normal = iter([(x[:BATCH], y[:BATCH])])
            anomalous = iter([(x[BATCH:], y[BATCH:])])
            mods["train"].train(net, normal, anomalous, optimizer, criterion, Inert(), 0)
        seconds = time.perf_counter() - start
        net.eval()
        net.flag = "Test"
        metrics = score_their_way(lambda crops: net(crops)["frame"], test_set)
    return {**metrics, "seconds": seconds}
