"""The scoring core: arrays and datasets score alike, for packed and padded models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arnet.data.dataset import FeatureDataset
from arnet.evaluation.scoring import predict, score_arrays
from arnet.models import create_model


@pytest.mark.parametrize("name", ["single", "mean", "lstm"])
def test_arrays_and_a_dataset_of_them_get_the_same_scores(name):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    arrays = [rng.random((t, 6)).astype(np.float32) for t in (7, 1, 12, 3)]
    model = create_model(name, 6)
    dataset = FeatureDataset([f"v{i}" for i in range(4)], [0, 1, 0, 1], arrays)
    by_name = predict(model, dataset)
    # a tiny bound splits the videos over several forward passes: the same scores
    for got in (score_arrays(model, arrays), score_arrays(model, arrays, max_batch_segments=5)):
        assert [g.shape for g in got] == [(7,), (1,), (12,), (3,)]
        for i, g in enumerate(got):
            np.testing.assert_allclose(g, by_name[f"v{i}"], rtol=0, atol=1e-6)
    # each array alone, as a batch of one, scores the same as among the others
    alone = [score_arrays(model, [a])[0] for a in arrays]
    for a, g in zip(alone, score_arrays(model, arrays)):
        np.testing.assert_allclose(a, g, rtol=0, atol=1e-6)
    assert model.training  # the model's mode is given back


def test_multi_crop_arrays_score_as_crop_means_or_averaged_crop_scores():
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    crops = [rng.random((5, 3, 4)).astype(np.float32), rng.random((2, 3, 4)).astype(np.float32)]
    model = create_model("single", 4)
    mean = score_arrays(model, crops, crop_mode="mean")
    per = score_arrays(model, crops, crop_mode="per_crop")
    for c, m, p in zip(crops, mean, per):
        np.testing.assert_allclose(m, score_arrays(model, [c.mean(axis=1)])[0], atol=1e-6)
        each = [score_arrays(model, [c[:, k]])[0] for k in range(3)]
        np.testing.assert_allclose(p, np.mean(each, axis=0), atol=1e-6)
    with pytest.raises(ValueError, match="unknown test crop mode"):
        score_arrays(model, crops, crop_mode="max")
