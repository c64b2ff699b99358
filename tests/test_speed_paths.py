"""The fast paths give what the simple paths give, on the same inputs and seeds.

Each fast path of training and scoring (benchmarks/speed.py measures them) is compared here
with a plain version of the same computation: batch gathers, the model's valid-rows and
packed paths, the CPU dropout, mixed precision, and the weighted metrics.
"""

from __future__ import annotations

import math
import platform
import sys

import numpy as np
import pytest
import torch

from arnet.config import TrainConfig
from arnet.data.dataset import FeatureDataset
from arnet.data.sampling import BalancedBatchSampler
from arnet.evaluation.evaluate import predict
from arnet.models import create_model, per_segment
from arnet.models.losses import MilCenterObjective
from arnet.models.segment import dropout_keep_mask, relu_dropout
from arnet.training.runtime import MixedPrecision, keep_freed_memory, make_adam, prepare_model
from arnet.training.trainer import Trainer


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread avoids thread start-up costs and keeps sums in one order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _dataset(rng, n=14, dim=16, crops=None, dtype=np.float32, max_len=40):
    lengths = rng.integers(1, max_len, n)
    shape = (dim,) if crops is None else (crops, dim)
    feats = [rng.random((int(t), *shape)).astype(dtype) for t in lengths]
    labels = [1] * (n // 2) + [0] * (n - n // 2)
    frames = [np.zeros(16 * int(t), np.uint8) for t in lengths]
    return FeatureDataset([f"v{i}" for i in range(n)], labels, feats, frames)


# ---------------------------------------------------------------------- batch gathers


@pytest.mark.parametrize("crops,mode", [(None, "random"), (3, "random"), (3, "mean")])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("sample_step", [1, 3])
def test_block_gather_and_device_gather_equal_per_video_gather(crops, mode, dtype, sample_step):
    rng = np.random.default_rng(1)
    lazy = _dataset(rng, crops=crops, dtype=dtype)
    block = lazy.to_memory(dtype)
    assert block.contiguous and not lazy.contiguous
    samplers = [
        BalancedBatchSampler(ds, 4, 12, sample_step, crop_mode=mode, seed=5, device=device)
        for ds, device in ((lazy, None), (block, None), (block, "cpu"))
    ]
    for _ in range(4):
        simple, fast, on_device = (s.next_batch() for s in samplers)
        for other in (fast, on_device):
            assert other.features.dtype == torch.float32
            torch.testing.assert_close(other.features, simple.features, rtol=1e-6, atol=1e-6)
            assert torch.equal(other.mask, simple.mask)
            assert torch.equal(other.lengths, simple.lengths)
            assert torch.equal(other.labels, simple.labels)


def test_gather_into_a_reused_buffer_equals_a_fresh_array():
    rng = np.random.default_rng(3)
    for ds in (_dataset(rng), _dataset(rng).to_memory(), _dataset(rng, crops=2).to_memory()):
        fresh = BalancedBatchSampler(ds, 4, 12, seed=8)
        reused = BalancedBatchSampler(ds, 4, 12, seed=8, reuse_buffer=True)
        assert reused.buffer is not None and reused.buffer.size == 8 * 12 * ds.dim
        for _ in range(3):
            a, b = fresh.next_batch(), reused.next_batch()
            assert np.shares_memory(b.features.numpy(), reused.buffer)
            assert torch.equal(a.features, b.features) and torch.equal(a.mask, b.mask)


def test_block_rows_are_a_view_only_for_consecutive_videos():
    ds = _dataset(np.random.default_rng(2)).to_memory()
    rows = ds.block_rows([2, 3, 4])
    assert rows is not None and np.shares_memory(rows, ds.features(3))
    np.testing.assert_array_equal(rows, np.concatenate([ds.features(i) for i in (2, 3, 4)]))
    assert ds.block_rows([2, 4]) is None
    assert _dataset(np.random.default_rng(2)).block_rows([0, 1]) is None  # no block


# ---------------------------------------------------------------------- model paths


def _dense_per_segment(fn, features, mask):
    """The accelerator path: every row computed, padded scores zeroed."""
    return fn(features.flatten(0, 1)).view(mask.shape) * mask


@pytest.mark.parametrize("full", [False, True])
def test_valid_rows_path_equals_dense_path(full):
    torch.manual_seed(0)
    model = create_model("single", 24).eval()
    features = torch.rand(5, 9, 24)
    lengths = torch.tensor([9, 9, 9, 9, 9]) if full else torch.tensor([9, 3, 1, 7, 9])
    mask = torch.arange(9)[None, :] < lengths[:, None]
    fast = per_segment(model.segment_scores, features, mask)
    simple = _dense_per_segment(model.segment_scores, features, mask)
    torch.testing.assert_close(fast, simple, rtol=1e-6, atol=1e-7)
    assert (fast[~mask] == 0).all()


def _reference_relu_dropout(x, keep, p):
    return torch.relu(x) * keep / (1 - p)


def test_cpu_relu_dropout_equals_relu_then_masked_scaling():
    x = torch.randn(50, 33, requires_grad=True)
    grad = torch.randn(50, 33)
    torch.manual_seed(3)
    fast = relu_dropout(x, 0.7, training=True)
    (g_fast,) = torch.autograd.grad(fast, x, grad)
    torch.manual_seed(3)  # the same draw from the generator
    keep = dropout_keep_mask(x.shape, 0.7)
    simple = _reference_relu_dropout(x, keep, 0.7)
    (g_simple,) = torch.autograd.grad(simple, x, grad)
    torch.testing.assert_close(fast, simple)
    torch.testing.assert_close(g_fast, g_simple)


def test_cpu_dropout_keeps_the_right_share_and_follows_the_seed():
    keep = dropout_keep_mask((400, 500), 0.7)
    assert set(keep.unique().tolist()) <= {0.0, 1.0}
    share = keep.mean().item()
    assert abs(share - 0.3) < 5 * math.sqrt(0.3 * 0.7 / keep.numel())  # 5 standard errors
    torch.manual_seed(11)
    a = dropout_keep_mask((7, 9), 0.5, dtype=torch.bfloat16)
    torch.manual_seed(11)
    b = dropout_keep_mask((7, 9), 0.5, dtype=torch.bfloat16)
    assert torch.equal(a, b) and a.dtype == torch.bfloat16


def test_relu_dropout_off_in_eval_and_for_degenerate_rates():
    x = torch.randn(6, 5)
    assert torch.equal(relu_dropout(x, 0.7, training=False), torch.relu(x))
    assert torch.equal(relu_dropout(x, 0.0, training=True), torch.relu(x))
    assert (relu_dropout(x, 1.0, training=True) == 0).all()
    with pytest.raises(ValueError, match="no random mask"):
        dropout_keep_mask((2, 2), 1.0)


# ---------------------------------------------------------------------- scoring


def _one_at_a_time(model, ds, crop_mode="mean"):
    """Each video alone through the model, unpadded."""
    out = {}
    with torch.no_grad():
        for i, name in enumerate(ds.names):
            feats = torch.from_numpy(np.asarray(ds.features(i), dtype=np.float32))
            if feats.dim() == 3:
                views = [feats.mean(dim=1)] if crop_mode == "mean" else list(feats.unbind(1))
            else:
                views = [feats]
            scores = [model(v[None], torch.ones(1, len(v), dtype=torch.bool))[0] for v in views]
            out[name] = torch.stack(scores).mean(dim=0).numpy()
    return out


@pytest.mark.parametrize("model_name", ["single", "mean"])
@pytest.mark.parametrize("contiguous", [False, True])
@pytest.mark.parametrize("crops,crop_mode", [(None, "mean"), (2, "mean"), (2, "per_crop")])
def test_batched_predict_equals_one_video_at_a_time(model_name, contiguous, crops, crop_mode):
    torch.manual_seed(0)
    ds = _dataset(np.random.default_rng(4), dim=12, crops=crops)
    ds = ds.to_memory() if contiguous else ds
    model = create_model(model_name, 12)
    simple = _one_at_a_time(model.eval(), ds, crop_mode)
    model.train()  # predict must switch dropout off itself, and restore the mode
    for max_rows in (1, 50, 10_000):  # one video per pass, a few, all of them
        fast = predict(model, ds, crop_mode=crop_mode, max_batch_segments=max_rows)
        assert list(fast) == ds.names and model.training
        for name in ds.names:
            np.testing.assert_allclose(fast[name], simple[name], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- mixed precision


def test_bf16_scores_are_float32_and_close_to_fp32():
    torch.manual_seed(0)
    model = create_model("single", 64).eval()
    features, mask = torch.rand(3, 10, 64), torch.rand(3, 10) < 0.8
    mixed = prepare_model(model, torch.device("cpu"), "bf16")
    assert isinstance(mixed, MixedPrecision)
    with torch.no_grad():
        fp32, bf16 = model(features, mask), mixed(features, mask)
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, fp32, rtol=0, atol=2e-2)
    assert len(torch.unique(bf16[mask])) == int(mask.sum())  # a float32 head: no bf16 ties


def test_mixed_precision_wraps_other_methods_and_refuses_cpu_fp16():
    torch.manual_seed(0)
    model = create_model("bas", 32).eval()
    mixed = prepare_model(model, torch.device("cpu"), "bf16")
    out = mixed.branches(torch.rand(2, 9, 32), torch.ones(2, 9, dtype=torch.bool))
    assert out.video_base.dtype == torch.float32 and out.foreground.dtype == torch.float32
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        prepare_model(model, torch.device("cpu"), "fp16")
    with pytest.raises(ValueError, match="unknown precision"):
        prepare_model(model, torch.device("cpu"), "fp8")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_steps_from_block_and_per_video_data_give_the_same_losses(precision, tmp_path):
    """The whole step: same seed, same data read two ways -> the same losses, step by step."""
    rng = np.random.default_rng(6)
    lazy = _dataset(rng, n=20, dim=16)
    config = TrainConfig(
        videos_per_class=4, max_segments=12, iterations=5, device="cpu", precision=precision
    )
    losses = []
    for ds in (lazy, lazy.to_memory()):
        trainer = Trainer(config, ds, None, tmp_path, progress=False)
        losses.append([trainer._step()[0].item() for _ in range(5)])
    assert losses[0] == losses[1]
    assert all(math.isfinite(x) for x in losses[0])


def test_mil_objective_on_a_full_batch_equals_the_padded_batch():
    """A batch without padding takes the view path; with one padded column it copies rows."""
    torch.manual_seed(0)
    model = create_model("single", 8).eval()
    features = torch.rand(4, 6, 8)
    full = torch.ones(4, 6, dtype=torch.bool)
    padded_features = torch.cat([features, torch.zeros(4, 1, 8)], dim=1)
    padded = torch.cat([full, torch.zeros(4, 1, dtype=torch.bool)], dim=1)
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0])
    objective = MilCenterObjective()

    def loss(f, m):
        from arnet.data.dataset import Batch

        return objective(model, Batch(f, m, m.sum(dim=1), labels))[0]

    torch.testing.assert_close(loss(features, full), loss(padded_features, padded))


def test_fused_adam_equals_the_plain_update():
    torch.manual_seed(0)
    models = [create_model("single", 32) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    fused = make_adam(models[0], 1e-3, 5e-4)
    plain = torch.optim.Adam(models[1].parameters(), lr=1e-3, weight_decay=5e-4)
    assert fused.defaults["fused"]
    for _ in range(20):
        grads = [torch.randn_like(p) for p in models[0].parameters()]
        for model in models:
            for param, grad in zip(model.parameters(), grads):
                param.grad = grad.clone()
        fused.step()
        plain.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_keep_freed_memory_applies_with_glibc():
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is glibc


# ---------------------------------------------------------------------- command line


def test_cli_speed_options_reach_the_config_and_the_test_command(tiny_data, tmp_path, capsys):
    import json

    from arnet.cli import main

    run = tmp_path / "run"
    argv = ["train", "--data", str(tiny_data), "--iterations", "4", "--snapshot", "4"]
    argv += ["--sample_size", "6", "--no-plot", "--no-tensorboard", "--out", str(run), "--json"]
    assert main([*argv, "--precision", "bf16", "--no-reuse-memory"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["precision"] == "bf16" and config["reuse_memory"] is False
    assert not config["compile"] and config["features_on_device"]
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    test = ["test", "--checkpoint", str(run), "--no-plot", "--json"]
    assert main([*test, "--out", str(tmp_path / "bf16")]) == 0  # the run's precision
    bf16 = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert bf16["metrics"]["auc"] == pytest.approx(trained["metrics"]["auc"])
    assert main([*test, "--precision", "fp32", "--out", str(tmp_path / "fp32")]) == 0
    fp32 = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert fp32["metrics"]["auc"] == pytest.approx(bf16["metrics"]["auc"], abs=0.02)
    with pytest.raises(SystemExit):
        main(["train", "--data", str(tiny_data), "--precision", "fp8"])
