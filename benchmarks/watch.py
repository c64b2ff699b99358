"""Live detection on UCSD Ped2: throughput, alert latency over a real stream, causal scoring.

    python benchmarks/watch.py                      # everything, short side 112
    python benchmarks/watch.py --short-side 224     # the README's Ped2 features (slower)

1. Features of all 28 Ped2 videos (EfficientNet-Lite0, whole frame, spatial max: as
   benchmarks/ped2.py, cached under benchmarks/.cache/ped2/), and AR-Net (`single`) trained on
   the weakly supervised split (200 iterations, seed 1). Alerts at the checkpoint's threshold,
   0.5 (`--threshold`); the normal training videos cannot calibrate it: the model was trained
   to push exactly their scores to zero.
2. Throughput: N cameras replaying Ped2 test videos as fast as they decode, one torch thread;
   frames per CPU-second of the whole watcher (decoding, resizing, backbone, model, alert
   tracking, SQLite commits: every thread of the process) / 25 = cameras one core sustains at
   25 fps. Full frames, and with --frame-stride 4 (every 4th frame of a segment encoded); at
   the features' short side and at 224 (`--throughput-sizes`; same checkpoint, the cost of
   larger frames).
3. Latency: each anomalous video of the weak test split served as an HTTP MJPEG stream at
   25 fps on 127.0.0.1 (a real socket, JPEG frames as IP cameras send them); latency = commit
   time of the alert covering the first anomalous frame - the time that frame was written to
   the socket (0 when an alert was already open). Median and p95 over the videos.
4. Causal scoring: temporal models trained on the same features, scored offline (whole test
   videos) and causally (each segment at the right end of a window of its last `--context`
   segments, as `watch` scores them); frame-level AUC of both.

Every figure is measured by this run; CPU time is used for throughput so that other processes
on a shared machine do not count against it (wall-clock figures are printed beside it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # ped2.py: the features
sys.path.insert(0, str(HERE.parent / "tests"))  # the tests' MJPEG server and video writer

import ped2  # noqa: E402


def features(args: argparse.Namespace) -> Path:
    ns = argparse.Namespace(
        data=args.data,
        cache=args.cache,
        backbone="efficientnet-lite0",
        pool="mean",
        spatial="max",
        short_side=args.short_side,
        crop="full",
        crop_size=224,
        batch_size=8,
        device="cpu",
        quiet=True,
    )
    folder, seconds, cached, frames = ped2.extract(ns)
    print(f"features: {folder} ({frames} frames, {'cached' if cached else f'{seconds:.0f} s'})")
    return folder


def train_run(data: Path, train, test, model: str, out: Path, iterations: int) -> Path:  # noqa: ANN001
    from arnet.config import TrainConfig
    from arnet.train import train as run_training

    config = TrainConfig(
        data=str(data),
        feature_backbone="efficientnet-lite0",
        feature_modal="rgb",
        model=model,
        iterations=iterations,
        snapshot_every=iterations,
        seed=1,
        device="cpu",
        plot=False,
        tensorboard=False,
        log_every=iterations,
    )
    run_training(config, train, test, out, progress=False)
    return out


def ped2_frames(data: Path, name: str) -> list[np.ndarray]:
    import cv2

    files = sorted((data / "frames" / name).glob("*.jpg"))
    return [np.ascontiguousarray(cv2.imread(str(f))[:, :, ::-1]) for f in files]


def throughput(
    run: Path, videos: list[Path], cameras: int, stride: int, threshold: float, short_side: int
) -> dict:
    import torch

    from arnet.detect import load_detector
    from arnet.live.scorer import SegmentScorer
    from arnet.live.sources import parse_sources
    from arnet.live.tracker import Thresholds
    from arnet.live.watch import Watcher, WatchOptions
    from arnet.store import open_store

    torch.set_num_threads(1)
    detector = load_detector(
        run, preprocessing={"short_side": short_side, "frame_stride": stride}, device="cpu"
    )[0]
    sources = [f"cam{i}={videos[i % len(videos)]}" for i in range(cameras)]
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "t.db") as store:
        watcher = Watcher(
            SegmentScorer(detector),
            store,
            parse_sources(sources),
            Thresholds(threshold, threshold),
            WatchOptions(quiet=True, batch_size=16),
        )
        cpu, wall = time.process_time(), time.perf_counter()
        watcher.start()
        watcher.run()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        frames = sum(c["next_frame"] for c in store.cameras())
    return {
        "cameras": cameras,
        "stride": stride,
        "short_side": short_side,
        "frames": frames,
        "cpu_s": cpu,
        "wall_s": wall,
        "frames_per_cpu_s": frames / cpu,
        "cameras_per_core": frames / cpu / 25.0,
        "frames_per_wall_s": frames / wall,
    }


def latency(run: Path, data: Path, name: str, first: int, stride: int, threshold: float) -> dict:
    import torch
    from livekit import MjpegServer, wait_for

    from arnet.detect import load_detector
    from arnet.live.scorer import SegmentScorer
    from arnet.live.sources import parse_sources
    from arnet.live.tracker import Thresholds
    from arnet.live.watch import Watcher, WatchOptions
    from arnet.store import open_store

    torch.set_num_threads(1)
    frames = ped2_frames(data, name)
    segments = -(-len(frames) // 16)
    detector = load_detector(run, preprocessing={"frame_stride": stride}, device="cpu")[0]
    with (
        MjpegServer(lambda n: frames if n == 0 else [], fps=25.0) as server,
        tempfile.TemporaryDirectory() as tmp,
        open_store(Path(tmp) / "l.db") as store,
    ):
        watcher = Watcher(
            SegmentScorer(detector),
            store,
            parse_sources([f"{name}={server.url}"]),
            Thresholds(threshold, threshold),
            WatchOptions(quiet=True, batch_size=16, reconnect_first=0.5, reconnect_max=1.0),
        )
        import threading

        def stopper() -> None:
            wait_for(lambda: len(store.scores(name, limit=None)) >= segments, timeout=600)
            watcher.stop()

        helper = threading.Thread(target=stopper, daemon=True)
        helper.start()
        watcher.start()
        watcher.run()
        helper.join()
        alerts, _ = store.alerts(camera=name, limit=None)
        covering = sorted(
            (a for a in alerts if a["end_frame"] >= first), key=lambda a: a["start_frame"]
        )
        lag = None
        if covering:
            sent = server.sent[first]
            lag = max(0.0, covering[0]["created"] - sent)
        return {"video": name, "first_anomalous_frame": first, "latency_s": lag,
                "alerts": len(alerts)}  # fmt: skip


def causal_cost(data: Path, train, test, models: list[str], contexts: list[int], its: int) -> list:  # noqa: ANN001
    from arnet.checkpoint import load_checkpoint, model_from_checkpoint
    from arnet.evaluate import evaluate, predict
    from arnet.live.scorer import causal_scores

    rows = []
    for name in models:
        with tempfile.TemporaryDirectory() as tmp:
            run = train_run(data, train, test, name, Path(tmp) / name, its)
            model = model_from_checkpoint(load_checkpoint(run)).eval()
        offline = evaluate(predict(model, test), test).auc
        row = {"model": name, "offline_auc": offline}
        for context in contexts:
            causal = {
                n: causal_scores(model, np.asarray(test.features(i), dtype=np.float32), context)
                for i, n in enumerate(test.names)
            }
            row[f"causal_auc_{context}"] = evaluate(causal, test).auc
        rows.append(row)
        print(f"  {name}: offline AUC {offline:.4f}, " + ", ".join(
            f"causal({c}) {row[f'causal_auc_{c}']:.4f}" for c in contexts))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ped2.DEFAULT_DATA))
    p.add_argument("--cache", default=str(ped2.DEFAULT_CACHE))
    p.add_argument("--short-side", type=int, default=112)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--cameras", type=int, default=2, help="cameras in the throughput runs")
    p.add_argument("--strides", type=int, nargs="+", default=[1, 4])
    p.add_argument("--throughput-sizes", type=int, nargs="+", default=[112, 224])
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--latency-stride", type=int, default=1)
    p.add_argument("--temporal", nargs="*", default=["mean", "sequence", "lstm"])
    p.add_argument("--contexts", type=int, nargs="+", default=[16, 64])
    p.add_argument("--skip", nargs="*", default=[], choices=("throughput", "latency", "causal"))
    p.add_argument("--json", default=None, metavar="FILE")
    args = p.parse_args(argv)

    from helpers import write_video

    from arnet.formats.ped2 import load_ped2

    data = Path(args.data)
    if not (data / "labels.json").is_file():
        print(f"UCSD Ped2 not found at {data} (set ARNET_PED2 or --data)", file=sys.stderr)
        return 2
    feats = features(args)
    train, test = load_ped2(args.data, feats, backbone="efficientnet-lite0", modal="rgb")
    labels = json.loads((data / "labels.json").read_text())
    result: dict = {"short_side": args.short_side}
    with tempfile.TemporaryDirectory(prefix="watch-bench-") as tmp:
        tmp = Path(tmp)
        run = train_run(feats, train, test, "single", tmp / "single", args.iterations)
        threshold = args.threshold
        result["threshold"] = threshold
        print(f"AR-Net single trained; alert threshold {threshold:g}")
        if "throughput" not in args.skip:
            videos = [
                write_video(tmp / f"{n}.mp4", ped2_frames(data, n), fps=25)
                for n in ("Test001", "Test004")
            ]
            result["throughput"] = []
            for size in args.throughput_sizes:
                for stride in args.strides:
                    row = throughput(run, videos, args.cameras, stride, threshold, size)
                    result["throughput"].append(row)
                    print(
                        f"throughput, short side {size}, frame stride {stride}: "
                        f"{row['frames']} frames, "
                        f"{row['frames_per_cpu_s']:.1f} frames per CPU-second = "
                        f"{row['cameras_per_core']:.2f} cameras per core at 25 fps "
                        f"({row['frames_per_wall_s']:.1f} frames/s wall on this machine)"
                    )
        if "latency" not in args.skip:
            test_names = [n for n in test.names if labels[n]["anomalous_frames"]]
            rows = []
            for name in test_names:
                first = labels[name]["anomalous_frames"][0][0] - 1  # 1-based in labels.json
                row = latency(run, data, name, first, args.latency_stride, threshold)
                rows.append(row)
                lag = row["latency_s"]
                print(f"latency {name}: first anomalous frame {first}, "
                      + ("no alert" if lag is None else f"{lag:.2f} s"))  # fmt: skip
            lags = sorted(r["latency_s"] for r in rows if r["latency_s"] is not None)
            result["latency"] = {"videos": rows}
            if lags:
                p95 = float(np.percentile(lags, 95))
                result["latency"].update(median_s=statistics.median(lags), p95_s=p95)
                print(f"latency over {len(lags)} of {len(rows)} videos: median "
                      f"{statistics.median(lags):.2f} s, p95 {p95:.2f} s")  # fmt: skip
        if "causal" not in args.skip and args.temporal:
            print("causal scoring of temporal models (frame AUC on the weak test split):")
            result["causal"] = causal_cost(
                feats, train, test, args.temporal, args.contexts, args.iterations
            )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
