"""Training and scoring speed of AR-Net at the paper's settings, against the machine's matmul.

    python benchmarks/speed.py                                  # both sizes, paper settings
    python benchmarks/speed.py --precision fp32 bf16            # one row per precision
    python benchmarks/speed.py --datasets shanghaitech --scale 0.2 --dim 512 --iterations 3

For each dataset size (ShanghaiTech's weak split: 238 train / 199 test videos, ~317k frames;
UCF-Crime: 1,610 train / 290 test videos, ~13.8M frames) it makes random non-negative
features of those video counts and lengths (lengths log-normal, scaled to the frame total),
then, in a fresh process per row:

- trains `single` at the paper's settings (30 + 30 videos x up to 300 segments x D) with
  `Trainer` itself, timing the steps and the sampling + loading inside them (host time; on a
  GPU it overlaps the device's work on the previous step, the step having no host sync);
- times the two matrix products a step of `single` must do (forward X W^T and weight
  gradient G^T X, over the step's mean number of valid segments) as plain torch matmuls in
  the same precision: the machine's dense matmul throughput, measured in the same run;
- scores the whole test set with `predict` and computes all metrics with `evaluate`;
- reads the process's peak resident memory (VmHWM; the features are part of it).

FLOPs are counted, not profiled: a step of `single` with N valid segments costs
4 N D H + 6 N H (forward D->H and its weight gradient, the input needs no gradient, plus the
H->1 head), scoring S segments 2 S D H + 2 S H; the step's GFLOP/s divided by the matmul's
is the fraction of the machine's throughput the step reaches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Size:
    """Video counts and total frames of a public dataset (its weakly supervised split)."""

    train: int
    train_anomalous: int
    test: int
    test_anomalous: int
    frames: int
    spread: float
    """sigma of the log-normal video lengths: UCF-Crime's range from seconds to an hour."""


SIZES = {
    "shanghaitech": Size(238, 63, 199, 44, 317_398, 0.5),
    "ucf-crime": Size(1610, 810, 290, 140, 13_800_000, 1.0),
}
FRAMES_PER_SEGMENT = 16


# ---------------------------------------------------------------------- synthetic data


def video_lengths(size: Size, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Segments per video (train, test): log-normal, scaled to the dataset's frame total."""
    rng = np.random.default_rng(seed)
    n_train = max(4, round(size.train * scale))
    n_test = max(2, round(size.test * scale))
    raw = rng.lognormal(0.0, size.spread, n_train + n_test)
    segments = size.frames * scale / FRAMES_PER_SEGMENT
    lengths = np.maximum(1, np.round(raw / raw.sum() * segments)).astype(np.int64)
    return lengths[:n_train], lengths[n_train:]


def class_labels(n: int, anomalous: int) -> np.ndarray:
    labels = np.zeros(n, dtype=np.int64)
    labels[: max(1, min(n - 1, anomalous))] = 1
    return labels


def splits(size: Size, scale: float, seed: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(split, segments per video, video labels) for train and test, with the dataset's share
    of anomalous videos in each."""
    out = []
    for split, lengths, total, n_anomalous in zip(
        ("train", "test"),
        video_lengths(size, scale, seed),
        (size.train, size.test),
        (size.train_anomalous, size.test_anomalous),
    ):
        labels = class_labels(len(lengths), round(n_anomalous * len(lengths) / total))
        out.append((split, lengths, labels))
    return out


def frame_labels(length: int, anomalous: bool, rng: np.random.Generator) -> np.ndarray:
    """Per-frame labels: one anomalous interval of a quarter of an anomalous video."""
    frames = np.zeros(length * FRAMES_PER_SEGMENT + int(rng.integers(0, FRAMES_PER_SEGMENT)))
    if anomalous:
        span = max(1, len(frames) // 4)
        start = int(rng.integers(0, len(frames) - span + 1))
        frames[start : start + span] = 1
    return frames.astype(np.uint8)


def fill_random(out: np.ndarray, rng: np.random.Generator, rows: int = 1 << 14) -> None:
    """Uniform [0, 1) features (non-negative, like pooled ReLU activations), in chunks."""
    for start in range(0, len(out), rows):
        chunk = out[start : start + rows]
        if chunk.dtype == np.float32:
            rng.random(chunk.shape, dtype=np.float32, out=chunk)
        else:
            chunk[...] = rng.random(chunk.shape, dtype=np.float32)


def in_memory_datasets(size: Size, scale: float, dim: int, dtype: str, seed: int) -> tuple:
    """Train and test FeatureDatasets over one contiguous in-memory block."""
    from arnet.data.dataset import FeatureDataset

    rng = np.random.default_rng(seed)
    out = []
    for split, lengths, labels in splits(size, scale, seed):
        block = np.empty((int(lengths.sum()), dim), dtype=dtype)
        fill_random(block, rng)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        views = [block[o : o + t] for o, t in zip(offsets, lengths)]
        frames = [frame_labels(int(t), bool(a), rng) for t, a in zip(lengths, labels)]
        names = [f"{split}{i:05d}" for i in range(len(lengths))]
        out.append(FeatureDataset(names, labels, views, frames, block=block, offsets=offsets))
    return tuple(out)


class _RandomRows:
    """A video's features made on demand, for streaming into a store (write_packed)."""

    def __init__(self, length: int, dim: int, seed: int) -> None:
        self.shape = (length, dim)
        self.seed = seed

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        rng = np.random.default_rng((self.seed, start))
        return rng.random((stop - start, self.shape[1]), dtype=np.float32)


def packed_datasets(size: Size, scale: float, dim: int, dtype: str, seed: int, root: Path):
    """The same data written into an `arnet pack` store and opened memory-mapped."""
    from arnet.formats import open_dataset
    from arnet.formats.packed import PackedVideo, write_packed

    rng = np.random.default_rng(seed)
    videos = []
    for split, lengths, labels in splits(size, scale, seed):
        for i, (t, a) in enumerate(zip(lengths, labels)):
            videos.append(
                PackedVideo(
                    f"{split}{i:05d}",
                    split,
                    int(a),
                    _RandomRows(int(t), dim, seed * 100_000 + len(videos)),
                    frame_labels(int(t), bool(a), rng),
                )
            )
    store = write_packed(root / "store", videos, dtype=dtype)
    return open_dataset(store)


# ---------------------------------------------------------------------- one measurement


def _peak_rss() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(rows: int, dim: int, hidden: int, dtype: Any, device: Any, reps: int) -> dict:
    """Plain torch matmuls of a step's two products: X (rows, D) W^T and G^T X."""
    import torch

    x = torch.rand(rows, dim, device=device).to(dtype)
    w = torch.rand(hidden, dim, device=device).to(dtype)
    g = torch.rand(rows, hidden, device=device).to(dtype)
    for _ in range(2):
        x @ w.T, g.T @ x
    _sync(device)
    best_fwd = best_grad = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        x @ w.T
        _sync(device)
        best_fwd = min(best_fwd, time.perf_counter() - t)
        t = time.perf_counter()
        g.T @ x
        _sync(device)
        best_grad = min(best_grad, time.perf_counter() - t)
    flops = 2.0 * rows * dim * hidden
    return {
        "forward": flops / best_fwd / 1e9,
        "weight_gradient": flops / best_grad / 1e9,
        "both": 2 * flops / (best_fwd + best_grad) / 1e9,
    }


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One row of the table, measured in this (fresh) process."""
    import torch

    from arnet.config import TrainConfig
    from arnet.evaluation.evaluate import evaluate, predict
    from arnet.training.runtime import PRECISIONS
    from arnet.training.trainer import Trainer

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    size = SIZES[spec["dataset"]]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=spec["tmp"]) as tmp:
        if spec["source"] == "packed":
            train_set, test_set = packed_datasets(
                size, spec["scale"], spec["dim"], spec["dtype"], spec["seed"], Path(tmp)
            )
        else:
            train_set, test_set = in_memory_datasets(
                size, spec["scale"], spec["dim"], spec["dtype"], spec["seed"]
            )
        made = time.perf_counter() - started
        config = TrainConfig(
            model="single",
            device=spec["device"],
            precision=spec["precision"],
            compile=spec["compile"],
            reuse_memory=spec["reuse_memory"],
            iterations=spec["warmup"] + spec["iterations"],
            seed=1,
        )
        trainer = Trainer(config, train_set, test_set, Path(tmp) / "run", progress=False)
        device, hidden = trainer.device, trainer.model.fc.out_features
        trainer.model.train()

        # Time the sampling + loading inside each step by wrapping the sampler's next_batch.
        loading, rows = [], []
        next_batch = trainer.sampler.next_batch

        def timed_next_batch() -> Any:
            t = time.perf_counter()
            batch = next_batch()
            loading.append(time.perf_counter() - t)
            rows.append(batch.mask.sum())  # a device tensor: read after the timed steps
            return batch

        trainer.sampler.next_batch = timed_next_batch
        for _ in range(spec["warmup"]):
            trainer._step()
        # One synchronisation around all timed steps, as training has: on a GPU the host
        # draws the next batch while the device still computes the last step.
        _sync(device)
        t = time.perf_counter()
        for _ in range(spec["iterations"]):
            trainer._step()
        _sync(device)
        step_s = time.perf_counter() - t
        timed = slice(spec["warmup"], None)
        load_s = float(np.sum(loading[timed]))
        valid = np.array([int(r) for r in rows[timed]], dtype=np.float64)
        dim = train_set.dim
        step_flops = float(np.sum(4.0 * valid * dim * hidden + 6.0 * valid * hidden))
        dtype = PRECISIONS[spec["precision"]] or torch.float32
        mm_train = matmul_gflops(int(valid.mean()), dim, hidden, dtype, device, spec["reps"])

        # Scoring: one warm-up pass over the shortest videos, then the whole test set.
        run_model = trainer.run_model
        predict(run_model, test_set.subset(np.argsort(test_set.lengths)[:4]), device)
        _sync(device)
        t = time.perf_counter()
        scores = predict(run_model, test_set, device)
        _sync(device)
        score_s = time.perf_counter() - t
        segments = int(test_set.lengths.sum())
        score_flops = 2.0 * segments * dim * hidden + 2.0 * segments * hidden
        chunk = min(segments, 1 << 16)  # predict's rows per forward pass
        mm_score = matmul_gflops(chunk, dim, hidden, dtype, device, spec["reps"])["forward"]
        t = time.perf_counter()
        evaluate(scores, test_set)
        metric_s = time.perf_counter() - t

    step_gflops = step_flops / step_s / 1e9
    return {
        "dataset": spec["dataset"],
        "videos": f"{len(train_set)}/{len(test_set)}",
        "train_segments": int(train_set.lengths.sum()),
        "test_segments": segments,
        "frames": int((train_set.lengths.sum() + segments) * FRAMES_PER_SEGMENT),
        "precision": spec["precision"],
        "made_s": made,
        "it_per_s": spec["iterations"] / step_s,
        "step_ms": 1e3 * step_s / spec["iterations"],
        "rows_per_step": float(valid.mean()),
        "load_share": load_s / step_s,
        "step_gflops": step_gflops,
        "compute_gflops": step_flops / (step_s - load_s) / 1e9,
        "matmul_gflops": mm_train["both"],
        "step_fraction": step_gflops / mm_train["both"],
        "score_s": score_s,
        "score_gflops": score_flops / score_s / 1e9,
        "score_matmul_gflops": mm_score,
        "score_fraction": score_flops / score_s / 1e9 / mm_score,
        "metric_ms": 1e3 * metric_s,
        "metric_share": metric_s / score_s,
        "peak_rss": _peak_rss(),
    }


# ---------------------------------------------------------------------- the table


COLUMNS = (
    ("data", lambda r: f"{r['dataset']} ({r['videos']} videos, {r['frames'] / 1e6:.2f}M frames)"),
    ("precision", lambda r: r["precision"]),
    ("train it/s", lambda r: f"{r['it_per_s']:.2f}"),
    ("step ms", lambda r: f"{r['step_ms']:.0f}"),
    ("sampling+loading", lambda r: f"{100 * r['load_share']:.1f}%"),
    ("step GFLOP/s", lambda r: f"{r['step_gflops']:.0f}"),
    ("matmul GFLOP/s", lambda r: f"{r['matmul_gflops']:.0f}"),
    ("step / matmul", lambda r: f"{100 * r['step_fraction']:.0f}%"),
    ("test scoring s", lambda r: f"{r['score_s']:.2f}"),
    ("scoring / matmul", lambda r: f"{100 * r['score_fraction']:.0f}%"),
    ("metrics ms", lambda r: f"{r['metric_ms']:.0f}"),
    ("metrics / scoring", lambda r: f"{100 * r['metric_share']:.1f}%"),
    ("peak RSS", lambda r: "n/a" if r["peak_rss"] is None else f"{r['peak_rss'] / 2**30:.1f} GiB"),
)


def markdown(rows: list[dict[str, Any]]) -> str:
    cells = [[name for name, _ in COLUMNS]] + [[f(r) for _, f in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine(device: str, threads: int | None) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu in ("", platform.machine()):
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    facts = [
        f"CPU: {cpu}, {os.cpu_count()} logical cores, torch threads: "
        f"{threads or torch.get_num_threads()}" + (f", ISA: {' '.join(isa)}" if isa else ""),
        f"torch {torch.__version__}, numpy {np.__version__}, Python {platform.python_version()}",
    ]
    if device != "cpu" and torch.cuda.is_available():
        facts.append(f"GPU: {torch.cuda.get_device_name()}")
    return "\n".join(facts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--datasets", nargs="+", choices=list(SIZES), default=list(SIZES))
    p.add_argument("--precision", nargs="+", choices=("fp32", "bf16", "fp16"), default=["fp32"])
    p.add_argument("--iterations", type=int, default=20, help="timed training steps per row")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--dim", type=int, default=2048, help="feature dimension (I3D combine: 2048)")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the videos to make")
    p.add_argument(
        "--source",
        choices=("memory", "packed"),
        default="memory",
        help="features in one in-memory block, or in an `arnet pack` store read memory-mapped",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float16"),
        default=None,
        help="stored features (default: float32 in memory, float16 in a store)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument(
        "--no-reuse-memory",
        dest="reuse_memory",
        action="store_false",
        help="return freed memory to the system every step (the allocator's default)",
    )
    p.add_argument("--reps", type=int, default=5, help="repetitions of each reference matmul")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tmp", default=None, help="folder for the packed store (default: system)")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0

    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]])
    print(f"$ {command}\n{machine(args.device, args.threads)}", flush=True)
    dtype = args.dtype or ("float16" if args.source == "packed" else "float32")
    print(
        f"model single, D={args.dim}, 30+30 videos x up to 300 segments per step, "
        f"{args.iterations} timed steps after {args.warmup}; features: {args.source}, {dtype}",
        flush=True,
    )
    rows = []
    for dataset in args.datasets:
        for precision in args.precision:
            spec = {**vars(args), "dataset": dataset, "precision": precision, "dtype": dtype}
            spec.pop("child")
            spec.pop("json")
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(spec)],
                capture_output=True,
                text=True,
            )
            if done.returncode:
                print(f"{dataset} {precision}: failed\n{done.stderr[-3000:]}", file=sys.stderr)
                return 1
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"  {dataset} {precision}: {time.perf_counter() - started:.0f} s "
                f"(data made in {row['made_s']:.0f} s, {row['rows_per_step']:.0f} valid "
                f"segments per step)",
                flush=True,
            )
    print()
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
