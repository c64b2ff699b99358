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
5. Live capacity (`--live`): N cameras, each an H.264 file of four Ped2 test videos back to back
   (up to 720 frames, about 28 s), replayed at 25 fps (`watch --realtime`: frames arrive as a
   camera delivers them) into one watcher with the backbone in `--live-runtime` on both cores.
   Lag of a segment = its scores committed - its last frame delivered. A watcher that falls
   behind sees its lag grow by the seconds it loses, to many seconds over the run; one that
   keeps up holds it under a segment and a batch: "keeps up" = the largest lag under 2 s.
   Printed with the wall time and the share of the 2 cores' CPU time used. `--recipe-cameras`:
   the same for the README's recommended Ped2 recipe (motion-grid flow features, 8 x 12 cells
   at short side 120, Farneback; `nearest-normal` fitted on the weak split's training videos,
   alerting at its own threshold).

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
        frame_stride=1,
        runtime="torch",
    )
    folder, _, _, seconds, cached, frames = ped2.extract(ns, "pooled")
    print(f"features: {folder} ({frames} frames, {'cached' if cached else f'{seconds:.0f} s'})")
    return folder


def train_run(data: Path, train, test, model: str, out: Path, iterations: int) -> Path:  # noqa: ANN001
    from arnet.config import TrainConfig
    from arnet.training.trainer import train as run_training

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

    from arnet.detection.detector import load_detector
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


def recipe_run(args: argparse.Namespace, out: Path) -> tuple[Path, float]:
    """The recommended recipe fitted on the weak split: its run folder and alert threshold."""
    from arnet.config import TrainConfig
    from arnet.formats.ped2 import load_ped2
    from arnet.training.checkpoint import checkpoint_threshold, load_checkpoint
    from arnet.training.trainer import train as run_training

    ns = argparse.Namespace(data=args.data, cache=args.cache, grid="8x12", motion_short_side=120,
                            batch_size=8, device="cpu", quiet=True)  # fmt: skip
    folder, backbone, modal, *_ = ped2.extract(ns, "motion-flow")
    train, test = load_ped2(args.data, folder, backbone=backbone, modal=modal)
    config = TrainConfig(
        data=str(folder),
        feature_backbone=backbone,
        feature_modal=modal,
        model="nearest-normal",
        device="cpu",
        plot=False,
        tensorboard=False,
    )
    run_training(config, train, test, out, progress=False)
    return out, checkpoint_threshold(load_checkpoint(out))


def camera_videos(data: Path, out: Path, cameras: int) -> list[Path]:
    """One H.264 file per camera: four consecutive Ped2 test videos (from the camera's index)."""
    from helpers import write_video

    names = sorted(p.name for p in (data / "frames").iterdir() if p.name.startswith("Test"))
    videos = []
    for i in range(cameras):
        path = out / f"camera{i}.mp4"
        if not path.is_file():
            chosen = [names[(i + k) % len(names)] for k in range(4)]
            frames = [f for n in chosen for f in ped2_frames(data, n)][:720]
            write_video(path, frames, fps=25, codec="libx264")
        videos.append(path)
    return videos


def live_capacity(
    run: Path, videos: list[Path], stride: int, short_side: int, runtime: str, threshold: float
) -> dict:
    """N cameras replayed at 25 fps into one watcher: does it keep up, and with what lag."""
    import torch

    from arnet.detection.detector import load_detector
    from arnet.live.scorer import SegmentScorer
    from arnet.live.sources import parse_sources
    from arnet.live.tracker import Thresholds
    from arnet.live.watch import Watcher, WatchOptions
    from arnet.store import open_store

    torch.set_num_threads(2)
    options = {} if runtime == "torch" else {"runtime": runtime, "threads": 2}
    detector, meta = load_detector(
        run,
        backbone_options=options,
        preprocessing={"short_side": short_side, "frame_stride": stride},
        device="cpu",
    )
    if runtime != "torch":  # compile the runtime's graph for the frame size before timing
        warm = np.zeros((16, short_side, short_side * 3 // 2, 3), np.uint8)
        detector.extractor.encode_segments([[(f, None) for f in warm]] * 2)
    lags: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "live.db") as store:
        commit = store.commit_segments

        def timed_commit(camera_id, segments, alert_rows=(), **options):  # noqa: ANN001, ANN003, ANN202
            ids = commit(camera_id, segments, alert_rows, **options)
            now = time.time()
            lags.extend(now - s["end_time"] for s in segments)
            return ids

        store.commit_segments = timed_commit
        sources = [f"cam{i}={v}" for i, v in enumerate(videos)]
        watcher = Watcher(
            SegmentScorer(detector),
            store,
            parse_sources(sources),
            Thresholds(threshold, threshold),
            WatchOptions(quiet=True, batch_size=16, realtime=True),
        )
        cpu, wall = time.process_time(), time.perf_counter()
        watcher.start()
        watcher.run()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        frames = sum(c["next_frame"] for c in store.cameras())
    length = frames / len(videos) / 25.0
    lag = np.asarray(lags)
    keeps_up = bool(lag.max() < 2.0)
    return {
        "cameras": len(videos),
        "stride": stride,
        "short_side": short_side,
        "runtime": runtime,
        "backbones": sorted(meta.get("backbones", {})),
        "frames": frames,
        "video_s": length,
        "wall_s": wall,
        "cpu_share": cpu / wall / 2,
        "lag_median_s": float(np.median(lag)),
        "lag_p95_s": float(np.percentile(lag, 95)),
        "lag_max_s": float(lag.max()),
        "keeps_up": keeps_up,
    }


def live_specs(texts: list[str]) -> list[tuple[int, int, int]]:
    """ "4x112x1" -> (cameras, short side, frame stride)."""
    return [tuple(int(v) for v in text.split("x")) for text in texts]  # type: ignore[misc]


def print_live(label: str, row: dict) -> None:
    print(
        f"live, {label}: {'keeps up' if row['keeps_up'] else 'FALLS BEHIND'} "
        f"(wall {row['wall_s']:.1f} s for {row['video_s']:.1f} s of video; lag median "
        f"{row['lag_median_s']:.2f} s, p95 {row['lag_p95_s']:.2f} s, max "
        f"{row['lag_max_s']:.2f} s; CPU {100 * row['cpu_share']:.0f}% of 2 cores)",
        flush=True,
    )


def latency(run: Path, data: Path, name: str, first: int, stride: int, threshold: float) -> dict:
    import torch
    from livekit import MjpegServer, wait_for

    from arnet.detection.detector import load_detector
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
    from arnet.evaluation.evaluate import evaluate, predict
    from arnet.live.scorer import causal_scores
    from arnet.training.checkpoint import load_checkpoint, model_from_checkpoint

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
    p.add_argument(
        "--skip", nargs="*", default=[], choices=("throughput", "latency", "causal", "live")
    )
    p.add_argument(
        "--live",
        nargs="*",
        default=["4x112x1", "8x112x1", "12x112x1", "4x224x1", "4x224x4", "8x224x4"],
        metavar="NxSIDExSTRIDE",
        help="live capacity runs: cameras x short side x frame stride",
    )
    p.add_argument(
        "--live-runtime", default="openvino", choices=("torch", "onnxruntime", "openvino")
    )
    p.add_argument(
        "--recipe-cameras",
        type=int,
        nargs="*",
        default=[4, 8],
        help="live capacity of the recommended recipe (motion-grid + nearest-normal)",
    )
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
        live = "live" not in args.skip
        if live and (args.live or args.recipe_cameras):
            cache = Path(args.cache) / "live"
            cache.mkdir(parents=True, exist_ok=True)
            most = max([n for n, _, _ in live_specs(args.live)] + args.recipe_cameras)
            videos = camera_videos(data, cache, most)
        if live and args.live:
            result["live"] = []
            for cameras, size, stride in live_specs(args.live):
                row = live_capacity(
                    run, videos[:cameras], stride, size, args.live_runtime, threshold
                )
                result["live"].append(row)
                print_live(
                    f"{cameras} cameras at 25 fps, short side {size}, stride {stride}, "
                    f"{args.live_runtime}",
                    row,
                )
        if live and args.recipe_cameras:
            recipe, recipe_threshold = recipe_run(args, tmp / "recipe")
            result["live_recipe"] = []
            for cameras in args.recipe_cameras:
                row = live_capacity(recipe, videos[:cameras], 1, 120, "torch", recipe_threshold)
                result["live_recipe"].append(row)
                print_live(f"recipe (motion-grid + nearest-normal), {cameras} cameras", row)
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
