"""What `load_checkpoint` returns: the saved fields and their parsed owners (config, run
folder, threshold, the features' extraction record carried from training)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers import tiny_config

from arnet.config import TrainConfig
from arnet.errors import CheckpointError
from arnet.folders import RunFolder
from arnet.formats import open_dataset
from arnet.formats.layout import backbone_folder, extraction_record
from arnet.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from arnet.training.trainer import train

RECORD = {
    "backbone": "i3d",
    "backbones": {"rgb": {"name": "i3d", "weights": None, "sha256": None, "options": {}}},
    "preprocessing": {"crop": "center", "crop_size": 224, "short_side": 256},
}


@pytest.fixture
def run(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    folder = backbone_folder(data, "i3d")
    folder.mkdir(parents=True, exist_ok=True)
    extraction_record(folder).write_text(json.dumps(RECORD))
    config = tiny_config(data, iterations=10, snapshot_every=10)
    train(config, *open_dataset(data, in_memory=True), tmp_path / "run", progress=False)
    return tmp_path / "run", data


def test_a_checkpoint_is_its_fields_and_their_meaning(run) -> None:
    folder, data = run
    checkpoint = load_checkpoint(folder)
    assert isinstance(checkpoint, Checkpoint) and isinstance(checkpoint.config, TrainConfig)
    assert checkpoint["iteration"] == checkpoint.iteration == 10  # a read-only mapping
    assert checkpoint.path == RunFolder(folder).last
    assert checkpoint.run_folder == RunFolder(folder)
    assert checkpoint.threshold == checkpoint.config.threshold == 0.5
    assert checkpoint.config.data == str(data.absolute())
    model = checkpoint.model()
    assert isinstance(model, torch.nn.Module)
    with pytest.raises(TypeError):
        checkpoint["iteration"] = 3  # type: ignore[index]


def test_the_extraction_record_travels_with_the_run(run) -> None:
    folder, data = run
    extraction_record(backbone_folder(data, "i3d")).unlink()  # the dataset's is gone
    record = load_checkpoint(folder).extraction
    assert record is not None and record.path is None  # the run's own copy
    assert record.backbone == "i3d" and record.preprocessing["crop_size"] == 224
    assert record.input_size == (224, 224)  # the frame size travels too (a centre crop)


def test_a_run_saved_before_reads_its_datasets_record(run) -> None:
    folder, data = run
    last = RunFolder(folder).last
    payload = torch.load(last, weights_only=True)
    payload.pop("extraction")
    save_checkpoint(last, payload)
    record = load_checkpoint(last).extraction
    assert record is not None and record.path == extraction_record(backbone_folder(data, "i3d"))
    extraction_record(backbone_folder(data, "i3d")).unlink()
    assert load_checkpoint(last).extraction is None


def test_a_loose_checkpoint_has_no_run_folder(run, tmp_path) -> None:
    folder, _ = run
    loose = tmp_path / "loose.pt"
    shutil.copy(RunFolder(folder).last, loose)
    checkpoint = load_checkpoint(loose)
    assert checkpoint.run_folder is None and RunFolder.of_checkpoint(loose) is None
    assert checkpoint.path == loose


def test_run_folder_names(tmp_path) -> None:
    run = RunFolder(tmp_path)
    assert run.last == tmp_path / "checkpoints" / "last.pt"
    assert run.snapshot(30) == tmp_path / "checkpoints" / "iter_000030.pt"
    assert run.resume_checkpoint() == run.last  # nothing there yet
    run.checkpoints.mkdir()
    run.snapshot(10).touch()
    run.snapshot(20).touch()
    assert run.snapshots() == [run.snapshot(10), run.snapshot(20)]
    assert run.resume_checkpoint() == run.snapshot(20)  # last.pt missing: the newest snapshot
    assert RunFolder.of_checkpoint(run.snapshot(10)) == run


def test_a_damaged_extraction_record_is_named(run) -> None:
    folder, _ = run
    last = RunFolder(folder).last
    payload = torch.load(last, weights_only=True)
    payload["extraction"] = "i3d"
    save_checkpoint(last, payload)
    with pytest.raises(CheckpointError, match=r"last.pt: field 'extraction' is a str"):
        load_checkpoint(last)
