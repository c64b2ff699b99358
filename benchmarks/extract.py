"""Feature extraction speed, end to end, with the time split: where the seconds go.

    python benchmarks/extract.py                       # the README's table (a few minutes)
    python benchmarks/extract.py --inputs video --runtimes openvino --threads 2 --repeats 5
    python benchmarks/extract.py --json extract.json   # also write the rows as JSON

EfficientNet-Lite0 on UCSD Ped2 test videos (360 x 240 frames, whole frame resized to
224 x 336, as benchmarks/ped2.py extracts them), from a frame folder (JPEG files) and from an
H.264 file made from the same frames (libx264, cached under benchmarks/.cache/extract/). Each
configuration runs in a fresh process (thread counts and the allocator are per process):

1. one warm-up pass over 16 frames of the first video (runtimes compile their graph for the
   frame size);
2. `--repeats` timed passes of `arnet extract`'s own code (`extract_dataset`: decode, resize,
   crop and scale, network, pooling, writing the .npy files) over `--videos` videos.

`--streams motion-rgb motion-flow` adds rows for the motion stream of the recommended Ped2
recipe (`--backbone motion-grid --grid 8x12 --short-side 120`): frame differences per cell
(`motion-rgb`) and Farneback / DIS flow per cell (`motion-flow`, `--flows`), so that its cost
stands beside the appearance stream's.

Per row: frames per second of the best and the median pass, the process's user and system
CPU seconds per frame, and the time split of the best pass (seconds per stage, summed in the
thread that ran it: decoding and resizing run in a background thread beside the network, so
the stages add up to more than the wall time when they overlap). Features of every row are
compared with the reference row (PyTorch, fp32, stride 1, same input): max abs difference.

The machine's load (1-minute load average), the CPUs this process may run on
(os.sched_getaffinity) and torch's thread count are printed with the table: on a shared
machine the wall-clock figures move with other people's work; CPU seconds per frame move less.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("ARNET_PED2", REPO.parent / "shared" / "data" / "ucsd-ped2"))
DEFAULT_CACHE = REPO / "benchmarks" / ".cache" / "extract"
STAGES = ("decode", "resize", "flow", "preprocess", "network", "pooling", "write")
MOTION_GRID, MOTION_SHORT_SIDE = "8x12", 120  # the Ped2 recipe's motion stream


# ---------------------------------------------------------------------- inputs


def ped2_videos(data: Path, count: int, frames: int, cache: Path) -> list[Path]:
    """The first `count` Ped2 test videos; with `frames`, copies of their first frames."""
    import shutil

    folders = sorted((data / "frames").iterdir())
    if not folders:
        raise SystemExit(f"{data}/frames: no Ped2 frame folders")
    if not frames:
        return folders[:count]
    cut = []
    for folder in folders[:count]:
        target = cache / f"first{frames}" / folder.name
        if not target.is_dir():
            partial = target.with_name(target.name + ".part")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            for file in sorted(folder.iterdir())[:frames]:
                shutil.copy(file, partial / file.name)
            partial.replace(target)
        cut.append(target)
    return cut


def h264_copy(folder: Path, cache: Path) -> Path:
    """The frames of `folder` as an H.264 file (made once, kept in the cache)."""
    import av

    from arnet.extract.video import VideoInput

    path = cache / f"{folder.parent.name}-{folder.name}.mp4"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part.mp4")
        with av.open(str(partial), "w") as container:
            stream = None
            for frame in VideoInput(folder, folder.name, "frames").frames():
                if stream is None:
                    stream = container.add_stream("libx264", rate=25)
                    stream.height, stream.width = frame.shape[:2]
                    stream.pix_fmt = "yuv420p"
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        partial.replace(path)
    return path


# ---------------------------------------------------------------------- one configuration


def cpu_seconds() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration in this process; returns its row."""
    import torch

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    from arnet.extract import (
        ExtractConfig,
        FeatureExtractor,
        Preprocessing,
        create_backbone,
        extract_dataset,
        find_inputs,
    )
    from arnet.extract.flow import FlowSettings

    stream = spec["stream"]
    if stream == "appearance":
        options: dict[str, Any] = {"spatial": spec["spatial"]}
        if spec["runtime"] != "torch":
            options.update(runtime=spec["runtime"], threads=spec["threads"])
        name, modality, short_side = "efficientnet-lite0", "rgb", spec["short_side"]
        backbone = create_backbone(name, **options)
    else:  # motion-rgb: frame differences; motion-flow: flow, per grid cell
        name, modality, short_side = "motion-grid", stream.split("-")[1], MOTION_SHORT_SIDE
        backbone = create_backbone(name, modality, grid=MOTION_GRID)
    config = ExtractConfig(
        Preprocessing(short_side=short_side, crop="full", frame_stride=spec["stride"], tail="pad"),
        flow=FlowSettings(method=spec["flow"]),
        batch_size=spec["batch_size"],
        prefetch=spec["prefetch"],
    )
    extractor = FeatureExtractor({modality: backbone}, config)
    videos = find_inputs(spec["inputs"])
    precision = torch.autocast("cpu", dtype=torch.bfloat16, enabled=spec["precision"] == "bf16")
    out = Path(spec["out"])
    with precision:
        warmup = find_inputs([spec["warmup"]])
        extract_dataset(warmup, out / "warmup", extractor, progress=False)
        passes = []
        for _ in range(spec["repeats"]):
            extractor.timings.reset()
            user, system = cpu_seconds()
            started = time.perf_counter()
            summary = extract_dataset(
                videos, out / "run", extractor, overwrite=True, progress=False
            )
            wall = time.perf_counter() - started
            user2, system2 = cpu_seconds()
            passes.append(
                {
                    "wall": wall,
                    "frames": summary.frames,
                    "user": user2 - user,
                    "system": system2 - system,
                    "stages": dict(extractor.timings.seconds),
                }
            )
    best = min(passes, key=lambda p: p["wall"])
    frames = best["frames"]
    return {
        **{
            k: spec[k]
            for k in ("input", "stream", "runtime", "precision", "threads", "stride", "prefetch")
        },
        "flow": spec["flow"] if stream == "motion-flow" else None,
        "frames": frames,
        "fps_best": frames / best["wall"],
        "fps_median": frames / statistics.median(p["wall"] for p in passes),
        "user_ms_per_frame": 1000 * statistics.median(p["user"] for p in passes) / frames,
        "system_ms_per_frame": 1000 * statistics.median(p["system"] for p in passes) / frames,
        "stages_s": {k: round(v, 3) for k, v in best["stages"].items()},
        "wall_s": round(best["wall"], 3),
        "allocator": "stock" if os.environ.get("ARNET_ALLOCATOR_TUNING") == "0" else "tuned",
        "torch_threads": torch.get_num_threads(),
        "load_1min": os.getloadavg()[0],
        "features": str(out / "run" / "features_video" / name / modality),
    }


# ---------------------------------------------------------------------- the table


def max_difference(folder: str, reference: str) -> float | None:
    diffs = []
    for video in sorted(Path(reference).iterdir()):
        mine = Path(folder) / video.name / "feature.npy"
        if not mine.is_file():
            return None
        diffs.append(float(np.abs(np.load(mine) - np.load(video / "feature.npy")).max()))
    return max(diffs) if diffs else None


def cpu_line() -> str:
    import torch

    native_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, affinity "
        f"{sorted(os.sched_getaffinity(0))}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads by default), native bf16: {native_bf16}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="UCSD Ped2 folder")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where H.264 copies go")
    p.add_argument("--videos", type=int, default=2, help="Ped2 test videos per pass (default 2)")
    p.add_argument(
        "--frames", type=int, default=0, help="only the first N frames of each video (0: all)"
    )
    p.add_argument("--inputs", nargs="+", default=["frames", "video"], choices=("frames", "video"))
    p.add_argument(
        "--runtimes", nargs="+", default=["torch", "onnxruntime", "openvino"], metavar="RUNTIME"
    )
    p.add_argument("--precisions", nargs="+", default=["fp32"], choices=("fp32", "bf16"))
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--strides", nargs="+", type=int, default=[1])
    p.add_argument(
        "--streams",
        nargs="*",
        default=[],
        choices=("motion-rgb", "motion-flow"),
        help="motion streams of the Ped2 recipe to measure too (motion-grid, 8x12, short side 120)",
    )
    p.add_argument("--flows", nargs="+", default=["farneback", "dis"], choices=("farneback", "dis"))
    p.add_argument("--prefetch", type=int, default=64, help="frames decoded ahead (0: none)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--short-side", type=int, default=224)
    p.add_argument("--spatial", default="max", choices=("mean", "max"))
    p.add_argument("--batch-size", type=int, default=4, help="segments per forward pass")
    p.add_argument(
        "--stock-allocator",
        action="store_true",
        help="leave glibc's allocator as it is (ARNET_ALLOCATOR_TUNING=0): its cost shows as "
        "system time",
    )
    p.add_argument("--json", type=Path, default=None, help="write the rows here too")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    sys.path.insert(0, str(REPO / "src"))
    folders = ped2_videos(args.data, args.videos, args.frames, args.cache)
    warmup = args.cache / "warmup" / folders[0].name
    if not warmup.is_dir():
        import shutil

        warmup.mkdir(parents=True)
        for file in sorted(folders[0].iterdir())[:16]:
            shutil.copy(file, warmup / file.name)
    sources = {
        "frames": [str(f) for f in folders],
        "video": [str(h264_copy(f, args.cache)) for f in folders] if "video" in args.inputs else [],
    }
    print(cpu_line())
    rows: list[dict[str, Any]] = []
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    if args.stock_allocator:
        env["ARNET_ALLOCATOR_TUNING"] = "0"
    with tempfile.TemporaryDirectory(prefix="extract-bench-") as tmp:
        for kind in args.inputs:
            reference = None
            for spec in configurations(args):
                spec.update(
                    input=kind,
                    inputs=sources[kind],
                    warmup=str(warmup),
                    out=str(Path(tmp) / f"{len(rows)}"),
                )
                command = [sys.executable, __file__, "--worker", json.dumps(spec)]
                done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    print(f"{kind} {spec['stream']} {spec['runtime']} {spec['threads']}t failed:")
                    print(done.stderr.strip().splitlines()[-1])
                    continue
                row = json.loads(done.stdout.strip().splitlines()[-1])
                plain = (spec["stream"], spec["runtime"], spec["precision"], spec["stride"])
                if plain == ("appearance", "torch", "fp32", 1) and reference is None:
                    reference = row["features"]
                comparable = spec["stream"] == "appearance" and spec["stride"] == 1
                row["max_abs_diff"] = (
                    max_difference(row["features"], reference) if reference and comparable else None
                )
                rows.append(row)
                print_row(row, header=len(rows) == 1)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


def configurations(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every row to measure, the reference row (appearance, torch, fp32) first."""
    specs = []
    common = {
        "prefetch": args.prefetch,
        "repeats": args.repeats,
        "short_side": args.short_side,
        "spatial": args.spatial,
        "batch_size": args.batch_size,
    }
    for runtime in sorted(args.runtimes, key=lambda r: r != "torch"):
        for precision in sorted(args.precisions, key=lambda p: p != "fp32"):
            if precision == "bf16" and runtime != "torch":
                continue  # runtimes take their precision from the CPU: fp32 on AVX2
            for threads in args.threads:
                for stride in args.strides:
                    specs.append(
                        {"stream": "appearance", "runtime": runtime, "precision": precision,
                         "threads": threads, "stride": stride, "flow": "farneback", **common}
                    )  # fmt: skip
    for stream in args.streams:
        for flow in args.flows if stream == "motion-flow" else ["farneback"]:
            for threads in args.threads:
                specs.append(
                    {"stream": stream, "runtime": "torch", "precision": "fp32",
                     "threads": threads, "stride": 1, "flow": flow, **common}
                )  # fmt: skip
    return specs


def print_row(row: dict[str, Any], header: bool) -> None:
    if header:
        print(
            f"{'input':6} {'stream':24} {'runtime':11} {'prec':4} {'thr':>3} {'k':>2} "
            f"{'pf':>3} {'alloc':5} "
            f"{'fps best':>8} "
            f"{'median':>6} {'usr ms/f':>8} {'sys ms/f':>8} "
            + " ".join(f"{s:>7}" for s in STAGES)
            + f" {'wall s':>6} {'load':>4} {'max diff':>8}"
        )
    stages = " ".join(f"{row['stages_s'].get(s, 0.0):7.2f}" for s in STAGES)
    stream = row["stream"] + (f" ({row['flow']})" if row["flow"] else "")
    diff = "-" if row["max_abs_diff"] is None else f"{row['max_abs_diff']:.1e}"
    print(
        f"{row['input']:6} {stream:24} {row['runtime']:11} {row['precision']:4} "
        f"{row['threads']:3d} {row['stride']:2d} {row['prefetch']:3d} {row['allocator']:5} "
        f"{row['fps_best']:8.1f} {row['fps_median']:6.1f} "
        f"{row['user_ms_per_frame']:8.1f} {row['system_ms_per_frame']:8.1f} {stages} "
        f"{row['wall_s']:6.2f} {row['load_1min']:4.1f} {diff:>8}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
