"""benchmarks/ped2.py's leave-one-split-out choice of the nearest-normal default, on made-up
AUCs: the reported split's own figure never takes part in choosing what it reports."""

from __future__ import annotations

import importlib.util
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "ped2.py"


@pytest.fixture(scope="module")
def ped2():
    spec = importlib.util.spec_from_file_location("ped2_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules["ped2_benchmark"] = module
    spec.loader.exec_module(module)
    return module


def _runs(table: dict[str, list[float]]) -> dict:
    return {
        m: {"weak": [{"auc": 0.5}], **{f"random{i + 1}": [{"auc": a}] for i, a in enumerate(v)}}
        for m, v in table.items()
    }


def test_each_fold_chooses_on_the_other_splits(ped2):
    rng = np.random.default_rng(0)
    table = {m: rng.random(6).tolist() for m in ("a", "b", "c")}
    got = ped2.leave_one_split_out(_runs(table), list(table))
    for i, fold in enumerate(got["folds"]):
        others = {m: statistics.fmean(v[:i] + v[i + 1 :]) for m, v in table.items()}
        best = max(others, key=others.get)
        assert fold["chosen"] == best and fold["auc"] == table[best][i]
    first = {m: statistics.fmean(v[:3]) for m, v in table.items()}
    chosen = max(first, key=first.get)
    assert got["chosen_on_first_half"] == chosen
    assert got["second_half_auc"][0] == pytest.approx(statistics.fmean(table[chosen][3:]))


def test_a_row_best_only_on_the_left_out_split_is_not_chosen_for_it(ped2):
    table = {"steady": [0.9] * 5, "lucky": [0.99, 0.5, 0.5, 0.5, 0.5]}
    folds = ped2.leave_one_split_out(_runs(table), list(table))["folds"]
    assert folds[0] == {"split": "random1", "chosen": "steady", "auc": 0.9}


def test_variant_names_are_checked(ped2):
    assert ped2.nearest_variants("group:1,plain:20") == {
        "nearest-group-k1": ("group", 1),
        "nearest-plain-k20": ("plain", 20),
    }
    for bad in ("zscore:1", "group", "group:0", "plain:x"):
        with pytest.raises(ValueError, match="SCALING:K"):
            ped2.nearest_variants(bad)
