import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from arnet.data.dataset import Batch
from arnet.models.losses import (
    MilCenterObjective,
    binary_cross_entropy,
    center_loss,
    dynamic_mil_loss,
    hinge_ranking_loss,
    topk_counts,
    topk_selection,
)


def _ragged(lengths, T=None, seed=0):
    T = T or max(lengths)
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(len(lengths), T, generator=g)
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    # padded positions hold high values: any leak into a loss would show
    return scores.masked_fill(~mask, 0.99), mask


# ---- reference semantics, written as plain loops (SPEC §4) -------------------------------


def loop_mil(scores, labels, lengths, k, kind="bce"):
    taken, targets = [], []
    for i, n in enumerate(lengths):
        ki = int(np.ceil(n / k))
        top = torch.topk(scores[i, :n], ki).values
        taken.append(top)
        targets.append(torch.full((ki,), float(labels[i])))
    x, y = torch.cat(taken), torch.cat(targets)
    if kind == "bce":
        return torch.nn.functional.binary_cross_entropy(x, y)
    return torch.nn.functional.mse_loss(x, y)


def loop_center(scores, labels, lengths):
    vs = [
        torch.var(scores[i, :n]) if n > 1 else torch.tensor(0.0)
        for i, n in enumerate(lengths)
        if labels[i] == 0
    ]
    return torch.stack(vs).mean() if vs else torch.tensor(0.0)


# ---- hand-computed cases ----------------------------------------------------------------


def test_topk_on_a_2x4_tensor():
    scores = torch.tensor([[0.1, 0.9, 0.4, 0.3], [0.2, 0.8, 0.7, 0.5]])
    mask = torch.tensor([[True, True, True, True], [True, True, True, False]])
    values, taken = topk_selection(scores, mask, k=2)
    # video 0: T=4 -> ceil(4/2)=2 -> {0.9, 0.4}; video 1: T=3 -> 2 -> {0.8, 0.7}
    assert taken.tolist() == [[True, True], [True, True]]
    assert torch.allclose(values, torch.tensor([[0.9, 0.4], [0.8, 0.7]]))
    values, taken = topk_selection(scores, mask, k=4)  # ceil(4/4)=1, ceil(3/4)=1
    assert taken.tolist() == [[True], [True]]
    assert torch.allclose(values[:, 0], torch.tensor([0.9, 0.8]))


def test_topk_counts_are_ceilings():
    assert topk_counts(torch.tensor([1, 4, 5, 8, 9, 300]), 4).tolist() == [1, 1, 2, 2, 3, 75]


def test_mil_loss_by_hand():
    scores = torch.tensor([[0.9, 0.2, 0.5, 0.0], [0.3, 0.6, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    labels = torch.tensor([1.0, 0.0])
    # k=2: video 0 (T=3) takes 2: 0.9, 0.5 vs 1; video 1 (T=2) takes 1: 0.6 vs 0
    expected = -(math.log(0.9) + math.log(0.5) + math.log(0.4)) / 3
    assert dynamic_mil_loss(scores, labels, mask, k=2).item() == pytest.approx(expected, rel=1e-6)
    expected_mse = ((0.1) ** 2 + 0.5**2 + 0.6**2) / 3
    assert dynamic_mil_loss(scores, labels, mask, k=2, kind="mse").item() == pytest.approx(
        expected_mse, rel=1e-6
    )


def test_center_loss_by_hand_ignores_padding_and_anomalous_videos():
    scores = torch.tensor([[0.2, 0.4, 0.9, 0.9], [0.1, 0.3, 0.5, 0.9], [0.7, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    labels = torch.tensor([0.0, 1.0, 0.0])
    # normal video 0: var([0.2, 0.4]) unbiased = 0.02; normal video 2: one segment -> 0
    assert center_loss(scores, labels, mask).item() == pytest.approx(0.01, rel=1e-5)


def test_center_loss_without_normal_videos_is_zero():
    scores, mask = _ragged([3, 4])
    assert center_loss(scores, torch.ones(2), mask).item() == 0.0


def test_hinge_by_hand():
    scores = torch.tensor([[0.9, 0.1], [0.6, 0.99], [0.2, 0.3]])
    mask = torch.tensor([[1, 1], [1, 0], [1, 1]], dtype=torch.bool)
    labels = torch.tensor([1.0, 1.0, 0.0])
    # maxima: 0.9, 0.6 (0.99 is padding), 0.3; pairs (0,2), (1,2)
    expected = ((1 - 0.9 + 0.3) + (1 - 0.6 + 0.3)) / 2
    assert hinge_ranking_loss(scores, labels, mask).item() == pytest.approx(expected, rel=1e-6)


# ---- parity with the loop versions --------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 4, 7])
@pytest.mark.parametrize("kind", ["bce", "mse"])
def test_mil_parity_with_loop(k, kind):
    lengths = [1, 2, 5, 9, 13, 30, 4, 8]
    scores, mask = _ragged(lengths, T=32, seed=k)
    labels = torch.tensor([1.0, 0.0] * 4)
    fast = dynamic_mil_loss(scores, labels, mask, k=k, kind=kind)
    slow = loop_mil(scores, labels, lengths, k, kind)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-6)


def test_center_parity_with_loop():
    lengths = [1, 2, 5, 9, 13, 30, 4, 8]
    scores, mask = _ragged(lengths, T=32, seed=3)
    labels = torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    assert center_loss(scores, labels, mask).item() == pytest.approx(
        loop_center(scores, labels, lengths).item(), rel=1e-6
    )


def test_gradients_match_loop_and_skip_padding():
    lengths = [3, 7, 5, 2]
    base, mask = _ragged(lengths, T=8, seed=5)
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0])
    a = base.clone().requires_grad_(True)
    b = base.clone().requires_grad_(True)
    (dynamic_mil_loss(a, labels, mask, 4) + 20 * center_loss(a, labels, mask)).backward()
    (loop_mil(b, labels, lengths, 4) + 20 * loop_center(b, labels, lengths)).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)
    assert (a.grad[~mask] == 0).all()


def test_objective_combines_weights():
    class Fixed(torch.nn.Module):
        def forward(self, features, mask):
            return features[..., 0] * mask

    lengths = [4, 6]
    scores, mask = _ragged(lengths, seed=9)
    batch = Batch(scores[..., None], mask, torch.tensor(lengths), torch.tensor([1.0, 0.0]))
    total, parts = MilCenterObjective("bce", 4, 2.0, 5.0)(Fixed(), batch)
    assert total.item() == pytest.approx(2 * parts["mil"].item() + 5 * parts["center"].item())
    with pytest.raises(ValueError, match="unknown MIL loss"):
        MilCenterObjective("nope")


def test_bce_is_torch_bce_and_takes_nan_scores_as_one_half():
    scores = torch.tensor([0.0, 0.2, float("nan"), 1.0], requires_grad=True)
    target = torch.tensor([0.0, 1.0, 1.0, 1.0])
    loss = binary_cross_entropy(scores, target)
    expected = F.binary_cross_entropy(torch.tensor([0.0, 0.2, 0.5, 1.0]), target, reduction="none")
    torch.testing.assert_close(loss, expected)
    loss.sum().backward()
    assert scores.grad[2] == 0 and torch.isfinite(scores.grad).all()
