"""Several seeds of one training run, and the spread of every metric: `arnet train --seeds`.

A single seed's figure says little on ten training videos: AR-Net's frame AUC on UCSD Ped2
moves by about a point from seed to seed. `--seeds 1,2,3,4,5` trains one run per seed into
OUT/seed-N (each a complete run folder: checkpoints, metrics, plots) and writes
OUT/seeds.json: per seed, its metrics and the snapshot they come from, and per metric the mean,
the sample standard deviation, the minimum and the maximum over seeds. The snapshot is the
last one (the number of iterations is fixed before training), or with `--val-fraction` the one
chosen on that seed's held-out training videos (arnet.training.validation; each seed draws its own);
nothing is chosen on the test split. With `--val-fraction`, seeds.json also gives the spread of
the selected snapshots' held-out figures and iterations.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..atomic import write_json_atomic
from ..config import TrainConfig
from ..data.dataset import FeatureDataset
from ..errors import TrainingError
from .validation import RULE

_RULE = f"selected on held-out training videos: {RULE}"


# Runs one sweep may train: a range is counted before it is listed (1-10000000000 is refused
# in a line, not by running out of memory).
MAX_SEEDS = 1000


def parse_seeds(text: str) -> list[int]:
    """ "1,2,3" or "1-5" (or a mix) -> [1, 2, 3]; distinct non-negative integers, at most
    MAX_SEEDS of them."""
    seeds: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            if "-" in part[1:]:
                first, last = (int(v) for v in part.split("-", 1))
                if last - first + 1 + len(seeds) > MAX_SEEDS:
                    raise OverflowError
                seeds += range(first, last + 1)
            else:
                seeds.append(int(part))
    except OverflowError:
        raise ValueError(
            f"--seeds {text}: more than {MAX_SEEDS} runs; one sweep trains at most {MAX_SEEDS}"
        ) from None
    except ValueError:
        seeds = []
    if len(seeds) > MAX_SEEDS:
        raise ValueError(
            f"--seeds {text}: more than {MAX_SEEDS} runs; one sweep trains at most {MAX_SEEDS}"
        )
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(
            f"--seeds must list distinct non-negative integers (1,2,3 or 1-5): {text!r}"
        )
    return seeds


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean, sample standard deviation, min and max of the finite values, and how many."""
    clean = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not clean:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {
        "mean": statistics.fmean(clean),
        "std": statistics.stdev(clean) if len(clean) > 1 else 0.0,
        "min": min(clean),
        "max": max(clean),
        "n": len(clean),
    }


def train_seeds(
    config: TrainConfig,
    seeds: Sequence[int],
    train_set: FeatureDataset,
    test_set: FeatureDataset | None,
    out_dir: str | Path,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Train one run per seed under OUT/seed-N; write and return OUT/seeds.json's content."""
    from .trainer import Trainer

    out = Path(out_dir)
    taken = [out / f"seed-{s}" for s in seeds if (out / f"seed-{s}").exists()]
    if taken:
        raise TrainingError(f"{taken[0]} already exists; choose another --out")
    runs: list[dict[str, Any]] = []
    for seed in seeds:
        result = Trainer(replace(config, seed=seed), train_set, test_set, out / f"seed-{seed}",
                         progress).run()  # fmt: skip
        runs.append(
            {
                "seed": seed,
                "run": str(result.out_dir),
                "checkpoint": str(result.checkpoint),
                "snapshot_iteration": result.snapshot,
                "selected_by": _RULE if result.validation else "the last snapshot",
                "validation": result.validation,
                "metrics": result.metrics.summary() if result.metrics else None,
            }
        )
    names = sorted({k for r in runs if r["metrics"] for k, v in r["metrics"].items()
                    if isinstance(v, (int, float))})  # fmt: skip
    validated = config.val_fraction > 0
    summary = {
        "seeds": list(seeds),
        "snapshot": f"per run, {_RULE} (--val-fraction {config.val_fraction:g})"
        if validated
        else "the last of each run (iterations fixed before training)",
        "metrics": {n: spread([(r["metrics"] or {}).get(n) for r in runs]) for n in names},
        "runs": runs,
    }
    if validated:
        keys = ("video_auc", "threshold", "false_alarm_rate", "anomalous_alerted", "iteration")
        summary["validation"] = {k: spread([(r["validation"] or {}).get(k) for r in runs])
                                 for k in keys}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "seeds.json", summary)
    return summary


def seeds_table(summary: dict[str, Any]) -> str:
    """The spread of the headline metrics over seeds, as text."""
    lines = [f"seeds {', '.join(map(str, summary['seeds']))}: mean ± std (min - max)"]
    picked = [str(r["snapshot_iteration"]) for r in summary["runs"]]
    lines.append(f"  snapshots at iterations {', '.join(picked)}: {summary['snapshot']}")
    rows = [(n, summary["metrics"].get(n)) for n in ("auc", "auc_anomalous", "ap", "far_all",
            "far_normal")]  # fmt: skip
    held = summary.get("validation", {})
    rows += [(f"held-out {n}", held.get(n)) for n in ("video_auc", "threshold") if n in held]
    for name, s in rows:
        if s and s["mean"] is not None:
            lines.append(f"  {name:<20}{s['mean']:.4f} ± {s['std']:.4f}  ({s['min']:.4f} - "
                         f"{s['max']:.4f})")  # fmt: skip
    return "\n".join(lines)
