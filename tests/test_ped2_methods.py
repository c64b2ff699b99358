"""benchmarks/ped2.py --methods: arnet, naive, nearest and any registered model (trained
with its registry schedule, capped as benchmarks/methods.py caps it); all without Ped2."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str, file: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ped2():
    return _load("ped2_benchmark_methods", "ped2.py")


def _run(ped2, capsys, tmp_path, *argv):
    code = ped2.main(["--data", str(tmp_path / "no-ped2"), "--variants", "motion-flow", *argv])
    return code, capsys.readouterr().err.strip().splitlines()


def test_an_unknown_method_is_refused_in_one_line_naming_the_option(ped2, capsys, tmp_path):
    code, err = _run(ped2, capsys, tmp_path, "--methods", "arnet,rtfmm")
    assert code == 2
    assert len(err) == 1
    assert err[0].startswith("--methods: rtfmm is not among") and "urdmu" in err[0]


@pytest.mark.parametrize("methods", ["rtfm", "arnet,naive,nearest", "urdmu,bnwvad,mgfn"])
def test_registry_names_pass_the_method_check(ped2, capsys, tmp_path, methods):
    # accepted: the run goes on to look for the data, which is missing here
    code, err = _run(ped2, capsys, tmp_path, "--methods", methods)
    assert code == 2
    assert len(err) == 1 and err[0].startswith("UCSD Ped2 not found at")


@pytest.mark.parametrize(
    "argv",
    [["--splits-from", "0"], ["--splits-from", "4", "--random-splits", "3"], ["--seeds", "-1"]],
)
def test_a_bad_split_range_is_refused_in_one_line(ped2, capsys, tmp_path, argv):
    code, err = _run(ped2, capsys, tmp_path, "--methods", "rtfm", *argv)
    assert code == 2 and len(err) == 1 and err[0].startswith("--splits-from")
    # a range that holds: the run goes on to look for the data
    code, err = _run(ped2, capsys, tmp_path, "--splits-from", "3", "--random-splits", "3",
                     "--seeds", "0")  # fmt: skip
    assert err[0].startswith("UCSD Ped2 not found at")


def test_a_model_with_its_own_objective_is_refused_on_cells(ped2, capsys, tmp_path):
    code, err = _run(ped2, capsys, tmp_path, "--methods", "arnet,mgfn", "--instances", "cells")
    assert code == 2
    assert len(err) == 1 and err[0].startswith("--methods: mgfn trains with its own objective")
    code, err = _run(ped2, capsys, tmp_path, "--methods", "arnet", "--instances", "cells")
    assert err[0].startswith("UCSD Ped2 not found at")


def test_a_registry_method_trains_with_its_schedule_capped_and_ped2s_iterations(ped2):
    from arnet.config import NAIVE_BASELINE, TrainConfig
    from arnet.models import model_entry

    schedules = _load("schedules", "schedules.py")
    fields, capped, narrowed = ped2.method_fields("urdmu")
    defaults = model_entry("urdmu").train_defaults
    assert "iterations" not in fields  # the benchmark's budget, the same for every method
    assert capped == {k: v for k, v in schedules.CAPS.items() if defaults[k] > v} != {}
    assert fields["lr"] == defaults["lr"] and fields["uniform_segments"] == capped.get(
        "uniform_segments", defaults["uniform_segments"]
    )
    assert narrowed == {} and fields["model"] == "urdmu"
    assert ped2.method_fields("bas")[2] == schedules.NARROW["bas"]
    assert ped2.method_fields("arnet") == ({"model": "single"}, {}, {})
    naive = ped2.method_fields("naive")[0]
    assert naive == {"model": "single", **NAIVE_BASELINE}
    for method in ("arnet", "naive", "rtfm", "mgfn", "urdmu", "bnwvad"):
        TrainConfig(iterations=20, **ped2.method_fields(method)[0])  # a valid config each


def _file(
    path: Path, runs: dict, costs: dict, methods: list[str], variant: str = "motion-flow"
) -> Path:
    import json

    settings = {"variants": [variant], "methods": methods, "seeds": 2, "random_splits": 2,
                "random_seeds": 1, "val_fraction": 0.3, "iterations": None,
                "instances": "segment", "fps": 10.0}  # fmt: skip
    features = {"backbone": "motion-grid", "modal": "flow", "dim": 576}
    result = {"runs": runs, "costs": costs, "iterations": 200, "features": features}
    path.write_text(json.dumps({"settings": settings, "variants": {variant: result}}))
    return path


def _rec(auc: float) -> dict:
    return {"auc": auc, "far_normal": 0.1, "event_recall": 1.0, "false_alerts_per_hour": 20.0}


def test_the_table_puts_the_baseline_of_the_same_splits_beside_each_row(tmp_path):
    table = _load("methods_ped2", "methods_ped2.py")
    splits = {f"random{i}": [_rec(a)] for i, a in ((1, 0.90), (2, 0.80), (3, 0.10))}
    nearest = {"nearest": {"weak": [_rec(0.99)], **splits}}
    rtfm = {"rtfm": {"weak": [_rec(0.7), _rec(0.9)], "random1": [_rec(0.6)],
                     "random2": [_rec(0.4)]}}  # fmt: skip
    cost = {"rtfm": {"model": "rtfm", "parameters": 1234, "seconds_per_1000": 50.0,
                     "capped": {"videos_per_class": 8}, "narrowed": {}, "schedule": {"lr": 1e-3},
                     "train_videos": {"anomalous": 6, "all": 10}}}  # fmt: skip
    a = _file(tmp_path / "a.json", nearest, {}, ["nearest"])
    b = _file(tmp_path / "b.json", rtfm, cost, ["rtfm"])
    out = tmp_path / "table"
    assert table.main([str(a), str(b), "--out", str(out)]) == 0
    row = next(r for r in (out.with_suffix(".md")).read_text().splitlines() if "`rtfm`" in r)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:8] == ["80.00 ± 14.14", "70.00", "2", "50.00 ± 14.14", "40.00", "2 x 1",
                          "85.00 ± 7.07"]  # fmt: skip
    assert "1,234" in cells and "50.0" in cells
    assert "videos_per_class=8 (no effect" in row and "none on Ped2" in row
    with pytest.raises(SystemExit, match=r"already read .*\(split random1\)"):
        table.main([str(b), str(b), "--out", str(out)])
    # more splits of the same method from another run (--splits-from 3 --seeds 0): joined
    more = {"rtfm": {"random3": [_rec(0.9)]}}
    c = _file(tmp_path / "c.json", more, {}, ["rtfm"])
    assert table.main([str(a), str(b), str(c), "--out", str(out)]) == 0
    row = next(r for r in (out.with_suffix(".md")).read_text().splitlines() if "`rtfm`" in r)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4:7] == ["63.33 ± 25.17", "40.00", "3 x 1"]
    assert "1,234" in cells  # the cost from the file that measured it


def test_each_feature_variant_has_its_own_table_and_baseline(tmp_path):
    table = _load("methods_ped2", "methods_ped2.py")
    flow = _file(tmp_path / "flow.json", {"nearest": {"random1": [_rec(0.9)]},
                                          "arnet": {"random1": [_rec(0.5)]}}, {},
                 ["nearest", "arnet"])  # fmt: skip
    pooled = _file(tmp_path / "pooled.json", {"nearest": {"random1": [_rec(0.7)]},
                                              "arnet": {"random1": [_rec(0.6)]}}, {},
                   ["nearest", "arnet"], variant="pooled")  # fmt: skip
    out = tmp_path / "table"
    assert table.main([str(pooled), str(flow), "--out", str(out)]) == 0
    text = out.with_suffix(".md").read_text()
    assert text.index("### `motion-flow`") < text.index("### `pooled`")  # the fixed order
    sections = text.split("### ")[1:]
    arnet = [next(r for r in sec.splitlines() if r.startswith("| arnet")) for sec in sections]
    # the nearest-normal column beside AR-Net is the baseline on the same features
    assert "| 90.00 |" in arnet[0] and "| 70.00 |" in arnet[1]
    rows = (out.with_suffix(".csv")).read_text().splitlines()
    assert rows[0].startswith("features,method") and {r.split(",")[0] for r in rows[1:]} == {
        "motion-flow",
        "pooled",
    }
    assert table.main([str(tmp_path / "none.json"), "--out", str(out)]) == 2


def test_the_docs_show_the_generated_table_unedited():
    root = BENCHMARKS.parent
    generated = (BENCHMARKS / "results" / "methods_ped2.md").read_text().splitlines()
    table = [line for line in generated if line.startswith("|")]
    assert len(table) >= 3
    for page in ("ped2.md", "methods.md"):
        text = (root / "docs" / page).read_text()
        missing = [line for line in table if line not in text.splitlines()]
        assert not missing, f"docs/{page}: rows not as benchmarks/methods_ped2.py wrote them"
