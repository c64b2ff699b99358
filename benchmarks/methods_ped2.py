"""The Ped2 rows of the methods table, from what benchmarks/ped2.py measured (its --json files):
every method on the weak split (mean ± std over seeds, the worst seed) and on random weak splits
(mean ± std of the splits, the worst), beside the nearest-normal baseline and AR-Net on the
same splits;
parameters, seconds per 1,000 training iterations, the caps applied to each method's own
schedule, and the published figures (other datasets, other features).

    python benchmarks/methods_ped2.py benchmarks/results/ped2_methods/*.json

Writes --out.md and --out.csv (default benchmarks/results/methods_ped2). One table per feature
variant. Files holding other splits of one method on one variant are joined; a split measured
twice is refused. No figure here is
typed in: every number is read from the JSON files.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from schedules import PUBLISHED  # noqa: E402

RESULTS = HERE / "results"
LABELS = {
    "arnet": "arnet (`single`, DMIL + center loss)",
    "naive": "naive (`single`, every segment its video's label)",
    "nearest": "nearest normal (no training)",
}
PUBLISHED_MODEL = {"arnet": "single"}  # method -> registry name whose figures stand beside it
ORDER = ("motion-flow", "pooled", "motion-rgb", "motion-combine")  # the tables' order
ROWS = ("nearest", "arnet", "naive", "rtfm", "mgfn", "urdmu", "bnwvad")  # then the rest, a-z


def load(files: list[Path]) -> tuple[dict, dict, list[dict]]:
    """(runs and costs per feature variant and method, settings per variant and method), each
    keyed by (variant, method), and every file's settings. Files that measured other splits of
    one method on one variant (`benchmarks/ped2.py --splits-from`, `--seeds 0`) are joined; a
    split measured twice, or at another number of iterations, is refused."""
    methods: dict[tuple[str, str], dict] = {}
    settings: dict[tuple[str, str], dict] = {}
    every: list[dict] = []
    for file in files:
        data = json.loads(file.read_text())
        every.append({**data["settings"], "file": str(file)})
        for variant, result in data["variants"].items():
            for method, runs in result["runs"].items():
                key = (variant, method)
                if key in methods:
                    known = methods[key]
                    twice = sorted(set(known["runs"]) & set(runs))
                    if twice or known["iterations"] != result["iterations"]:
                        why = f"split {twice[0]}" if twice else "at other iterations"
                        raise SystemExit(f"{file}: method {method} on {variant} already read "
                                         f"from {settings[key]['file']} ({why})")  # fmt: skip
                    known["runs"].update(runs)
                    known["cost"] = known["cost"] or result.get("costs", {}).get(method)
                    continue
                methods[key] = {
                    "runs": dict(runs),
                    "cost": result.get("costs", {}).get(method),
                    "iterations": result["iterations"],
                    "features": result["features"],
                    "variant": variant,
                }
                settings[key] = every[-1]
    return methods, settings, every


def _stat(values: list[float]) -> tuple[float, float, float, int]:
    clean = [v for v in values if v is not None and np.isfinite(v)]
    if not clean:
        return float("nan"), float("nan"), float("nan"), 0
    std = statistics.stdev(clean) if len(clean) > 1 else 0.0
    return statistics.fmean(clean), std, min(clean), len(clean)


def _pct(stat, with_std: bool = True) -> str:
    mean, std, _, n = stat
    if not n:
        return "–"
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if with_std and n > 1 else "")


def split_means(runs: dict, metric: str) -> dict[str, float]:
    """Per random split, the mean of its seeds' `metric`."""
    out = {}
    for split, records in runs.items():
        if split == "weak":
            continue
        values = [r[metric] for r in records if r.get(metric) is not None]
        values = [v for v in values if np.isfinite(v)]
        out[split] = statistics.fmean(values) if values else float("nan")
    return out


def rows(methods: dict, settings: dict) -> tuple[list[str], list[list[str]]]:
    """The table of one feature variant: `methods` and `settings` keyed by method alone."""
    head = ["method", "AUC weak split", "worst seed", "seeds", "AUC random splits", "worst split",
            "splits x seeds", "nearest normal, same splits", "arnet, same splits", "FAR normal",
            "event recall",
            "false alerts / h", "parameters", "s / 1,000 it", "published (other features)",
            "notes"]  # fmt: skip
    baseline = split_means(methods["nearest"]["runs"], "auc") if "nearest" in methods else {}
    arnet = split_means(methods["arnet"]["runs"], "auc") if "arnet" in methods else {}
    out = []
    for method in sorted(methods, key=lambda m: ((*ROWS, m).index(m), m)):
        m = methods[method]
        runs = m["runs"]
        weak = [r["auc"] for r in runs.get("weak", [])]
        aucs = split_means(runs, "auc")
        per_split = {len(v) for k, v in runs.items() if k != "weak"}
        seeds = "/".join(str(n) for n in sorted(per_split)) or "0"
        same = [baseline[k] for k in aucs if k in baseline]
        same_arnet = [arnet[k] for k in aucs if k in arnet]
        cost = m["cost"] or {}
        notes = []
        capped = cost.get("capped") or {}
        if capped:
            videos = cost.get("train_videos", {})
            largest = max(
                videos.get("anomalous", 0), videos.get("all", 0) - videos.get("anomalous", 0)
            )
            texts = []
            for k, v in capped.items():
                moot = k == "videos_per_class" and largest and v >= largest
                texts.append(
                    f"{k}={v}" + (" (no effect: a step takes every training video)" if moot else "")
                )
            notes.append("capped: " + ", ".join(texts))
        if cost.get("narrowed"):
            notes.append("narrowed: " + ", ".join(f"{k}={v}" for k, v in cost["narrowed"].items()))
        schedule = cost.get("schedule") or {}
        if "lr" in schedule:
            decay = schedule.get("weight_decay", 0)
            notes.append(f"its schedule: lr {schedule['lr']:g}, weight decay {decay:g}")
        if method == "nearest":
            notes.append("threshold from the training videos")
        elif methods[method]["iterations"]:
            vf = settings[method].get("val_fraction") or 0
            notes.append(
                f"{m['iterations']} iterations"
                + (f", snapshot on {vf:g} held-out training videos" if vf else ", last snapshot")
            )
        published = "; ".join(
            f"{d} {metric} {v:.2f} ({src})"
            for d, metric, v, src in PUBLISHED.get(PUBLISHED_MODEL.get(method, method), [])
        )
        per_1000 = cost.get("seconds_per_1000")
        params = cost.get("parameters")
        out.append([
            LABELS.get(method, f"`{method}`"),
            _pct(_stat(weak)),
            f"{100 * min(weak):.2f}" if weak else "–",
            str(len(weak)) if method != "nearest" else "– (no seed)",
            _pct(_stat(list(aucs.values()))),
            f"{100 * _stat(list(aucs.values()))[2]:.2f}" if aucs else "–",
            (f"{len(aucs)} x {seeds}" if method != "nearest" else f"{len(aucs)}") if aucs else "0",
            _pct(_stat(same)) if same and method != "nearest" else "–",
            _pct(_stat(same_arnet)) if same_arnet and method != "arnet" else "–",
            _pct(_stat(list(split_means(runs, "far_normal").values())), False),
            _pct(_stat(list(split_means(runs, "event_recall").values())), False),
            _fmt_rate(_stat(list(split_means(runs, "false_alerts_per_hour").values()))),
            f"{params:,}" if params is not None else ("0 (a bank)" if method == "nearest" else "–"),
            f"{per_1000:.1f}" if per_1000 is not None else "fit",
            (published + " — none on Ped2") if published else "–",
            "; ".join(notes) or "–",
        ])  # fmt: skip
    return head, out


def _fmt_rate(stat) -> str:
    return f"{stat[0]:.1f}" if stat[3] else "–"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path, help="benchmarks/ped2.py --json outputs")
    p.add_argument("--out", default=str(RESULTS / "methods_ped2"), help="writes OUT.md, OUT.csv")
    a = p.parse_args(argv)
    missing = [f for f in a.files if not f.is_file()]
    if missing:
        print(f"methods_ped2: {missing[0]} not found", file=sys.stderr)
        return 2
    methods, settings, every = load(a.files)
    if not methods:
        print(f"methods_ped2: no runs in {', '.join(map(str, a.files))}", file=sys.stderr)
        return 2
    variants = sorted({v for v, _ in methods}, key=lambda v: (ORDER + (v,)).index(v))
    first = next(iter(settings.values()))
    text = (
        "UCSD Ped2, weakly supervised: every method on the same features, trained methods "
        "scoring whole segments; one table per feature variant. Frame AUC (%): weak split, mean "
        "± sample std over seeds and the worst seed; random weak splits (numpy "
        "default_rng(r), r = 1..N; 6 anomalous + 4 normal training videos), mean ± std of the "
        "splits' means and the worst split, beside the nearest-normal baseline's and AR-Net's "
        "means on the same splits and features. "
        f"FAR normal (%), event recall (%) and false alerts per hour of normal video (at "
        f"{first['fps']:g} fps) at each method's threshold, means over the random splits. "
        "Time: one CPU thread of a shared 2-core machine, 10 training steps after 2 warm-up "
        "steps, on the weak split's training videos. Published figures are on other datasets "
        "and other features (I3D unless said); none of these methods published a Ped2 "
        "figure (the weakly supervised Ped2 figure in the literature is another method's: "
        "AUC 93.2, Zhong et al., CVPR 2019, TSN features). Generated by "
        "benchmarks/methods_ped2.py from: "
        + ", ".join(sorted({Path(s["file"]).name for s in every}))
        + ".\n"
    )
    table_rows = []
    for variant in variants:
        of = {m: v for (var, m), v in methods.items() if var == variant}
        head, body = rows(of, {m: v for (var, m), v in settings.items() if var == variant})
        features = next(iter(of.values()))["features"]
        text += (
            f"\n### `{variant}`: {features['backbone']} {features['modal']}, "
            f"{features['dim']} numbers per segment\n\n"
        )
        text += "| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n"
        text += "".join("| " + " | ".join(r) + " |\n" for r in body)
        table_rows += [[variant, *r] for r in body]
    commands = "\n".join(sorted({_command(s) for s in every}))
    text += "\nMeasured with:\n\n```bash\n" + commands + "\n```\n"
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    with out.with_suffix(".csv").open("w", newline="") as f:
        csv.writer(f).writerows([["features", *head], *table_rows])
    print(text)
    return 0


def _command(s: dict) -> str:
    """The benchmarks/ped2.py command line that wrote one JSON file."""
    parts = ["python benchmarks/ped2.py", f"--variants {','.join(s['variants'])}",
             f"--methods {','.join(s['methods'])}", f"--seeds {s['seeds']}",
             f"--random-splits {s['random_splits']}",
             f"--random-seeds {s['random_seeds']}"]  # fmt: skip
    if s.get("splits_from", 1) != 1:
        parts.append(f"--splits-from {s['splits_from']}")
    if s.get("val_fraction"):
        parts.append(f"--val-fraction {s['val_fraction']:g}")
    if s.get("iterations"):
        parts.append(f"--iterations {s['iterations']}")
    if s.get("instances") != "segment":
        parts.append(f"--instances {s['instances']}")
    parts.append(f"--json {Path(s['file']).as_posix()}")
    return " ".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
