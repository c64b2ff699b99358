"""Peak memory of training on a packed store versus loading the features into memory.

    python benchmarks/memory.py                      # defaults: ~1.6 GB of float32 features
    python benchmarks/memory.py --videos 40 --segments 200 --dim 256 --iterations 5   # quick

Writes a random dataset in the AR-Net layout (float32 per-video files), packs it into an
`arnet pack` store (float16), then trains the same short run once per way of reading the
features, each in a fresh process, and prints one table row per way:

- peak RSS: the most resident memory the process had (VmHWM), including pages of
  memory-mapped feature files the kernel had cached for it; those it can drop under pressure.
- peak anonymous: the most private (anonymous) memory the process had (RssAnon, sampled every
  10 ms); this is the memory that must fit in RAM. "of which after imports" leaves out what
  importing torch and arnet took before any data was opened.

Figures depend on the machine; the README quotes a run of this script.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MODES = {
    "store": ("packed store (float16)", "memory-mapped", False),
    "store-memory": ("packed store (float16)", "loaded into memory", True),
    "arnet": ("AR-Net layout (float32 files)", "read lazily, file by file", False),
    "arnet-memory": ("AR-Net layout (float32 files)", "loaded (--larger_mem 1)", True),
}


def _status(field: str) -> int:
    """A /proc/self/status field in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def child(mode: str, root: Path, iterations: int, device: str) -> None:
    """One measurement, in its own process: open the data one way, train, report as JSON."""
    import numpy as np  # noqa: F401  (imported before the baseline, like torch)
    import torch  # noqa: F401

    from arnet.config import TrainConfig
    from arnet.formats import open_dataset
    from arnet.training.trainer import train

    peak = {"anon": _status("RssAnon")}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak["anon"] = max(peak["anon"], _status("RssAnon"))

    baseline = _status("RssAnon")
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    _, _, in_memory = MODES[mode]
    data = root / ("store" if mode.startswith("store") else "arnet")
    started = time.perf_counter()
    train_set, test_set = open_dataset(data, in_memory=in_memory)
    opened = time.perf_counter()
    config = TrainConfig(
        iterations=iterations,
        snapshot_every=iterations,
        plot=False,
        tensorboard=False,
        device=device,
    )
    train(config, train_set, test_set, root / f"run-{mode}", progress=False)
    trained = time.perf_counter()
    done.set()
    thread.join()
    peak["anon"] = max(peak["anon"], _status("RssAnon"))
    print(
        json.dumps(
            {
                "peak_rss": _status("VmHWM"),
                "peak_anon": peak["anon"],
                "baseline_anon": baseline,
                "open_s": opened - started,
                "train_s": trained - opened,
                "iterations": iterations,
            }
        )
    )


def write_dataset(root: Path, videos: int, segments: int, dim: int) -> tuple[int, int]:
    """Random features in the AR-Net layout and their float16 store; returns both sizes."""
    import numpy as np

    from arnet.formats import build_catalog, open_catalog
    from arnet.formats.arnet import write_arnet
    from arnet.formats.packed import pack_catalog

    rng = np.random.default_rng(0)
    test_videos = max(videos // 10, 2)

    def split(n: int, prefix: str):
        for i in range(n):
            length = int(rng.integers(segments // 2, segments * 3 // 2 + 1))
            features = rng.random((length, dim), dtype=np.float32)
            frames = np.zeros(16 * length, np.uint8)
            if i % 2:
                frames[: 16 * (length // 4)] = 1
            yield f"{prefix}{i:05d}", i % 2, features, frames

    write_arnet(
        root / "arnet", {"train": split(videos, "train"), "test": split(test_videos, "test")}
    )
    pack_catalog(open_catalog(build_catalog(root / "arnet")), root / "store", "float16")
    arnet_bytes = sum(p.stat().st_size for p in (root / "arnet").rglob("feature.npy"))
    return arnet_bytes, (root / "store" / "features.npy").stat().st_size


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--videos", type=int, default=400, help="training videos")
    p.add_argument("--segments", type=int, default=1000, help="mean segments per video")
    p.add_argument("--dim", type=int, default=1024, help="feature dimension")
    p.add_argument("--iterations", type=int, default=50, help="training iterations per run")
    p.add_argument("--device", default="auto")
    p.add_argument("--dir", help="work folder (default: a temporary one, removed)")
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    p.add_argument("--child", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child[0], Path(args.child[1]), args.iterations, args.device)
        return 0

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        arnet_bytes, store_bytes = write_dataset(root, args.videos, args.segments, args.dim)
        print(
            f"dataset: {args.videos} training videos x ~{args.segments} segments x {args.dim} "
            f"(written and packed in {time.perf_counter() - started:.0f} s); "
            f"{args.iterations} iterations of the default training per row",
            flush=True,
        )
        sizes = {"store": store_bytes, "arnet": arnet_bytes}
        rows = []
        for mode in args.modes:
            command = [sys.executable, __file__, "--child", mode, str(root)]
            command += ["--iterations", str(args.iterations), "--device", args.device]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                print(f"{mode}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                return 1
            result = json.loads(done.stdout.strip().splitlines()[-1])
            data, how, _ = MODES[mode]
            size = sizes["store" if mode.startswith("store") else "arnet"]
            rows.append(
                (
                    data,
                    how,
                    f"{size / 2**20:,.0f} MiB",
                    f"{result['peak_rss'] / 2**20:,.0f} MiB",
                    f"{result['peak_anon'] / 2**20:,.0f} MiB",
                    f"{(result['peak_anon'] - result['baseline_anon']) / 2**20:,.0f} MiB",
                    f"{result['open_s']:.1f}",
                    f"{result['train_s']:.1f}",
                )
            )
    header = (
        "data",
        "features read",
        "features on disk",
        "peak RSS",
        "peak anonymous",
        "of which after imports",
        "open (s)",
        "train + test (s)",
    )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
