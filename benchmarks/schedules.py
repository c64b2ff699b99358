"""What the methods tables share (benchmarks/methods.py on the synthetic families,
benchmarks/ped2.py on UCSD Ped2): each registered model's training schedule as its registry
`train_defaults` give it (its paper's), with what two shared CPU cores cannot run capped, and
its cost (parameters, seconds per 1,000 training iterations).

Every table that uses these says what was capped (`schedule` returns it).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

# Training defaults that two shared CPU cores cannot run in minutes, capped for every model
# that has them (UR-DMU, BN-WVAD: 64 + 64 videos of 200 segments per step).
CAPS: dict[str, int] = {"videos_per_class": 8, "uniform_segments": 32}
# Published widths too slow here: narrowed (same structure).
NARROW: dict[str, dict[str, Any]] = {"bas": {"filter_dim": 128, "hidden_dim": 256}}

# Published figures, on their own features (I3D unless said): (dataset, metric, value, source).
PUBLISHED: dict[str, list[tuple[str, str, float, str]]] = {
    "single": [("SHT", "AUC", 91.24, "Wan et al., ICME 2020")],
    "urdmu": [("UCF", "AUC", 86.97, "Zhou et al., AAAI 2023"),
              ("XD", "AP", 81.66, "Zhou et al., AAAI 2023")],
    "bnwvad": [("UCF", "AUC", 87.24, "Zhou et al., arXiv 2311.15367"),
               ("XD", "AP", 84.93, "Zhou et al., arXiv 2311.15367")],
    "rtfm": [("SHT", "AUC", 97.21, "Tian et al., ICCV 2021"),
             ("UCF", "AUC", 84.30, "Tian et al., ICCV 2021"),
             ("XD", "AP", 77.81, "Tian et al., ICCV 2021")],
    "mgfn": [("UCF", "AUC", 86.98, "Chen et al., AAAI 2023")],
}  # fmt: skip


def schedule(name: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(TrainConfig fields of model `name`'s own schedule after the caps, the caps applied,
    its narrowed constructor arguments). The fields hold `model` and `model_args`; the
    caller sets the data, iterations, seed and the rest (the iteration budget is the
    benchmark's, the same for every model)."""
    from arnet.models import model_entry

    fields = dict(model_entry(name).train_defaults)
    capped = {k: v for k, v in CAPS.items() if k in fields and fields[k] > v}
    fields.update(capped)
    narrowed = dict(NARROW.get(name, {}))
    fields.update(model=name, model_args=dict(narrowed))
    return fields, capped, narrowed


def trains_by_gradient(name: str) -> bool:
    """False for a model fitted in one go (nearest-normal): it has no time per iteration."""
    from arnet.models import model_entry
    from arnet.models.registry import objective_entry

    return objective_entry(model_entry(name).objective).gradient


def parameters(name: str, dim: int, model_args: dict[str, Any]) -> int:
    """Scalar parameters of model `name` built for `dim`-d features."""
    from arnet.models import count_parameters, create_model

    return count_parameters(create_model(name, dim, **model_args))


def seconds_per_1000(fields: dict[str, Any], train_set, steps: int = 10) -> float | None:
    """Wall time of `steps` training steps (after 2 warm-up steps), per 1,000 iterations;
    None for a model fitted in one go. `fields`: the run's TrainConfig fields (no held-out
    videos are taken out for the timing)."""
    from arnet.config import TrainConfig
    from arnet.training.trainer import Trainer

    if not trains_by_gradient(fields["model"]):
        return None
    config = TrainConfig(**{**fields, "val_fraction": 0.0, "iterations": steps + 2})
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, train_set, None, Path(tmp) / "run", progress=False)
        for _ in range(2):
            trainer.step()
        start = time.perf_counter()
        for _ in range(steps):
            loss, _ = trainer.step()
            loss.item()
        return (time.perf_counter() - start) / steps * 1000
