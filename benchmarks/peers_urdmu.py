"""UR-DMU against its own public code (github henrryzh1/UR-DMU), on the CPU.

    git clone /work/.mirror/henrryzh1+UR-DMU/repo /tmp/urdmu      # their code, never committed
    python benchmarks/peers_urdmu.py --reference /tmp/urdmu --data SYNTH --lockstep 20
    python benchmarks/peers_urdmu.py --reference /tmp/urdmu --data SYNTH --iterations 300 \
        --seeds 1,2,3
    (or through the dispatcher: benchmarks/peers.py --method urdmu ...)

Their code is CUDA-only as written (`.cuda()` on tensors and modules) and imports visdom and
ipdb at module level; this driver runs it unchanged on the CPU by making `.cuda()` a no-op and
giving those two imports empty modules, from outside their files.

- `lockstep(checkout, data, iterations, seed)`: their `WSAD` and `AD_Loss` and our `urdmu`
  model (with `compat=True`: their local-attention normalisation) start from the same weights
  (theirs copied into ours), get the same batches (their composition: n normal then n
  anomalous videos, uniform segments, a random crop each) and the same random streams
  (dropout, the Gaussian sample), and step the same Adam; per iteration the loss, each of its
  parts and the test-mode scores of a fixed probe batch are compared.
- `run_reference(checkout, data, iterations, seed, out)`: their training loop (their `train`
  step, their loaders' sampling: shuffled crop files, drop_last, 200 -> `segments` uniform
  segments), scored on the test set their way (every crop, scores averaged) by our metrics.
- `run_ours(...)`: `arnet`'s trainer with `--model urdmu` at the same settings.

Sizes: their network is 512 wide whatever the data; the defaults here (8 + 8 videos of 32
segments per step) keep a step near a second on one core.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from arnet.config import TrainConfig  # noqa: E402
from arnet.data.dataset import Batch, FeatureDataset  # noqa: E402
from arnet.evaluation.evaluate import evaluate  # noqa: E402
from arnet.formats import open_dataset  # noqa: E402
from arnet.models import build_objective, create_model, model_entry  # noqa: E402
from arnet.training.trainer import train  # noqa: E402

THEIR_MODULES = ("model", "memory", "translayer", "utils", "train", "options", "config",
                 "models", "losses", "dataset_loader", "test")  # fmt: skip


# ---------------------------------------------------------------------- their code on the CPU


def _theirs(name: str) -> bool:
    return name.split(".")[0] in THEIR_MODULES


@contextlib.contextmanager
def reference_on_cpu(checkout: str | Path) -> Iterator[None]:
    """Import their modules from `checkout` with `.cuda()` a no-op and visdom / ipdb stubbed;
    everything is put back on exit."""
    checkout = str(Path(checkout).resolve())
    if not Path(checkout).is_dir():
        raise SystemExit(f"--reference {checkout}: no such checkout")
    saved = {name: sys.modules.pop(name) for name in list(sys.modules) if _theirs(name)}
    stubs = {}
    for name in ("visdom", "ipdb", "wandb"):
        if name not in sys.modules:
            stubs[name] = sys.modules[name] = types.ModuleType(name)
    tensor_cuda, module_cuda = torch.Tensor.cuda, torch.nn.Module.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    torch.nn.Module.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    sys.path.insert(0, checkout)
    try:
        yield
    finally:
        sys.path.remove(checkout)
        torch.Tensor.cuda, torch.nn.Module.cuda = tensor_cuda, module_cuda  # type: ignore[method-assign]
        for name in [n for n in sys.modules if _theirs(n)]:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
        for name in stubs:
            sys.modules.pop(name, None)


class NoPlots:
    """Their training step logs to a visdom window; this one keeps nothing."""

    def plot_lines(self, *args: Any, **kwargs: Any) -> None:
        pass


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
        return torch.from_numpy(data), labels


def as_batch(data: torch.Tensor, labels: torch.Tensor) -> Batch:
    B, T, _ = data.shape
    mask = torch.ones(B, T, dtype=torch.bool)
    return Batch(data, mask, torch.full((B,), T), labels.float())


def score_their_way(net_scores, test_set: FeatureDataset) -> dict[str, np.ndarray]:
    """Each test video whole, every crop, scores averaged over crops (their test)."""
    out = {}
    with torch.no_grad():
        for i, name in enumerate(test_set.names):
            f = np.asarray(test_set.features(i), dtype=np.float32)
            x = torch.from_numpy(f.transpose(1, 0, 2) if f.ndim == 3 else f[None])  # (C, T, D)
            out[name] = net_scores(x).mean(0).numpy()
    return out


def load_data(data: str | Path) -> tuple[FeatureDataset, FeatureDataset]:
    return open_dataset(data, in_memory=True)


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


def copy_weights(theirs: torch.nn.Module, ours: torch.nn.Module) -> None:
    ours.load_state_dict(their_to_ours(theirs.state_dict()), strict=True)


# ---------------------------------------------------------------------- UR-DMU


def _their_urdmu(dim: int):
    import model as their_model  # their model.py
    import train as their_train  # their train.py (AD_Loss, train)

    return their_model, their_train


def lockstep(
    checkout: str | Path,
    data: str | Path,
    iterations: int = 20,
    seed: int = 1,
    videos: int = 8,
    segments: int = 32,
    compat: bool = True,
) -> dict[str, Any]:
    """Identical weights, batches and random streams into theirs and ours (compat=True: their
    local attention; False measures what our fix changes); the largest differences of loss,
    loss parts and probe scores over `iterations` steps."""
    train_set, _ = load_data(data)
    with reference_on_cpu(checkout):
        their_model, their_train = _their_urdmu(train_set.dim)
        torch.manual_seed(seed)
        net = their_model.WSAD(train_set.dim, flag="Train", a_nums=60, n_nums=60)
        ours = create_model("urdmu", train_set.dim, compat=compat)
        copy_weights(net, ours)
        criterion = their_train.AD_Loss()
        opt_t = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=5e-5)
        opt_o = torch.optim.Adam(ours.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=5e-5)
        loss_fn = build_objective("urdmu", TrainConfig(model="urdmu"))
        batches = TheirBatches(train_set, videos, segments, seed)
        probe, _ = TheirBatches(train_set, videos, segments, seed + 1000).next()
        rows = []
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
            opt_t.zero_grad()
            cost_t.backward()
            opt_t.step()
            opt_o.zero_grad()
            cost_o.backward()
            opt_o.step()
            net.eval()
            net.flag = "Test"
            ours.eval()
            with torch.no_grad():
                s_t = net(probe)["frame"]
                s_o = ours(probe, torch.ones(probe.shape[:2], dtype=torch.bool))
            row = {
                "iteration": step + 1,
                "loss_theirs": cost_t.item(),
                "loss_ours": cost_o.item(),
                "loss_diff": abs(cost_t.item() - cost_o.item()),
                "parts_diff": max(
                    abs(float(parts_t[a]) - float(parts_o[b])) for a, b in names.items()
                ),  # fmt: skip
                "distance_diff": abs(float(result["distance"]) - float(parts_o["distance"])),
                "score_diff": float((s_t - s_o).abs().max()),
            }
            rows.append(row)
    return {
        "method": "urdmu",
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
    """Their model, loss and training step for `iterations` steps (their seeding: set_seed
    before building the network), the final network scored their way, by our metrics."""
    train_set, test_set = load_data(data)
    with reference_on_cpu(checkout):
        their_model, their_train = _their_urdmu(train_set.dim)
        import utils as their_utils

        their_utils.set_seed(seed)
        net = their_model.WSAD(train_set.dim, flag="Train", a_nums=60, n_nums=60)
        criterion = their_train.AD_Loss()
        optimizer = torch.optim.Adam(
            net.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=5e-5
        )
        batches = TheirBatches(train_set, videos, segments, seed)
        start = time.perf_counter()
        for _ in range(iterations):
            x, y = batches.next()
            normal = iter([(x[:videos], y[:videos])])
            anomalous = iter([(x[videos:], y[videos:])])
            their_train.train(net, normal, anomalous, optimizer, criterion, NoPlots(), 0)
        seconds = time.perf_counter() - start
        net.eval()
        net.flag = "Test"

        def scores(crops: torch.Tensor) -> torch.Tensor:
            return net(crops)["frame"]  # (C, T): each crop as its own video

        metrics = evaluate(score_their_way(scores, test_set), test_set)
    record = {"method": "urdmu", "side": "theirs", "seed": seed, "iterations": iterations,
              "auc": metrics.auc, "ap": metrics.ap, "train_seconds": seconds}  # fmt: skip
    if out:
        _append(out, record)
    return record


def run_ours(
    method: str,
    data: str | Path,
    iterations: int,
    seed: int,
    out: str | Path | None = None,
    videos: int = 8,
    segments: int = 32,
    model_args: dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
) -> dict[str, Any]:
    """arnet's trainer with the method's training defaults, at the same batch and length."""
    import tempfile

    train_set, test_set = load_data(data)
    fields = dict(model_entry(method).train_defaults)
    fields.update(
        data=str(data), model=method, model_args=dict(model_args or {}), iterations=iterations,
        snapshot_every=iterations, videos_per_class=videos, uniform_segments=segments,
        seed=seed, device="cpu", plot=False, tensorboard=False,
    )  # fmt: skip
    config = TrainConfig(**fields)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train(config, train_set, test_set, Path(run_dir or tmp) / "run", progress=False)
        seconds = time.perf_counter() - start
    record = {"method": method, "side": "ours" + ("-compat" if (model_args or {}).get("compat")
              else ""), "seed": seed, "iterations": iterations, "auc": result.metrics.auc,
              "ap": result.metrics.ap, "train_seconds": seconds}  # fmt: skip
    if out:
        _append(out, record)
    return record


def _append(out: str | Path, record: dict[str, Any]) -> None:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def summary(records: list[dict[str, Any]]) -> str:
    lines = ["| side | seeds | AUC mean ± std | worst | AUCs |", "|---|---|---|---|---|"]
    for side in sorted({r["side"] for r in records}):
        aucs = [r["auc"] for r in records if r["side"] == side]
        std = statistics.stdev(aucs) if len(aucs) > 1 else 0.0
        lines.append(
            f"| {side} | {len(aucs)} | {statistics.mean(aucs):.4f} ± {std:.4f} | "
            f"{min(aucs):.4f} | {', '.join(f'{a:.4f}' for a in aucs)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None, method: str = "urdmu", module: Any = None) -> int:
    module = module or sys.modules[__name__]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", required=True, help="a checkout of their repository")
    p.add_argument("--data", required=True, help="an `arnet synth --crops C` folder")
    p.add_argument("--lockstep", type=int, default=0, help="lockstep iterations (0: none)")
    p.add_argument(
        "--lockstep-fixed",
        action="store_true",
        help="lockstep against our fixed model (compat off) instead",
    )
    p.add_argument("--iterations", type=int, default=0, help="training runs of N iterations")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--videos", type=int, default=8, help="videos per class per step")
    p.add_argument("--segments", type=int, default=32, help="uniform segments per video")
    p.add_argument("--sides", default="theirs,ours", help="theirs, ours, ours-compat")
    p.add_argument("--results", default=None, help="JSON lines of every run (appended)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    if a.lockstep:
        res = module.lockstep(
            a.reference, a.data, a.lockstep, 1, a.videos, a.segments, not a.lockstep_fixed
        )
        for r in res["rows"]:
            print(json.dumps(r))
        print(json.dumps({k: v for k, v in res.items() if k != "rows"}))
    if a.iterations:
        records = []
        for seed in (int(s) for s in a.seeds.split(",")):
            for side in a.sides.split(","):
                if side == "theirs":
                    rec = module.run_reference(a.reference, a.data, a.iterations, seed,
                                               a.results, a.videos, a.segments)  # fmt: skip
                else:
                    args = {"compat": True} if side == "ours-compat" else {}
                    rec = run_ours(method, a.data, a.iterations, seed, a.results, a.videos,
                                   a.segments, args)  # fmt: skip
                print(json.dumps(rec), flush=True)
                records.append(rec)
        print(summary(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
