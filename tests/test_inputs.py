"""Damaged and hostile inputs: each is refused with exit status 2 and one line naming the file,
video or option at fault (checkpoints, stores, datasets, options and the CSVs arnet writes)."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from arnet.cli.main import main
from arnet.errors import CheckpointError
from arnet.training.checkpoint import load_checkpoint

TRAIN = ["--iterations", "2", "--snapshot", "2", "--sample_size", "4", "--no-plot", "--quiet"]


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory) -> Path:
    """A finished two-iteration run of the tiny dataset (read-only: copy before changing)."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert main(["train", "--data", str(tiny_data), *TRAIN, "--out", str(out)]) == 0
    return out


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip() and "Warning" not in line]
    assert len(lines) == 1, err
    return lines[0]


def _test(checkpoint: Path, data: Path, tmp_path: Path) -> int:
    out = tmp_path / f"test-{checkpoint.stem}"
    return main(["test", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out)])


def _payload(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


# ---------------------------------------------------------------------- checkpoints


def _member_offset(path: Path, name_end: str) -> int:
    """Where the data of the archive member ending in `name_end` starts."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(name_end))
    with path.open("rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), dtype="<u2")
    return info.header_offset + 30 + int(name_len) + int(extra_len)


@pytest.mark.parametrize("member", ["data.pkl", "data/0"])
def test_checkpoint_with_overwritten_bytes_is_refused(member, run, tiny_data, tmp_path, capsys):
    damaged = tmp_path / "damaged.pt"
    shutil.copy(run / "checkpoints" / "last.pt", damaged)
    data = bytearray(damaged.read_bytes())
    start = _member_offset(damaged, member) + 8
    data[start : start + 64] = bytes(b ^ 0x5A for b in data[start : start + 64])  # same length
    damaged.write_bytes(bytes(data))
    assert _test(damaged, tiny_data, tmp_path) == 2
    assert _error(capsys).endswith(
        f"damaged.pt: damaged file: member 'archive/{member}' fails its CRC-32 check "
        "(the bytes changed after it was written)"
    )
    with pytest.raises(CheckpointError, match="damaged.pt: damaged file"):
        load_checkpoint(damaged)


def test_damaged_checkpoint_is_refused_for_resume_pretrained_and_detect(run, tiny_data, tmp_path):
    damaged = tmp_path / "damaged.pt"
    shutil.copy(run / "checkpoints" / "last.pt", damaged)
    data = bytearray(damaged.read_bytes())
    start = _member_offset(damaged, "data/0") + 4
    data[start : start + 16] = b"\x7f" * 16
    damaged.write_bytes(bytes(data))
    from arnet.detection.detector import load_detector
    from arnet.models import create_model
    from arnet.training.checkpoint import load_pretrained

    with pytest.raises(CheckpointError, match="damaged.pt: damaged file"):
        load_pretrained(create_model("single", 64), damaged)
    with pytest.raises(CheckpointError, match="damaged.pt: damaged file"):
        load_detector(damaged, backbone="i3d", backbone_options={"random_init": True})
    resumed = main(["train", "--resume", str(damaged), "--iterations", "4", "--quiet"])
    assert resumed == 2


def test_checkpoint_with_nan_weights_names_the_weight(run, tiny_data, tmp_path, capsys):
    payload = _payload(run)
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name] = torch.full_like(payload["state_dict"][name], float("nan"))
    torch.save(payload, tmp_path / "nan.pt")
    assert _test(tmp_path / "nan.pt", tiny_data, tmp_path) == 2
    line = _error(capsys)
    assert "nan.pt: weight" in line and name in line and "NaN/Inf" in line


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("config", [1, 2], "field 'config' is a list, not a dict"),
        ("config", "hello", "field 'config' is a str, not a dict"),
        ("model", "single", "field 'model' is not a {name, kwargs} dict"),
        ("iteration", "7", "field 'iteration' is '7', not a count"),
        ("state_dict", [1], "weights are a list, not a dict"),
    ],
)
def test_checkpoint_fields_of_the_wrong_type(
    field, value, message, run, tiny_data, tmp_path, capsys
):
    payload = _payload(run)
    payload[field] = value
    torch.save(payload, tmp_path / "odd.pt")
    assert _test(tmp_path / "odd.pt", tiny_data, tmp_path) == 2
    line = _error(capsys)
    assert "odd.pt: " in line and message in line


def test_other_damaged_checkpoints_exit_2_in_one_line(run, tiny_data, tmp_path, capsys):
    good = (run / "checkpoints" / "last.pt").read_bytes()
    payload = _payload(run)
    cases = {
        "truncated.pt": (good[: len(good) // 2], "damaged file: a truncated zip archive"),
        "empty.pt": (b"", "not a readable checkpoint (the file is empty)"),
        "text.pt": (b"hello", "not a readable checkpoint (not a PyTorch file"),
    }
    for name, (content, says) in cases.items():
        (tmp_path / name).write_bytes(content)
        assert _test(tmp_path / name, tiny_data, tmp_path) == 2
        assert f"{name}: {says}" in _error(capsys)
    for config, says in (
        ({**payload["config"], "threshold": "abc"}, "is not a usable training config"),
        ({**payload["config"], "seed": -4}, "'seed' must be in"),
        ({**payload["config"], "bogus": 1}, "unknown config field(s): bogus"),
    ):
        torch.save({**payload, "config": config}, tmp_path / "config.pt")
        assert _test(tmp_path / "config.pt", tiny_data, tmp_path) == 2
        line = _error(capsys)
        assert "config.pt: field 'config'" in line and says in line
    huge = {**payload, "model": {"name": "single", "kwargs": {"feature_dim": 10**8}}}
    torch.save(huge, tmp_path / "huge.pt")
    assert _test(tmp_path / "huge.pt", tiny_data, tmp_path) == 2
    assert "huge.pt: cannot rebuild model" in _error(capsys)


@pytest.mark.parametrize(
    "fields, says",
    [
        ({"version": 99}, "checkpoint format version 99 (written by arnet 0.1.0) is newer"),
        ({"arnet_version": "9.0.0"}, "format version 1 (written by arnet 9.0.0) is newer"),
        ({"version": "2"}, "checkpoint format version '2' (written by arnet 0.1.0) is not a whole"),
    ],
)
def test_a_checkpoint_of_a_newer_arnet_is_refused_by_name(
    fields, says, run, tiny_data, tmp_path, capsys
):
    torch.save({**_payload(run), **fields}, tmp_path / "newer.pt")
    assert _test(tmp_path / "newer.pt", tiny_data, tmp_path) == 2
    line = _error(capsys)
    assert "newer.pt: " in line and says in line, line
    with pytest.raises(CheckpointError, match="newer.pt"):
        load_checkpoint(tmp_path / "newer.pt")


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_checkpoint_holding_code_is_refused_in_one_line(
    run, tiny_data, tmp_path, capsys, monkeypatch
):
    payload = _payload(run)
    payload["extra"] = _Payload()
    torch.save(payload, tmp_path / "evil.pt")
    monkeypatch.chdir(tmp_path)
    assert _test(tmp_path / "evil.pt", tiny_data, tmp_path) == 2
    line = _error(capsys)
    assert "evil.pt: refused: the checkpoint holds code (" in line
    assert line.endswith("system), which arnet never runs")
    assert "weights_only" not in line and not (tmp_path / "PWNED").exists()


# ---------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "argv, option",
    [
        (["detect", "v.mp4", "--checkpoint", "c.pt", "--threshold", "nan"], "--threshold"),
        (["detect", "v.mp4", "--checkpoint", "c.pt", "--threshold", "1.5"], "--threshold"),
        (["detect", "v.mp4", "--checkpoint", "c.pt", "--threshold", "-0.2"], "--threshold"),
        (["detect", "v.mp4", "--checkpoint", "c.pt", "--merge-gap", "-1"], "--merge-gap"),
        (["detect", "v.mp4", "--checkpoint", "c.pt", "--min-alert-frames", "-2"], "--min-alert"),
        # one alert option group for detect and watch: what watch refuses, detect refuses
        (["detect", "v.mp4", "--checkpoint", "c.pt", "--min-alert-frames", "0"], "--min-alert"),
        (["detect", "v.mp4", "--checkpoint", "c.pt", "--false-alarm-rate", "inf"], "--false-ala"),
        (["train", "--data", "d", "--threshold", "nan"], "--threshold"),
        (["train", "--data", "d", "--threshold", "2"], "--threshold"),
        (["test", "--checkpoint", "c.pt", "--threshold", "-1e-9"], "--threshold"),
        (["train", "--data", "d", "--seed", "-1"], "--seed"),
        (["train", "--data", "d", "--lr", "nan"], "--lr"),
        (["train", "--data", "d", "--center-weight", "inf"], "--center-weight"),
        (["train", "--data", "d", "--sample_size", "0"], "--sample_size"),
        (["demo", "--seed", "-5"], "--seed"),
        (["extract", "v.mp4", "--out", "o", "--fps", "nan"], "--fps"),
    ],
)
def test_out_of_range_options_exit_2_naming_the_option(argv, option, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    line = _error(capsys)
    assert f"argument {option}" in line


def test_library_refuses_what_the_options_refuse():
    from arnet.config import TrainConfig
    from arnet.detection.alerts import find_alerts

    for threshold in (float("nan"), 1.5, -0.2):
        with pytest.raises(ValueError, match="threshold"):
            find_alerts(np.zeros(4), threshold, 25.0)
        with pytest.raises(ValueError, match="'threshold'"):
            TrainConfig(threshold=threshold).validate()
    with pytest.raises(ValueError, match="merge gap"):
        find_alerts(np.zeros(4), 0.5, 25.0, merge_gap=-1)
    with pytest.raises(ValueError, match="'seed'"):
        TrainConfig(seed=-1).validate()
    with pytest.raises(ValueError, match="'lr' must be a finite"):
        TrainConfig(lr=float("nan")).validate()


# ---------------------------------------------------------------------- stores and datasets


@pytest.fixture(scope="module")
def store(tiny_data, tmp_path_factory) -> Path:
    """A float32 store of the tiny dataset (read-only: copy before changing)."""
    out = tmp_path_factory.mktemp("store") / "store"
    assert main(["pack", str(tiny_data), str(out), "--dtype", "float32"]) == 0
    return out


def _store_copy(store: Path, tmp_path: Path) -> tuple[Path, dict]:
    import json

    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    return copy, json.loads((copy / "arnet-store.json").read_text())


def _train(data: Path, tmp_path: Path) -> int:
    return main(["train", "--data", str(data), *TRAIN, "--out", str(tmp_path / "r")])


def test_store_frame_labels_other_than_0_1_are_refused(store, tmp_path, capsys):
    copy, _ = _store_copy(store, tmp_path)
    frames = np.load(copy / "frame_labels.npy")
    frames[:5] = 7
    np.save(copy / "frame_labels.npy", frames)
    assert _train(copy, tmp_path) == 2
    line = _error(capsys)
    assert "frame_labels.npy[" in line and "frame labels must be 0 or 1, found 7" in line
    out = tmp_path / "t"
    assert main(["test", "--checkpoint", str(tmp_path), "--data", str(copy), "--out", str(out)])
    assert main(["inspect", str(copy)]) == 1
    assert "error [unreadable]" in capsys.readouterr().out


@pytest.mark.parametrize("split", ["train", "test"])
def test_nan_in_a_store_video_names_the_store_and_video(split, store, run, tmp_path, capsys):
    copy, index = _store_copy(store, tmp_path)
    i = index["splits"].index(split)
    block = np.load(copy / "features.npy", mmap_mode="r+")
    block[index["offsets"][i] + 1, 2] = np.nan
    block.flush()
    del block
    name, start = index["names"][i], index["offsets"][i]
    if split == "train":
        assert _train(copy, tmp_path) == 2
    else:
        assert _test(run, copy, tmp_path) == 2
    line = _error(capsys)
    assert f"features.npy[{start}:" in line and f"video {name!r} hold NaN or Inf" in line


def _first_train_feature(root: Path) -> Path:
    return sorted((root / "features_video" / "i3d" / "combine").glob("*/feature.npy"))[0]


def test_float64_beyond_float32_is_reported_by_inspect_and_train(tiny_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    path = _first_train_feature(data)
    features = np.load(path).astype(np.float64)
    features[1, 1] = 1e300
    np.save(path, features)
    assert main(["inspect", str(data)]) == 1
    assert "beyond the float32 range (largest magnitude 1e+300" in capsys.readouterr().out
    assert _train(data, tmp_path) == 2
    line = _error(capsys)
    assert f"{path}: features of video" in line and "beyond the float32 range" in line


@pytest.mark.parametrize(
    "content, says",
    [
        (b"1 2 3\n4 5 6\n", "a text file starting '1 2 3'"),
        (b"", "the file is empty"),
        (b"PK\x03\x04rest", "a .npz archive"),
        (b"\x80\x04\x95junk", "a Python pickle"),
    ],
)
def test_a_feature_file_that_is_no_npy_array_says_what_it_is(
    content, says, tiny_data, tmp_path, capsys
):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    path = _first_train_feature(data)
    path.write_bytes(content)
    assert _train(data, tmp_path) == 2
    line = _error(capsys)
    assert f"{path}: features of video" in line and says in line and "pickled object" not in line


# ---------------------------------------------------------------------- entries outside


def _escaping_split(tiny_data: Path, tmp_path: Path) -> tuple[Path, str]:
    """A copy of the dataset whose first train entry climbs out of it to a file elsewhere."""
    from arnet.formats.pickles import dump_pickle, load_pickle

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    split = data / "train_split.txt"
    names = split.read_text().splitlines()
    elsewhere = tmp_path / "elsewhere" / "x"
    elsewhere.mkdir(parents=True)
    folder = data / "features_video" / "i3d" / "combine"
    shutil.copy(folder / names[0] / "feature.npy", elsewhere / "feature.npy")
    entry = "../../../../elsewhere/x"
    labels = load_pickle(data / "GT" / "video_label.pickle")
    labels[entry] = labels.pop(names[0])
    dump_pickle(data / "GT" / "video_label.pickle", labels)
    split.write_text("\n".join([entry, *names[1:]]) + "\n")
    return data, entry


def test_split_entry_outside_the_dataset_is_warned_and_refused_with_strict(
    tiny_data, tmp_path, capsys
):
    data, entry = _escaping_split(tiny_data, tmp_path)
    assert main(["inspect", str(data)]) == 0
    out = capsys.readouterr().out
    assert "warning [outside]" in out and str(tmp_path / "elsewhere" / "x") in out
    assert main(["inspect", str(data), "--strict"]) == 1
    assert "error [outside]" in capsys.readouterr().out
    argv = ["train", "--data", str(data), *TRAIN, "--out", str(tmp_path / "r"), "--strict"]
    assert main(argv) == 2
    line = _error(capsys)
    assert "train_split.txt:1: " in line and "outside the dataset" in line and "--strict" in line
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_list_line_outside_the_list_folder_is_warned_and_refused_with_strict(tmp_path, capsys):
    from helpers import write_list

    rng = np.random.default_rng(0)

    def video(name, label, split):
        t = int(rng.integers(4, 9))
        return (name, label, rng.normal(size=(t, 8)).astype(np.float32), np.zeros(16 * t))

    splits = {
        "train": [video(f"v{i}", int(i < 3), "train") for i in range(6)],
        "test": [video(f"t{i}", 0, "test") for i in range(3)],
    }
    train_list = write_list(tmp_path / "lists", splits)
    elsewhere = tmp_path / "elsewhere.npy"
    lines = train_list.read_text().splitlines()
    shutil.copy(lines[-1], elsewhere)
    train_list.write_text("\n".join([*lines[:-1], str(elsewhere)]) + "\n")
    args = ["inspect", str(train_list), "--train-anomalous", "3"]
    assert main(args) == 0
    assert "warning [outside]" in capsys.readouterr().out
    assert main([*args, "--strict"]) == 1
    assert f"reads {elsewhere}, outside the dataset" in capsys.readouterr().out


# ---------------------------------------------------------------------- CSV cells


def test_csv_cell_neutralises_formulas_and_keeps_numbers():
    from arnet.atomic import csv_cell

    for text in ("=1+2", "+cmd", "-x", "@SUM(A1)", "\t=1", '=HYPERLINK("http://x")'):
        assert csv_cell(text) == "'" + text
    for value in ("video_01", "-0.25", "+3", "1e-3", 7, -1.5, None, ""):
        assert csv_cell(value) == value


def test_per_video_csv_names_starting_like_formulas_are_text(tmp_path):
    import csv

    from arnet.formats.arnet import write_arnet

    rng = np.random.default_rng(1)

    def video(name, label):
        t = int(rng.integers(5, 9))
        frames = np.zeros(16 * t, np.uint8)
        frames[:16] = label
        return (name, label, rng.normal(size=(t, 8)).astype(np.float32), frames)

    hostile = ["=cmd|' /C calc'!A0", "+1+2", "-2+3", "@SUM(A1)"]
    write_arnet(
        tmp_path / "data",
        {
            "train": [video(f"v{i}", int(i < 3)) for i in range(6)],
            "test": [video(n, i % 2) for i, n in enumerate(hostile)],
        },
    )
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "data"), "--sample_size", "2", "--out", str(out)]
    assert main([*argv, "--iterations", "2", "--snapshot", "2", "--no-plot", "--quiet"]) == 0
    with (out / "per_video.csv").open(newline="") as f:
        names = [row["name"] for row in csv.DictReader(f)]
    assert sorted(names) == sorted("'" + n for n in hostile)


# ---------------------------------------------------------------------- extraction settings


def test_partial_overwrite_with_new_settings_is_refused_and_inspect_names_mixed_videos(
    tmp_path, capsys
):
    pytest.importorskip("av", reason="the extract extra (PyAV) is not installed")
    pytest.importorskip("cv2", reason="the extract extra (OpenCV) is not installed")
    import json

    from helpers import write_video

    src = tmp_path / "videos"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        write_video(src / f"{name}.mp4", list(rng.integers(0, 255, (34, 48, 64, 3), np.uint8)))
    labels = {n: {"frames": 34, "anomalous_frames": [[1, 20]] if n != "a" else []} for n in "abc"}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    (tmp_path / "train.txt").write_text("a\nb\n")
    (tmp_path / "test.txt").write_text("c\n")
    out = tmp_path / "data"
    base = ["extract", "--out", str(out), "--random-init", "--modal", "rgb", "--quiet"]
    splits = ["--labels", str(tmp_path / "labels.json"), "--train-split"]
    splits += [str(tmp_path / "train.txt"), "--test-split", str(tmp_path / "test.txt")]
    old = ["--short-side", "24", "--crop-size", "16"]
    assert main([*base[:1], str(src), *base[1:], *old, *splits]) == 0
    folder = out / "features_video" / "i3d"
    before = (folder / "extraction.json").read_text()
    new = ["--short-side", "32", "--crop-size", "16", "--overwrite"]
    assert main([*base[:1], str(src / "a.mp4"), *base[1:], *new]) == 2
    line = _error(capsys)
    assert "2 video(s) there (b, c) were extracted with other settings" in line
    assert (folder / "extraction.json").read_text() == before  # nothing changed
    # every video given: all re-extracted with the new settings
    assert main([*base[:1], str(src), *base[1:], *new, *splits]) == 0
    assert json.loads((folder / "extraction.json").read_text())["preprocessing"]["short_side"] == 32
    assert main(["inspect", str(out), "--feature-modal", "rgb"]) == 0
    capsys.readouterr()

    # a folder mixed by other means (an older arnet, a copied record): inspect names the video
    record = folder / "videos" / "b.json"
    info = json.loads(record.read_text())
    record.write_text(json.dumps({**info, "settings": "0123456789abcdef"}))
    from arnet.formats.arnet import catalog_arnet
    from arnet.formats.validate import inspect_catalog

    catalog = catalog_arnet(out, modal="rgb")
    report = inspect_catalog(catalog, values=False)
    mixed = [p for p in report.problems if p.kind == "extraction"]
    assert (
        len(mixed) == 1 and "video 'b' was extracted with settings other than" in mixed[0].message
    )
