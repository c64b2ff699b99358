"""The CUDA paths: every model, training in each precision, features on the device, scoring.

These run only where torch sees a CUDA device (the CI machine has none, so they skip there);
they compare the GPU's results with the CPU's on the same weights and inputs.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from arnet.config import TrainConfig
from arnet.errors import TrainingError
from arnet.evaluation.evaluate import evaluate, predict
from arnet.formats import open_dataset
from arnet.models import create_model, list_models
from arnet.training.checkpoint import load_checkpoint, model_from_checkpoint
from arnet.training.trainer import Trainer, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _exact_float32():
    """cuDNN convolutions default to TF32; compare the GPU with the CPU in full float32."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture(scope="module")
def splits(tiny_data):
    return open_dataset(tiny_data, in_memory=True)


def _cuda_config(tiny_data, **changes):
    values = dict(
        data=str(tiny_data),
        iterations=40,
        snapshot_every=10,
        videos_per_class=6,
        max_segments=32,
        device="cuda",
        plot=False,
        tensorboard=False,
        seed=3,
    )
    return TrainConfig(**{**values, **changes})


@pytest.mark.parametrize(
    "name", [e.name for e in list_models() if e.objective != "normal-bank"]
)  # a normal bank has no gradients; its scores are tested in test_nearest_normal.py
def test_every_model_gives_the_cpu_scores_and_gradients_on_cuda(name):
    """In training mode (cuDNN's LSTM has no backward in eval mode), without dropout."""
    torch.manual_seed(0)
    model = create_model(name, 24, dropout=0.0)
    features = torch.rand(3, 11, 24)
    mask = torch.arange(11)[None] < torch.tensor([11, 7, 2])[:, None]
    on_gpu = create_model(name, 24, dropout=0.0).to(CUDA)
    on_gpu.load_state_dict(model.state_dict())

    cpu_scores = model(features, mask)
    gpu_scores = on_gpu(features.to(CUDA), mask.to(CUDA))
    torch.testing.assert_close(gpu_scores[mask].cpu(), cpu_scores[mask], rtol=1e-4, atol=1e-5)

    cpu_scores[mask].sum().backward()
    gpu_scores[mask].sum().backward()
    for (pname, a), b in zip(model.named_parameters(), on_gpu.parameters()):
        if a.grad is None:  # used in training only (UR-DMU's variance encoder): none on both
            assert b.grad is None, pname
            continue
        assert b.grad is not None, pname
        torch.testing.assert_close(b.grad.cpu(), a.grad, rtol=1e-3, atol=1e-5, msg=pname)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("features_on_device", [True, False])
def test_training_on_cuda_in_each_precision(
    tiny_data, splits, tmp_path, precision, features_on_device
):
    config = _cuda_config(
        tiny_data, snapshot_every=40, precision=precision, features_on_device=features_on_device
    )
    result = train(config, *splits, tmp_path / "run", progress=False)
    assert math.isfinite(result.metrics.auc) and result.iterations == 40

    # The checkpoint loads on a machine without a GPU and scores what the GPU scored.
    payload = load_checkpoint(result.checkpoint)
    assert all(t.device == CPU for t in payload["state_dict"].values())
    on_cpu = predict(model_from_checkpoint(payload), splits[1])
    saved = np.load(tmp_path / "run" / "scores.npz")
    tolerance = 1e-4 if precision == "fp32" else 3e-2  # the run scored in its own precision
    for name in splits[1].names:
        np.testing.assert_allclose(on_cpu[name], saved[name], atol=tolerance)


def test_features_on_the_device_give_the_host_batches(splits, tmp_path):
    """Same seed: batches gathered on the GPU equal those copied from the host."""
    losses = []
    for on_device in (True, False):
        config = TrainConfig(
            videos_per_class=6,
            max_segments=32,
            device="cuda",
            seed=5,
            features_on_device=on_device,
        )
        trainer = Trainer(config, splits[0], None, tmp_path / str(on_device), progress=False)
        assert (trainer.sampler.block is not None) is on_device
        losses.append([trainer._step()[0].item() for _ in range(5)])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


def test_batched_scoring_on_cuda_equals_the_cpu(splits):
    torch.manual_seed(0)
    for name in ("single", "sequence"):
        model = create_model(name, splits[1].dim)
        cpu = predict(model, splits[1])
        gpu = predict(model.to(CUDA), splits[1], device=CUDA)
        assert evaluate(gpu, splits[1]).auc == pytest.approx(evaluate(cpu, splits[1]).auc, abs=1e-6)
        for video in splits[1].names:
            np.testing.assert_allclose(gpu[video], cpu[video], rtol=1e-4, atol=1e-5)


def test_compiled_training_on_cuda(tiny_data, splits, tmp_path):
    config = _cuda_config(tiny_data, iterations=10, compile=True)
    result = train(config, *splits, tmp_path / "run", progress=False)
    assert math.isfinite(result.metrics.auc)
    # The checkpoint holds the plain module's weights, not the compiled wrapper's names.
    assert not any("_orig_mod" in k for k in load_checkpoint(result.checkpoint)["state_dict"])


def test_resume_on_cuda_continues_the_run(tiny_data, splits, tmp_path):
    config = _cuda_config(tiny_data)
    full = train(config, *splits, tmp_path / "full", progress=False)
    shutil.copytree(tmp_path / "full", tmp_path / "part")
    snapshot = tmp_path / "part" / "checkpoints" / "iter_000020.pt"
    resumed = train(config, *splits, tmp_path / "part", resume=snapshot, progress=False)
    assert resumed.iterations == 40
    a = load_checkpoint(full.checkpoint)["state_dict"]
    b = load_checkpoint(resumed.checkpoint)["state_dict"]
    for key in a:  # same batches and dropout masks; only the GPU's summation order may differ
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6, msg=key)


def test_diverged_run_on_cuda_stops_cleanly(tiny_data, splits, tmp_path):
    """NaN scores reach the divergence check; the CUDA context survives for the next run."""
    trainer = Trainer(
        _cuda_config(tiny_data, iterations=20), *splits, tmp_path / "run", progress=False
    )
    original = trainer.objective

    def poisoned(model, batch):
        total, parts = original(model, batch)
        return (total * float("nan") if trainer.iteration >= 12 else total), parts

    trainer.objective = poisoned
    with pytest.raises(TrainingError, match="last good checkpoint is .*last.pt"):
        trainer.run()
    assert load_checkpoint(tmp_path / "run")["iteration"] == 10
    assert torch.ones(2, device=CUDA).sum().item() == 2.0
