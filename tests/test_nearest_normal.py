"""The nearest-normal model: distances by hand, the threshold rule, padding, checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from arnet.models import create_model
from arnet.models.normal import NearestNormal, fit_bank, group_scale


def videos(rng, normal=3, anomalous=2, t=8, d=6, shift=6.0):
    out, labels = [], []
    for _ in range(normal):
        out.append(rng.normal(size=(t, d)).astype(np.float32))
        labels.append(0)
    for _ in range(anomalous):
        v = rng.normal(size=(t, d)).astype(np.float32)
        v[t // 2 :, 0] += shift  # the second half of the video is anomalous
        out.append(v)
        labels.append(1)
    return out, labels


def test_distances_and_threshold_by_hand(rng):
    vids, labels = videos(rng)
    model, fit = fit_bank(vids, labels, neighbours=1)
    normal = [v for v, y in zip(vids, labels) if not y]
    bank = np.concatenate(normal)
    center, scale = group_scale(bank, None)
    assert np.allclose(scale, bank.std())  # one group: one scale

    def nearest(x, b):
        z, zb = (x - center) / scale, (b - center) / scale
        return np.array([min(np.linalg.norm(r - q) for q in zb) for r in z])

    tau = max(nearest(v, np.concatenate(normal[:j] + normal[j + 1 :])).max() for j, v in
              enumerate(normal))  # fmt: skip
    a = min(nearest(v, bank).max() for v, y in zip(vids, labels) if y)
    assert fit.tau == pytest.approx(tau, rel=1e-5)
    assert fit.anomalous_min_max == pytest.approx(a, rel=1e-5)
    assert a > tau and fit.threshold == pytest.approx(math.sqrt(tau * a), rel=1e-5)
    assert fit.train_video_auc == 1.0
    test = rng.normal(size=(5, 6)).astype(np.float32)
    d = nearest(test, bank)
    got = model(torch.from_numpy(test)[None], torch.ones(1, 5, dtype=torch.bool))[0].numpy()
    assert np.allclose(got, d / (d + fit.threshold), atol=1e-5)


def test_without_separable_anomalies_the_threshold_is_tau(rng):
    vids, labels = videos(rng, shift=0.0)
    _, fit = fit_bank(vids, labels)
    if fit.anomalous_min_max <= fit.tau:
        assert fit.threshold == fit.tau and fit.rule.startswith("tau")
    vids, labels = videos(rng, anomalous=0)
    _, fit = fit_bank(vids, labels)
    assert fit.threshold == fit.tau and fit.anomalous_min_max is None


def test_groups_scale_statistics_together(rng):
    x = np.concatenate([rng.normal(size=(50, 2)), 100 * rng.normal(size=(50, 2))], axis=1)
    _, scale = group_scale(x.astype(np.float32), [0, 0, 1, 1])
    assert scale[0] == scale[1] and scale[2] == scale[3]
    assert 50 < scale[2] / scale[0] < 200


def test_padding_and_other_videos_never_change_a_score(rng):
    vids, labels = videos(rng)
    model, _ = fit_bank(vids, labels)
    a = torch.from_numpy(rng.normal(size=(4, 6)).astype(np.float32))
    alone = model(a[None], torch.ones(1, 4, dtype=torch.bool))[0]
    batch = torch.full((2, 7, 6), float("nan"))
    batch[0, :4] = a
    batch[1] = torch.from_numpy(rng.normal(size=(7, 6)).astype(np.float32))
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[0, :4] = True
    mask[1] = True
    together = model(batch, mask)
    assert torch.equal(together[0, :4], alone)
    assert model.independent_segments


def test_checkpoint_round_trip_and_refusals(rng):
    vids, labels = videos(rng)
    model, _ = fit_bank(vids, labels, groups=[0, 0, 0, 1, 1, 1])
    spec = model.arnet_spec
    rebuilt = create_model(spec["name"], **spec["kwargs"])
    rebuilt.load_state_dict(model.state_dict())
    x = torch.from_numpy(rng.normal(size=(1, 5, 6)).astype(np.float32))
    assert torch.equal(rebuilt(x), model(x))
    assert isinstance(rebuilt, NearestNormal) and rebuilt.groups == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="two normal"):
        fit_bank(vids[-3:], labels[-3:])
    with pytest.raises(ValueError, match="groups"):
        create_model("nearest-normal", 6, groups=[0, 1])


def test_arnet_train_fits_it_and_arnet_test_scores_its_checkpoint(tiny_data, tmp_path, capsys):
    import json

    from arnet.cli import main

    out = tmp_path / "run"
    args = ["train", "--data", str(tiny_data), "--model", "nearest-normal", "--out", str(out)]
    assert main([*args, "--json", "--no-plot"]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert trained["iterations"] == 0 and trained["metrics"]["auc"] > 0.5
    fit = json.loads((out / "fit.json").read_text())
    assert fit["groups"] == "one" and fit["threshold"] >= fit["tau"]
    assert main(["test", "--checkpoint", str(out), "--json"]) == 0
    tested = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert tested["metrics"]["auc"] == pytest.approx(trained["metrics"]["auc"])
    assert main([*args, "--resume", str(out)]) == 2  # fitted in one go: nothing to resume
    assert main(args) == 2  # the run folder is kept, never overwritten


def test_contributions_sum_to_the_squared_distance(rng):
    vids, labels = videos(rng)
    model, _ = fit_bank(vids, labels, groups=[0, 0, 0, 1, 1, 1], neighbours=1)
    x = torch.from_numpy(rng.normal(size=(5, 6)).astype(np.float32))
    share = model.contributions(x)
    assert share.shape == (5, 6) and (share >= 0).all()
    torch.testing.assert_close(share.sum(dim=1), model.distances(x) ** 2, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("scaling", ["group", "feature", "plain"])
@pytest.mark.parametrize("k", [1, 3])
def test_scalings_and_neighbours_by_hand(rng, scaling, k):
    vids, labels = videos(rng, normal=4)
    vids = [v * np.array([1, 1, 1, 50, 50, 0.1], dtype=np.float32) for v in vids]
    groups = [0, 0, 0, 1, 1, 1]
    model, fit = fit_bank(vids, labels, groups, scaling=scaling, neighbours=k)
    assert (fit.scaling, fit.neighbours, model.neighbours) == (scaling, k, k)
    normal = [v for v, y in zip(vids, labels) if not y]
    bank = np.concatenate(normal)
    if scaling == "group":
        scale = np.array([bank[:, :3].std()] * 3 + [bank[:, 3:].std()] * 3)
    elif scaling == "feature":
        scale = bank.std(axis=0)
    else:
        scale = np.ones(6)

    def knn(x, b):
        d = np.linalg.norm((x[:, None, :] - b[None]) / scale, axis=2)
        return np.sort(d, axis=1)[:, :k].mean(axis=1)

    tau = max(knn(v, np.concatenate(normal[:j] + normal[j + 1 :])).max()
              for j, v in enumerate(normal))  # fmt: skip
    assert fit.tau == pytest.approx(tau, rel=1e-4)
    test = rng.normal(size=(7, 6)).astype(np.float32)
    d = knn(test, bank)
    assert np.allclose(model.distances(torch.from_numpy(test)).numpy(), d, rtol=1e-4, atol=1e-5)
    # a checkpoint rebuilds the same model, k included
    rebuilt = create_model(model.arnet_spec["name"], **model.arnet_spec["kwargs"])
    rebuilt.load_state_dict(model.state_dict())
    x = torch.from_numpy(test)[None]
    assert torch.equal(rebuilt(x), model(x))


def test_chunked_knn_equals_the_whole_bank(rng):
    from arnet.models.normal import nearest_distances

    x = torch.from_numpy(rng.normal(size=(9, 4)).astype(np.float32))
    bank = torch.from_numpy(rng.normal(size=(23, 4)).astype(np.float32))
    for k in (1, 2, 5):
        whole = torch.cdist(x, bank).topk(k, largest=False).values.mean(dim=1)
        torch.testing.assert_close(nearest_distances(x, bank, k, chunk=4), whole)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scaling": "zscore"}, "scaling must be one of group, feature, plain"),
        ({"neighbours": 0}, "neighbours must be an integer >= 1"),
        ({"neighbours": 2.5}, "neighbours must be an integer >= 1"),
        ({"neighbours": 10**6}, "leaving one normal training video out keeps only"),
    ],
)
def test_bad_options_are_refused_by_name(rng, kwargs, message):
    vids, labels = videos(rng)
    with pytest.raises(ValueError, match=message):
        fit_bank(vids, labels, **kwargs)


def test_arnet_train_takes_the_options_as_model_args(tiny_data, tmp_path, capsys):
    import json

    from arnet.cli import main

    args = ["train", "--data", str(tiny_data), "--model", "nearest-normal", "--no-plot"]
    out = tmp_path / "run"
    extra = ["--model-arg", "scaling=plain", "--model-arg", "neighbours=2", "--json"]
    assert main([*args, "--out", str(out), *extra]) == 0
    capsys.readouterr()
    fit = json.loads((out / "fit.json").read_text())
    assert (fit["scaling"], fit["neighbours"]) == ("plain", 2)
    assert main(["test", "--checkpoint", str(out), "--json", "--no-plot"]) == 0
    assert main([*args, "--out", str(tmp_path / "bad"), "--model-arg", "scaling=zscore"]) == 2
    assert "--model-arg: scaling must be one of" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "bad2"), "--model-arg", "k=3"]) == 2
    assert "--model-arg k: nearest-normal takes" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "checkpoints").exists()
