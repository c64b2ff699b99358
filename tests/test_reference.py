"""The reference code's training behaviours (arnet.data.reference), against loop versions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arnet.config import REFERENCE_COMPAT, TrainConfig
from arnet.data.dataset import Batch, FeatureDataset
from arnet.data.reference import sample_positions_compat
from arnet.data.sampling import BalancedBatchSampler, sample_positions
from arnet.models import create_model
from arnet.models.losses import MilCenterObjective, anchored_center_loss, padded_center_loss
from arnet.training.runtime import make_adam


def _draws(lengths, anomalous, L, seed, step=1, **behaviours):
    rng = np.random.default_rng(seed)
    return sample_positions_compat(
        np.array(lengths), np.array(anomalous), L, rng, step, **behaviours
    )


def test_no_behaviour_is_arnet_sampling_draw_for_draw():
    lengths, anomalous = np.array([5, 40, 13, 33]), np.array([True, True, False, False])
    for seed in range(5):
        ours = sample_positions(lengths, anomalous, 10, np.random.default_rng(seed), 1)
        compat = _draws(lengths, anomalous, 10, seed)
        np.testing.assert_array_equal(ours, compat)


def test_short_videos_unchanged_by_every_behaviour():
    lengths, anomalous = np.array([4, 10, 7]), np.array([True, False, False])
    all_on = dict(window_start=True, strided_window=True, perturbed_sampling=True)
    for seed in range(3):
        a = sample_positions(lengths, anomalous, 10, np.random.default_rng(seed), 2)
        np.testing.assert_array_equal(a, _draws(lengths, anomalous, 10, seed, 2, **all_on))


def test_window_start_never_takes_the_last_start():
    # T = L + 1: arnet starts at 0 or 1; the reference at 0 only (np.random.randint(T - L))
    starts = {int(_draws([11], [False], 10, s, window_start=True)[0, 0]) for s in range(60)}
    assert starts == {0}
    starts = {int(_draws([11], [False], 10, s)[0, 0]) for s in range(60)}
    assert starts == {0, 1}


def _reference_perturb_loop(T: int, L: int, u: np.ndarray) -> list[int]:
    """The reference's perturbed sampling written as its loop, given uniform draws u."""
    out = []
    for i in range(L):
        lo, hi = (i * T) // L, ((i + 1) * T) // L
        if i < L - 1:
            choices = list(range(lo, hi + 1))  # closed range: the next bin's start included
            out.append(choices[int(u[i] * len(choices))])
        else:
            out.append(lo)  # the reference compares with L, not T: the last one is fixed
    return out


def test_perturbed_sampling_matches_the_loop_version():
    T, L = 47, 10
    for seed in range(20):
        got = _draws([T], [True], L, seed, perturbed_sampling=True)[0]
        u = np.random.default_rng(seed).random((1, L))[0]
        assert got.tolist() == _reference_perturb_loop(T, L, u)


def test_perturbed_sampling_repeats_segments_and_misses_the_tail():
    T, L = 21, 10  # bins of about two segments
    runs = [_draws([T], [True], L, s, perturbed_sampling=True)[0] for s in range(200)]
    assert any(len(set(r.tolist())) < L for r in runs)  # a segment drawn twice
    assert all(r[-1] == (L - 1) * T // L for r in runs)
    assert max(int(r.max()) for r in runs) < T - 1  # the last segment is never seen
    ours = [_draws([T], [True], L, s)[0] for s in range(200)]
    assert all(len(set(r.tolist())) == L for r in ours)


@pytest.mark.parametrize("T", [15, 20, 50])
def test_strided_window_takes_ceil_l_over_s(T):
    L, s = 10, 2
    for seed in range(30):
        pos = _draws([T, 3], [False, False], L, seed, s, strided_window=True)[0]
        valid = pos[pos >= 0]
        start = int(valid[0])
        if T > s * L:
            assert 0 <= start < T - s * L  # np.random.randint(T - s * L)
        else:
            assert 0 <= start < s  # np.random.randint(s)
        expected = [p for p in range(start, start + L, s) if p < T]
        assert valid.tolist() == expected
    arnet = _draws([50], [False], L, 0, s)[0]
    assert (arnet >= 0).sum() == L  # arnet: L segments with stride s


def test_padded_center_loss_by_hand():
    a = 0.3  # the model's score of an all-zero feature
    scores = torch.tensor([[0.2, 0.4, a, a], [0.9, 0.1, 0.5, 0.7], [0.1, 0.2, 0.3, a]])
    labels = torch.tensor([0.0, 1.0, 0.0])
    v0 = np.var([0.2, 0.4, a, a], ddof=1)
    v2 = np.var([0.1, 0.2, 0.3, a], ddof=1)
    assert padded_center_loss(scores, labels).item() == pytest.approx((v0 + v2) / 2, rel=1e-6)
    assert padded_center_loss(scores, torch.ones(3)).item() == 0.0


# ---------------------------------------------------------------------- in the library


def _batch():
    torch.manual_seed(0)
    feats = torch.rand(4, 5, 6) + 0.1
    lengths = torch.tensor([5, 3, 4, 2])
    mask = torch.arange(5)[None, :] < lengths[:, None]
    feats = feats * mask[..., None]
    return Batch(feats, mask, lengths, torch.tensor([1.0, 1.0, 0.0, 0.0]))


def test_padded_center_scores_the_padding_in_training_mode():
    batch = _batch()
    model = create_model("single", 6, dropout_mask="torch")
    model.train()
    objective = MilCenterObjective(center="padded")
    torch.manual_seed(5)
    _, parts = objective(model, batch)
    torch.manual_seed(5)  # the same dropout masks: every position of the batch, padding too
    scores = model.segment_scores(batch.features.reshape(-1, 6)).view(4, 5)
    expected = np.mean([np.var(scores[i].detach().numpy(), ddof=1) for i in (2, 3)])
    assert parts["center"].item() == pytest.approx(expected, rel=1e-5)
    model.eval()  # without dropout a padded position scores the model's answer to zeros
    zero = model.segment_scores(torch.zeros(1, 6)).item()
    full = model(batch.features, torch.ones_like(batch.mask))
    assert full[3, 2:].detach().numpy() == pytest.approx([zero] * 3, rel=1e-6)


def test_valid_center_ignores_padding():
    batch = _batch()
    model = create_model("single", 6).eval()
    _, parts = MilCenterObjective(center="valid")(model, batch)
    s = model(batch.features, batch.mask).detach().numpy()
    expected = (np.var(s[2, :4], ddof=1) + np.var(s[3, :2], ddof=1)) / 2
    assert parts["center"].item() == pytest.approx(expected, rel=1e-5)


def test_anchored_center_by_hand():
    scores = torch.tensor([[0.2, 0.4, 0.9], [0.5, 0.7, 0.0]])
    empty = torch.tensor([[0.1, 0.1, 0.1], [0.3, 0.3, 0.3]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    labels = torch.tensor([0.0, 0.0])
    v0 = np.var([0.2, 0.4, 0.1, 0.1], ddof=1)  # the padded 0.9 and its anchor left out
    v1 = np.var([0.5, 0.7, 0.0, 0.3, 0.3, 0.3], ddof=1)
    got = anchored_center_loss(scores, empty, labels, mask).item()
    assert got == pytest.approx((v0 + v1) / 2, rel=1e-6)
    assert anchored_center_loss(scores, empty, torch.ones(2), mask).item() == 0.0


def test_anchored_objective_scores_empty_scenes():
    batch = _batch()
    model = create_model("single", 6).eval()
    _, parts = MilCenterObjective(center="anchored")(model, batch)
    s = model(batch.features, batch.mask).detach().numpy()
    zero = model.segment_scores(torch.zeros(1, 6)).item()
    expected = (
        np.var(list(s[2, :4]) + [zero] * 4, ddof=1) + np.var(list(s[3, :2]) + [zero] * 2, ddof=1)
    ) / 2
    assert parts["center"].item() == pytest.approx(expected, rel=1e-5)


def test_torch_dropout_mask_is_torchs_bernoulli():
    model = create_model("single", 8, dropout_mask="torch").train()
    x = torch.rand(50, 8)
    torch.manual_seed(1)
    got = model.segment_scores(x)
    torch.manual_seed(1)
    h = torch.nn.functional.dropout(torch.relu(model.fc(x)), 0.7, True)
    expected = torch.sigmoid(model.classifier(h)).squeeze(-1)
    torch.testing.assert_close(got, expected)
    fast = create_model("single", 8).train()
    fast.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    assert not torch.allclose(fast.segment_scores(x), expected)
    with pytest.raises(ValueError, match="dropout_mask"):
        create_model("single", 8, dropout_mask="bits")


def test_adam_fused_or_not():
    model = create_model("single", 8)
    assert make_adam(model, 1e-4, 5e-4).defaults["fused"]
    assert not make_adam(model, 1e-4, 5e-4, fused=False).defaults["fused"]


def test_sampler_reproduces_the_reference_window():
    # normal videos of L + 1 segments: the reference's window always starts at 0
    feats = [np.ones((9, 3), np.float32) for _ in range(4)]
    data = FeatureDataset(["a", "b", "n1", "n2"], [1, 1, 0, 0], feats)
    ref = BalancedBatchSampler(data, 2, 8, seed=0, reference_sampling=("window_start",))
    ours = BalancedBatchSampler(data, 2, 8, seed=0)
    ref_starts = {int(ref.sample().positions[2, 0]) for _ in range(40)}
    our_starts = {int(ours.sample().positions[2, 0]) for _ in range(40)}
    assert ref_starts == {0} and our_starts == {0, 1}
    with pytest.raises(ValueError, match="unknown reference sampling"):
        BalancedBatchSampler(data, 2, 8, reference_sampling=("shuffle",))


def test_reference_compat_turns_every_behaviour_on(tiny_data, tmp_path):
    from arnet.formats import open_dataset
    from arnet.training.trainer import Trainer

    train_set, test_set = open_dataset(tiny_data, in_memory=True)
    config = TrainConfig(device="cpu", videos_per_class=4, **REFERENCE_COMPAT)
    trainer = Trainer(config, train_set, test_set, tmp_path / "run", progress=False)
    assert trainer.objective.center == "padded"
    assert set(trainer.sampler.reference_sampling) == {
        "window_start",
        "strided_window",
        "perturbed_sampling",
    }
    assert not trainer.model.fast_mask
    assert not trainer.optimizer.defaults["fused"]
    default = Trainer(TrainConfig(device="cpu", videos_per_class=4), train_set, test_set,
                      tmp_path / "run2", progress=False)  # fmt: skip
    assert default.objective.center == "padded"  # chosen leave-one-family-out
    assert default.sampler.reference_sampling == {}
    assert default.model.fast_mask and default.optimizer.defaults["fused"]
    with pytest.raises(ValueError, match="center_loss"):
        TrainConfig(center_loss="pooled").validate()


@pytest.mark.parametrize("mask_kind", ["fast", "torch"])
def test_empty_scores_are_scores_of_zero_features(mask_kind):
    model = create_model("single", 8, dropout_mask=mask_kind).train()
    torch.nn.init.normal_(model.fc.bias)  # some positive biases: dropout then shows
    torch.manual_seed(2)
    got = model.empty_scores(37)
    torch.manual_seed(2)
    expected = model.segment_scores(torch.zeros(37, 8))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert got.std() > 0  # each zero feature has its own dropout mask


# ---------------------------------------------------------------------- command line


def _overrides(*argv):
    from arnet.cli import build_parser
    from arnet.cli.common import config_overrides

    return config_overrides(build_parser().parse_args(["train", *argv]))


def test_cli_compat_reference_sets_every_behaviour():
    assert _overrides("--compat", "reference") == REFERENCE_COMPAT
    assert TrainConfig(**_overrides("--compat", "reference")).reference_sampling() == (
        "window_start",
        "strided_window",
        "perturbed_sampling",
    )
    # an option given explicitly wins over the preset
    mixed = _overrides("--compat", "reference", "--center-loss", "anchored")
    assert mixed == {**REFERENCE_COMPAT, "center_loss": "anchored"}
    assert _overrides() == {}


def test_cli_each_behaviour_option():
    assert _overrides(
        "--center-loss", "valid", "--window-start", "reference", "--strided-window",
        "reference", "--perturbed-sampling", "reference", "--dropout-mask", "torch",
        "--no-fused-adam",
    ) == {
        "center_loss": "valid", "window_start": "reference", "strided_window": "reference",
        "perturbed_sampling": "reference", "dropout_mask": "torch", "fused_adam": False,
    }  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [["--compat", "arnet"], ["--center-loss", "pooled"], ["--dropout-mask", "bits"]],
)
def test_cli_refuses_unknown_values(argv, capsys):
    from arnet.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", *argv])
    assert exc.value.code == 2
    assert argv[0] in capsys.readouterr().err
