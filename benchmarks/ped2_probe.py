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

from ped2_motion import DEFAULT_CACHE, DEFAULT_DATA, STATS  # noqa: E402

from arnet.evaluation.metrics import frame_metrics  # noqa: E402


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
        train = list(rng.choice(anomalous, 6, replace=False)) + list(
            rng.choice(normal, 4, replace=False)
        )
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


# ---------------------------------------------------------------- learned metric
def loo_banks(x: dict[str, np.ndarray], normal_train: list[str], names: list[str]) -> dict:
    """The normal bank each video is measured against: the other normal training videos for a
    normal training video, every normal training video otherwise."""
    return {n: [m for m in normal_train if m != n] for n in names}


def train_metric(
    x: dict[str, np.ndarray],
    train: list[str],
    labels: dict[str, int],
    seed: int,
    *,
    per: str = "stat",
    level: str = "segment",
    epochs: int = 200,
    lr: float = 0.05,
    margin: float = 0.5,
):
    """Nearest-normal distance under learned weights (per statistic, or per statistic and cell
    row), trained with video labels only: each anomalous training video's most distant segment
    must lie further from normality than every normal training video's most distant segment
    (normal videos measured leave-one-video-out), a hinge on the log ratio of the two."""
    torch.manual_seed(seed)
    normal_train = [n for n in train if not labels[n]]
    shape = x[train[0]].shape[1:]  # (cells, stats)
    if per == "stat":
        theta = torch.zeros(shape[1], requires_grad=True)
    else:  # per cell and statistic
        theta = torch.zeros(shape, requires_grad=True)
    with torch.no_grad():
        theta.add_(0.01 * torch.randn_like(theta))
    opt = torch.optim.Adam([theta], lr=lr)
    tx = {n: torch.from_numpy(x[n]).float() for n in x}
    banks = loo_banks(x, normal_train, train)

    def dist(w: torch.Tensor, q: torch.Tensor, bank_videos: list[str]) -> torch.Tensor:
        bank = torch.cat([tx[m] for m in bank_videos])  # (B, cells, stats)
        diff = (q[:, None] - bank[None]) ** 2  # (T, B, cells, stats)
        if level == "segment":
            d = (diff * w).sum(dim=(2, 3))
            return d.min(dim=1).values.clamp_min(1e-9).sqrt()  # (T,)
        # instance level: each cell against the same cell of the bank, the segment its max cell
        d = (diff * w).sum(dim=3).min(dim=1).values.clamp_min(1e-9).sqrt()  # (T, cells)
        return d.max(dim=1).values

    def weights() -> torch.Tensor:
        w = torch.nn.functional.softmax(theta.flatten(), dim=0).view_as(theta)
        return w * w.numel()

    for _ in range(epochs):
        w = weights()
        top = {n: dist(w, tx[n], banks[n]).max() for n in train}
        a = torch.stack([top[n] for n in train if labels[n]])
        b = torch.stack([top[n] for n in train if not labels[n]])
        gap = torch.log(a)[:, None] - torch.log(b)[None, :]
        loss = torch.relu(margin - gap).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    w = weights().detach()
    with torch.no_grad():
        spread = max(float(dist(w, tx[n], banks[n]).max()) for n in normal_train)

        def score(n: str) -> np.ndarray:
            d = dist(w, tx[n], normal_train).numpy()
            return d / (d + spread)

    return score, w.numpy()


def prior_mil(
    x: dict[str, np.ndarray],
    prior: dict[str, np.ndarray],
    train: list[str],
    labels: dict[str, int],
    seed: int,
    *,
    epochs: int = 200,
    lr: float = 1e-2,
    hidden: int = 16,
    correction: float = 1e-2,
):
    """MIL that corrects a prior: a segment's logit is a*log(prior / (1 - prior)) + b + f(x),
    f a small MLP whose output is kept small (L2 weight `correction`); top-k MIL BCE on video
    labels plus every normal segment towards 0."""
    torch.manual_seed(seed)
    d = next(iter(x.values())).reshape(len(next(iter(x.values()))), -1).shape[1]
    f = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
    ab = torch.tensor([1.0, 0.0], requires_grad=True)
    opt = torch.optim.Adam([*f.parameters(), ab], lr=lr, weight_decay=1e-3)
    flat = {n: torch.from_numpy(x[n].reshape(len(x[n]), -1)).float() for n in x}
    pl = {n: torch.logit(torch.from_numpy(prior[n]).float().clamp(1e-4, 1 - 1e-4)) for n in prior}

    def logit(n: str) -> tuple[torch.Tensor, torch.Tensor]:
        g = f(flat[n]).squeeze(-1)
        return ab[0] * pl[n] + ab[1] + g, g

    y = torch.tensor([labels[n] for n in train], dtype=torch.float32)
    for _ in range(epochs):
        f.train()
        vids, corr, normal = [], [], []
        for n in train:
            s, g = logit(n)
            vids.append(s.topk(len(s) // 16 + 1).values.mean())
            corr.append((g**2).mean())
            if not labels[n]:
                normal.append(s)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(torch.stack(vids), y)
        ns = torch.cat(normal)
        loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(ns, torch.zeros_like(ns))
        loss = loss + correction * torch.stack(corr).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    def score(n: str) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(logit(n)[0]).numpy()

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


VIEWS = {"diff": (0,), "flow": (1, 2, 3, 4), "all": tuple(range(len(STATS)))}


def to_unit(d: dict[str, np.ndarray], normal_train: list[str]) -> dict[str, np.ndarray]:
    """d / (d + tau), tau the largest leave-one-video-out score of a normal training video: a
    threshold of 0.5 set on training videos only."""
    tau = max(float(d[n].max()) for n in normal_train)
    return {n: v / (v + tau) for n, v in d.items()}


def run_split(split: Split, raw, video_labels, seeds: int, only: set[str] | None):
    names = split.train + split.test
    normal_train = [n for n in split.train if not video_labels[n]]
    out: dict[str, list[dict[str, np.ndarray]]] = {}
    want = lambda m: only is None or any(m.startswith(o) for o in only)  # noqa: E731
    for vname, stats in VIEWS.items():
        inst = {n: instances(raw[n], stats) for n in names}
        z = Standardise([inst[n] for n in normal_train])
        zi = {n: z(inst[n]) for n in names}
        banks = loo_banks(zi, normal_train, names)
        if want("nn-segment") or want("prior-mil"):
            seg = {n: nn_segment(zi, banks[n], [n])[n] for n in names}
            nn_seg = to_unit(seg, normal_train)
            out[f"nn-segment [{vname}]"] = [nn_seg]
        if want("nn-cell") or want("mil-inst +nn"):
            dcell = nn_cell_distances(zi, normal_train, names)
            cell = to_unit({n: dcell[n].max(axis=1) for n in names}, normal_train)
            out[f"nn-cell max [{vname}]"] = [cell]
        if vname == "all" and want("max cell"):
            for j, st in enumerate(stats):
                out[f"max cell {STATS[st]}"] = [{n: inst[n][:, :, j].max(axis=1) for n in names}]
        for seed in range(1, seeds + 1):
            for label, kw in (("mil-inst", {}), ("mil-inst +cell", {"cell_embed": True})):
                if want(label):
                    score = train_mil(zi, split.train, video_labels, seed, **kw)
                    out.setdefault(f"{label} [{vname}]", []).append({n: score(n) for n in names})
            if want("mil-inst +nn"):
                zp = {n: np.concatenate([zi[n], dcell[n][..., None]], axis=-1) for n in names}
                score = train_mil(zp, split.train, video_labels, seed)
                out.setdefault(f"mil-inst +nn prior [{vname}]", []).append(
                    {n: score(n) for n in names}
                )
            for per, level in (("stat", "segment"), ("cell", "segment"), ("stat", "instance")):
                label = f"metric-{per}" + ("-inst" if level == "instance" else "")
                if want(label) and (only is None or label in only or level == "segment"):
                    score, _ = train_metric(
                        zi, split.train, video_labels, seed, per=per, level=level
                    )
                    out.setdefault(f"{label} [{vname}]", []).append({n: score(n) for n in names})
            if want("prior-mil"):
                score = prior_mil(zi, nn_seg, split.train, video_labels, seed)
                out.setdefault(f"prior-mil [{vname}]", []).append({n: score(n) for n in names})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    p.add_argument("--random-splits", type=int, default=5)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--only", default=None, help="comma-separated method-name prefixes")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    raw, frame_labels, video_labels = load(Path(args.data), Path(args.cache))
    only = set(args.only.split(",")) if args.only else None
    results: dict[str, dict[str, list[dict]]] = {}
    for split in splits(Path(args.data), video_labels, args.random_splits):
        started = time.perf_counter()
        for method, runs in run_split(split, raw, video_labels, args.seeds, only).items():
            for scores in runs:
                m = metrics(scores, split, frame_labels, video_labels)
                results.setdefault(method, {}).setdefault(split.name, []).append(m)
        print(
            f"split {split.name}: {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        if args.json:  # after every split, so that a long run keeps what it measured
            Path(args.json).write_text(json.dumps(results, indent=1, default=float))

    print(
        f"{'method':<32}{'weak AUC':>14}{'FAR normal':>12}{'random AUC mean ± std':>24}{'min':>8}"
    )
    for method, per in results.items():
        auc = lambda k, per=per: [r["auc"] for r in per[k]]  # noqa: E731
        weak = auc("weak") if "weak" in per else []
        far = [r["far_normal"] for r in per.get("weak", [])]
        rand = [statistics.fmean(auc(k)) for k in per if k != "weak"]
        w = f"{100 * statistics.fmean(weak):.2f}" if weak else ""
        if len(weak) > 1:
            w += f"±{100 * statistics.stdev(weak):.2f}"
        f = f"{100 * statistics.fmean(far):.1f}" if far else ""
        r = (
            f"{100 * statistics.fmean(rand):.2f} ± {100 * statistics.stdev(rand):.2f}"
            if len(rand) > 1
            else ""
        )
        lo = f"{100 * min(rand):.2f}" if rand else ""
        print(f"{method:<32}{w:>14}{f:>12}{r:>24}{lo:>8}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
