import numpy as np
import pytest

from arnet.data.dataset import Draw, FeatureDataset
from arnet.data.sampling import BalancedBatchSampler, sample_positions
from arnet.errors import DataError


def _dataset(lengths, labels, dim=3, contiguous=False):
    feats = [
        np.full((n, dim), i + 1, dtype=np.float32) + np.arange(n)[:, None] / 1000
        for i, n in enumerate(lengths)
    ]
    ds = FeatureDataset([f"v{i}" for i in range(len(lengths))], labels, feats)
    return ds.to_memory() if contiguous else ds


def test_short_videos_are_kept_whole_and_padded(rng):
    pos = sample_positions(np.array([3, 5]), np.array([True, False]), 8, rng)
    assert pos.shape == (2, 5)  # cut to the longest valid length, not max_segments
    assert pos.tolist() == [[0, 1, 2, -1, -1], [0, 1, 2, 3, 4]]


def test_perturbed_uniform_sampling_of_long_anomalous_videos(rng):
    T, L = 23, 5
    for _ in range(50):
        (pos,) = sample_positions(np.array([T]), np.array([True]), L, rng)
        assert len(pos) == L
        bins = [(j * T // L, (j + 1) * T // L) for j in range(L)]
        assert all(lo <= p < hi for p, (lo, hi) in zip(pos, bins))
        assert (np.diff(pos) > 0).all()  # order kept, no repeats


def test_perturbed_sampling_reaches_every_segment(rng):
    seen = set()
    for _ in range(400):
        seen.update(sample_positions(np.array([13]), np.array([True]), 4, rng)[0].tolist())
    assert seen == set(range(13))


def test_random_window_of_long_normal_videos(rng):
    starts = set()
    for _ in range(300):
        (pos,) = sample_positions(np.array([10]), np.array([False]), 4, rng)
        assert (np.diff(pos) == 1).all() and len(pos) == 4
        starts.add(int(pos[0]))
    assert starts == set(range(7))  # every start 0..T-L, including the last


def test_strided_window_of_long_normal_videos(rng):
    # fits: span = 3 * (4 - 1) + 1 = 10 <= 12
    for _ in range(100):
        (pos,) = sample_positions(np.array([12]), np.array([False]), 4, rng, sample_step=3)
        assert len(pos) == 4 and (np.diff(pos) == 3).all() and pos[-1] < 12
    # does not fit: start in [0, 3), as many strided segments as fit, then padding
    pos = sample_positions(np.array([7, 5]), np.array([False, False]), 6, rng, sample_step=3)
    first = pos[0][pos[0] >= 0]
    assert first[0] in (0, 1, 2) and (np.diff(first) == 3).all() and first[-1] < 7
    assert pos[1].tolist()[:5] == [0, 1, 2, 3, 4]  # T <= L: whole video, no stride


def test_sampler_is_balanced_anomalous_first_and_distinct():
    labels = [1] * 5 + [0] * 9
    ds = _dataset([4 + i for i in range(14)], labels)
    sampler = BalancedBatchSampler(ds, videos_per_class=3, max_segments=6, seed=0)
    draw = sampler.sample()
    assert ds.labels[draw.videos].tolist() == [1, 1, 1, 0, 0, 0]
    assert len(set(draw.videos.tolist())) == 6


def test_small_classes_contribute_all_their_videos_once():
    ds = _dataset([5] * 10, [1] * 6 + [0] * 4)  # Ped2's weak training split
    draw = BalancedBatchSampler(ds, videos_per_class=30, seed=0).sample()
    assert sorted(draw.videos.tolist()) == list(range(10))
    assert ds.labels[draw.videos].tolist() == [1] * 6 + [0] * 4


def test_sampler_needs_both_classes():
    with pytest.raises(DataError, match="no normal videos"):
        BalancedBatchSampler(_dataset([3, 4], [1, 1]))


def test_sampler_state_round_trip():
    ds = _dataset([20 + i for i in range(12)], [1] * 6 + [0] * 6)
    a = BalancedBatchSampler(ds, 3, 8, seed=5)
    a.sample()
    state = a.state_dict()
    b = BalancedBatchSampler(ds, 3, 8, seed=99)
    b.load_state_dict(state)
    x, y = a.sample(), b.sample()
    assert (x.videos == y.videos).all() and (x.positions == y.positions).all()


@pytest.mark.parametrize("contiguous", [False, True])
def test_batch_features_mask_and_lengths(contiguous):
    ds = _dataset([3, 6, 2], [1, 0, 0], contiguous=contiguous)
    draw = Draw(np.array([0, 2]), np.array([[2, 0, 1], [1, -1, -1]]))
    batch = ds.batch(draw)
    assert batch.features.shape == (2, 3, 3)
    assert batch.mask.tolist() == [[True, True, True], [True, False, False]]
    assert batch.lengths.tolist() == [3, 1]
    assert batch.labels.tolist() == [1.0, 0.0]
    np.testing.assert_allclose(batch.features[0, :, 0].numpy(), [1.002, 1.0, 1.001])
    np.testing.assert_allclose(batch.features[1, 0].numpy(), [3.001] * 3)
    assert (batch.features[1, 1:] == 0).all()  # padding is zero, and flagged by the mask


def test_real_zero_rows_are_not_padding():
    feats = [np.zeros((4, 2), np.float32), np.ones((2, 2), np.float32)]
    ds = FeatureDataset(["z", "o"], [1, 0], feats)
    batch = ds.batch(BalancedBatchSampler(ds, seed=0).sample())
    assert batch.lengths.tolist() == [4, 2]


def test_crops_random_and_mean():
    feats = [np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4)]
    for contiguous in (False, True):
        ds = FeatureDataset(["a"], [1], feats)
        ds = ds.to_memory() if contiguous else ds
        assert ds.crops == 2 and ds.dim == 4
        draw = Draw(np.array([0]), np.array([[0, 2]]), crops=np.array([1]))
        np.testing.assert_array_equal(ds.gather(draw, "random")[0], feats[0][[0, 2], 1])
        np.testing.assert_allclose(ds.gather(draw, "mean")[0], feats[0][[0, 2]].mean(axis=1))


def test_nan_features_are_named():
    feats = [np.ones((3, 2), np.float32), np.array([[1, np.nan]], np.float32)]
    ds = FeatureDataset(["good", "bad"], [1, 0], feats, sources=["good.npy", "bad.npy"])
    with pytest.raises(DataError, match="bad.npy.*'bad'.*NaN"):
        ds.batch(Draw(np.array([0, 1]), np.array([[0, 1], [0, -1]])))
    with pytest.raises(DataError, match="bad.npy"):
        ds.to_memory()


@pytest.mark.parametrize(
    "names, feats, message",
    [
        (["a", "a"], [np.ones((2, 3))] * 2, "appears twice"),
        (["a", "b"], [np.ones((2, 3)), np.ones((2, 4))], "feature shape"),
        (["a", "b"], [np.ones((2, 3)), np.ones((0, 3))], "empty"),
        (["a"], [np.ones(3)], "shape"),
    ],
)
def test_bad_datasets_are_refused(names, feats, message):
    with pytest.raises(DataError, match=message):
        FeatureDataset(names, [1] * len(names), feats)


def test_uniform_segments_average_consecutive_rows_as_rtfm_does():
    """Segment j of n averages rows [r_j, r_(j+1)), r = floor(linspace(0, T, n + 1)), or is
    row r_j when that range is empty; crops are averaged row-wise alike."""
    from arnet.data.dataset import UniformSegments

    def by_hand(feat, n):
        r = np.linspace(0, len(feat), n + 1).astype(int)
        return np.stack(
            [feat[r[i] : r[i + 1]].mean(0) if r[i] != r[i + 1] else feat[r[i]] for i in range(n)]
        )

    rng = np.random.default_rng(0)
    for T, n in ((100, 32), (32, 32), (7, 32), (1, 4), (33, 32)):
        feat = rng.random((T, 5)).astype(np.float32)
        seen = UniformSegments(feat, n)
        assert seen.shape == (n, 5) and len(seen) == n
        np.testing.assert_allclose(np.asarray(seen), by_hand(feat, n), rtol=1e-6)
        np.testing.assert_allclose(seen[[3, 0]], by_hand(feat, n)[[3, 0]], rtol=1e-6)
    crops = rng.random((50, 3, 4)).astype(np.float32)
    got = np.asarray(UniformSegments(crops, 8))
    want = np.stack([by_hand(crops[:, c], 8) for c in range(3)], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_training_on_uniform_segments_draws_every_video_at_n_segments(tiny_data, tmp_path):
    from arnet.cli import main
    from arnet.formats import open_dataset

    train_set, _ = open_dataset(tiny_data)
    seen = train_set.uniform_segments(8)
    sampler = BalancedBatchSampler(seen, videos_per_class=3, max_segments=300, seed=0)
    batch = sampler.next_batch()
    assert batch.features.shape[1] == 8 and bool(batch.mask.all())
    argv = ["train", "--data", str(tiny_data), "--uniform-segments", "8", "--iterations", "4",
            "--snapshot-every", "4", "--sample_size", "3", "--no-plot", "--no-tensorboard",
            "--quiet", "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 0
    bad = [*argv[:-1], str(tmp_path / "bad"), "--max-seqlen", "4"]
    assert main(bad) == 2  # more uniform segments than max_segments


def test_synth_with_crops_writes_views_of_the_same_videos(tmp_path):
    """--crops C gives (T, C, D) features whose views agree with each other far more than with
    other videos, and the one-view set is unchanged by the option's existence."""
    from arnet.config import SynthConfig
    from arnet.formats import open_dataset
    from arnet.formats.synth import generate, write_synthetic

    small = dict(train_videos=8, train_anomalous=3, test_videos=6, test_anomalous=2, dim=16)
    one = generate(SynthConfig(**small))
    assert one["train"][0].features.ndim == 2
    many = generate(SynthConfig(**small, crops=4))
    video = many["train"][0]
    assert video.features.shape == (one["train"][0].features.shape[0], 4, 16)
    np.testing.assert_array_equal(video.frame_labels, one["train"][0].frame_labels)
    views = video.features.mean(axis=0)  # (C, D): each view's mean feature
    other = many["train"][1].features.mean(axis=(0, 1))
    assert np.abs(views - views.mean(0)).mean() < np.abs(views.mean(0) - other).mean()
    out = write_synthetic(tmp_path / "crops", SynthConfig(**small, crops=4))
    train, test = open_dataset(out)
    assert train.crops == 4 and test.crops == 4
