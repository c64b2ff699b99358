import os
import pickle
import shutil

import numpy as np
import pytest
from helpers import load_arnet

from arnet.errors import DataError
from arnet.formats import build_catalog, open_dataset
from arnet.formats.catalog import DataWarning
from arnet.formats.layout import feature_folder, read_split
from arnet.formats.pickles import load_pickle


@pytest.fixture
def data(tiny_data, tmp_path):
    """A private copy of the tiny dataset, free to break."""
    return shutil.copytree(tiny_data, tmp_path / "tiny")


def _first_train_video(data):
    return read_split(data / "train_split.txt")[0]


def test_reads_splits_labels_and_frames(tiny_data):
    train, test = load_arnet(tiny_data)
    assert len(train) == 40 and int(train.labels.sum()) == 12
    assert len(test) == 24 and int(test.labels.sum()) == 8
    assert train.dim == 64 and not train.contiguous
    assert all(f is not None for f in test.frame_labels)
    for i in range(len(test)):
        frames = len(test.frame_labels[i])
        assert 16 * test.lengths[i] <= frames < 16 * (test.lengths[i] + 1)
    memory = load_arnet(tiny_data, in_memory=True)[0]
    assert memory.contiguous
    np.testing.assert_array_equal(memory.features(3), train.features(3))


def test_c3d_paths_and_ped_names(tmp_path):
    root = tmp_path / "ped2"
    folder = feature_folder(root, "rgb", "c3d", "fc7")
    assert folder == root / "features_video" / "c3d" / "fc7" / "rgb"
    names = {"Test001": 1, "Test002": 1, "Train001": 0, "Train002": 0}
    for name in names:
        (folder / name.replace("Ped", "ped")).mkdir(parents=True)
        np.save(folder / name / "feature.npy", np.ones((3, 8), np.float32))
    (root / "train_split.txt").write_text("Test001\nTrain001\n\n")
    (root / "test_split.txt").write_text("Test002\nTrain002\n")
    (root / "GT").mkdir()
    with open(root / "GT" / "video_label.pickle", "wb") as f:
        pickle.dump({k: [float(v)] for k, v in names.items()}, f)
    train, test = load_arnet(root, modal="rgb", backbone="c3d", layer="fc7")
    assert train.names == ["Test001", "Train001"] and train.labels.tolist() == [1, 0]
    assert test.frame_labels == [None, None]  # no frame_label.pickle: nothing to evaluate


def test_ped_prefix_is_normalised(tmp_path):
    split = tmp_path / "s.txt"
    split.write_text("Ped2_Test001\n")
    assert read_split(split) == ["ped2_Test001"]


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_malicious_pickle_is_refused(data):
    with open(data / "GT" / "video_label.pickle", "wb") as f:
        pickle.dump({"x": _Exploit()}, f)
    with pytest.raises(DataError, match="video_label.pickle: refused to load .*system"):
        load_arnet(data)


def test_safe_pickles_with_numpy_arrays_load(tmp_path):
    value = {"a": np.array([0, 1, 1], dtype=np.uint8), "b": [1.0], "c": np.float64(2.0)}
    for protocol in (2, 4, 5):
        path = tmp_path / f"p{protocol}.pickle"
        path.write_bytes(pickle.dumps(value, protocol=protocol))
        loaded = load_pickle(path)
        np.testing.assert_array_equal(loaded["a"], value["a"])
        assert loaded["b"] == [1.0] and loaded["c"] == 2.0


def test_truncated_pickle_is_named(data):
    path = data / "GT" / "frame_label.pickle"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataError, match="frame_label.pickle: not a readable pickle"):
        load_arnet(data)


def test_missing_feature_file_is_named(data):
    name = _first_train_video(data)
    os.remove(feature_folder(data) / name / "feature.npy")
    with pytest.raises(
        DataError, match=f"{name}/feature.npy: feature file of video '{name}' not found"
    ):
        load_arnet(data)


def test_wrong_dimension_is_named(data):
    name = _first_train_video(data)
    np.save(feature_folder(data) / name / "feature.npy", np.ones((5, 63), np.float32))
    with pytest.raises(DataError, match=f"{name}/feature.npy.*{name}.*63"):
        load_arnet(data)


def test_unexpected_feature_size_is_named(tiny_data):
    with pytest.raises(DataError, match="feature.npy: features have dimension 64, but feature_dim"):
        load_arnet(tiny_data, feature_dim=2048)


def test_video_in_split_but_not_labelled(data):
    with open(data / "train_split.txt", "a") as f:
        f.write("99_9999\n")
    with pytest.raises(
        DataError, match="train_split.txt.*video '99_9999' is in the split but not in"
    ):
        load_arnet(data)


def test_nan_features_are_named(data):
    name = _first_train_video(data)
    path = feature_folder(data) / name / "feature.npy"
    feats = np.load(path)
    feats[1, 2] = np.nan
    np.save(path, feats)
    with pytest.raises(DataError, match=f"{name}/feature.npy: features of video '{name}' hold NaN"):
        load_arnet(data, in_memory=True)


def test_empty_split_and_empty_video(data):
    (data / "test_split.txt").write_text("\n")
    with pytest.raises(DataError, match="test_split.txt: split is empty"):
        load_arnet(data)


def test_empty_video_is_named(data):
    name = _first_train_video(data)
    np.save(feature_folder(data) / name / "feature.npy", np.zeros((0, 64), np.float32))
    with pytest.raises(DataError, match=f"video '{name}' (is empty|has 0 segments)"):
        load_arnet(data)


def test_unknown_layout_and_missing_folder(tmp_path):
    with pytest.raises(DataError, match="dataset not found"):
        open_dataset(tmp_path / "nothing")
    with pytest.raises(DataError, match="unrecognised dataset layout"):
        open_dataset(tmp_path)
    with pytest.raises(DataError, match="feature folder not found"):
        load_arnet(tmp_path)


def test_ground_truth_given_replaces_a_broken_frame_label_pickle(data, tmp_path):
    path = data / "GT" / "frame_label.pickle"
    gt = tmp_path / "frames.npz"
    np.savez(gt, **load_pickle(path))
    path.write_bytes(path.read_bytes()[:50])
    with (
        pytest.raises(DataError, match="frame_label.pickle: not a readable pickle"),
        pytest.warns(DataWarning, match="no frame ground truth"),
    ):
        open_dataset(data)
    _, test = open_dataset(data, ground_truth=gt)
    assert all(f is not None for f in test.frame_labels)
    assert not build_catalog(data, ground_truth=gt).problems


def test_label_pickle_keys_must_be_names(data):
    with open(data / "GT" / "video_label.pickle", "wb") as f:
        pickle.dump({5: [1.0]}, f)
    with pytest.raises(
        DataError, match=r"video_label.pickle: keys must be video names \(strings\), got 5\n"
    ):
        load_arnet(data)


def test_binary_split_file_is_named(data):
    split = data / "train_split.txt"
    split.write_bytes(b"\xff\xfe01_0001\n")
    with pytest.raises(DataError, match="train_split.txt: not a readable text file"):
        load_arnet(data)
    with pytest.raises(DataError, match="train_split.txt: not a readable text file"):
        read_split(split)
