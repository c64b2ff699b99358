"""A method's own public code beside arnet's version of it, on the same data, on the CPU.

    python benchmarks/peers.py --method rtfm --reference /tmp/RTFM --lockstep
    python benchmarks/peers.py --method rtfm --reference /tmp/RTFM --iterations 300 --seeds 1,2,3
    python benchmarks/peers.py --method mgfn --reference /tmp/MGFN --data runs/synth10 --lockstep
    python benchmarks/peers.py --method urdmu --reference /tmp/UR-DMU --lockstep --lockstep-fixed

`--reference` is a checkout of the method's repository (never part of arnet: clone it outside
the repository). Without `--data`, a synthetic ten-crop set (`arnet synth --crops 10`, the
method's `SYNTH` settings) is made once under benchmarks/.cache/peers/.

`--lockstep` feeds identical weights and identical batches into their training step and
arnet's (with `compat=True`: their code's behaviours; `--lockstep-fixed`: arnet's own version,
to measure what a fix changes), each step under the same torch seed so that dropout draws the
same masks, and prints the loss of both and the largest difference of the network's scores
at every step, the largest relative difference of a gradient at the first step and of a
weight after the last. The first step (loss, scores, every gradient) must agree to float
rounding; later steps drift apart by an amount that depends on the data and the machine
(Adam moves a weight by about lr whatever its gradient's size, rounding noise included).

Otherwise each seed trains their code (`theirs`), arnet's model at its train_defaults with
the method's batch (`ours`) and the same with their code's behaviours (`compat`: the
driver's `COMPAT` fields, by default the objective's compat=True) for `--iterations`
steps, scores the test videos with arnet's frame-level metrics, and prints mean ± sample std
and the worst seed of each, and whether ours lies within their seed spread.

Interface of a driver, `benchmarks/peers_NAME.py` (NAME = --method):

    REPOSITORY: str            # "owner/name" of their repository, for messages
    FILES: tuple[str, ...]     # files a checkout must hold (checked before anything runs)
    MODEL: str                 # arnet's registry name of the method
    SYNTH: dict                # SynthConfig fields of the default data
    OURS: dict                 # TrainConfig fields arnet trains with to match their run
    COMPAT: dict               # optional: the fields added for `compat` (where compat is a
                               # model option rather than the objective's)
    def run_reference(checkout, data, iterations, seed, out) -> dict:
        # train THEIR code on the CPU for `iterations` steps on `data` (an arnet dataset
        # folder) with `seed`, writing what it likes under `out`; score the test videos with
        # arnet's metrics: {"auc": .., "ap": .., "seconds": .., ...}
    def lockstep(checkout, data, iterations, seed, compat=True) -> dict:
        # peerkit.lockstep_result(...): {"iterations": [{"iteration", "loss_theirs",
        #   "loss_ours", "scores_max_abs_diff", ...}, ...], "grads_max_rel_diff_first_step",
        #   ...anything else worth printing}

`benchmarks/peerkit.py` holds what drivers share: importing their CUDA-only modules so that
they run on the CPU (their files untouched), the synthetic data, arnet's metrics on their
scores, arnet's own training run, the lockstep's pieces.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peerkit import PeerError, peer_data, require_checkout, train_ours  # noqa: E402

HERE = Path(__file__).resolve().parent
LOCKSTEP_TOLERANCE = 1e-4
"""Relative loss difference and absolute score difference allowed in the first steps."""


def methods() -> list[str]:
    return sorted(p.stem[len("peers_") :] for p in HERE.glob("peers_*.py"))


def driver(method: str) -> Any:
    """The `peers_METHOD` module; PeerError naming the methods there are."""
    if method not in methods():
        raise PeerError(f"--method {method!r}: no benchmarks/peers_{method}.py; "
                        f"methods: {', '.join(methods()) or 'none'}")  # fmt: skip
    return importlib.import_module(f"peers_{method}")


def summary(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "worst": min(values),
        "n": len(values),
    }


def run_lockstep(
    mod: Any, checkout: Path, data: Path, iterations: int, seed: int, compat: bool = True
) -> dict:
    """Their step and arnet's side by side (see the module docstring); `agree` when the first
    step's loss, scores and every gradient agree within LOCKSTEP_TOLERANCE. Later steps are
    shown, not judged: Adam's first updates are about lr whatever a gradient's size, so a
    gradient that is rounding noise on both sides moves a weight either way, and how far that
    carries depends on the data and on the machine's summation order."""
    import torch

    try:
        result = mod.lockstep(checkout, data, iterations, seed, compat=compat)
    except RuntimeError as exc:
        if torch.get_default_dtype() == torch.float64 and "dtype" in str(exc):
            raise PeerError(f"--float64: their code casts to float32 somewhere ({exc}); run "
                            "the lockstep without --float64") from None  # fmt: skip
        raise
    steps = result["iterations"]
    against = "compat=True" if compat else "its fixed version, compat off"
    print(f"lockstep {mod.MODEL}: their code and arnet's ({against}), identical weights and "
          f"batches, seed {seed}")  # fmt: skip
    print(
        f"{'step':>4}  {'loss theirs':>14}  {'loss ours':>14}  {'rel diff':>9}  {'scores diff':>11}"
    )
    for r in steps:
        rel = abs(r["loss_theirs"] - r["loss_ours"]) / max(abs(r["loss_theirs"]), 1e-12)
        r["loss_rel_diff"] = rel
        print(f"{r['iteration']:>4}  {r['loss_theirs']:>14.8f}  {r['loss_ours']:>14.8f}  "
              f"{rel:>9.2e}  {r['scores_max_abs_diff']:>11.2e}")  # fmt: skip
    first = steps[0]
    agree = max(first["loss_rel_diff"], first["scores_max_abs_diff"],
                result["grads_max_rel_diff_first_step"]) < LOCKSTEP_TOLERANCE  # fmt: skip
    for key, value in result.items():
        if key != "iterations":
            print(f"{key}: {value}")
    print(f"first step (loss, scores, gradients) {'agrees' if agree else 'DIFFERS'} within "
          f"{LOCKSTEP_TOLERANCE:g}; later steps: largest loss difference "
          f"{max(r['loss_rel_diff'] for r in steps):.2e} (relative)")  # fmt: skip
    return {**result, "agree": agree}


def variant_args(variant: str) -> dict[str, Any]:
    """The objective options of one of arnet's variants: `ours` (none), `compat`
    (compat=True), `ours+KEY=VALUE` (one option changed, e.g. ours+pairs=crops)."""
    if variant == "compat":
        return {"compat": True}
    if variant.startswith("ours+") and "=" in variant:
        key, _, text = variant[len("ours+") :].partition("=")
        try:
            return {key: json.loads(text)}
        except json.JSONDecodeError:
            return {key: text}
    if variant != "ours":
        raise PeerError(f"--variants: {variant!r} is none of theirs, ours, compat, ours+KEY=VALUE")
    return {}


def ours_fields(mod: Any, variant: str) -> dict[str, Any]:
    """The TrainConfig fields (over the model's train_defaults) of one of arnet's variants:
    the driver's `OURS`, with `compat` its `COMPAT` (default: the objective's compat=True) and
    `ours+KEY=VALUE` one objective option."""
    extra = (getattr(mod, "COMPAT", {"objective_args": {"compat": True}})
             if variant == "compat" else {"objective_args": variant_args(variant)})  # fmt: skip
    fields = dict(mod.OURS)
    for key, value in extra.items():
        fields[key] = (
            {**fields[key], **value} if isinstance(value, dict) and key in fields else value
        )
    return fields


def _done(results: Path | None) -> list[dict]:
    if results is None or not results.is_file():
        return []
    return [json.loads(line) for line in results.read_text().splitlines() if line.strip()]


def run_auc(
    mod: Any,
    checkout: Path,
    data: Path,
    iterations: int,
    seeds: list[int],
    variants: list[str],
    results: Path | None = None,
) -> dict:
    """Each (variant, seed) run, or its record in `results` (JSON lines: an interrupted
    sweep resumes where it stopped)."""
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    done = _done(results)
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        for seed in seeds:
            for variant in variants:
                key = {"method": mod.MODEL, "variant": variant, "seed": seed,
                       "iterations": iterations, "data": str(data)}  # fmt: skip
                old = [r for r in done if all(r.get(k) == v for k, v in key.items())]
                if old:
                    runs[variant].append(old[-1])
                    print(f"{variant:>7} seed {seed}: AUC {old[-1]['auc']:.4f} (from {results})")
                    continue
                out = Path(tmp) / f"{variant}-{seed}"
                if variant == "theirs":
                    r = mod.run_reference(checkout, data, iterations, seed, out)
                else:
                    r = train_ours(mod.MODEL, data, iterations, seed, out,
                                   **ours_fields(mod, variant))  # fmt: skip
                r.update(key)
                runs[variant].append(r)
                if results is not None:
                    with open(results, "a") as f:
                        f.write(json.dumps(r, default=float) + "\n")
                print(
                    f"{variant:>7} seed {seed}: AUC {r['auc']:.4f}  AP {r['ap']:.4f}  "
                    f"{1000 * r['seconds'] / iterations:.0f} s per 1,000 iterations",
                    flush=True,
                )
    table = {v: summary([r["auc"] for r in rs]) for v, rs in runs.items() if rs}
    print(f"\n{mod.MODEL}, {iterations} iterations, seeds {','.join(map(str, seeds))}: frame AUC")
    for v, s in table.items():
        print(f"{v:>7}: {s['mean']:.4f} ± {s['std']:.4f}  worst {s['worst']:.4f}  (n={s['n']})")
    verdicts = {}
    if "theirs" in table:
        t = table["theirs"]
        lo, hi = min(r["auc"] for r in runs["theirs"]), max(r["auc"] for r in runs["theirs"])
        for v in (x for x in table if x != "theirs"):
            m = table[v]["mean"]
            inside = lo - 1e-12 <= m <= hi + 1e-12 or abs(m - t["mean"]) <= 2 * t["std"]
            verdicts[v] = "within their seed spread" if inside else (
                "above their seed spread" if m > hi else "below their seed spread")  # fmt: skip
            print(f"{v:>7} - theirs: {m - t['mean']:+.4f} ({verdicts[v]}: their seeds "
                  f"{lo:.4f}..{hi:.4f})")  # fmt: skip
    return {"runs": runs, "summary": table, "verdicts": verdicts}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", required=True, help=f"one of: {', '.join(methods())}")
    p.add_argument("--reference", required=True, help="a checkout of the method's repository")
    p.add_argument("--data", help="an arnet dataset with (T, C, D) features (default: synthetic)")
    p.add_argument("--iterations", type=int, help="steps (default 200; with --lockstep 5)")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    p.add_argument("--variants", default="theirs,ours,compat",
                   help="theirs, ours, compat or ours+KEY=VALUE (an objective option)")  # fmt: skip
    p.add_argument("--lockstep", action="store_true", help="compare step by step instead")
    p.add_argument("--float64", action="store_true",
                   help="lockstep in double precision: rounding noise then cannot grow "
                   "into a visible drift; what remains is a difference of computation")  # fmt: skip
    p.add_argument("--lockstep-fixed", action="store_true",
                   help="lockstep against arnet's fixed version (compat off): what a fix "
                   "changes")  # fmt: skip
    p.add_argument("--out", help="write the results here as JSON")
    p.add_argument("--results", help="JSON lines of finished runs: skipped, and appended to")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args(argv)
    import torch

    import arnet.models  # noqa: F401  (before their code is imported: torch's lazy parts too)

    torch.set_num_threads(max(1, args.threads))
    if args.float64:
        torch.set_default_dtype(torch.float64)
    try:
        mod = driver(args.method)
        checkout = require_checkout(args.reference, mod.FILES, mod.REPOSITORY)
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        bad = sorted(v for v in set(variants) - {"theirs", "ours", "compat"}
                     if not (v.startswith("ours+") and "=" in v))  # fmt: skip
        if bad or not variants:
            raise PeerError(f"--variants: unknown {', '.join(bad) or 'empty list'}; "
                            "choose of theirs, ours, compat")  # fmt: skip
        if args.data:
            data = Path(args.data)
            if not data.is_dir():
                raise PeerError(f"--data {data}: no such folder")
        else:
            data = peer_data(args.method, **mod.SYNTH)
        iterations = args.iterations or (5 if args.lockstep else 200)
        if iterations < 1:
            raise PeerError(f"--iterations must be >= 1, got {iterations}")
        if args.lockstep:
            result = run_lockstep(mod, checkout, data, iterations, seeds[0],
                                  compat=not args.lockstep_fixed)  # fmt: skip
        else:
            results = Path(args.results) if args.results else None
            result = run_auc(mod, checkout, data, iterations, seeds, variants, results)
    except (PeerError, ValueError) as exc:
        print(f"peers.py: error: {exc}", file=sys.stderr)
        return 2
    record = {"method": args.method, "reference": str(checkout), "data": str(data),
              "iterations": iterations, "seeds": seeds, **result}  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
