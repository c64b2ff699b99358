"""`arnet inspect`: every problem it claims to detect, each from a deliberately broken dataset.

One dataset carries many problems at once: inspect must report every one of them (not stop at
the first), each naming the file at fault, and exit non-zero; loading it must fail naming the
first. A clean dataset reports its figures and exits 0.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import write_crops, write_list

from arnet.cli import main
from arnet.errors import DataError
from arnet.formats import build_catalog, open_catalog, open_dataset
from arnet.formats.arnet import write_arnet
from arnet.formats.catalog import KINDS, DataWarning
from arnet.formats.packed import pack_catalog
from arnet.formats.validate import inspect_catalog

D = 6
FPS = 16


def video(name: str, label: int, segments: int, rng: np.random.Generator, dim: int = D):
    features = rng.random((segments, dim), dtype=np.float32)
    frames = np.zeros(FPS * segments + 3, np.uint8)  # 3 trailing frames: within "drop"
    if label:
        frames[FPS : 2 * FPS] = 1
    return name, label, features, frames


def clean_content(rng: np.random.Generator) -> dict[str, list]:
    train = [video(f"01_{i:04d}", 1, 4 + i, rng) for i in range(3)]
    train += [video(f"01_{i:03d}", 0, 3 + i, rng) for i in range(4)]
    test = [video(f"02_{i:04d}", 1, 5 + i, rng) for i in range(2)]
    test += [video(f"02_{i:03d}", 0, 4, rng) for i in range(3)]
    return {"train": train, "test": test}


def write_masks(folder: Path, videos: list) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, _, _, frames in videos:
        np.save(folder / f"{name}.npy", frames)
    return folder


def problems_by_kind(report) -> dict[str, list]:
    out: dict[str, list] = {}
    for p in report.problems:
        out.setdefault(p.kind, []).append(p)
    return out


def test_clean_dataset_reports_its_figures(tmp_path, capsys):
    rng = np.random.default_rng(0)
    content = clean_content(rng)
    train_list = write_list(tmp_path, content)
    assert main(["inspect", str(train_list), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["problems"] == [] and report["format"] == "list"
    assert report["dim"] == D and report["crops"] is None
    train, test = report["splits"]["train"], report["splits"]["test"]
    assert (train["anomalous"], train["normal"], train["videos"]) == (3, 4, 7)
    assert (test["anomalous"], test["normal"], test["videos"]) == (2, 3, 5)
    assert train["segments"] == {"min": 3, "median": 5.0, "mean": 4.7, "max": 6, "total": 33}
    assert test["ground_truth_videos"] == 5 and train["ground_truth_videos"] == 0
    # the concatenated RTFM ground truth holds exactly 16 T frames per video
    assert test["frames"]["min"] == FPS * 4 and test["frames"]["max"] == FPS * 6
    assert test["anomalous_frame_share"] == pytest.approx(2 * FPS / (FPS * 23), abs=5e-5)
    assert main(["inspect", str(train_list)]) == 0
    text = capsys.readouterr().out
    assert "problems: none" in text and "dimension 6" in text
    assert "train             3        4           0        7" in text


def broken_list_dataset(root: Path) -> tuple[Path, Path, dict[str, str]]:
    """A list layout with one instance of each problem; returns (train list, masks folder,
    kind -> the file name its problem must name)."""
    rng = np.random.default_rng(1)
    content = clean_content(rng)
    content["train"].append(video("01_9999", 1, 4, rng, dim=D + 1))  # dimension
    content["train"].append(video("01_0077", 1, 5, rng))  # non-finite, below
    content["test"].append(video("02_888", 0, 4, rng))  # gt-label: normal, anomalous frames
    content["test"][-1][3][5] = 1
    content["test"].append(video("02_0555", 1, 4, rng))  # gt-length, below
    content["test"].append(video("02_0556", 1, 4, rng))  # gt-missing, below
    train_list = write_list(root, content)
    features = root / "features"
    bad = np.load(features / "train" / "01_0077.npy")
    bad[2, 1] = np.inf
    np.save(features / "train" / "01_0077.npy", bad)
    np.save(features / "train" / "01_0066.npy", np.zeros((0, D), np.float32))  # empty
    np.save(features / "train" / "clip.npy", np.ones((4, D), np.float32))  # unlabelled
    np.save(features / "train" / "01_0050.npy", np.array([None, 1], dtype=object))  # unreadable
    for crop in (0, 2):  # crops: crop 1 missing
        np.save(features / "train" / f"01_0044__{crop}.npy", np.ones((4, D), np.float32))
    lines = train_list.read_text().splitlines()
    lines.insert(1, str(features / "train" / "01_0033.npy"))  # missing-file
    lines.insert(2, lines[0])  # duplicate
    lines += [str(features / "train" / f) for f in ("01_0066.npy", "clip.npy", "01_0050.npy")]
    lines += [str(features / "train" / f"01_0044__{crop}.npy") for crop in (0, 2)]
    train_list.write_text("\n".join(lines) + "\n")
    masks = write_masks(root / "test_frame_mask", content["test"][:-1])
    np.save(masks / "02_0555.npy", np.zeros(FPS * 4 - 1, np.uint8))  # gt-length: too short
    expected = {
        "missing-file": "01_0033.npy",
        "duplicate": f"{train_list.name}:3",
        "dimension": "01_9999.npy",
        "non-finite": "01_0077.npy",
        "empty": "01_0066.npy",
        "unlabelled": f"{train_list.name}:{len(lines) - 3}",
        "unreadable": "01_0050.npy",
        "crops": f"{train_list.name}:{len(lines) - 1}",
        "gt-length": "02_0555.npy",
        "gt-missing": "test_frame_mask",
        "gt-label": "02_888.npy",
    }
    return train_list, masks, expected


def test_inspect_reports_every_problem_naming_its_file(tmp_path, capsys):
    train_list, masks, expected = broken_list_dataset(tmp_path)
    report = inspect_catalog(build_catalog(train_list, ground_truth=masks))
    found = problems_by_kind(report)
    assert set(found) == set(expected)
    for kind, file in expected.items():
        assert any(file in p.source for p in found[kind]), (kind, file, found[kind])
    assert [p.severity for p in found["gt-label"]] == ["warning"]
    assert "pickled object array" in found["unreadable"][0].message
    assert not report.ok

    assert main(["inspect", str(train_list), "--gt", str(masks)]) == 1
    text = capsys.readouterr().out
    for kind in expected:
        assert f"[{kind}]" in text
    # loading the same dataset fails on the first error and counts the rest
    with (
        pytest.raises(DataError, match=r"01_0033.npy: feature file of video '01_0033'"),
        pytest.warns(DataWarning, match="'02_888' is labelled normal"),
    ):
        open_dataset(train_list, ground_truth=masks)


def test_label_conflict(tmp_path):
    train_list = write_list(tmp_path, clean_content(np.random.default_rng(2)))
    # the count puts one normal-named video into the anomalous head
    report = inspect_catalog(build_catalog(train_list, train_anomalous=4))
    conflict = problems_by_kind(report)["label-conflict"]
    assert len(conflict) == 1 and conflict[0].source.endswith(f"{train_list.name}:4")
    assert report.ok  # a warning: the count is what the user asked for


def list_without_test_list(tmp_path: Path) -> Path:
    train_list = write_list(tmp_path, clean_content(np.random.default_rng(2)))
    (tmp_path / "data-test.list").unlink()
    return train_list


def test_layout_problem(tmp_path):
    train_list = list_without_test_list(tmp_path)
    layout = problems_by_kind(inspect_catalog(build_catalog(train_list)))["layout"]
    assert layout[0].source == str(train_list) and "name the test list" in layout[0].message


def test_every_claimed_problem_kind_is_provoked(tmp_path):
    """The union of the broken datasets above provokes every kind `arnet inspect` documents."""
    train_list, masks, _ = broken_list_dataset(tmp_path / "list")
    conflict = write_list(tmp_path / "conflict", clean_content(np.random.default_rng(2)))
    catalogs = [
        build_catalog(train_list, ground_truth=masks),
        build_catalog(conflict, train_anomalous=4),
        build_catalog(list_without_test_list(tmp_path / "layout")),
        build_catalog(broken_arnet_dataset(tmp_path / "arnet")),
        build_catalog(broken_crops_dataset(tmp_path / "crops")),
    ]
    provoked = {p.kind for c in catalogs for p in inspect_catalog(c).problems}
    assert provoked == set(KINDS)


def broken_arnet_dataset(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    content = clean_content(rng)
    root = write_arnet(tmp_path / "d", content).parents[2]
    labels = pickle.loads((root / "GT" / "video_label.pickle").read_bytes())
    del labels["01_000"]
    (root / "GT" / "video_label.pickle").write_bytes(pickle.dumps(labels))
    frames = pickle.loads((root / "GT" / "frame_label.pickle").read_bytes())
    frames["02_0001"] = frames["02_0001"][:20]
    (root / "GT" / "frame_label.pickle").write_bytes(pickle.dumps(frames))
    shutil.rmtree(root / "features_video" / "i3d" / "combine" / "01_0002")
    with (root / "test_split.txt").open("a") as f:
        f.write("02_0000\n")
    return root


def test_broken_arnet_layout(tmp_path, capsys):
    root = broken_arnet_dataset(tmp_path)
    found = problems_by_kind(inspect_catalog(build_catalog(root)))
    assert set(found) == {"unlabelled", "gt-length", "missing-file", "duplicate"}
    assert "train_split.txt:" in found["unlabelled"][0].source
    assert "video_label.pickle" in found["unlabelled"][0].message
    assert found["gt-length"][0].source.endswith("frame_label.pickle")
    assert "'02_0001'" in found["gt-length"][0].message
    assert found["missing-file"][0].source.endswith("01_0002/feature.npy")
    assert found["duplicate"][0].source.endswith("test_split.txt:6")
    assert main(["inspect", str(root)]) == 1


def broken_crops_dataset(tmp_path: Path) -> Path:
    rng = np.random.default_rng(4)
    content = {
        split: [(n, y, np.stack([f, f + 1], axis=1), g) for n, y, f, g in videos]
        for split, videos in clean_content(rng).items()
    }
    root = write_crops(tmp_path / "c", content)
    (root / "train" / "01_0001__1.npy").unlink()  # its last crop
    annotations = (root / "annotations.txt").read_text().splitlines()
    kept = [line for line in annotations if not line.startswith("02_0000")]
    # an event that starts past every frame the features of 02_0001 (6 segments) can cover
    kept = [line + (" 200 220" if line.startswith("02_0001") else "") for line in kept]
    (root / "annotations.txt").write_text("\n".join(kept) + "\n")
    return root


def test_broken_crops_and_annotations(tmp_path):
    root = broken_crops_dataset(tmp_path)
    found = problems_by_kind(inspect_catalog(build_catalog(root)))
    assert set(found) == {"crops", "gt-missing", "gt-length"}
    assert "crop(s) [1] missing" in found["crops"][0].message
    assert "'02_0000' has no annotation" in found["gt-missing"][0].message  # anomalous
    assert "'02_0001'" in found["gt-length"][0].message
    assert found["gt-length"][0].source.endswith("annotations.txt")


def test_packed_store_values_are_checked_by_inspect(tmp_path):
    rng = np.random.default_rng(5)
    train_list = write_list(tmp_path / "l", clean_content(rng))
    store = pack_catalog(open_catalog(build_catalog(train_list)), tmp_path / "s", "float32")
    assert inspect_catalog(build_catalog(store)).ok
    block = np.load(store / "features.npy", mmap_mode="r+")
    block[7, 0] = np.nan
    block.flush()
    del block
    found = problems_by_kind(inspect_catalog(build_catalog(store)))
    assert list(found) == ["non-finite"]
    assert "features.npy[" in found["non-finite"][0].source
    # --skip-values trusts the store, as loading does
    assert inspect_catalog(build_catalog(store), values=False).ok


def test_npz_archive_under_a_npy_name_is_unreadable(tmp_path):
    train_list = write_list(tmp_path, clean_content(np.random.default_rng(6)))
    path = tmp_path / "features" / "train" / "01_0001.npy"
    with path.open("wb") as f:  # np.savez to a file object: .npz content, .npy name
        np.savez(f, features=np.ones((4, D), np.float32))
    unreadable = problems_by_kind(inspect_catalog(build_catalog(train_list)))["unreadable"]
    assert len(unreadable) == 1 and unreadable[0].source == str(path)
    assert ".npz archive" in unreadable[0].message


def test_missing_ground_truth_is_a_missing_file_in_every_layout(tmp_path):
    content = clean_content(np.random.default_rng(7))
    train_list = write_list(tmp_path / "list", content)
    datasets = [
        write_arnet(tmp_path / "arnet", content).parents[2],
        train_list,
        write_crops(tmp_path / "crops", content),
        pack_catalog(open_catalog(build_catalog(train_list)), tmp_path / "store", "float32"),
    ]
    missing = tmp_path / "nowhere.npz"
    for root in datasets:
        found = problems_by_kind(build_catalog(root, ground_truth=missing))
        assert [p.source for p in found["missing-file"]] == [str(missing)], root
        assert "unreadable" not in found
