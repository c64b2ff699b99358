"""Segment scoring models behind one registry.

Every model maps `model(features (B, T, D), mask (B, T) bool) -> scores (B, T)` in [0, 1],
higher = more anomalous. Scores at padded positions are 0, and no valid score depends on a
padded input. `model.train()` / `model.eval()` switch dropout; there are no other modes.

| name       | module       | what it is (SPEC §3)                                          |
|------------|--------------|---------------------------------------------------------------|
| `single`   | segment.py   | AR-Net: an MLP on each segment (the paper's model)            |
| `mean`     | temporal.py  | temporal convs k=1,3,5, averaged                              |
| `sequence` | temporal.py  | temporal convs k=1,3,5, merged in sequence by 1x1 convs       |
| `concat`   | temporal.py  | temporal convs k=1,3,5, concatenated and projected 3D -> D    |
| `lstm`     | temporal.py  | an LSTM over the valid segments (one or two directions)       |
| `bas`      | bas.py       | BaS-Net: foreground filter + class activation sequence        |
| `nearest-normal` | normal.py | distance to the nearest normal training segment (no training) |
| `rtfm`     | rtfm.py      | RTFM: multi-scale temporal network, top-k feature magnitudes  |
| `mgfn`     | mgfn.py      | MGFN: glance and focus blocks, magnitude contrastive loss     |
| `urdmu`    | urdmu.py     | UR-DMU: dual memory units, uncertainty regulation (own loss)  |
| `bnwvad`   | bnwvad.py    | BN-WVAD: UR-DMU's backbone, BatchNorm feature divergence      |

Objectives: `mil` (losses.py: dynamic top-k MIL + center loss, the AR-Net models), `bas`
(bas.py), `normal-bank` (nearest-normal, fitted in one go), `rtfm` (rtfm.py), `mgfn`
(mgfn.py), `urdmu` (urdmu.py), `bnwvad` (bnwvad.py). A new method is one module with its
model and, if it needs one, its objective (registry.py says how).

`cells.CellInstances` wraps any of the MIL models to score each cell of grid features as its
own instance, a segment scoring as its highest cell (`arnet train --instances cells`).
"""

# Importing a module registers its models (and objectives); this order is the order `arnet
# models` lists them: the paper's model first, the AR-Net code base's others, then the
# methods added since.
# isort: off
from . import losses, segment, temporal, bas, normal, rtfm, mgfn, urdmu, bnwvad  # noqa: F401
# isort: on

from .bas import BasNet, BasObjective, BasOutput, CasModule, FilterModule, topk_mean_over_time
from .cells import CellInstances
from .losses import MilCenterObjective
from .registry import (
    REFERENCE_NAMES,
    ModelEntry,
    Objective,
    ObjectiveEntry,
    ScoringModel,
    build_objective,
    count_parameters,
    create_model,
    init_weights,
    list_models,
    list_objectives,
    model_entry,
    model_spec,
    objective_entry,
    register_model,
    register_objective,
    resolve_model_name,
)
from .segment import SingleLayer, per_segment
from .temporal import (
    ConcatModel,
    LstmModel,
    MeanModel,
    SequenceModel,
    TemporalBranches,
    mask_time,
)

__all__ = [
    "REFERENCE_NAMES",
    "BasNet",
    "BasObjective",
    "BasOutput",
    "CasModule",
    "CellInstances",
    "ConcatModel",
    "FilterModule",
    "LstmModel",
    "MeanModel",
    "MilCenterObjective",
    "ModelEntry",
    "Objective",
    "ObjectiveEntry",
    "ScoringModel",
    "SequenceModel",
    "SingleLayer",
    "TemporalBranches",
    "build_objective",
    "count_parameters",
    "create_model",
    "init_weights",
    "list_models",
    "list_objectives",
    "mask_time",
    "model_entry",
    "model_spec",
    "objective_entry",
    "per_segment",
    "register_model",
    "register_objective",
    "resolve_model_name",
    "topk_mean_over_time",
]
