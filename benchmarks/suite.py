"""A suite of differently made feature sets, and defaults chosen on it by leave-one-family-out.

    python benchmarks/suite.py --reference CHECKOUT --processes 2          # train, then tables
    python benchmarks/suite.py --report-only --big --markdown tables.md     # tables of runs kept
    python benchmarks/suite.py --families spiky --seeds 1 --variants default --checkpoints 50,100

Families (each at --seeds generator seeds; the seed also seeds the training run):

- `featuregen`: `benchmarks/featuregen.py` (people of a few kinds, log of pooled activity);
- `synth`: `arnet synth` (`arnet.formats.synth`: scene patterns, AR(1) activity, distractors);
- `spiky`: `benchmarks/suitegen.py spiky` (many scenes of few videos, Student-t noise, bursts of
  2-10 frames);
- `drift`: `benchmarks/suitegen.py drift` (a wandering latent state through softplus; events
  lasting 60-95% of a video).

Sets are small (D 64 or 128 alternating with the seed, 80 training videos of which 34 or more
anomalous, 40-50 test videos) so the whole suite trains on two shared CPU cores; `--big` adds
one D=512 featuregen set, trained with `padded` and `padded+lr=1e-3` only.

Runs: arnet's `single` model with the former defaults ("anchored", the center loss arnet had
when the suite was run) and with one choice changed per variant (`VARIANTS`: the center loss,
k, the learning rate), `--compat reference` ("compat"),
and the reference AR-Net code itself ("reference", `benchmarks/reference_run.py`, needs
--reference). Each is scored with arnet's frame-level AUC at every --checkpoints iteration;
each finished run is appended to --results (JSON lines), so a stopped suite resumes.

Choosing by leave-one-family-out: for each family F, the candidate (variant x iterations) with
the best mean AUC over the other families (each family's mean over its seeds, families weighed
equally) is chosen, and its AUC on F is reported (mean ± sample std over F's seeds, worst) beside
the default's and the reference code's at the same iterations. A choice counts only where it
wins on the family it was not chosen on.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "benchmarks" / ".cache" / "suite"
sys.path.insert(0, str(Path(__file__).resolve().parent))

FAMILIES = ("featuregen", "synth", "spiky", "drift")
# Each variant names every choice it makes, so that a run kept in --results stays what it was
# when a default changes. BASELINE is the default the choices were measured against (anchored,
# arnet's default until this suite chose padded); "default" is whatever arnet's default is now.
VARIANTS: dict[str, dict[str, Any]] = {
    "anchored": {"center_loss": "anchored", "lr": 1e-4},
    "valid": {"center_loss": "valid", "lr": 1e-4},
    "padded": {"center_loss": "padded", "lr": 1e-4},
    "anchored+k=8": {"center_loss": "anchored", "topk_divisor": 8, "lr": 1e-4},
    "anchored+lr=3e-4": {"center_loss": "anchored", "lr": 3e-4},
    "anchored+lr=1e-3": {"center_loss": "anchored", "lr": 1e-3},
    "padded+lr=1e-3": {"center_loss": "padded", "lr": 1e-3},
    "default": {},
}
BASELINE = "anchored"
OTHER_RUNS = ("compat", "reference")
BIG = "featuregen-big"


def set_folder(family: str, seed: int) -> Path:
    return CACHE / "sets" / f"{family}-{seed}"


def make_set(family: str, seed: int) -> Path:
    """Generate (once) the set of `family` at `seed`; its folder."""
    folder = set_folder(family, seed)
    if (folder / "GT").exists():
        return folder
    dim = 64 if seed % 2 else 128
    if family == "featuregen":
        from featuregen import GenConfig, generate

        generate(folder, GenConfig(seed=1000 + seed, dim=dim, train=80, train_anomalous=34,
                                   test=40, test_anomalous=12, difficulty=0.4,
                                   max_len=150))  # fmt: skip
    elif family == BIG:
        from featuregen import GenConfig, generate

        generate(folder, GenConfig(seed=5000 + seed, dim=512, train=80, train_anomalous=34,
                                   test=40, test_anomalous=12, difficulty=0.5))  # fmt: skip
    elif family == "synth":
        from arnet.config import SynthConfig
        from arnet.formats.synth import write_synthetic

        write_synthetic(folder, SynthConfig(seed=2000 + seed, dim=dim, train_videos=80,
                                            train_anomalous=34, test_videos=40,
                                            test_anomalous=12, scenes=6, min_segments=16,
                                            max_segments=150))  # fmt: skip
    elif family == "spiky":
        from suitegen import SpikyConfig, generate_spiky

        generate_spiky(folder, SpikyConfig(seed=3000 + seed, dim=dim, scenes=8, max_len=120))
    elif family == "drift":
        from suitegen import DriftConfig, generate_drift

        generate_drift(folder, DriftConfig(seed=4000 + seed, dim=dim, train=80,
                                           train_anomalous=34, test=40, test_anomalous=12,
                                           max_len=200))  # fmt: skip
    else:
        raise ValueError(f"unknown family {family!r}")
    return folder


def job_key(job: dict[str, Any]) -> str:
    return (
        f"{job['family']}|{job['seed']}|{job['variant']}|{','.join(map(str, job['checkpoints']))}"
    )


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from arnet.formats import open_dataset

    folder = set_folder(job["family"], job["seed"])
    started = time.perf_counter()
    train, test = open_dataset(folder, in_memory=True)
    checkpoints = job["checkpoints"]
    if job["variant"] == "reference":
        from reference_run import load_reference, train_reference

        ref = load_reference(job["reference"])
        with tempfile.TemporaryDirectory(prefix="suite-ref-") as work:
            every = math.gcd(*checkpoints)  # the reference tests at every multiple
            run = train_reference(ref, folder, job["seed"], max(checkpoints), every, Path(work),
                                  test, workers=0)  # fmt: skip
        # the reference's eval_p runs at every --snapshot; keep the checkpoints only
        curve = [(c["iteration"], c["auc"]) for c in run["curve"] if c["iteration"] in checkpoints]
        return {**job, "curve": curve, "seconds": time.perf_counter() - started}
    from arnet.config import REFERENCE_COMPAT, TrainConfig
    from arnet.evaluation.evaluate import evaluate, predict
    from arnet.training.trainer import Trainer

    change = REFERENCE_COMPAT if job["variant"] == "compat" else VARIANTS[job["variant"]]
    config = TrainConfig(model="single", iterations=max(checkpoints), seed=job["seed"],
                         device="cpu", plot=False, tensorboard=False, **change)  # fmt: skip
    curve = []
    with tempfile.TemporaryDirectory(prefix="suite-") as out:
        trainer = Trainer(config, train, test, out, progress=False)
        trainer.model.train()
        for it in range(1, max(checkpoints) + 1):
            trainer.step()
            if it in checkpoints:
                curve.append((it, evaluate(predict(trainer.model, test, "cpu"), test).auc))
                trainer.model.train()
    return {**job, "curve": curve, "seconds": time.perf_counter() - started}


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

        results.parent.mkdir(parents=True, exist_ok=True)
        with mp.get_context("fork").Pool(processes) as pool, results.open("a") as f:
            for record in pool.imap_unordered(run_job, todo):
                f.write(json.dumps(record) + "\n")
                f.flush()
                done[job_key(record)] = record
                print(f"  {record['family']}-{record['seed']} {record['variant']:<14} AUC "
                      f"{record['curve'][-1][1]:.4f} ({record['seconds']:.0f} s)",
                      file=sys.stderr)  # fmt: skip
    return [done[job_key(j)] for j in jobs if job_key(j) in done]


# ---------------------------------------------------------------------- analysis


def auc_table(records: list[dict[str, Any]]) -> dict[tuple[str, str, int], list[float]]:
    """(family, variant, iteration) -> AUC per seed, in seed order."""
    out: dict[tuple[str, str, int], list[tuple[int, float]]] = {}
    for r in records:
        for it, auc in r["curve"]:
            out.setdefault((r["family"], r["variant"], int(it)), []).append((r["seed"], auc))
    return {k: [a for _, a in sorted(v)] for k, v in out.items()}


def summary(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "worst": min(values), "n": len(values)}  # fmt: skip


def lofo(table: dict[tuple[str, str, int], list[float]], families: list[str],
         candidates: list[tuple[str, int]],
         baseline: str = BASELINE) -> list[dict[str, Any]]:  # fmt: skip
    """Leave-one-family-out choice among `candidates` (variant, iterations); `baseline` is
    the default the choice is measured against (its AUC at the chosen iterations beside)."""
    rows = []
    for held in families:
        others = [f for f in families if f != held]

        def score(c: tuple[str, int], others: list[str] = others) -> float:
            return statistics.fmean(statistics.fmean(table[(f, *c)]) for f in others)

        usable = [c for c in candidates if all((f, *c) in table for f in families)]
        if len(usable) < 2:  # nothing to choose between
            continue
        chosen = max(usable, key=score)
        best_here = max(usable, key=lambda c: statistics.fmean(table[(held, *c)]))
        row = {"held_out": held, "chosen": chosen, "score_on_others": score(chosen),
               "held_out_auc": summary(table[(held, *chosen)]),
               "baseline": baseline,
               "default_auc": summary(table[(held, baseline, chosen[1])])
               if (held, baseline, chosen[1]) in table else None,
               "best_on_held_out": best_here}  # fmt: skip
        for other in OTHER_RUNS:
            if (held, other, chosen[1]) in table:
                row[f"{other}_auc"] = summary(table[(held, other, chosen[1])])
        rows.append(row)
    return rows


def fmt(s: dict[str, float] | None) -> str:
    if s is None:
        return "-"
    n = f", {s['n']} seeds" if s["n"] < 4 else ""
    return f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f} (worst {100 * s['worst']:.2f}{n})"


def markdown(records: list[dict[str, Any]], families: list[str], checkpoints: list[int],
             baseline: str = BASELINE) -> str:  # fmt: skip
    table = auc_table(records)
    variants = [v for v in [*VARIANTS, *OTHER_RUNS] if any(k[1] == v for k in table)]
    lines = ["### Every run: frame AUC (%) per family, mean ± std over seeds (worst)", ""]
    for fam in [f for f in [*families, BIG] if any(k[0] == f for k in table)]:
        lines += [f"**{fam}**", "", "| variant | " + " | ".join(f"@ {c}" for c in checkpoints)
                  + " |", "|---|" + "---|" * len(checkpoints)]  # fmt: skip
        for v in variants:
            cells = [fmt(summary(table[(fam, v, c)])) if (fam, v, c) in table else "-"
                     for c in checkpoints]  # fmt: skip
            if any(c != "-" for c in cells):
                lines.append(f"| {v} | " + " | ".join(cells) + " |")
        lines.append("")
    fams = [f for f in families if any(k[0] == f for k in table)]
    # (title, candidates, the default they are measured against)
    sections = [("all choices jointly (variant x iterations)",
                 [(v, c) for v in VARIANTS if v != "default" for c in checkpoints],
                 baseline)]  # fmt: skip
    for factor, names in (("center loss", ["anchored", "valid", "padded"]),
                          ("k", ["anchored", "anchored+k=8"]),
                          ("learning rate", ["anchored", "anchored+lr=3e-4",
                                             "anchored+lr=1e-3"]),
                          ("learning rate (center loss padded)", ["padded",
                                                                  "padded+lr=1e-3"])):  # fmt: skip
        for c in checkpoints:
            sections.append((f"{factor} at {c} iterations", [(v, c) for v in names], names[0]))
    sections.append(("iterations (anchored otherwise)", [(BASELINE, c) for c in checkpoints],
                     BASELINE))  # fmt: skip
    lines += ["### Leave-one-family-out", ""]
    for title, candidates, baseline in sections:
        rows = lofo(table, fams, candidates, baseline)
        if not rows:
            continue
        lines += [f"**{title}**", "", "| held out | chosen on the others | its AUC on the held-out "
                  f"family | {baseline} (the default measured against) | --compat reference | "
                  "reference code | best on held-out |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in rows:
            v, it = r["chosen"]
            lines.append(f"| {r['held_out']} | {v} @ {it} | {fmt(r['held_out_auc'])} | "
                         f"{fmt(r['default_auc'])} | {fmt(r.get('compat_auc'))} | "
                         f"{fmt(r.get('reference_auc'))} | {r['best_on_held_out'][0]} @ "
                         f"{r['best_on_held_out'][1]} |")  # fmt: skip
        lines.append("")
    lines += ["### Against the reference code, paired by set and seed", "",
              "| family | variant | iterations | variant − reference, mean over seeds (AUC %) | "
              "seeds where variant ≥ reference | reference's seed spread (max − min) |",
              "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for fam in [f for f in [*families, BIG] if any(k[0] == f for k in table)]:
        for v in [x for x in variants if x != "reference"]:
            for c in checkpoints:
                a, b = table.get((fam, v, c)), table.get((fam, "reference", c))
                if a and b and len(a) == len(b):
                    diff = [x - y for x, y in zip(a, b)]
                    lines.append(f"| {fam} | {v} | {c} | {100 * statistics.fmean(diff):+.2f} | "
                                 f"{sum(d >= 0 for d in diff)} / {len(diff)} | "
                                 f"{100 * (max(b) - min(b)):.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", default=None, help="checkout of the reference AR-Net code")
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--seeds", default="1,2,3,4")
    p.add_argument(
        "--variants",
        default="anchored,reference,padded,valid,compat,anchored+lr=1e-3,anchored+k=8",
    )
    p.add_argument("--checkpoints", default="100,200,300", help="iterations evaluated")
    p.add_argument(
        "--big", action="store_true", help="also the D=512 featuregen set (padded, padded+lr=1e-3)"
    )
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--baseline", default=BASELINE, choices=sorted(VARIANTS),
                   help="the default the joint choice is measured against")  # fmt: skip
    p.add_argument("--results", default=str(CACHE / "runs.jsonl"))
    p.add_argument("--report-only", action="store_true", help="tabulate --results; train none")
    p.add_argument("--markdown", default=None, help="write the tables here")
    p.add_argument("--json", default=None, help="write the leave-one-family-out rows here")
    args = p.parse_args(argv)
    families = args.families.split(",")
    variants = args.variants.split(",")
    bad = [f for f in families if f not in FAMILIES] + [
        v for v in variants if v not in VARIANTS and v not in OTHER_RUNS
    ]
    if bad:
        print(f"suite.py: unknown family or variant: {bad[0]}", file=sys.stderr)
        return 2
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
        checkpoints = sorted(int(c) for c in args.checkpoints.split(","))
    except ValueError:
        print("suite.py: --seeds and --checkpoints take comma-separated integers", file=sys.stderr)
        return 2
    if "reference" in variants and not args.report_only:
        if args.reference is None:
            print("suite.py: the reference runs need --reference CHECKOUT (or leave "
                  "'reference' out of --variants)", file=sys.stderr)  # fmt: skip
            return 2
        from reference_run import BenchError, check_reference

        try:
            args.reference = str(check_reference(args.reference))
        except BenchError as exc:
            print(f"suite.py: {exc}", file=sys.stderr)
            return 2
    plan = [(f, s, v) for v in variants for f in families for s in seeds]
    if args.big:
        plan += [(BIG, s, v) for v in ("padded", "padded+lr=1e-3") for s in seeds]
    jobs = [{"family": f, "seed": s, "variant": v, "checkpoints": checkpoints,
             "reference": args.reference} for f, s, v in plan]  # fmt: skip
    if args.report_only:
        path = Path(args.results)
        done = {job_key(r): r for r in map(json.loads, path.read_text().splitlines())}
        records = [done[job_key(j)] for j in jobs if job_key(j) in done]
    else:
        for f, s, _ in plan:  # generated before forking
            make_set(f, s)
        records = run_all(jobs, Path(args.results), args.processes)
    text = markdown(records, families, checkpoints, args.baseline)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        table = auc_table(records)
        rows = lofo(table, families, [(v, c) for v in VARIANTS if v != "default"
                                      for c in checkpoints], args.baseline)  # fmt: skip
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
