import math

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from arnet.cli import main
from arnet.config import TrainConfig
from arnet.data.dataset import Batch
from arnet.evaluation.evaluate import evaluate, predict
from arnet.formats import open_dataset
from arnet.models import (
    REFERENCE_NAMES,
    BasNet,
    BasOutput,
    CasModule,
    FilterModule,
    count_parameters,
    create_model,
    list_models,
    resolve_model_name,
    topk_mean_over_time,
)
from arnet.models.bas import (
    BasObjective,
    bas_branch_loss,
    bas_targets,
    foreground_l1_loss,
)
from arnet.models.losses import MilCenterObjective
from arnet.models.temporal import reverse_valid
from arnet.training.checkpoint import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from arnet.training.trainer import build_objective, train

SIX = ["single", "mean", "sequence", "concat", "lstm", "bas"]

# Every registered model, and the LSTM both ways. BaS-Net's published widths (512, 2048) cost
# seconds per step on a CPU; the narrow ones here have the same structure.
CASES = [
    ("single", {}),
    ("mean", {}),
    ("sequence", {}),
    ("concat", {}),
    ("lstm", {}),
    ("lstm", {"bidirectional": True}),
    ("bas", {"filter_dim": 16, "hidden_dim": 32}),
]
CASE_IDS = ["single", "mean", "sequence", "concat", "lstm", "lstm-bi", "bas"]
# Every model registered beyond the seed's (RTFM, MGFN, ...), at its registry `example` size.
_SWEPT = {name for name, _ in CASES} | {"nearest-normal"}
_MORE = [(e.name, dict(e.example)) for e in list_models() if e.name not in _SWEPT]
CASES += _MORE
CASE_IDS += [name for name, _ in _MORE]


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: one thread is fastest, and on a busy two-core machine two
    OpenMP threads waiting on each other make a step up to 100 times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _ragged(lengths=(9, 5, 1, 3), dim=8, seed=0):
    """A padded batch, anomalous videos first, zero at padding as the data path builds it."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    lengths = torch.tensor(lengths)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    features = torch.rand(len(lengths), T, dim, generator=g) * mask[..., None]
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0][: len(lengths)])
    return Batch(features, mask, lengths, labels)


def _scramble_padding(batch, seed=1):
    """The same batch with large random values at every padded position."""
    g = torch.Generator().manual_seed(seed)
    noise = 100 * torch.randn(batch.features.shape, generator=g)
    features = torch.where(batch.mask[..., None], batch.features, noise)
    return Batch(features, batch.mask, batch.lengths, batch.labels)


def test_the_registry_holds_the_six_models_of_the_seed():
    names = [e.name for e in list_models()]
    assert names[:7] == [*SIX, "nearest-normal"]  # then the methods added since (rtfm, ...)
    assert {"rtfm", "mgfn", "urdmu", "bnwvad"} <= set(names[7:])
    objectives = {e.name: e.objective for e in list_models()}
    assert objectives["bas"] == "bas" and objectives["nearest-normal"] == "normal-bank"
    assert {objectives[n] for n in SIX if n != "bas"} == {"mil"}
    for reference, name in REFERENCE_NAMES.items():
        assert resolve_model_name(reference) == name
    with pytest.raises(ValueError, match="unknown model 'model_attention'"):
        resolve_model_name("model_attention")
    with pytest.raises(ValueError, match="model 'lstm': bad constructor arguments"):
        create_model("lstm", 8, layers=2)
    with pytest.raises(ValueError, match="score must be one of"):
        create_model("bas", 8, score="cas")


# ---- registry sweep -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=CASE_IDS)
def test_sweep_forward_backward_on_a_ragged_batch(name, kwargs):
    torch.manual_seed(0)
    batch = _ragged()
    model = create_model(name, 8, **kwargs)
    model.train()
    scores = model(batch.features, batch.mask)
    assert scores.shape == batch.mask.shape
    assert torch.isfinite(scores).all()
    assert ((scores >= 0) & (scores <= 1)).all()
    assert (scores[~batch.mask] == 0).all()

    loss, parts = build_objective(name, TrainConfig(model=name))(model, batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert all(torch.isfinite(v) for v in parts.values())
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}: {pname} has an all-zero gradient"


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=CASE_IDS)
def test_padding_changes_no_valid_score(name, kwargs):
    torch.manual_seed(0)
    batch = _ragged()
    model = create_model(name, 8, **kwargs).eval()
    with torch.no_grad():
        clean = model(batch.features, batch.mask)
        dirty = model(_scramble_padding(batch).features, batch.mask)
    assert torch.equal(clean[batch.mask], dirty[batch.mask])
    assert (dirty[~batch.mask] == 0).all()


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=CASE_IDS)
def test_nan_padding_reaches_no_score_and_no_gradient(name, kwargs):
    torch.manual_seed(0)
    batch = _ragged()
    features = batch.features.masked_fill(~batch.mask[..., None], float("nan"))
    model = create_model(name, 8, **kwargs)  # training mode: the path gradients take
    scores = model(features, batch.mask)
    assert torch.isfinite(scores).all() and (scores[~batch.mask] == 0).all()
    scores[batch.mask].sum().backward()
    grads = {pname: p.grad for pname, p in model.named_parameters()}
    assert any(g is not None for g in grads.values()), name
    for pname, grad in grads.items():  # None: used in training only (UR-DMU's variance encoder)
        assert grad is None or torch.isfinite(grad).all(), f"{name}: {pname}"


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=CASE_IDS)
def test_a_video_scores_the_same_in_a_batch_and_alone(name, kwargs):
    # Zero padding at the end of a batch is the 'same' padding a video gets on its own.
    torch.manual_seed(0)
    batch = _ragged()
    model = create_model(name, 8, **kwargs).eval()
    with torch.no_grad():
        together = model(batch.features, batch.mask)
        for i, n in enumerate(batch.lengths.tolist()):
            alone = model(batch.features[i : i + 1, :n], batch.mask[i : i + 1, :n])
            torch.testing.assert_close(alone[0], together[i, :n], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", [n for n in SIX if n != "bas"])
def test_hinge_ranking_loss_trains_every_mil_model(name):
    torch.manual_seed(0)
    batch = _ragged()
    model = create_model(name, 8)
    objective = build_objective(name, TrainConfig(model=name, mil_loss="hinge"))
    assert isinstance(objective, MilCenterObjective) and objective.mil_loss == "hinge"
    loss, parts = objective(model, batch)
    assert torch.isfinite(loss) and parts["mil"] > 0
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_bas_has_its_own_objective_and_refuses_mil_options():
    config = TrainConfig(
        model="bas", bas_base_weight=2.0, bas_suppressed_weight=0.5, bas_foreground_weight=0.1
    )
    objective = build_objective("bas", config)
    assert isinstance(objective, BasObjective)
    assert (objective.base_weight, objective.suppressed_weight, objective.foreground_weight) == (
        2.0,
        0.5,
        0.1,
    )
    with pytest.raises(ValueError, match="'mil_loss' is 'hinge'"):
        build_objective("bas", TrainConfig(model="bas", mil_loss="hinge"))
    with pytest.raises(ValueError, match="bas_foreground_weight"):
        TrainConfig(bas_foreground_weight=-1.0).validate()


# ---- the LSTM: padding excluded exactly as packing would ----------------------------------


def test_reverse_valid_flips_each_video_and_keeps_padding_at_the_end():
    x = torch.arange(8.0).view(2, 4)
    out = reverse_valid(x, torch.tensor([3, 1]))
    assert out.tolist() == [[2.0, 1.0, 0.0, 3.0], [4.0, 5.0, 6.0, 7.0]]
    assert torch.equal(reverse_valid(out, torch.tensor([3, 1])), x)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_matches_a_packed_lstm(bidirectional):
    torch.manual_seed(0)
    batch = _ragged(lengths=(9, 4, 1, 7), dim=6)
    model = create_model("lstm", 6, hidden_dim=5, bidirectional=bidirectional).eval()
    packed_lstm = torch.nn.LSTM(6, 5, batch_first=True, bidirectional=bidirectional)
    with torch.no_grad():
        for pname, p in model.lstm.named_parameters():
            getattr(packed_lstm, pname).copy_(p)
        if bidirectional:
            for pname, p in model.lstm_backward.named_parameters():
                getattr(packed_lstm, pname + "_reverse").copy_(p)
        packed = pack_padded_sequence(
            batch.features, batch.lengths, batch_first=True, enforce_sorted=False
        )
        states, _ = packed_lstm(packed)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=9)
        expected = torch.sigmoid(model.classifier(states)).squeeze(-1) * batch.mask
        torch.testing.assert_close(model(batch.features, batch.mask), expected)


# ---- BaS-Net: modules on their own, video scores and losses by hand ----------------------


def test_filter_and_cas_modules_work_on_their_own():
    torch.manual_seed(0)
    x = torch.rand(2, 6, 8)
    weights = FilterModule(8, hidden_dim=4)(x)
    assert weights.shape == (2, 6) and ((weights > 0) & (weights < 1)).all()
    cas = CasModule(8, num_classes=3, hidden_dim=4).eval()
    assert cas(x).shape == (2, 6, 4)
    mask = torch.tensor([[True] * 6, [True] * 2 + [False] * 4])
    logits = cas(x, mask)
    assert (logits[~mask] == 0).all()
    torch.testing.assert_close(logits[1, :2], cas(x[1:, :2])[0])


def test_topk_mean_over_time_by_hand():
    # video 0: 16 valid -> k = 2; video 1: 9 valid -> k = 1; video 2: 3 valid -> k = max(1, 0)
    cas = torch.zeros(3, 16, 2)
    cas[0, :, 0] = torch.arange(16.0)  # top 2: 15, 14
    cas[0, :, 1] = -torch.arange(16.0)  # top 2: 0, -1
    cas[1, :9, 0] = torch.tensor([3.0, 9.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0])
    cas[1, 9:, 0] = 50.0  # padding: never taken
    cas[2, :3, 1] = torch.tensor([-4.0, -2.0, -3.0])
    cas[2, 3:, 1] = 50.0
    mask = torch.arange(16)[None, :] < torch.tensor([16, 9, 3])[:, None]
    got = topk_mean_over_time(cas.requires_grad_(True), mask, divisor=8)
    assert got.tolist() == [[14.5, -0.5], [9.0, 0.0], [0.0, -2.0]]
    # video 2 has fewer valid segments than the batch's K = 2: its padding is never taken
    got.sum().backward()
    assert torch.isfinite(cas.grad).all() and (cas.grad[~mask] == 0).all()
    assert cas.grad[2, :3, 1].tolist() == [0.0, 1.0, 0.0]


def test_bas_targets_follow_basnet_with_normal_videos_out_of_the_suppressed_branch():
    labels = torch.tensor([1.0, 0.0])
    targets, has = bas_targets(labels, background=True)
    assert targets.tolist() == [[0.5, 0.5], [0.0, 1.0]] and has.tolist() == [True, True]
    targets, has = bas_targets(labels, background=False)
    assert targets[0].tolist() == [1.0, 0.0] and has.tolist() == [True, False]


def test_bas_losses_by_hand():
    labels = torch.tensor([1.0, 0.0])
    base = torch.tensor([[0.6, 0.4], [0.2, 0.8]])
    supp = torch.tensor([[0.9, 0.1], [0.3, 0.7]])

    def bce(p, y):
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    # base: anomalous (0.5, 0.5), normal (0, 1); mean over the four entries
    expected_base = (bce(0.6, 0.5) + bce(0.4, 0.5) + bce(0.2, 0.0) + bce(0.8, 1.0)) / 4
    # suppressed: anomalous (1, 0); the normal video has no target
    expected_supp = (bce(0.9, 1.0) + bce(0.1, 0.0)) / 2
    assert bas_branch_loss(base, labels, True).item() == pytest.approx(expected_base, rel=1e-6)
    assert bas_branch_loss(supp, labels, False).item() == pytest.approx(expected_supp, rel=1e-6)
    assert bas_branch_loss(supp, torch.zeros(2), False).item() == 0.0

    foreground = torch.tensor([[0.2, 0.4, 0.9], [0.1, 0.7, 0.7]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    # L1 over valid segments: 0.6 and 0.1; mean over videos
    assert foreground_l1_loss(foreground, mask).item() == pytest.approx(0.35, rel=1e-6)

    class Fixed(torch.nn.Module):
        def branches(self, features, mask):
            return BasOutput(base, torch.zeros(2, 3, 2), supp, torch.zeros(2, 3, 2), foreground)

    batch = Batch(torch.zeros(2, 3, 1), mask, mask.sum(1), labels)
    total, parts = BasObjective(2.0, 3.0, 0.5)(Fixed(), batch)
    assert set(parts) == {"base", "suppressed", "foreground"}
    assert total.item() == pytest.approx(2 * expected_base + 3 * expected_supp + 0.5 * 0.35)
    with pytest.raises(ValueError, match="needs a model with branches"):
        BasObjective()(create_model("single", 1), batch)


def test_bas_branches_and_segment_scores():
    torch.manual_seed(0)
    batch = _ragged()
    model = create_model("bas", 8, filter_dim=16, hidden_dim=32).eval()
    with torch.no_grad():
        out = model.branches(batch.features, batch.mask)
        for video in (out.video_base, out.video_suppressed):
            assert video.shape == (4, 2)
            torch.testing.assert_close(video.sum(dim=1), torch.ones(4))
        assert out.cas_base.shape == out.cas_suppressed.shape == (4, 9, 2)
        assert (out.foreground[~batch.mask] == 0).all()
        # forward = the suppressed branch's per-segment anomaly probability (default)
        expected = torch.softmax(out.cas_suppressed, dim=-1)[..., 0] * batch.mask
        torch.testing.assert_close(model(batch.features, batch.mask), expected)
        model.score = "base"
        expected = torch.softmax(out.cas_base, dim=-1)[..., 0] * batch.mask
        torch.testing.assert_close(model(batch.features, batch.mask), expected)
        model.score = "foreground"
        torch.testing.assert_close(model(batch.features, batch.mask), out.foreground)


def test_bas_has_the_published_structure():
    model = BasNet(2048)
    assert model.filter.hidden.weight.shape == (512, 2048, 1)
    assert model.cas.conv1.weight.shape == (2048, 2048, 3)
    assert model.cas.conv2.weight.shape == (2048, 2048, 3)
    assert model.cas.classifier.weight.shape == (2, 2048, 1) and model.cas.classifier.bias is None
    # concat: branch convs (k = 1, 3, 5), the fixed Linear(3D, D), the classifier
    assert count_parameters(create_model("concat", 16)) == (
        (16 * 16 * (1 + 3 + 5) + 3 * 16) + (3 * 16 * 16 + 16) + (16 + 1)
    )


# ---- checkpoints rebuild every model ----------------------------------------------------


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=CASE_IDS)
def test_checkpoint_rebuilds_the_model_with_identical_scores(name, kwargs, tmp_path):
    torch.manual_seed(0)
    batch = _ragged()
    model = create_model(name, 8, **kwargs)
    with torch.no_grad():  # move off the initial weights: a fresh model must not match by luck
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = save_checkpoint(
        tmp_path / "model.pt",
        {
            "format": CHECKPOINT_FORMAT,
            "model": {"name": name, "kwargs": {"feature_dim": 8, **kwargs}},
            "state_dict": model.state_dict(),
            "iteration": 1,
            "config": TrainConfig(model=name).to_dict(),
        },
    )
    again = model_from_checkpoint(load_checkpoint(path))
    assert type(again) is type(model)
    with torch.no_grad():
        expected = model.eval()(batch.features, batch.mask)
        assert torch.equal(again.eval()(batch.features, batch.mask), expected)


# ---- learnability: the training loop on planted anomalies --------------------------------

# (model, model arguments, learning rate, seed, AUC floor) for 100 iterations of 6 + 6 videos.
# Each floor sits about 0.08 or more below the AUC its run reaches, and above the AUC of the
# same model untrained (the test checks that too: the planted events are strong enough that
# some random initialisations rank them well before any training).
LEARN = [
    ("single", {}, 3e-3, 2, 0.75),  # untrained 0.38, trained 0.83
    ("mean", {}, 1e-3, 3, 0.7),  # untrained 0.12, trained 0.80
    ("sequence", {}, 1e-3, 3, 0.75),  # untrained 0.71, trained 0.84
    ("concat", {}, 1e-3, 1, 0.7),  # untrained 0.12, trained 0.78
    ("lstm", {}, 3e-3, 2, 0.68),  # untrained 0.35, trained 0.76
    ("bas", {"filter_dim": 32, "hidden_dim": 64}, 1e-3, 5, 0.8),  # untrained 0.39, trained 0.91
]


@pytest.fixture(scope="module")
def splits(tiny_data):
    return open_dataset(tiny_data, in_memory=True)


@pytest.mark.parametrize(
    ("name", "kwargs", "lr", "seed", "floor"), LEARN, ids=[case[0] for case in LEARN]
)
def test_learns_the_planted_anomalies(name, kwargs, lr, seed, floor, tiny_data, splits, tmp_path):
    train_set, test_set = splits
    torch.manual_seed(seed)  # the initial weights the run starts from
    untrained = evaluate(predict(create_model(name, train_set.dim, **kwargs), test_set), test_set)
    assert untrained.auc < floor
    config = TrainConfig(
        data=str(tiny_data),
        model=name,
        model_args=kwargs,
        iterations=100,
        snapshot_every=100,
        videos_per_class=6,
        max_segments=32,
        lr=lr,
        seed=seed,
        device="cpu",
        plot=False,
        tensorboard=False,
    )
    result = train(config, train_set, test_set, tmp_path / "run", progress=False)
    assert result.metrics.auc >= floor
    # The run's checkpoint rebuilds its own model, which scores the test set the same way.
    model = model_from_checkpoint(load_checkpoint(tmp_path / "run"))
    assert evaluate(predict(model, test_set), test_set).auc == pytest.approx(result.metrics.auc)


# ---- the command line --------------------------------------------------------------------

# One iteration, one snapshot: the demo plots every test video at each snapshot.
TINY_DEMO = [
    "--train-videos", "16", "--train-anomalous", "6", "--test-videos", "6",
    "--test-anomalous", "2", "--dim", "16", "--min-segments", "6",
    "--max-video-segments", "24", "--iterations", "1", "--quiet", "--json",
]  # fmt: skip


@pytest.mark.parametrize(
    "model_args",
    [["--model", "concat"], ["--model", "model_bas", "--model-arg", "hidden_dim=32"]],
    ids=["concat", "bas"],
)
def test_demo_runs_a_conv_model_and_basnet(model_args, tmp_path, capsys):
    assert main(["demo", *model_args, "--out", str(tmp_path / "demo"), *TINY_DEMO]) == 0
    assert '"results"' in capsys.readouterr().out


def test_models_command_lists_all_six(capsys):
    assert main(["models", "--feature-dim", "16", "--json"]) == 0
    out = capsys.readouterr().out
    for name in SIX:
        assert f'"name": "{name}"' in out


# ---- every registered model, each with its own example ------------------------------------


@pytest.mark.parametrize("entry", list_models(), ids=lambda e: e.name)
def test_every_registered_model_with_its_example(entry):
    """New methods join this sweep by registering: shapes, [0, 1], padding invariance, and a
    gradient for every parameter of a model trained by gradient steps."""
    from arnet.models import objective_entry

    torch.manual_seed(0)
    batch = _ragged()
    model = create_model(entry.name, 8, **entry.example)
    model.train()
    scores = model(batch.features, batch.mask)
    assert scores.shape == batch.mask.shape
    assert bool(((scores >= 0) & (scores <= 1)).all()) and not bool(scores.isnan().any())
    assert bool((scores[~batch.mask] == 0).all())
    if objective_entry(entry.objective).gradient:
        loss, parts = build_objective(entry.name, TrainConfig(model=entry.name))(model, batch)
        loss.backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        clean = model(batch.features, batch.mask)
        noisy = model(_scramble_padding(batch).features, batch.mask)
    torch.testing.assert_close(noisy[batch.mask], clean[batch.mask])


def test_a_new_method_is_one_module_registered_with_its_objective(tiny_data, tmp_path):
    """A model and its loss registered beside it train through the usual loop, their options
    from --objective-arg, and the run's checkpoint rebuilds the model."""
    from dataclasses import dataclass

    from arnet.models import ScoringModel, register_model, register_objective
    from arnet.models.registry import _OBJECTIVES, _REGISTRY, objective_entry

    @dataclass
    class MarginArgs:
        margin: float = 1.0

    @register_objective("toy-margin", args=MarginArgs)
    class MarginObjective:
        def __init__(self, margin: float = 1.0) -> None:
            self.margin = margin

        def __call__(self, model, batch):
            top = model(batch.features, batch.mask).amax(dim=1)
            gap = torch.relu(
                self.margin - top[batch.labels == 1].mean() + top[batch.labels == 0].mean()
            )
            return gap, {"gap": gap}

    @register_model("toy", "a linear score", objective="toy-margin", example={},
                    train_defaults={"lr": 1e-3})  # fmt: skip
    class Toy(ScoringModel):
        independent_segments = True

        def __init__(self, feature_dim: int) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(feature_dim, 1)

        def forward(self, features, mask):
            return torch.sigmoid(self.linear(features)).squeeze(-1).masked_fill(~mask, 0.0)

    try:
        entry = objective_entry("toy-margin")
        assert entry.arguments(TrainConfig(objective_args={"margin": 0.5})) == {"margin": 0.5}
        with pytest.raises(ValueError, match="objective 'toy-margin' has no option width"):
            entry.arguments(width=2)
        run = tmp_path / "run"
        argv = ["train", "--data", str(tiny_data), "--model", "toy", "--objective-arg",
                "margin=0.5", "--iterations", "6", "--snapshot-every", "6", "--sample_size",
                "3", "--out", str(run), "--no-plot", "--no-tensorboard", "--quiet"]  # fmt: skip
        assert main(argv) == 0
        saved = load_checkpoint(run)
        assert saved["config"]["objective_args"] == {"margin": 0.5}
        assert saved["config"]["lr"] == 1e-3  # the model's own training default
        assert isinstance(model_from_checkpoint(saved), Toy)
        assert main([*argv[:-5], "--out", str(tmp_path / "bad"), "--objective-arg", "width=2",
                     "--no-plot", "--no-tensorboard", "--quiet"]) == 2  # fmt: skip
    finally:
        _REGISTRY.pop("toy", None)
        _OBJECTIVES.pop("toy-margin", None)
