"""Training from a packed store whose features are larger than the process may allocate.

How the limit is set, and why this way:

- RLIMIT_AS (address space) cannot express it: it counts file mappings, so it would refuse the
  memory map itself, and torch alone reserves gigabytes of address space it never touches.
- RLIMIT_DATA (Linux >= 4.7) counts the process's private writable memory: heap, anonymous
  maps, thread stacks; exactly the memory that loading features would take, and not the
  read-only file mapping the store is read through, whose pages the kernel can drop at will.

The child process imports torch and arnet, writes a store whose features exceed what it may
then allocate in total (its data size after the imports plus HEADROOM), sets RLIMIT_DATA to
that total, shows the limit binds (loading the store into memory raises MemoryError), then
trains and evaluates from the memory-mapped store.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

resource = pytest.importorskip("resource")

# What training and evaluation may allocate beyond the imported libraries: small batches of
# a small model need far less; features larger than the total are what the test is about.
HEADROOM = 160 * 2**20

CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot  # imported before the limit, like torch: libraries are not data
    import numpy as np
    import torch

    import arnet.evaluation.plots, arnet.evaluation.report
    from arnet.config import TrainConfig
    from arnet.formats import open_dataset
    from arnet.formats.packed import PackedVideo, write_packed
    from arnet.training.trainer import train

    D, SEGMENTS, TEST = 256, 4096, 32
    root, headroom = Path(sys.argv[1]), int(sys.argv[2])


    def data_size():
        for line in open("/proc/self/status"):
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024


    class Pattern:
        # (T, D) features computed on demand: the writer never holds a whole video
        base = np.random.default_rng(0).random((1024, D), dtype=np.float32)

        def __init__(self, length, seed, anomalous):
            self.shape, self.seed, self.anomalous = (length, D), seed, anomalous

        def __getitem__(self, rows):
            index = np.arange(self.shape[0])[rows]
            out = self.base[(index * 7 + self.seed) % len(self.base)]
            if self.anomalous:
                out = out + 0.5 * (index % 97 < 20)[:, None]
            return out


    limit = data_size() + headroom
    videos, n_train = [], 1 + (limit + 2**26) // (SEGMENTS * D * 2)
    for i in range(n_train):
        videos.append(PackedVideo(f"t{i}", "train", i % 2, Pattern(SEGMENTS, i, i % 2)))
    for i in range(8):
        frames = np.repeat((np.arange(TEST) % 97 < 20) * (i % 2), 16).astype(np.uint8)
        videos.append(PackedVideo(f"v{i}", "test", i % 2, Pattern(TEST, i, i % 2), frames))
    store = write_packed(root / "store", videos, "float16")
    features = (store / "features.npy").stat().st_size

    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    try:
        open_dataset(store, in_memory=True)
        binds = False
    except MemoryError:
        binds = True
    train_set, test_set = open_dataset(store)
    config = TrainConfig(
        iterations=20, snapshot_every=20, videos_per_class=8, max_segments=64,
        plot=False, tensorboard=False, device="cpu",
    )
    result = train(config, train_set, test_set, root / "run", progress=False)
    print(json.dumps({
        "limit": limit, "features": features, "binds": binds, "auc": result.metrics.auc,
        "train_videos": len(train_set), "mapped": isinstance(train_set._block, np.memmap),
    }))
    """
)


def test_training_from_a_store_larger_than_the_memory_limit(tmp_path):
    if not hasattr(resource, "RLIMIT_DATA") or not sys.platform.startswith("linux"):
        pytest.skip("needs Linux's RLIMIT_DATA")
    # One compute thread (fewer thread stacks), and no GPU: initialising CUDA would take host
    # memory of its own, and the limit is about the features.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), str(HEADROOM)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    try:
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["features"] > result["limit"]
        assert result["binds"], "loading the features into memory should have failed"
        assert result["mapped"] and result["train_videos"] > 100
        assert 0.0 <= result["auc"] <= 1.0
    finally:
        shutil.rmtree(tmp_path / "store", ignore_errors=True)
