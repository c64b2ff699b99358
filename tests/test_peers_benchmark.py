"""benchmarks/peers.py refuses a bad --method, --reference or --data with one line; every
driver answers its interface; the lockstep's pieces (benchmarks/peerkit.py)."""

import inspect
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import peers  # noqa: E402


def _error(capsys, *argv):
    assert peers.main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_an_unknown_method_names_the_methods(capsys, tmp_path):
    err = _error(capsys, "--method", "nosuch", "--reference", str(tmp_path))
    assert "--method 'nosuch'" in err and "rtfm" in err and "mgfn" in err


@pytest.mark.parametrize(
    "method, files",
    [("rtfm", "model.py"), ("mgfn", "models/mgfn.py"), ("urdmu", "memory.py"),
     ("bnwvad", "losses/__init__.py")],
)  # fmt: skip
def test_a_missing_or_wrong_checkout_is_named(capsys, tmp_path, method, files):
    err = _error(capsys, "--method", method, "--reference", str(tmp_path / "absent"))
    assert "no such folder" in err and "absent" in err
    (tmp_path / "README.md").write_text("something else\n")
    err = _error(capsys, "--method", method, "--reference", str(tmp_path))
    assert "not a checkout of" in err and files in err


def test_bad_variants_and_data_are_named(capsys, tmp_path):
    (tmp_path / "model.py").write_text("")
    (tmp_path / "train.py").write_text("")
    ref = ["--method", "rtfm", "--reference", str(tmp_path)]
    assert "--variants: unknown mine" in _error(capsys, *ref, "--variants", "theirs,mine")
    assert "--data" in _error(capsys, *ref, "--data", str(tmp_path / "nodata"))


@pytest.mark.parametrize("method", ["rtfm", "mgfn", "urdmu", "bnwvad"])
def test_every_driver_answers_the_interface(method):
    from arnet.config import SynthConfig, TrainConfig
    from arnet.models import build_objective, create_model, model_entry

    assert method in peers.methods()
    mod = peers.driver(method)
    assert mod.MODEL == method and "/" in mod.REPOSITORY and mod.FILES
    SynthConfig(**mod.SYNTH).validate()
    assert mod.SYNTH["crops"] > 1  # their code trains on crops
    for variant in ("ours", "compat"):  # each a config arnet builds and trains
        fields = {**model_entry(method).train_defaults, **peers.ours_fields(mod, variant)}
        config = TrainConfig(model=method, **fields)
        build_objective(method, config)
        create_model(method, mod.SYNTH["dim"], **config.model_args)
    for name in ("run_reference", "lockstep"):
        params = list(inspect.signature(getattr(mod, name)).parameters)
        assert params[:4] == ["checkout", "data", "iterations", "seed"], (name, params)
    assert "compat" in inspect.signature(mod.lockstep).parameters


def test_the_compat_variant_merges_into_the_drivers_own_fields():
    class Driver:
        OURS = {"videos_per_class": 4, "model_args": {"dims": [8, 8]}}
        COMPAT = {"model_args": {"compat": True}}

    fields = peers.ours_fields(Driver, "compat")
    assert fields == {"videos_per_class": 4, "model_args": {"dims": [8, 8], "compat": True}}
    assert Driver.OURS["model_args"] == {"dims": [8, 8]}  # untouched
    del Driver.COMPAT
    assert peers.ours_fields(Driver, "compat")["objective_args"] == {"compat": True}
    assert peers.ours_fields(Driver, "ours+pairs=videos")["objective_args"] == {"pairs": "videos"}


def test_largest_difference_names_the_worst_tensor_and_a_missing_one():
    import torch
    from peerkit import largest_difference

    ours = {"a": torch.ones(3), "b": torch.tensor([2.0, 0.0])}
    assert largest_difference(dict(ours), ours) == (0.0, "a")
    worst, name = largest_difference({"a": torch.ones(3), "b": torch.tensor([2.0, 1.0])}, ours)
    assert name == "b" and worst == pytest.approx(0.5)
    assert largest_difference({"a": torch.ones(3)}, ours) == (1.0, "b")
    assert largest_difference({"z": torch.ones(1)}, {"z": torch.zeros(1)})[0] == float("inf")


def test_the_gradient_tap_keeps_the_first_steps_gradients():
    import torch
    from peerkit import GradientTap

    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tap = GradientTap(opt, model)
    for x in (torch.ones(1, 2), 3 * torch.ones(1, 2)):
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
    assert torch.equal(tap.grads["weight"], torch.ones(1, 2))  # the first, not the second
    assert set(tap.grads) == {"weight", "bias"}


def test_normal_first_puts_the_normal_videos_first_crops_kept_together():
    import torch
    from peerkit import normal_first

    from arnet.data.dataset import Batch

    V, C, T = 4, 2, 3  # anomalous videos 0, 1 then normal 2, 3; rows video-major, crops inside
    feats = torch.arange(V * C, dtype=torch.float32).repeat_interleave(T).view(V * C, T, 1)
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0]).repeat_interleave(C)
    batch = Batch(feats, torch.ones(V * C, T, dtype=torch.bool), torch.full((V * C,), T),
                  labels, C)  # fmt: skip
    out = normal_first(batch)
    assert out.features[:, 0, 0].tolist() == [4, 5, 6, 7, 0, 1, 2, 3]
    assert out.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and out.crops == C
