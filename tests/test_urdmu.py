"""UR-DMU and BN-WVAD (models/urdmu.py, models/bnwvad.py): each loss against a plain loop
version, the parts that differ from their code, and a tiny seeded run of each that learns."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from arnet.config import TrainConfig
from arnet.data.dataset import Batch
from arnet.evaluation.evaluate import evaluate, predict
from arnet.formats import open_dataset
from arnet.models import build_objective, create_model, model_entry
from arnet.models.bnwvad import (
    BnwvadObjective,
    MaskedBatchNorm1d,
    mahalanobis_triplet,
    normal_loss,
    select_segments,
)
from arnet.models.urdmu import (
    MemoryUnit,
    UrdmuObjective,
    kl_term,
    local_kernel,
    masked_topk_mean,
    topk_counts,
    topk_feature_mean,
    urdmu_loss,
)
from arnet.training.checkpoint import load_checkpoint, model_from_checkpoint
from arnet.training.trainer import train

SMALL_URDMU = dict(model_entry("urdmu").example)
SMALL_BNWVAD = dict(model_entry("bnwvad").example)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _ragged(lengths=(40, 23, 17, 33, 9, 30), labels=(1, 1, 1, 0, 0, 0), dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    lengths = torch.tensor(lengths)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    features = torch.randn(len(lengths), T, dim, generator=g) * mask[..., None]
    return Batch(features, mask, lengths, torch.tensor(labels, dtype=torch.float32))


# ---------------------------------------------------------------------- UR-DMU, by loops


def _loop_topk_mean(row, k):
    return sum(sorted(row, reverse=True)[:k]) / k


def _loop_bce(p, y):
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_topk_helpers_by_loops():
    batch = _ragged()
    g = torch.Generator().manual_seed(3)
    values = torch.rand(batch.mask.shape, generator=g)
    counts = topk_counts(batch.mask)
    assert counts.tolist() == [n // 16 + 1 for n in batch.lengths.tolist()]
    got = masked_topk_mean(values, batch.mask, counts)
    feats = torch.randn(*batch.mask.shape, 5, generator=g)
    picked = topk_feature_mean(values, feats, batch.mask, counts)
    for i, n in enumerate(batch.lengths.tolist()):
        row = values[i, :n].tolist()
        k = n // 16 + 1
        assert got[i].item() == pytest.approx(_loop_topk_mean(row, k), rel=1e-6)
        order = sorted(range(n), key=lambda j: -row[j])[:k]
        want = sum(feats[i, j] for j in order) / k
        torch.testing.assert_close(picked[i], want)


def test_urdmu_loss_against_a_loop_version():
    torch.manual_seed(0)
    batch = _ragged()
    model = create_model("urdmu", 8, **SMALL_URDMU)
    torch.manual_seed(5)
    out = model.training_pass(batch.features, batch.mask, batch.labels)
    total, parts = urdmu_loss(out, batch, UrdmuObjective())

    lengths = batch.lengths.tolist()
    labels = batch.labels.tolist()
    mil = []
    for i, n in enumerate(lengths):
        top = _loop_topk_mean(out.scores[i, :n].tolist(), n // 16 + 1)
        mil.append(_loop_bce(top, labels[i]))
    a_len = [n for n, y in zip(lengths, labels) if y == 1]
    n_len = [n for n, y in zip(lengths, labels) if y == 0]
    a_mem = [_loop_bce(_loop_topk_mean(out.a_att[j, :n].tolist(), n // 16 + 1), 1)
             for j, n in enumerate(a_len)]  # fmt: skip
    p_mem = [_loop_bce(_loop_topk_mean((1 - out.n_aatt[j, :n]).tolist(), n // 16 + 1), 1)
             for j, n in enumerate(a_len)]  # fmt: skip
    n_mem = [_loop_bce(p, 1) for j, n in enumerate(n_len) for p in out.n_att[j, :n].tolist()]
    an_mem = [_loop_bce(p, 0) for j, n in enumerate(n_len) for p in out.a_natt[j, :n].tolist()]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert parts["mil"].item() == pytest.approx(mean(mil), rel=1e-5)
    assert parts["a_memory"].item() == pytest.approx(mean(a_mem), rel=1e-5)
    assert parts["a_normal_memory"].item() == pytest.approx(mean(p_mem), rel=1e-5)
    assert parts["n_memory"].item() == pytest.approx(mean(n_mem), rel=1e-5)
    assert parts["n_abnormal_memory"].item() == pytest.approx(mean(an_mem), rel=1e-5)
    want = (
        mean(mil)
        + 0.1 * (mean(a_mem) + mean(p_mem) + mean(n_mem) + mean(an_mem))
        + 0.1 * out.triplet.item()
        + 0.001 * out.kl.item()
        + 0.0001 * out.distance.item()
    )
    assert total.item() == pytest.approx(want, rel=1e-5)


def test_kl_term_by_loops_over_valid_segments_only():
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(3, 7, 4, generator=g), torch.randn(3, 7, 4, generator=g)
    mask = torch.arange(7)[None] < torch.tensor([7, 3, 5])[:, None]
    total = 0.0
    for b in range(3):
        for c in range(4):
            s = 0.0
            for t in range(int(mask[b].sum())):
                m, v = mu[b, t, c].item(), logvar[b, t, c].item()
                s += -0.5 * (1 + v - m * m - math.exp(v))
            total += s
    assert kl_term(mu, logvar, mask).item() == pytest.approx(total / 12, rel=1e-5)


def test_local_attention_rows_sum_to_one_and_compat_is_their_formula():
    mask = torch.ones(1, 6, dtype=torch.bool)
    ours = local_kernel(mask, False, torch.float32)[0]
    torch.testing.assert_close(ours.sum(-1), torch.ones(6))
    # their translayer.py: attn2 / attn2.sum(-1), the sums broadcast along the last axis
    n = torch.linspace(1, 6, 6)
    k = torch.exp(-torch.abs(n * torch.ones(6) - n.view(-1, 1)) / torch.exp(torch.tensor(1.0)))
    torch.testing.assert_close(local_kernel(mask, True, torch.float32)[0], k / k.sum(-1))
    assert not torch.allclose((k / k.sum(-1)).sum(-1), torch.ones(6))  # their rows do not
    # a padded video is normalised over its valid keys: the same as the video alone
    padded = torch.tensor([[True] * 4 + [False] * 2])
    for compat in (False, True):
        alone = local_kernel(torch.ones(1, 4, dtype=torch.bool), compat, torch.float32)[0]
        torch.testing.assert_close(local_kernel(padded, compat, torch.float32)[0, :4, :4], alone)


def test_memory_unit_by_hand():
    unit = MemoryUnit(17, 4)
    x = torch.randn(2, 3, 4)
    temporal, aug = unit(x)
    match = torch.sigmoid(x @ unit.memory.T / 2.0)
    k = 17 // 16 + 1
    torch.testing.assert_close(temporal, match.topk(k, dim=-1).values.mean(-1))
    torch.testing.assert_close(aug, match @ unit.memory)


@pytest.mark.parametrize("labels", [(1, 1, 1, 1, 0, 0), (1, 0, 0, 0, 0, 0), (0,) * 6, (1,) * 6])
def test_urdmu_and_bnwvad_train_on_unbalanced_and_one_class_batches(labels):
    batch = _ragged(labels=labels)
    for name, args in (("urdmu", SMALL_URDMU), ("bnwvad", SMALL_BNWVAD)):
        torch.manual_seed(0)
        model = create_model(name, 8, **args).train()
        loss, parts = build_objective(name, TrainConfig(model=name))(model, batch)
        assert torch.isfinite(loss) and all(torch.isfinite(v) for v in parts.values())
        loss.backward()


def test_objectives_refuse_another_model_and_bad_options():
    batch = _ragged()
    single = create_model("single", 8)
    with pytest.raises(ValueError, match="UR-DMU objective needs a UR-DMU model"):
        build_objective("urdmu", TrainConfig(model="urdmu"))(single, batch)
    with pytest.raises(ValueError, match="BN-WVAD objective needs a BN-WVAD model"):
        build_objective("bnwvad", TrainConfig(model="bnwvad"))(single, batch)
    with pytest.raises(ValueError, match="ratio_batch must be in"):
        build_objective("bnwvad", TrainConfig(model="bnwvad", objective_args={"ratio_batch": 2}))
    with pytest.raises(ValueError, match="has no option margin"):
        build_objective("urdmu", TrainConfig(model="urdmu", objective_args={"margin": 2}))
    with pytest.raises(ValueError, match="'mil_loss' is 'hinge'"):
        build_objective("urdmu", TrainConfig(model="urdmu", mil_loss="hinge"))
    with pytest.raises(ValueError, match="ratios"):
        create_model("bnwvad", 8, hidden_dim=8, ratios=(16, 32))
    with pytest.raises(ValueError, match="max_grad_norm"):
        TrainConfig(max_grad_norm=float("nan")).validate()
    with pytest.raises(ValueError, match="max_grad_norm"):
        TrainConfig(max_grad_norm=0.0).validate()


# ---------------------------------------------------------------------- BN-WVAD, by loops


def test_masked_batchnorm_is_torchs_on_the_valid_positions():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 9, generator=g)
    mask = torch.arange(9)[None] < torch.tensor([9, 5, 2])[:, None]
    ours, ref = MaskedBatchNorm1d(4), torch.nn.BatchNorm1d(4)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2)
        ours.bias.uniform_(-1, 1)
    ref.load_state_dict(ours.state_dict())
    dirty = x.masked_fill(~mask[:, None], 1e4)  # padding must not move the statistics
    out = ours(dirty, mask)
    valid = x.transpose(1, 2)[mask]  # (N, C): the valid positions only
    want = ref(valid)
    torch.testing.assert_close(out.transpose(1, 2)[mask], want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    ours.eval()
    ref.eval()
    torch.testing.assert_close(ours(x, mask), ref(x))


def test_selection_against_a_loop_version():
    batch = _ragged()
    g = torch.Generator().manual_seed(4)
    C = 3
    feats = torch.randn(batch.mask.shape[0], C, batch.mask.shape[1], generator=g)
    dist = torch.rand(batch.mask.shape, generator=g)
    pos, neg = select_segments(feats, dist, batch.mask, batch.labels, 0.2, 0.4)

    lengths, labels = batch.lengths.tolist(), batch.labels.tolist()
    anomalous = [i for i, y in enumerate(labels) if y == 1]
    normal = [i for i, y in enumerate(labels) if y == 0]
    chosen = set()
    for i in anomalous:
        n = lengths[i]
        ranked = sorted(range(n), key=lambda t: -dist[i, t].item())
        chosen |= {(i, t) for t in ranked[: int(n * 0.2)]}
    everything = [(i, t) for i in anomalous for t in range(lengths[i])]
    everything.sort(key=lambda it: -dist[it].item())
    chosen |= set(everything[: int(len(everything) * 0.4)])
    order = sorted(chosen)  # video-major, then time
    want_neg = torch.stack([feats[i, :, t] for i, t in order])
    M = len(order)
    k = min(M // len(normal) + 1, min(lengths[i] for i in normal))  # at most the shortest
    ranks = {i: sorted(range(lengths[i]), key=lambda t: -dist[i, t].item())[:k] for i in normal}
    want_pos = torch.stack([feats[i, :, ranks[i][r]] for r in range(k) for i in normal])[:M]
    pairs = min(M, len(want_pos))
    torch.testing.assert_close(neg, want_neg[:pairs])
    torch.testing.assert_close(pos, want_pos[:pairs])


def test_bnwvad_losses_by_loops():
    g = torch.Generator().manual_seed(6)
    mean, var = torch.randn(3, generator=g), torch.rand(3, generator=g) + 0.5
    pos, neg = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)

    def d(x):
        return math.sqrt(sum((x[c].item() - mean[c].item()) ** 2 / var[c].item() for c in range(3)))

    want = sum(max(0.0, d(p) - d(n) + 1.0) for p, n in zip(pos, neg)) / 5
    assert mahalanobis_triplet(mean, var, pos, neg).item() == pytest.approx(want, rel=1e-5)
    # their TripletMarginWithDistanceLoss with the same distance gives the same
    ref = torch.nn.TripletMarginWithDistanceLoss(
        distance_function=lambda a, b: torch.sqrt(((a - b) ** 2 / var).sum(-1)), margin=1.0
    )
    assert ref(mean[None].repeat(5, 1), pos, neg).item() == pytest.approx(want, rel=1e-5)

    batch = _ragged()
    scores = torch.rand(batch.mask.shape, generator=g) * batch.mask
    norms = [math.sqrt(sum(s * s for s in scores[i, :n].tolist()))
             for i, n in enumerate(batch.lengths.tolist()) if batch.labels[i] == 0]  # fmt: skip
    got = normal_loss(scores, batch.mask, batch.labels).item()
    assert got == pytest.approx(sum(norms) / len(norms), rel=1e-5)


def test_bnwvad_objective_sums_its_layers_with_their_weights():
    torch.manual_seed(0)
    batch = _ragged()
    model = create_model("bnwvad", 8, **SMALL_BNWVAD).train()
    out = model.head_pass(batch.features, batch.mask)
    objective = BnwvadObjective()
    from arnet.models.bnwvad import bnwvad_loss

    total, parts = bnwvad_loss(out, batch, objective)
    assert parts["mpp"].item() == pytest.approx(
        5 * parts["mpp1"].item() + 20 * parts["mpp2"].item(), rel=1e-6
    )
    assert total.item() == pytest.approx(parts["normal"].item() + parts["mpp"].item(), rel=1e-6)
    # the test score is their product mapped into [0, 1) by z / (1 + z)
    model.eval()
    with torch.no_grad():
        z = model.raw_scores(batch.features, batch.mask)
        s = model(batch.features, batch.mask)
    torch.testing.assert_close(s, z / (1 + z))
    assert (z >= 0).all() and (s < 1).all()


def test_batchnorm_statistics_ignore_padding_in_training():
    torch.manual_seed(0)
    batch = _ragged()
    noisy = batch.features.masked_fill(~batch.mask[..., None], 50.0)
    a = create_model("bnwvad", 8, **SMALL_BNWVAD).train()
    b = create_model("bnwvad", 8, **SMALL_BNWVAD).train()
    b.load_state_dict(a.state_dict())
    a.head_pass(batch.features, batch.mask)
    b.head_pass(noisy, batch.mask)
    for x, y in zip(a.head.norms, b.head.norms):
        torch.testing.assert_close(x.running_mean, y.running_mean)
        torch.testing.assert_close(x.running_var, y.running_var)


# ---------------------------------------------------------------------- they learn

# (model, arguments, lr, seed, data, iterations, AUC floor): 6 + 6 videos of 32 uniform
# segments per step. The floor sits below the trained AUC and above the untrained one (checked).
LEARN = [
    # untrained 0.39 (about), trained above 0.75
    ("urdmu", {**SMALL_URDMU, "hidden_dim": 32, "mlp_dim": 32}, 1e-3, 1, "tiny", 60, 0.75),
    # untrained 0.59, trained 0.78. BN-WVAD's divergence scores strong planted events well
    # before any training (the tiny set's: AUC 0.85 untrained for seed 2), so it learns on a
    # set with weaker events; its seed spread is measured in benchmarks/peers_bnwvad.py.
    ("bnwvad", {**SMALL_BNWVAD, "hidden_dim": 64}, 1e-3, 3, "weaker", 100, 0.7),
]


@pytest.fixture(scope="module")
def weaker_data(tmp_path_factory):
    from conftest import TINY

    from arnet.formats.synth import write_synthetic

    config = dataclasses.replace(TINY, event_strength=1.2)
    return write_synthetic(tmp_path_factory.mktemp("weaker") / "data", config)


@pytest.mark.parametrize(
    ("name", "kwargs", "lr", "seed", "data", "iterations", "floor"),
    LEARN,
    ids=["urdmu", "bnwvad"],
)
def test_a_tiny_seeded_run_learns(
    name, kwargs, lr, seed, data, iterations, floor, request, tmp_path
):
    root = request.getfixturevalue("tiny_data" if data == "tiny" else "weaker_data")
    train_set, test_set = open_dataset(root, in_memory=True)
    torch.manual_seed(seed)
    untrained = evaluate(predict(create_model(name, train_set.dim, **kwargs), test_set), test_set)
    assert untrained.auc < floor
    fields = dict(model_entry(name).train_defaults)
    fields.update(
        data=str(root), model=name, model_args=kwargs, iterations=iterations,
        snapshot_every=iterations, videos_per_class=6, uniform_segments=32, lr=lr, seed=seed,
        device="cpu", plot=False, tensorboard=False,
    )  # fmt: skip
    result = train(TrainConfig(**fields), train_set, test_set, tmp_path / "run", progress=False)
    assert result.metrics.auc >= floor
    model = model_from_checkpoint(load_checkpoint(tmp_path / "run"))
    assert evaluate(predict(model, test_set), test_set).auc == pytest.approx(result.metrics.auc)


def test_gradient_clipping_bounds_the_step(tiny_data, tmp_path):
    """--max-grad-norm clips before Adam: with a tiny norm the weights barely move."""
    from arnet.training.trainer import Trainer

    train_set, _ = open_dataset(tiny_data, in_memory=True)
    moved = {}
    for clip in (None, 1e-12):
        config = TrainConfig(data=str(tiny_data), model="single", iterations=1, seed=1,
                             device="cpu", plot=False, tensorboard=False, videos_per_class=4,
                             max_grad_norm=clip, lr=1e-2, fused_adam=False)  # fmt: skip
        trainer = Trainer(config, train_set, None, tmp_path / f"run{clip}", progress=False)
        before = [p.detach().clone() for p in trainer.model.parameters()]
        trainer.step()
        grads = [p.grad for p in trainer.model.parameters()]
        params = [p.detach() for p in trainer.model.parameters()]
        moved[clip] = sum(float((p - b).abs().sum()) for p, b in zip(params, before))
        if clip is not None:
            total = math.sqrt(sum(float((g**2).sum()) for g in grads if g is not None))
            assert total <= clip * 1.01
    assert moved[None] > 0 and moved[1e-12] > 0  # Adam normalises the step size either way


def test_triplet_pairs_match_torch_on_balanced_halves():
    """On their batches (n normal, n anomalous) our pairs are theirs: video i with video i."""
    g = torch.Generator().manual_seed(8)
    a, p, n = (torch.randn(4, 5, generator=g) for _ in range(3))
    loop = sum(max(0.0, (a[i] - p[i] + 1e-6).norm().item() - (a[i] - n[i] + 1e-6).norm().item() + 1)
               for i in range(4)) / 4  # fmt: skip
    assert F.triplet_margin_loss(a, p, n, margin=1.0).item() == pytest.approx(loop, rel=1e-5)


# ---------------------------------------------------------------------- the commands


@pytest.mark.parametrize("name", ["urdmu", "bnwvad"])
def test_train_test_detect_export_end_to_end(name, tmp_path, capsys):
    """`arnet train --model NAME` (its paper's schedule, narrowed), then `test`, `detect` on
    videos and `export` to ONNX, whose head scores as the PyTorch model does (BatchNorm in
    eval mode: running statistics)."""
    pytest.importorskip("av", reason="the extract extra (PyAV) is not installed")
    pytest.importorskip("cv2", reason="the extract extra (OpenCV) is not installed")
    pytest.importorskip("onnxruntime", reason="the export extra (onnxruntime) is not installed")
    pytest.importorskip("onnx", reason="the export extra (onnx) is not installed")
    import json

    import numpy as np
    from helpers import write_video
    from test_detect import scene

    from arnet.cli import main
    from arnet.detection.export import load_exported

    videos = tmp_path / "videos"
    videos.mkdir()
    plan = {"train_event": (48, 16), "train_quiet": (48, None), "test_event": (45, 24)}
    labels = {}
    for i, (video, (n, start)) in enumerate(plan.items()):
        write_video(videos / f"{video}.mp4", scene(n, start, seed=i), fps=8)
        labels[video] = {"frames": n, "anomalous_frames": [] if start is None else [[start + 1, n]]}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    (tmp_path / "train.txt").write_text("train_event\ntrain_quiet\n")
    (tmp_path / "test.txt").write_text("test_event\n")
    data = tmp_path / "data"
    assert main(["extract", str(videos), "--out", str(data), "--random-init", "--modal", "rgb",
                 "--short-side", "24", "--crop-size", "16",
                 "--labels", str(tmp_path / "labels.json"),
                 "--train-split", str(tmp_path / "train.txt"),
                 "--test-split", str(tmp_path / "test.txt"), "--quiet"]) == 0  # fmt: skip
    run = tmp_path / "run"
    narrow = [f"{k}={v}" for k, v in model_entry(name).example.items() if k != "ratios"]
    model_args = [a for kv in narrow for a in ("--model-arg", kv)]
    if name == "bnwvad":
        model_args += ["--model-arg", "ratios=[4,8]"]
    argv = ["train", "--data", str(data), "--feature-modal", "rgb", "--model", name,
            *model_args, "--iterations", "4", "--snapshot", "4", "--uniform-segments", "8",
            "--out", str(run), "--no-plot", "--no-tensorboard", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    saved = load_checkpoint(run)
    # the paper's schedule where the command line did not say
    assert saved["config"]["lr"] == 1e-4 and saved["config"]["weight_decay"] == 5e-5
    assert saved["config"]["videos_per_class"] == 64
    assert saved["config"]["max_grad_norm"] == (1.0 if name == "bnwvad" else None)
    capsys.readouterr()

    assert main(["test", "--checkpoint", str(run), "--data", str(data), "--feature_modal", "rgb",
                 "--out", str(tmp_path / "tested"), "--json"]) == 0  # fmt: skip
    tested = json.loads(capsys.readouterr().out)
    assert 0.0 <= tested["metrics"]["auc"] <= 1.0

    assert main(["detect", str(videos / "test_event.mp4"), "--checkpoint", str(run),
                 "--out", str(tmp_path / "alerts"), "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["videos"][0]["segments"] == 3  # 45 frames, 16 per segment, the tail padded
    assert (tmp_path / "alerts" / "test_event.scores.csv").is_file()

    out = tmp_path / "exported"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    exported = load_exported(out, "onnxruntime")
    model = model_from_checkpoint(saved).eval()
    feats = np.load(data / "features_video/i3d/rgb/test_event/feature.npy")
    rng = np.random.default_rng(0)
    for x in (feats, rng.standard_normal((37, feats.shape[1])).astype(np.float32)):
        with torch.no_grad():
            t = torch.from_numpy(np.ascontiguousarray(x))[None]
            want = model(t, torch.ones(t.shape[:2], dtype=torch.bool))[0].numpy()
        assert np.abs(exported.score(x) - want).max() < 1e-5
