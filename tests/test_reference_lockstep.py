"""`--compat reference` in lockstep with the reference AR-Net code, against recorded numbers.

tests/data/reference_lockstep.json holds numbers only: computed once by
`benchmarks/reference_run.py --lockstep 50` from the reference code itself
(wanboyang/Anomaly_AR_Net_ICME_2020, train.py's step: `KMXMILL_individual` + 20 x
`normal_smooth`, Adam(1e-4, weight decay 5e-4)) on a tiny `arnet synth` set: the videos and
segment positions the reference's sampler drew at each iteration, the dropout seed of each
forward pass, and the reference's losses and gradient norms. Here arnet's side is recomputed
from those draws (no reference code needed) and compared iteration by iteration.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from arnet.config import REFERENCE_COMPAT, SynthConfig, TrainConfig
from arnet.data.dataset import Draw
from arnet.formats import open_dataset
from arnet.formats.synth import write_synthetic
from arnet.models import build_objective, create_model
from arnet.training.runtime import make_adam
from arnet.training.trainer import model_args

FIXTURE = Path(__file__).parent / "data" / "reference_lockstep.json"


@pytest.fixture(scope="module")
def recorded():
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def train_set(recorded, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lockstep") / "set"
    write_synthetic(folder, SynthConfig(**recorded["synth"]))
    data = open_dataset(folder, split="train", in_memory=True)
    h = hashlib.sha256()
    for i in range(len(data)):
        h.update(data.names[i].encode())
        h.update(np.ascontiguousarray(data.features(i), dtype=np.float32).tobytes())
    assert h.hexdigest() == recorded["train_features_sha256"], "arnet synth changed its output"
    return data


def _config(recorded) -> TrainConfig:
    return TrainConfig(model="single", device="cpu", seed=recorded["weights_seed"],
                       videos_per_class=recorded["sample_size"],
                       max_segments=recorded["max_seqlen"],
                       **{**REFERENCE_COMPAT, "lr": recorded["lr"]})  # fmt: skip


def _grad_norms(model):
    return {n: float(p.grad.double().norm()) for n, p in model.named_parameters()}


def test_compat_reference_follows_the_reference_for_50_iterations(recorded, train_set):
    config = _config(recorded)
    torch.manual_seed(recorded["weights_seed"])  # the reference's Model_single init, same order
    model = create_model("single", train_set.dim, **model_args(config))
    sha = hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.state_dict().values()))
    assert sha.hexdigest() == recorded["initial_weights_sha256"]
    optimizer = make_adam(model, config.lr, config.weight_decay, config.fused_adam)
    objective = build_objective("single", config)
    index = {n: i for i, n in enumerate(train_set.names)}
    model.train()
    assert len(recorded["reference"]) == 50
    for draw, ref in zip(recorded["draws"], recorded["reference"]):
        vids = np.array([index[n] for n in draw["videos"]])
        batch = train_set.batch(Draw(vids, np.array(draw["positions"], dtype=np.int64), None))
        torch.manual_seed(ref["dropout_seed"])
        with torch.no_grad():
            out = model(batch.features, torch.ones_like(batch.mask))
        torch.manual_seed(ref["dropout_seed"])
        loss, parts = objective(model, batch)
        optimizer.zero_grad()
        loss.backward()
        it = ref["iteration"]
        assert float(out.sum()) == pytest.approx(ref["reference_output_sum"], rel=1e-5), it
        assert float(loss.detach()) == pytest.approx(ref["reference_loss"], rel=1e-5, abs=1e-7), it
        assert float(parts["mil"].detach()) == pytest.approx(ref["reference_mil"], rel=1e-5), it
        assert float(parts["center"].detach()) == pytest.approx(
            ref["reference_center"], rel=1e-5
        ), it
        norms = _grad_norms(model)
        for name, value in ref["reference_grad_norms"].items():
            assert norms[name] == pytest.approx(value, rel=1e-4, abs=1e-7), (it, name)
        total = sum(v**2 for v in norms.values()) ** 0.5
        assert total == pytest.approx(ref["reference_grad_norm"], rel=1e-4), it
        optimizer.step()


def test_a_changed_objective_leaves_lockstep(recorded, train_set):
    """The comparison can fail: arnet's default center loss (anchored) differs at once."""
    config = _config(recorded)
    config = TrainConfig.from_dict({**config.to_dict(), "center_loss": "anchored"})
    torch.manual_seed(recorded["weights_seed"])
    model = create_model("single", train_set.dim, **model_args(config))
    model.train()
    draw, ref = recorded["draws"][0], recorded["reference"][0]
    index = {n: i for i, n in enumerate(train_set.names)}
    vids = np.array([index[n] for n in draw["videos"]])
    batch = train_set.batch(Draw(vids, np.array(draw["positions"], dtype=np.int64), None))
    torch.manual_seed(ref["dropout_seed"])
    _, parts = build_objective("single", config)(model, batch)
    assert float(parts["center"].detach()) != pytest.approx(ref["reference_center"], rel=1e-3)


def test_recorded_draws_lie_where_the_compat_sampler_draws(recorded, train_set):
    """Every position the reference drew is one `--compat reference`'s sampler can draw: long
    anomalous videos one segment per closed bin [jT/L, (j+1)T/L] with the last fixed at
    floor((L-1)T/L); long normal videos a window starting in [0, T - L) (never T - L)."""
    L = recorded["max_seqlen"]
    index = {n: i for i, n in enumerate(train_set.names)}
    long_seen = {0: 0, 1: 0}
    for draw in recorded["draws"]:
        for name, row in zip(draw["videos"], draw["positions"]):
            v = index[name]
            T, label = int(train_set.lengths[v]), int(train_set.labels[v])
            pos = np.array([p for p in row if p >= 0])
            if T <= L:
                np.testing.assert_array_equal(pos, np.arange(T))
                continue
            long_seen[label] += 1
            j = np.arange(L)
            if label == 1:
                lo, hi = (j * T) // L, ((j + 1) * T) // L
                assert ((pos >= lo) & (pos <= hi)).all() and pos[-1] == lo[-1]
            else:
                assert 0 <= pos[0] < T - L
                np.testing.assert_array_equal(pos, pos[0] + j)
    assert long_seen[0] and long_seen[1]  # both sampling paths were exercised
