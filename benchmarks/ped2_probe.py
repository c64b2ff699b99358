"""Which learner adds to what normal footage tells? A probe on Ped2's per-cell motion features.

    python benchmarks/ped2_motion.py     # the features, once (about 2 minutes on one core)
    python benchmarks/ped2_probe.py      # every method on the weak split and 5 random splits

Every method sees video labels only; the test split's frame labels are used for the figures and
nothing else. Splits: the literature's weak split, and five random weak splits (6 anomalous + 4
normal training videos drawn with numpy's default_rng(r), r = 1..5; the rest is the test set).
Training-free baselines are computed on the same features, and the best of them (by test AUC,
which favours the baselines) is the bar a learner has to clear.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from arnet.metrics import frame_metrics  # noqa: E402
from ped2_motion import DEFAULT_CACHE, DEFAULT_DATA, STATS  # noqa: E402


@dataclass
class Split:
    name: str
    train: list[str]
    test: list[str]


def load(data: Path, cache: Path):
    labels = json.loads((data / "labels.json").read_text())
    feats, frame_labels, video_labels = {}, {}, {}
    for name, ann in labels.items():
        feats[name] = np.load(cache / f"{name}.npz")["features"]
        f = np.zeros(ann["frames"], dtype=np.int64)
        for a, b in ann["anomalous_frames"]:
            f[a - 1 : b] = 1
        frame_labels[name] = f
        video_labels[name] = int(bool(ann["anomalous_frames"]))
    return feats, frame_labels, video_labels


def splits(data: Path, video_labels: dict[str, int], n_random: int) -> list[Split]:
    read = lambda f: (data / "splits" / f).read_text().split()  # noqa: E731
    out = [Split("weak", read("weak_train.txt"), read("weak_test.txt"))]
    anomalous = sorted(n for n, v in video_labels.items() if v)
    normal = sorted(n for n, v in video_labels.items() if not v)
    for r in range(1, n_random + 1):
        rng = np.random.default_rng(r)
        train = list(rng.choice(anomalous, 6, replace=False)) + list(rng.choice(normal, 4, replace=False))
        test = [n for n in anomalous + normal if n not in train]
        out.append(Split(f"random{r}", train, test))
    return out


# ---------------------------------------------------------------- feature views
def instances(a: np.ndarray, stats: tuple[int, ...]) -> np.ndarray:
    """(T, R, C, S) -> (T, R*C, len(stats))."""
    t = a.shape[0]
    return a[..., list(stats)].reshape(t, -1, len(stats))


class Standardise:
    def __init__(self, blocks: list[np.ndarray]):
        x = np.concatenate([b.reshape(-1, b.shape[-1]) for b in blocks])
        self.mu, self.sd = x.mean(0), x.std(0) + 1e-6

    def __call__(self, b: np.ndarray) -> np.ndarray:
        return (b - self.mu) / self.sd


# ---------------------------------------------------------------- training-free baselines
def nn_distance(query: np.ndarray, bank: np.ndarray) -> np.ndarray:
    q, b = torch.from_numpy(query).float(), torch.from_numpy(bank).float()
    return torch.cdist(q, b).min(dim=1).values.numpy()


def nn_segment(x: dict[str, np.ndarray], normal_train: list[str], names: list[str]) -> dict:
    """Distance of the flattened segment to the nearest normal training segment."""
    bank = np.concatenate([x[n].reshape(len(x[n]), -1) for n in normal_train])
    return {n: nn_distance(x[n].reshape(len(x[n]), -1), bank) for n in names}


def nn_cell_distances(x: dict[str, np.ndarray], normal_train: list[str], names: list[str]) -> dict:
    """(T, cells) distance of each instance to the nearest normal training instance of the same
    cell; a normal training video is measured against the other normal training videos only."""
    out = {}
    cells = next(iter(x.values())).shape[1]
    for n in names:
        bank_videos = [m for m in normal_train if m != n]
        d = np.empty(x[n].shape[:2], dtype=np.float32)
        for c in range(cells):
            bank = np.concatenate([x[m][:, c] for m in bank_videos])
            d[:, c] = nn_distance(x[n][:, c], bank)
        out[n] = d
    return out


# ---------------------------------------------------------------- learners
class InstanceMLP(torch.nn.Module):
    def __init__(self, d: int, hidden: int, cells: int, cell_embed: bool):
        super().__init__()
        self.embed = torch.nn.Embedding(cells, 4) if cell_embed else None
        d_in = d + (4 if cell_embed else 0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(d_in, hidden), torch.nn.ReLU(), torch.nn.Dropout(0.2),
            torch.nn.Linear(hidden, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C, d) -> (B, T, C) logits
        if self.embed is not None:
            idx = torch.arange(x.shape[2])
            e = self.embed(idx).expand(*x.shape[:2], -1, -1)
            x = torch.cat([x, e], dim=-1)
        return self.net(x).squeeze(-1)


def pad(blocks: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    t = max(len(b) for b in blocks)
    out = np.zeros((len(blocks), t, *blocks[0].shape[1:]), dtype=np.float32)
    mask = np.zeros((len(blocks), t), dtype=bool)
    for i, b in enumerate(blocks):
        out[i, : len(b)] = b
        mask[i, : len(b)] = True
    return torch.from_numpy(out), torch.from_numpy(mask)


def train_mil(
    x: dict[str, np.ndarray],
    train: list[str],
    labels: dict[str, int],
    seed: int,
    *,
    pooling: str = "max",
    epochs: int = 300,
    hidden: int = 16,
    cell_embed: bool = False,
    normal_all: float = 1.0,
    lr: float = 1e-2,
    wd: float = 1e-3,
):
    """Instance MIL: an instance (segment x cell) is scored, a segment is the max over its cells,
    a video the mean of its top-k segments (k = T // 16 + 1); BCE on the video label, and every
    segment of a normal video pushed to 0 (weight normal_all)."""
    torch.manual_seed(seed)
    d = next(iter(x.values())).shape[-1]
    cells = next(iter(x.values())).shape[1]
    model = InstanceMLP(d, hidden, cells, cell_embed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    xb, mask = pad([x[n] for n in train])
    y = torch.tensor([labels[n] for n in train], dtype=torch.float32)
    for _ in range(epochs):
        model.train()
        logit = model(xb)  # (B, T, C)
        seg = logit.max(dim=2).values if pooling == "max" else torch.logsumexp(logit, dim=2)
        seg = seg.masked_fill(~mask, -1e9)
        vids = []
        for i in range(len(train)):
            t = int(mask[i].sum())
            k = t // 16 + 1
            vids.append(seg[i, :t].topk(k).values.mean())
        v = torch.stack(vids)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(v, y)
        normal = (y == 0)[:, None] & mask
        if normal_all and normal.any():
            loss = loss + normal_all * torch.nn.functional.binary_cross_entropy_with_logits(
                seg[normal], torch.zeros(int(normal.sum()))
            )
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()

    def score(n: str) -> np.ndarray:
        with torch.no_grad():
            logit = model(torch.from_numpy(x[n][None]).float())[0]
            seg = logit.max(dim=1).values if pooling == "max" else torch.logsumexp(logit, dim=1)
            return torch.sigmoid(seg).numpy()

    return score


# ---------------------------------------------------------------- evaluation
def metrics(scores: dict, split: Split, frame_labels: dict, video_labels: dict, threshold=0.5):
    m = frame_metrics(
        {n: scores[n] for n in split.test},
        {n: frame_labels[n] for n in split.test},
        {n: video_labels[n] for n in split.test},
        16,
        threshold,
    )
    return m.summary()


def rank_threshold(scores: dict, normal_train: list[str]) -> float:
    """A threshold from training videos only: the largest segment score of a normal training
    video (for the baselines, measured leave-one-video-out)."""
    return float(max(scores[n].max() for n in normal_train))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    p.add_argument("--random-splits", type=int, default=5)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--only", default=None, help="comma-separated method names")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    raw, frame_labels, video_labels = load(Path(args.data), Path(args.cache))
    all_splits = splits(Path(args.data), video_labels, args.random_splits)
    results: dict[str, dict[str, list]] = {}

    def record(method: str, split: str, auc: float):
        results.setdefault(method, {}).setdefault(split, []).append(auc)

    for split in all_splits:
        names = split.train + split.test
        normal_train = [n for n in split.train if not video_labels[n]]
        views = {
            "diff": (0,),
            "flow": (1, 2, 3, 4),
            "all": tuple(range(len(STATS))),
        }
        for vname, stats in views.items():
            inst = {n: instances(raw[n], stats) for n in names}
            z = Standardise([inst[n] for n in normal_train])
            zi = {n: z(inst[n]) for n in names}
            m = nn_segment(zi, normal_train, names)
            record(f"nn-segment [{vname}]", split.name, metrics(m, split, frame_labels, video_labels)["auc"])
            dcell = nn_cell_distances(zi, normal_train, names)
            s = {n: dcell[n].max(axis=1) for n in names}
            record(f"nn-cell max [{vname}]", split.name, metrics(s, split, frame_labels, video_labels)["auc"])
            for j, st in enumerate(stats):
                s = {n: inst[n][:, :, j].max(axis=1) for n in names}
                record(f"max cell {STATS[st]}", split.name, metrics(s, split, frame_labels, video_labels)["auc"]) if vname == "all" else None
            for seed in range(1, args.seeds + 1):
                for label, kw in (
                    ("mil-inst max", {}),
                    ("mil-inst max +cell", {"cell_embed": True}),
                ):
                    score = train_mil(zi, split.train, video_labels, seed, **kw)
                    s = {n: score(n) for n in split.test}
                    record(f"{label} [{vname}]", split.name, metrics(s, split, frame_labels, video_labels)["auc"])
                # the nearest-normal distance per cell as one more input
                zp = {n: np.concatenate([zi[n], dcell[n][..., None]], axis=-1) for n in names}
                score = train_mil(zp, split.train, video_labels, seed)
                s = {n: score(n) for n in split.test}
                record(f"mil-inst max +nn prior [{vname}]", split.name, metrics(s, split, frame_labels, video_labels)["auc"])
        print(f"split {split.name} done", file=sys.stderr, flush=True)

    print(f"{'method':<40}{'weak':>14}{'random mean ± std':>22}")
    for method, per in results.items():
        weak = per.get("weak", [])
        rand = [statistics.fmean(v) for k, v in per.items() if k != "weak"]
        w = f"{100 * statistics.fmean(weak):.2f}" + (f"±{100 * statistics.stdev(weak):.2f}" if len(weak) > 1 else "")
        r = f"{100 * statistics.fmean(rand):.2f} ± {100 * statistics.stdev(rand):.2f}" if len(rand) > 1 else ""
        print(f"{method:<40}{w:>14}{r:>22}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
