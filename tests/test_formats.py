"""Every dataset layout, read from small generated copies of the same synthetic content.

The same videos written as the AR-Net layout, RTFM lists, CSV lists, per-crop folders and the
packed store must read back as identical features, labels and frame labels, and score to
identical metrics.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import load_packed, write_crops, write_csv, write_list

from arnet.cli import main
from arnet.config import TrainConfig
from arnet.data.dataset import FeatureDataset
from arnet.data.sampling import BalancedBatchSampler
from arnet.errors import DataError
from arnet.evaluation.evaluate import evaluate, predict
from arnet.formats import arrays as arrays_module
from arnet.formats import build_catalog, detect_format, open_catalog, open_dataset
from arnet.formats.arnet import write_arnet
from arnet.formats.catalog import DataWarning
from arnet.formats.groundtruth import (
    event_labels,
    fit_frame_labels,
    label_from_name,
    load_ground_truth,
    video_name,
)
from arnet.formats.lists import reroot
from arnet.formats.opening import to_datasets
from arnet.formats.packed import PackedVideo, pack_catalog, write_packed
from arnet.formats.synth import SynthConfig, generate
from arnet.models import create_model
from arnet.training.trainer import train

FPS = 16
CROPS = 3
# Tiny, with names in ShanghaiTech's convention (SS_NNN normal, SS_NNNN anomalous), so the
# layouts that take labels from file names can hold it too.
CONTENT = SynthConfig(
    train_videos=12,
    train_anomalous=4,
    test_videos=8,
    test_anomalous=3,
    dim=8,
    scenes=3,
    min_segments=3,
    max_segments=20,
    seed=11,
)


@pytest.fixture(scope="module")
def content() -> dict[str, list[tuple[str, int, np.ndarray, np.ndarray]]]:
    """split -> (name, label, features (T, D), frame labels (F,)) of the synthetic videos."""
    return {
        split: [(v.name, v.label, v.features, v.frame_labels) for v in videos]
        for split, videos in generate(CONTENT).items()
    }


@pytest.fixture(scope="module")
def crop_content(content):
    """The same videos with CROPS crops per segment: (T, C, D), distinct per crop."""
    rng = np.random.default_rng(5)
    out = {}
    for split, videos in content.items():
        out[split] = [
            (
                n,
                y,
                (f[:, None, :] + rng.normal(0, 0.2, (len(f), CROPS, f.shape[1]))).astype("f4"),
                g,
            )
            for n, y, f, g in videos
        ]
    return out


@pytest.fixture(scope="module")
def layouts(tmp_path_factory, content, crop_content) -> dict[str, tuple[Path, dict]]:
    """name -> (dataset path, open_dataset options), plain and crop content in every layout."""
    root = tmp_path_factory.mktemp("layouts")
    out = {
        "arnet": (write_arnet(root / "arnet", content).parents[2], {}),
        "list": (write_list(root / "list", content, stem="sh"), {}),
        "list-count": (write_list(root / "list-count", content), {"train_anomalous": 4}),
        "csv": (write_csv(root / "csv", content), {}),
        "crops-whole": (write_crops(root / "crops-whole", content), {}),
        "arnet-crops": (write_arnet(root / "arnet-crops", crop_content).parents[2], {}),
        "list-crops": (write_list(root / "list-crops", crop_content), {}),
        "list-percrop": (write_list(root / "list-percrop", crop_content, per_crop=True), {}),
        "csv-percrop": (write_csv(root / "csv-percrop", crop_content, per_crop=True), {}),
        "crops": (write_crops(root / "crops", crop_content), {}),
    }
    for source in ("list", "crops"):
        store = root / f"packed-{source}"
        path, options = out[source]
        pack_catalog(open_catalog(build_catalog(path, **options)), store, "float32")
        out[f"packed-{source}"] = (store, {})
    return out


PLAIN = ["arnet", "list", "list-count", "csv", "crops-whole", "packed-list"]
CROPPED = ["arnet-crops", "list-crops", "list-percrop", "csv-percrop", "crops", "packed-crops"]


def canonical(dataset: FeatureDataset) -> dict[str, tuple[int, np.ndarray, np.ndarray | None]]:
    """name -> (label, features as float32, frame labels of the covered 16 T frames)."""
    out = {}
    for i, name in enumerate(dataset.names):
        feats = np.asarray(dataset.features(i), dtype=np.float32)
        frames = dataset.frame_labels[i]
        out[name] = (
            int(dataset.labels[i]),
            feats,
            None if frames is None else np.asarray(frames)[: FPS * len(feats)],
        )
    return out


def assert_same(a: FeatureDataset, b: FeatureDataset, frames: bool = True) -> None:
    """Same videos, labels and features; and frame labels, unless `frames` is False (training
    splits: some layouts carry ground truth for training videos, others do not)."""
    ca, cb = canonical(a), canonical(b)
    assert sorted(ca) == sorted(cb)
    for name in ca:
        assert ca[name][0] == cb[name][0], name
        np.testing.assert_array_equal(ca[name][1], cb[name][1], err_msg=name)
        if frames:
            np.testing.assert_array_equal(ca[name][2], cb[name][2], err_msg=name)


def fixed_metrics(test: FeatureDataset, crop_mode: str = "mean") -> dict:
    torch.manual_seed(0)
    model = create_model("single", test.dim)
    scores = predict(model, test, "cpu", crop_mode)
    return evaluate(scores, test).summary()


# ---------------------------------------------------------------------- every layout


@pytest.mark.parametrize(
    "name, expected",
    [("arnet", "arnet"), ("list", "list"), ("csv", "csv"), ("crops", "crops")]
    + [("packed-list", "packed")],
)
def test_detect_format(layouts, name, expected):
    assert detect_format(layouts[name][0]) == expected


@pytest.mark.parametrize("group", [PLAIN, CROPPED], ids=["plain", "crops"])
def test_same_content_through_every_layout(layouts, group):
    reference = open_dataset(layouts[group[0]][0], **layouts[group[0]][1])
    metrics = [fixed_metrics(reference[1])]
    if reference[1].crops:
        metrics.append(fixed_metrics(reference[1], "per_crop"))
    for name in group[1:]:
        path, options = layouts[name]
        datasets = open_dataset(path, **options)
        assert_same(reference[0], datasets[0], frames=False)
        assert_same(reference[1], datasets[1])
        got = [fixed_metrics(datasets[1])]
        if datasets[1].crops:
            got.append(fixed_metrics(datasets[1], "per_crop"))
        assert got == metrics, name


def test_crop_layouts_hold_the_crops(layouts, crop_content):
    train, test = open_dataset(layouts["crops"][0])
    assert train.crops == CROPS and test.crops == CROPS
    name, _, features, _ = crop_content["test"][0]
    video = test.features(test.index(name))
    np.testing.assert_array_equal(np.asarray(video), features)
    # the crop files are read lazily: a video is a view over its crop files, not a copy
    assert not isinstance(video, np.ndarray) and video.shape == features.shape
    rows = np.array([0, 2])
    np.testing.assert_array_equal(video[rows, 1], features[rows, 1])
    np.testing.assert_array_equal(video[rows], features[rows])


def test_plain_and_crop_content_agree_on_labels(layouts):
    plain = open_dataset(layouts["arnet"][0])
    cropped = open_dataset(layouts["crops"][0])
    for a, b in zip(plain, cropped):
        assert dict(zip(a.names, a.labels.tolist())) == dict(zip(b.names, b.labels.tolist()))


def test_list_paths_are_rerooted(layouts, tmp_path, content):
    train_list, _ = layouts["list"]
    moved = tmp_path / "moved"
    (train_list.parent / "features").rename(moved)
    try:
        with pytest.raises(DataError, match="not found"), pytest.warns(DataWarning):
            open_dataset(train_list)
        old = str((train_list.parent / "features").resolve())
        for root in (str(moved), f"{old}={moved}"):
            train, _ = open_dataset(train_list, list_root=root)
            assert len(train) == len(content["train"])
            assert all(str(moved) in s for s in train.sources)
    finally:
        moved.rename(train_list.parent / "features")


def test_reroot_rules(tmp_path):
    (tmp_path / "A" / "x").mkdir(parents=True)
    (tmp_path / "A" / "x" / "v.npy").touch()
    listed = "/home/someone/data/A/x/v.npy"
    # plain root: the shortest trailing part that exists under it
    assert reroot(listed, tmp_path / "l.list", str(tmp_path)) == tmp_path / "A" / "x" / "v.npy"
    assert reroot(listed, tmp_path / "l.list", "/home/someone/data=/mnt") == Path("/mnt/A/x/v.npy")
    assert reroot("x/v.npy", tmp_path / "A" / "l.list", None) == tmp_path / "A" / "x" / "v.npy"


def test_train_list_split_by_count_or_by_name(layouts, content):
    expected = {n: y for n, y, _, _ in content["train"]}
    for name in ("list", "list-count"):
        train, _ = open_dataset(layouts[name][0], **layouts[name][1])
        assert dict(zip(train.names, train.labels.tolist())) == expected


def test_train_list_without_names_needs_the_count(tmp_path, content):
    renamed = {
        split: [(f"{split}{i:03d}", y, f, g) for i, (_, y, f, g) in enumerate(videos)]
        for split, videos in content.items()
    }
    train_list = write_list(tmp_path, renamed)
    with pytest.raises(DataError, match="give train_anomalous"):
        open_dataset(train_list)
    train, test = open_dataset(train_list, train_anomalous=4)
    assert train.labels.tolist() == [1] * 4 + [0] * 8
    # test labels come from the ground truth when the names carry none
    expected = [int(g[: FPS * len(f)].any()) for _, _, f, g in renamed["test"]]
    assert test.labels.tolist() == expected


# ---------------------------------------------------------------------- crops end to end


@pytest.mark.parametrize("train_crop", ["random", "mean"])
def test_training_on_crops(layouts, tmp_path, train_crop):
    train_set, test_set = open_dataset(layouts["crops"][0])
    sampler = BalancedBatchSampler(train_set, 4, 8, crop_mode=train_crop, seed=0)
    draw = sampler.sample()
    batch = train_set.batch(draw, crop_mode=train_crop)
    assert batch.features.shape[-1] == train_set.dim
    v, row = int(draw.videos[0]), int(draw.positions[0, 0])
    feats = np.asarray(train_set.features(v), dtype=np.float32)
    expected = feats[row].mean(0) if train_crop == "mean" else feats[row, draw.crops[0]]
    np.testing.assert_allclose(batch.features[0, 0].numpy(), expected, rtol=1e-6)

    config = TrainConfig(
        iterations=6,
        snapshot_every=6,
        videos_per_class=4,
        max_segments=8,
        train_crop=train_crop,
        plot=False,
        tensorboard=False,
        device="cpu",
    )
    for test_crop in ("mean", "per_crop"):
        config.test_crop = test_crop
        result = train(config, train_set, test_set, tmp_path / test_crop, progress=False)
        assert 0.0 <= result.metrics.auc <= 1.0


def test_store_trains_like_the_source(layouts, tmp_path):
    """The packed store gives the batches and scores of the layout it was packed from."""
    config = TrainConfig(
        iterations=8,
        snapshot_every=8,
        videos_per_class=3,
        max_segments=6,
        plot=False,
        tensorboard=False,
        device="cpu",
    )
    results = []
    for name in ("crops", "packed-crops"):
        train_set, test_set = open_dataset(layouts[name][0])
        results.append(train(config, train_set, test_set, tmp_path / name, progress=False))
    assert results[0].metrics.summary() == results[1].metrics.summary()
    a, b = (torch.load(r.checkpoint, weights_only=True)["state_dict"] for r in results)
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------- packed store


def test_pack_round_trip_float32_is_exact(layouts):
    for source, store in (("list", "packed-list"), ("crops", "packed-crops")):
        for a, b in zip(open_dataset(layouts[source][0]), open_dataset(layouts[store][0])):
            assert_same(a, b)
            assert b.contiguous
            np.testing.assert_array_equal(b.lengths, a.lengths)
            for x, y in zip(a.frame_labels, b.frame_labels):
                np.testing.assert_array_equal(x, y)  # the stored frame labels, tail included


def test_packed_store_is_memory_mapped_and_gathers_in_one_take(layouts):
    train, test = open_dataset(layouts["packed-crops"][0])
    assert isinstance(train._block, np.memmap) and train._block is test._block
    sampler = BalancedBatchSampler(train, 4, 8, seed=1)
    draw = sampler.sample()
    gathered = train.gather(draw)
    for b, v in enumerate(draw.videos):
        n = int(draw.lengths[b])
        rows = np.asarray(train.features(int(v)), np.float32)[draw.positions[b, :n]]
        np.testing.assert_array_equal(gathered[b, :n], rows[np.arange(n), draw.crops[b]])


def test_pack_float16(layouts, tmp_path, content):
    store = tmp_path / "store16"
    assert main(["pack", str(layouts["arnet"][0]), str(store), "--json"]) == 0
    train, test = open_dataset(store)
    assert train._block.dtype == np.float16
    for name, _, features, _ in content["train"]:
        got = np.asarray(train.features(train.index(name)), np.float32)
        np.testing.assert_array_equal(got, features.astype(np.float16).astype(np.float32))
    assert (store / "features.npy").stat().st_size < sum(
        f.nbytes for split in content.values() for _, _, f, _ in split
    )
    with pytest.raises(DataError, match="already exists"):
        pack_catalog(open_catalog(build_catalog(layouts["arnet"][0])), store)
    assert main(["pack", str(layouts["arnet"][0]), str(store), "--overwrite"]) == 0


def test_pack_refuses_bad_values(tmp_path):
    feats = np.ones((4, 3), np.float32)
    big = feats * 1e6
    with pytest.raises(DataError, match="float16 range"):
        write_packed(tmp_path / "a", [PackedVideo("v", "train", 1, big, source="big.npy")])
    nan = feats.copy()
    nan[2, 1] = np.nan
    with pytest.raises(DataError, match=r"nan.npy.*NaN or Inf \(first at segment 2\)"):
        write_packed(tmp_path / "b", [PackedVideo("v", "train", 1, nan, source="nan.npy")])
    assert not (tmp_path / "a").exists() and not list(tmp_path.glob(".*tmp"))


def test_packed_index_is_json_and_checked(layouts, tmp_path):
    import shutil

    store = tmp_path / "store"
    shutil.copytree(layouts["packed-list"][0], store)
    index = json.loads((store / "arnet-store.json").read_text())
    assert index["format"] == "arnet-store" and len(index["names"]) == 20
    index["lengths"][0] = 10**6
    (store / "arnet-store.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match=r"arnet-store.json\[0\].*outside"):
        load_packed(store)
    index["lengths"].pop()
    (store / "arnet-store.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match="lengths"):
        load_packed(store)
    index["lengths"].append(1)
    index["offsets"][3] = None
    (store / "arnet-store.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match=r"arnet-store.json: index field offsets\[3\] is None"):
        load_packed(store)


def test_feature_files_are_not_held_open(tmp_path, monkeypatch):
    # UCF-Crime or XD-Violence per-crop folders hold more files than the usual limit of 1024
    # open files: opening a dataset must not keep one open per file
    fd = Path("/proc/self/fd")
    if not fd.is_dir():
        pytest.skip("needs /proc/self/fd")
    rng = np.random.default_rng(0)
    for split, prefix in (("train", "01"), ("test", "02")):
        (tmp_path / split).mkdir()
        for i in range(150):  # ShanghaiTech-style names: 4 digits anomalous, 3 normal
            name = f"{prefix}_{i:04d}" if i % 2 else f"{prefix}_{i:03d}"
            for crop in range(2):
                features = rng.random((3, 4), dtype=np.float32)
                np.save(tmp_path / split / f"{name}__{crop}.npy", features)
    monkeypatch.setattr(arrays_module, "MAX_MAPPED", 20)
    before = len(list(fd.iterdir()))
    catalog = open_catalog(build_catalog(tmp_path))
    assert not catalog.errors and len(catalog.videos) == 300
    assert len(list(fd.iterdir())) - before < 10
    with pytest.warns(DataWarning, match="no frame ground truth"):
        train, _ = to_datasets(catalog)
    for i in range(len(train)):  # reading maps files, a bounded number at a time
        assert np.asarray(train.features(i)).shape == (3, 2, 4)
    assert len(list(fd.iterdir())) - before < 30


# ---------------------------------------------------------------------- ground truth


def test_tail_policy():
    labels = np.r_[np.zeros(40, np.uint8), np.ones(10, np.uint8)]  # F = 50
    # drop: T = floor(50 / 16) = 3 segments; the 2 trailing frames are kept, the metrics cut them
    np.testing.assert_array_equal(fit_frame_labels(labels, 3, "drop"), labels)
    with pytest.raises(DataError, match=r"'v'.*50 frame labels.*4 segments need 64..79"):
        fit_frame_labels(labels, 4, "drop", video="v")
    # pad: T = ceil(50 / 16) = 4 segments; labels extended to 64 with the last frame's label
    padded = fit_frame_labels(labels, 4, "pad")
    assert padded.size == 64 and padded[50:].tolist() == [1] * 14
    with pytest.raises(DataError, match=r"need 49..64"):
        fit_frame_labels(labels[:48], 4, "pad")


def test_tail_policy_pad_through_a_layout(tmp_path, content):
    # an extractor that pads: T = ceil(F / 16); frame counts not multiples of 16
    videos = {
        split: [(n, y, f, g[: FPS * (len(f) - 1) + 5]) for n, y, f, g in vids]
        for split, vids in content.items()
    }
    root = write_arnet(tmp_path / "pad", videos).parents[2]
    with pytest.raises(DataError, match="tail policy"):
        open_dataset(root)
    _, test = open_dataset(root, tail="pad")
    assert all(len(f) == FPS * t for f, t in zip(test.frame_labels, test.lengths))
    assert 0 <= evaluate({n: np.zeros(t) for n, t in zip(test.names, test.lengths)}, test).far_all


def test_shanghaitech_masks(tmp_path, content):
    masks = tmp_path / "test_frame_mask"
    masks.mkdir()
    for name, _, _, frames in content["test"]:
        np.save(masks / f"{name}.npy", frames)
    gt = load_ground_truth(masks)
    assert gt.kind == "per-video" and set(gt.frames) == {v[0] for v in content["test"]}
    train_list = write_list(tmp_path / "l", content)
    _, test = open_dataset(train_list, ground_truth=masks)
    for name, _, _, frames in content["test"]:
        np.testing.assert_array_equal(test.frame_labels[test.index(name)], frames)


def test_ucf_crime_annotations(tmp_path):
    path = tmp_path / "Temporal_Anomaly_Annotation.txt"
    path.write_text(
        "Arrest001_x264.mp4  Arrest  5  9  20  21\n"
        "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n"
        "Abuse002_x264.mp4 Abuse 0 3 -1 -1\n"
        "broken line\n"
    )
    gt = load_ground_truth(path)
    # UCF-Crime ends are inclusive: [5, 9] -> frames 5..9
    assert gt.events == {
        "Arrest001_x264": [(5, 10), (20, 22)],
        "Normal_Videos_003_x264": [],
        "Abuse002_x264": [(0, 4)],
    }
    assert len(gt.problems) == 1 and gt.problems[0][0].endswith(":4")
    labels, notes = event_labels(gt.events["Arrest001_x264"], 2)
    assert labels.size == 32 and labels.nonzero()[0].tolist() == [5, 6, 7, 8, 9, 20, 21]
    assert notes == []


def test_xd_violence_annotations(tmp_path):
    path = tmp_path / "annotations.txt"
    path.write_text("Movie.2001__#00-01-00_00-02-00_label_B1-0-0 16 40 100 200\nlonely\n")
    gt = load_ground_truth(path)
    assert len(gt.problems) == 1 and gt.problems[0][0].endswith(":2")
    spans = gt.events["Movie.2001__#00-01-00_00-02-00_label_B1-0-0"]
    assert spans == [(16, 40), (100, 200)]  # half-open, as XD-Violence's make_gt.py
    # 5 segments cover frames 0..79; under "drop" the video may have up to 95 frames (0..94)
    labels, notes = event_labels(spans, 5)
    assert labels[16:40].all() and labels.sum() == 24
    assert notes == [(True, notes[0][1])] and "starts after frame 94" in notes[0][1]
    _, notes = event_labels([(70, 100)], 5)
    assert notes[0][0] is False and "clipped" in notes[0][1]


def test_events_past_the_last_frame_under_each_tail_policy():
    # 5 segments: "drop" allows frames 0..94, "pad" frames 0..79
    for tail, last in (("drop", 94), ("pad", 79)):
        _, notes = event_labels([(last, last + 5)], 5, tail)
        assert [error for error, _ in notes] == [False], tail  # clipped
        _, notes = event_labels([(last + 1, last + 5)], 5, tail)
        assert [error for error, _ in notes] == [True], tail
        assert f"starts after frame {last}" in notes[0][1]


@pytest.mark.parametrize("suffix", [".mat", ".txt"])
def test_binary_ground_truth_is_named(tmp_path, suffix):
    path = tmp_path / f"gt{suffix}"
    path.write_bytes(b"MATLAB 5.0 \xff\xfe\x00\x81")
    with pytest.raises(DataError, match=f"gt\\{suffix}: not a text file of events"):
        load_ground_truth(path)


def test_json_ranges_are_one_based_inclusive(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"Test001": {"frames": 10, "anomalous_frames": [[3, 5]]}}))
    gt = load_ground_truth(path)
    assert gt.frames["Test001"].tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 0, 0]


def test_names_and_labels_from_names():
    assert video_name("/x/SH_Test_ten_crop_i3d/01_0014_i3d.npy") == "01_0014"
    assert video_name("/x/v=abc__#1_label_A__3.npy") == "v=abc__#1_label_A"
    assert video_name("Abuse028_x264.mp4") == "Abuse028_x264"
    assert video_name("Ped2_Test001") == "ped2_Test001"
    cases = {
        "01_001": 0,
        "01_0014": 1,
        "Normal_Videos_003_x264": 0,
        "Arrest039_x264": 1,
        "Movie__#00-01_label_A": 0,
        "Movie__#00-01_label_B4-0-0": 1,
        "clip7": None,
    }
    assert {n: label_from_name(n) for n in cases} == cases


# ---------------------------------------------------------------------- command line


def test_cli_trains_and_tests_from_a_list_layout(layouts, tmp_path, capsys):
    train_list, _ = layouts["list-count"]
    run = tmp_path / "run"
    common = ["--no-plot", "--device", "cpu", "--json"]
    args = ["train", "--data", str(train_list), "--format", "list", "--train-anomalous", "4"]
    args += ["--iterations", "4", "--snapshot", "4", "--sample_size", "3", "--no-tensorboard"]
    assert main([*args, "--out", str(run), "--quiet", *common]) == 0
    trained = json.loads(capsys.readouterr().out)["metrics"]
    # the checkpoint remembers the layout options: testing needs nothing else
    assert main(["test", "--checkpoint", str(run), "--out", str(tmp_path / "t"), *common]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == trained
    # and a packed copy of the same data scores the same
    store = tmp_path / "store"
    pack = ["pack", str(train_list), str(store), "--train-anomalous", "4", "--dtype", "float32"]
    assert main(pack) == 0
    capsys.readouterr()
    # new data: the list options the run was trained with do not carry over to it
    args = ["test", "--checkpoint", str(run), "--data", str(store)]
    assert main([*args, "--out", str(tmp_path / "t2"), *common]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == trained


def test_options_that_do_not_apply_are_refused(layouts):
    with pytest.raises(DataError, match="train_anomalous do not apply to the arnet layout"):
        open_dataset(layouts["arnet"][0], train_anomalous=3)
    with pytest.raises(DataError, match="unknown dataset format"):
        open_dataset(layouts["arnet"][0], "hdf5")


def test_open_dataset_opens_only_the_split_asked_for(tmp_path, tiny_data):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    train_names = (data / "train_split.txt").read_text().split()
    feature_file = data / "features_video" / "i3d" / "combine" / train_names[0] / "feature.npy"
    feature_file.unlink()  # a broken training split ...
    with pytest.raises(DataError, match="feature file of video"):
        open_dataset(data)
    test = open_dataset(data, split="test")  # ... does not stop the test split from opening
    _, full_test = open_dataset(tiny_data)
    assert test.names == full_test.names
    assert all(np.array_equal(a, b) for a, b in zip(test.frame_labels, full_test.frame_labels))
    assert open_dataset(tiny_data, split="train").names == train_names


def test_a_registered_layout_is_detected_opened_and_offered(tmp_path):
    """A new layout is one reader decorated with `register_format`: detection, its options,
    `open_dataset` and the CLI's `--format` choices follow from the registration."""
    from arnet.cli.main import build_parser
    from arnet.formats import format_names, register_format
    from arnet.formats.catalog import Catalog, VideoEntry
    from arnet.formats.registry import _FORMATS

    root = tmp_path / "toy"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a_1", "a_2", "b_1", "b_2"):
        np.save(root / f"{name}.npy", rng.random((5, 4)).astype(np.float32))
    (root / "toy.json").write_text('{"test": ["b_1", "b_2"]}')

    def catalog_toy(path, *, ground_truth=None):
        catalog = Catalog("toy", Path(path))
        catalog.data_roots.append(Path(path))
        test = json.loads((Path(path) / "toy.json").read_text())["test"]
        for file in sorted(Path(path).glob("*.npy")):
            split = "test" if file.stem in test else "train"
            label = 1 if file.stem.endswith("_1") else 0
            catalog.videos.append(VideoEntry(file.stem, split, label, [file], str(file)))
        return catalog

    register_format(
        "toy",
        detect=lambda p: (p / "toy.json").is_file(),
        looks_for="a toy.json",
        description="a test layout",
    )(catalog_toy)
    try:
        assert detect_format(root) == "toy" and "toy" in format_names()
        train, test = open_dataset(root, split=None)
        assert sorted(train.names) == ["a_1", "a_2"] and sorted(test.names) == ["b_1", "b_2"]
        with pytest.raises(DataError, match="test_list do not apply to the toy layout"):
            build_catalog(root, test_list=root / "x.list")
        args = build_parser().parse_args(["inspect", str(root), "--format", "toy"])
        assert args.format == "toy"
        with pytest.raises(ValueError, match="registered twice"):
            register_format("toy", detect=bool, looks_for="", description="")(catalog_toy)
    finally:
        del _FORMATS["toy"]


def test_the_layout_table_is_known_without_loading_a_reader():
    """Layout names (for every --help) come without numpy or torch; loading the readers then
    registers exactly the layouts the table names, in its order."""
    import subprocess
    import sys

    code = (
        "import sys; from arnet.formats.registry import format_names; n = format_names(); "
        "print(','.join(n), 'numpy' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["packed,arnet,crops,list,csv", "False", "False"]
    from arnet.formats import format_names, list_formats

    assert tuple(e.name for e in list_formats()) == format_names()
