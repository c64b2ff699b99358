"""One table over every registered model (`arnet.models.list_models()`) on the same synthetic
families: frame AUC mean ± std over seeds (snapshot chosen on held-out training videos),
worst seed, parameters, and training time per 1,000 iterations on this CPU; the published
figures beside them, marked as published on other features.

    python benchmarks/methods.py                                   # every model, both families
    python benchmarks/methods.py --models single,urdmu --seeds 1,2 --iterations 100
    python benchmarks/methods.py --report-only                      # the table of finished runs

Families (generated once under benchmarks/.cache/methods/, never used to choose a default):
`synth` (`arnet synth`: scenes, rare normal events more salient than the anomalies) and
`featuregen` (benchmarks/featuregen.py, an independent generator). Every model trains with
its registry `train_defaults` (its paper's schedule) and the same iteration budget, held-out
share and seeds; where a default cannot run on two shared CPU cores it is capped, and the
table says so (`CAPS`, `NARROW`: benchmarks/schedules.py, shared with benchmarks/ped2.py). A
model fitted in one go (nearest-normal) is fitted once per seed. Every run is kept in
`--results` (JSON lines): an interrupted sweep resumes where it stopped. Writes `--out`.md
and `--out`.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from featuregen import GenConfig, generate  # noqa: E402
from schedules import PUBLISHED, schedule, seconds_per_1000  # noqa: E402

from arnet.atomic import csv_row  # noqa: E402
from arnet.config import TrainConfig  # noqa: E402
from arnet.formats import open_dataset  # noqa: E402
from arnet.formats.synth import SynthConfig, write_synthetic  # noqa: E402
from arnet.models import count_parameters, create_model, list_models, model_entry  # noqa: E402
from arnet.models.registry import objective_entry  # noqa: E402
from arnet.training.trainer import train  # noqa: E402

CACHE = REPO / "benchmarks" / ".cache" / "methods"
RESULTS = REPO / "benchmarks" / "results"

FAMILIES: dict[str, Any] = {
    "synth": SynthConfig(train_videos=80, train_anomalous=24, test_videos=60, test_anomalous=16,
                         dim=64, min_segments=24, max_segments=120, seed=101),
    "featuregen": GenConfig(seed=21, dim=64, train=80, train_anomalous=24, test=60,
                            test_anomalous=16, difficulty=0.5, min_len=16, max_len=120),
}  # fmt: skip
FAMILY_NOTES = {
    "synth": "`arnet synth`, D=64, 80 training (24 anomalous) / 60 test videos, 24-120 segments",
    "featuregen": "benchmarks/featuregen.py, D=64, 80 / 60 videos, 16-120 segments",
}


def dataset(family: str) -> Path:
    root = CACHE / family
    if not (root / "GT").exists():
        cfg = FAMILIES[family]
        root.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(cfg, SynthConfig):
            write_synthetic(root, cfg)
        else:
            generate(root, cfg)
    return root


def settings(name: str, data: Path, iterations: int, seed: int, val_fraction: float):
    """The TrainConfig fields of one run and the caps applied to its defaults
    (`schedules.schedule`: CAPS, NARROW)."""
    fields, capped, _ = schedule(name)
    fields.update(
        data=str(data), iterations=iterations, snapshot_every=max(1, iterations // 5),
        seed=seed, val_fraction=val_fraction, device="cpu", plot=False, tensorboard=False,
    )  # fmt: skip
    return fields, capped


def one_run(name: str, family: str, iterations: int, seed: int, val_fraction: float):
    data = dataset(family)
    train_set, test_set = open_dataset(data, in_memory=True)
    fields, capped = settings(name, data, iterations, seed, val_fraction)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train(
            TrainConfig(**fields), train_set, test_set, Path(tmp) / "run", progress=False
        )
        wall = time.perf_counter() - start
    model = create_model(name, train_set.dim, **fields["model_args"])
    per_1000 = seconds_per_1000(fields, train_set) if seed == SEEDS_TIMED else None
    return {
        "model": name, "family": family, "seed": seed, "iterations": iterations,
        "auc": result.metrics.auc, "ap": result.metrics.ap, "snapshot": result.snapshot,
        "parameters": count_parameters(model), "wall_seconds": wall,
        "seconds_per_1000": per_1000, "capped": capped, "narrowed": fields["model_args"],
    }  # fmt: skip


SEEDS_TIMED = 1  # the seed whose run also times 10 steps


def _fmt(values: list[float]) -> str:
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * std:.2f}"


def table(records: list[dict[str, Any]], families: list[str]) -> tuple[str, list[list[str]]]:
    names = [e.name for e in list_models() if any(r["model"] == e.name for r in records)]
    head = ["model", *(f"{f} AUC" for f in families), *(f"{f} worst" for f in families),
            "seeds", "parameters", "s / 1,000 it", "published (other features)",
            "notes"]  # fmt: skip
    rows = []
    for name in names:
        mine = [r for r in records if r["model"] == name]
        aucs = {f: [r["auc"] for r in mine if r["family"] == f] for f in families}
        timed = [r["seconds_per_1000"] for r in mine if r["seconds_per_1000"] is not None]
        notes = []
        capped = next((r["capped"] for r in mine if r["capped"]), {})
        if capped:
            notes.append("capped: " + ", ".join(f"{k}={v}" for k, v in capped.items()))
        narrowed = next((r["narrowed"] for r in mine if r["narrowed"]), {})
        if narrowed:
            notes.append("narrowed: " + ", ".join(f"{k}={v}" for k, v in narrowed.items()))
        if not objective_entry(model_entry(name).objective).gradient:
            notes.append("fitted in one go")
        published = "; ".join(f"{d} {m} {v:.2f} ({s})" for d, m, v, s in PUBLISHED.get(name, []))
        rows.append([
            name,
            *(_fmt(aucs[f]) for f in families),
            *(f"{100 * min(aucs[f]):.2f}" if aucs[f] else "–" for f in families),
            str(max(len(v) for v in aucs.values())),
            f"{mine[0]['parameters']:,}",
            f"{statistics.median(timed):.1f}" if timed else "fit",
            published or "–",
            "; ".join(notes) or "–",
        ])  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines), [head, *rows]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=None, help="comma-separated (default: every one)")
    p.add_argument("--families", default="synth,featuregen")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--val-fraction", type=float, default=0.25)
    p.add_argument("--results", default=str(RESULTS / "methods.jsonl"))
    p.add_argument("--out", default=str(RESULTS / "methods"), help="writes OUT.md and OUT.csv")
    p.add_argument("--report-only", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    names = a.models.split(",") if a.models else [e.name for e in list_models()]
    families = a.families.split(",")
    seeds = [int(s) for s in a.seeds.split(",")]
    results = Path(a.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(x) for x in results.read_text().splitlines()] if results.exists() else []
    key = lambda r: (r["model"], r["family"], r["seed"], r["iterations"])  # noqa: E731
    have = {key(r) for r in done}
    if not a.report_only:
        for family in families:
            for name in names:
                for seed in seeds:
                    if (name, family, seed, a.iterations) in have:
                        continue
                    record = one_run(name, family, a.iterations, seed, a.val_fraction)
                    print(json.dumps(record), flush=True)
                    with results.open("a") as f:
                        f.write(json.dumps(record) + "\n")
                    done.append(record)
    chosen = [r for r in done if r["model"] in names and r["family"] in families
              and r["seed"] in seeds and r["iterations"] == a.iterations]  # fmt: skip
    text, rows = table(chosen, families)
    notes = "\n".join(f"- {f}: {FAMILY_NOTES[f]}" for f in families)
    header = (
        f"Frame AUC (%) at the snapshot chosen on held-out training videos (--val-fraction "
        f"{a.val_fraction}), {a.iterations} iterations, seeds {a.seeds}; mean ± sample std and "
        f"the worst seed. Time: one CPU thread, 10 steps after 2 warm-up steps.\n{notes}\n"
    )
    out = Path(a.out)
    out.with_suffix(".md").write_text(header + "\n" + text + "\n")
    with out.with_suffix(".csv").open("w", newline="") as f:
        csv.writer(f).writerows(csv_row(r) for r in rows)
    print(header + "\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
