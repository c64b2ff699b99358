"""What each deliberate difference from the reference AR-Net code costs: an ablation.

    python benchmarks/compat.py --sets D,A --variants arnet,valid,reference   # README table
    python benchmarks/compat.py --sets D --seeds 2 --iterations 100 --variants arnet,valid
    python benchmarks/compat.py --report-only ...   # the table and curves of finished runs

Datasets come from `benchmarks/featuregen.py` (a generator independent of `arnet synth`,
cached under benchmarks/.cache/compat/) and, when its features are cached, UCSD Ped2
(`benchmarks/ped2.py` extracts them). Each variant is a set of TrainConfig changes to
`arnet train`'s `single` model at the paper's settings: "arnet" (the defaults), "valid" (the
center loss over valid segments only, arnet's former default), "reference" (`--compat
reference`), or one reference behaviour on top of "valid". Each is trained with seeds 1..N on
the CPU, one thread per process; the frame-level test AUC is measured every `--eval-every`
iterations (scoring draws no random numbers, so it does not change training). Prints mean ±
sample std at the `--report` iterations, writes AUC-versus-iteration curves (`--plot`) and keeps
every run in `--results` (JSON lines), so an interrupted sweep resumes where it stopped.
Without `--variants`, a plan runs each variant where it can differ from "valid" (`planned`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "benchmarks" / ".cache" / "compat"
PED2_CACHE = REPO / "benchmarks" / ".cache" / "ped2"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from featuregen import GenConfig, generate  # noqa: E402

# Held-out sets: none of them was used to choose any of arnet's defaults.
SETS: dict[str, GenConfig] = {
    "A": GenConfig(seed=11, dim=256, train=118, train_anomalous=31, test=99, test_anomalous=22,
                   difficulty=0.5),
    "B": GenConfig(seed=12, dim=512, train=118, train_anomalous=31, test=99, test_anomalous=22,
                   difficulty=0.65, max_len=60),
    "C": GenConfig(seed=13, dim=128, train=80, train_anomalous=24, test=60, test_anomalous=15,
                   difficulty=0.45, min_len=40, max_len=700),
    "D": GenConfig(seed=14, dim=128, train=60, train_anomalous=12, test=50, test_anomalous=12,
                   difficulty=0.55, min_len=12, max_len=80),
}  # fmt: skip
SET_NOTES = {
    "A": "D=256, 118/99 videos, 16-120 segments",
    "B": "D=512, 118/99 videos, 16-60 segments, harder",
    "C": "D=128, 80/60 videos, 40-700 segments (long ones sampled)",
    "D": "D=128, 60/50 videos, 12 anomalous in training",
    "ped2": "UCSD Ped2, EfficientNet-Lite0 features, 6+4 training videos",
}

# Each variant is a set of TrainConfig changes. "valid" is arnet before the anchored center
# loss became its default (the center loss over each video's valid segments only); each
# reference behaviour alone is measured on top of it; "arnet" is today's default.
BEHAVIOURS: dict[str, dict[str, Any]] = {
    "padded_center": {"center_loss": "padded"},
    "window_start": {"window_start": "reference"},
    "perturbed_sampling": {"perturbed_sampling": "reference"},
    "strided_window": {"strided_window": "reference"},
    "torch_dropout": {"dropout_mask": "torch"},
    "unfused_adam": {"fused_adam": False},
}


def variants() -> dict[str, dict[str, Any]]:
    from arnet.config import REFERENCE_COMPAT

    valid = {"center_loss": "valid", "lr": 1e-4}  # each behaviour alone, at the reference's rate
    out: dict[str, dict[str, Any]] = {"arnet": {}, "valid": valid, "reference": REFERENCE_COMPAT}
    out.update({name: {**valid, **change} for name, change in BEHAVIOURS.items()})
    return out


def planned(set_name: str, variant: str, explicit: bool) -> int | None:
    """Priority tier of a run in the plan (0 first), None when the plan skips it.

    Sampling behaviours only act on videos longer than max_segments (300): set C alone has
    them; the strided window only with sample_step > 1. Dropout's mask and Adam's kernel
    change rounding and random streams, not the distribution of updates: one set suffices.
    Where no video is longer than 300, `reference` is `padded_center` plus those two.
    """
    if explicit:
        return 0
    if variant in ("arnet", "valid", "reference"):
        return 0 if set_name != "C" else 2
    if variant in ("torch_dropout", "unfused_adam", "padded_center"):
        return 1 if set_name == "D" else None
    if variant in ("window_start", "perturbed_sampling"):
        return 2 if set_name == "C" else None
    return None


def load_set(name: str) -> tuple[Any, Any]:
    from arnet.formats import open_dataset

    if name == "ped2":
        from arnet.formats.ped2 import load_ped2

        folders = sorted(PED2_CACHE.glob("efficientnet-lite0-mean-max-s224-full"))
        data = REPO.parent / "shared" / "data" / "ucsd-ped2"
        data = Path(os.environ.get("ARNET_PED2", data))
        return load_ped2(data, folders[0], backbone="efficientnet-lite0", modal="rgb")
    folder = CACHE / f"{name}-{SETS[name].seed}"
    if not (folder / "GT").exists():
        generate(folder, SETS[name])
    return open_dataset(folder, in_memory=True)


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from arnet.config import TrainConfig
    from arnet.evaluation.evaluate import evaluate, predict
    from arnet.training.trainer import Trainer

    train, test = load_set(job["set"])
    config = TrainConfig(
        model="single",
        iterations=job["iterations"],
        seed=job["seed"],
        device="cpu",
        plot=False,
        tensorboard=False,
        **variants()[job["variant"]],
    )
    curve = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="compat-") as folder:
        trainer = Trainer(config, train, test, folder, progress=False)
        trainer.model.train()
        for it in range(1, job["iterations"] + 1):
            trainer.step()
            if it % job["eval_every"] == 0:
                scores = predict(trainer.model, test, "cpu")
                curve.append((it, evaluate(scores, test).auc))
    return {**job, "curve": curve, "seconds": time.perf_counter() - started}


def job_key(job: dict[str, Any]) -> str:
    return f"{job['set']}|{job['variant']}|{job['seed']}|{job['iterations']}|{job['eval_every']}"


def run_all(jobs: list[dict[str, Any]], results: Path, processes: int) -> list[dict[str, Any]]:
    done = {}
    if results.is_file():
        for line in results.read_text().splitlines():
            record = json.loads(line)
            done[job_key(record)] = record
    todo = [j for j in jobs if job_key(j) not in done]
    print(f"{len(jobs)} runs, {len(jobs) - len(todo)} already done", file=sys.stderr)
    if todo:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(processes) as pool, results.open("a") as f:
            for record in pool.imap_unordered(run_one, todo):
                f.write(json.dumps(record) + "\n")
                f.flush()
                done[job_key(record)] = record
                print(f"  {record['set']} {record['variant']:<20} seed {record['seed']}: "
                      f"AUC {record['curve'][-1][1]:.4f} ({record['seconds']:.0f} s)",
                      file=sys.stderr)  # fmt: skip
    return [done[job_key(j)] for j in jobs]


def auc_at(record: dict[str, Any], iteration: int) -> float:
    return dict((int(i), a) for i, a in record["curve"])[iteration]


def table(records: list[dict[str, Any]], checkpoints: list[int]) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        rows.setdefault((r["set"], r["variant"]), []).append(r)
    out = []
    for (set_name, variant), runs in rows.items():
        row = {"set": set_name, "variant": variant, "seeds": len(runs)}
        for it in checkpoints:
            values = [auc_at(r, it) for r in runs]
            row[it] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0)
        out.append(row)
    return out


def print_table(rows: list[dict[str, Any]], checkpoints: list[int]) -> None:
    head = "| set | variant | seeds | " + " | ".join(f"AUC @ {it}" for it in checkpoints) + " |"
    print(head)
    print("|---|---|---:|" + "---|" * len(checkpoints))
    for row in rows:
        cells = " | ".join(f"{100 * row[it][0]:.2f} ± {100 * row[it][1]:.2f}" for it in checkpoints)
        print(f"| {row['set']} | {row['variant']} | {row['seeds']} | {cells} |")


def plot_curves(records: list[dict[str, Any]], path: Path, shown: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = sorted({r["set"] for r in records})
    fig, axes = plt.subplots(1, len(sets), figsize=(3.6 * len(sets), 3.2), squeeze=False)
    for ax, set_name in zip(axes[0], sets):
        for variant in shown:
            runs = [r for r in records if r["set"] == set_name and r["variant"] == variant]
            if not runs:
                continue
            its = np.array([i for i, _ in runs[0]["curve"]])
            aucs = np.array([[a for _, a in r["curve"]] for r in runs])
            mean, std = aucs.mean(axis=0), aucs.std(axis=0, ddof=1) if len(runs) > 1 else 0
            ax.plot(its, mean, label=variant, linewidth=1.3)
            ax.fill_between(its, mean - std, mean + std, alpha=0.15)
        ax.set_title(f"{set_name}: {SET_NOTES.get(set_name, '')}", fontsize=7)
        ax.set_xlabel("iteration", fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("test frame AUC", fontsize=8)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default="A,C,D,ped2", help="comma-separated: A, B, C, D, ped2")
    p.add_argument("--variants", default=None,
                   help="comma-separated: arnet, reference, or one behaviour (default: the "
                        "plan: every variant where it can differ from arnet)")  # fmt: skip
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--iterations", type=int, default=1200)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--report", default="300,1200", help="iterations shown in the table")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--results", default=str(CACHE / "runs.jsonl"))
    p.add_argument("--json", default=None, help="write the table here")
    p.add_argument("--report-only", action="store_true",
                   help="tabulate the finished runs of --results; train nothing")  # fmt: skip
    p.add_argument("--plot", default=str(REPO / "docs" / "compat_curves.png"))
    args = p.parse_args(argv)

    sets = args.sets.split(",")
    if "ped2" in sets and not list(PED2_CACHE.glob("efficientnet-lite0-mean-max-s224-full")):
        print("Ped2 features not cached (run benchmarks/ped2.py once): skipping ped2",
              file=sys.stderr)  # fmt: skip
        sets.remove("ped2")
    unknown = [s for s in sets if s not in SETS and s != "ped2"]
    chosen = args.variants.split(",") if args.variants else list(variants())
    bad = [v for v in chosen if v not in variants()]
    if unknown or bad:
        print(f"compat.py: unknown set or variant: {(unknown + bad)[0]}", file=sys.stderr)
        return 2
    CACHE.mkdir(parents=True, exist_ok=True)
    for s in sets:  # generate before forking
        if s != "ped2":
            load_set(s)
    jobs = [
        {"set": s, "variant": v, "seed": seed,
         "iterations": args.iterations, "eval_every": args.eval_every}
        for tier in (0, 1, 2) for s in sets for seed in range(1, args.seeds + 1) for v in chosen
        if planned(s, v, args.variants is not None) == tier
    ]  # fmt: skip
    if args.report_only:
        done = {job_key(r): r for r in map(json.loads, Path(args.results).read_text().splitlines())}
        records = [done[job_key(j)] for j in jobs if job_key(j) in done]
    else:
        records = run_all(jobs, Path(args.results), args.processes)
    checkpoints = [int(x) for x in args.report.split(",")]
    rows = table(records, checkpoints)
    print_table(rows, checkpoints)
    if args.plot:
        plot_curves(records, Path(args.plot), ["arnet", "valid", "reference", *BEHAVIOURS])
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
