"""Nothing saved is overwritten or deleted by another command: guarded --overwrite, run folders
owned by one process, results that never replace another command's, and one line (exit 2)
for a full disk, an impossible option or an output that is not a folder."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from arnet import atomic
from arnet.cli import main
from arnet.cli.common import new_run_folder
from arnet.folders import LOCK_FILE, claim_folder, fresh_folder
from arnet.formats.packed import INDEX_FILE
from arnet.training.checkpoint import load_checkpoint

SYNTH = ["--train-videos", "8", "--train-anomalous", "3", "--test-videos", "6"]
SYNTH += ["--test-anomalous", "2", "--dim", "8", "--min-segments", "4"]
SYNTH += ["--max-video-segments", "12"]


def _train(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--iterations", "6", "--snapshot", "3",
            "--sample_size", "4", "--no-plot", "--no-tensorboard", "--quiet",
            "--out", str(out), *extra]  # fmt: skip


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("arnet ")]
    assert len(lines) == 1, err
    return lines[0]


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("small") / "data"
    assert main(["synth", str(data), *SYNTH]) == 0
    return data


# ---------------------------------------------------------------------- 1, 14: pack


def test_pack_overwrite_never_deletes_the_source_or_other_folders(small, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(small, data)
    before = _tree(data)
    assert main(["pack", str(data), str(data), "--overwrite"]) == 2
    assert "is the dataset being packed" in _error(capsys)
    assert _tree(data) == before
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "plan.txt").write_text("keep me")
    assert main(["pack", str(data), str(notes), "--overwrite"]) == 2
    assert "not an arnet store" in _error(capsys)
    assert (notes / "plan.txt").read_text() == "keep me"

    store = tmp_path / "store"
    assert main(["pack", str(data), str(store)]) == 0
    assert main(["pack", str(store), str(store), "--overwrite"]) == 2  # a store is a source too
    assert "is the dataset being packed" in _error(capsys)
    assert main(["pack", str(data), str(store), "--overwrite", "--dtype", "float32"]) == 0
    assert json.loads((store / INDEX_FILE).read_text())["dtype"] == "float32"
    (store / "mine.txt").write_text("a note kept beside the store")
    assert main(["pack", str(data), str(store), "--overwrite"]) == 2
    assert "holds mine.txt besides the store" in _error(capsys)
    assert (store / "mine.txt").is_file() and (store / INDEX_FILE).is_file()


def test_a_killed_packs_temporaries_are_removed_on_the_next_run(small, tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a PID that has exited (and been reaped)
    stale = tmp_path / f".store.{dead.pid}.tmp"
    stale.mkdir()
    (stale / "features.npy").write_bytes(b"\0" * 4096)
    live = tmp_path / f".store.{os.getppid()}.tmp"  # a running process: not ours to remove
    live.mkdir()
    assert main(["pack", str(small), str(tmp_path / "store")]) == 0
    assert "left by a process that was killed" in capsys.readouterr().err
    assert not stale.exists() and live.exists()


def test_a_store_moved_aside_by_a_killed_pack_is_put_back(small, tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store = tmp_path / "store"
    assert main(["pack", str(small), str(store)]) == 0
    before = _tree(store)
    store.rename(tmp_path / f".store.old.{dead.pid}.tmp")  # killed between the two renames
    assert main(["pack", str(small), str(tmp_path / "other")]) == 0  # another OUT: untouched
    assert not store.exists()
    assert main(["pack", str(small), str(store), "--overwrite"]) == 0
    assert "put back the store" in capsys.readouterr().err
    assert _tree(store) == before


# ---------------------------------------------------------------------- 2, 4, 12: train


def test_resume_never_writes_into_another_run(small, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(_train(small, a)) == 0
    assert main(_train(small, b, "--seed", "5")) == 0
    before = _tree(a)
    assert main(["train", "--resume", str(b), "--iterations", "9", "--out", str(a)]) == 2
    assert "continues in its own folder" in _error(capsys)
    assert _tree(a) == before
    # Into a new folder: a copy of b that continues, b itself untouched.
    b_before = _tree(b)
    copy = tmp_path / "copy"
    argv = ["train", "--resume", str(b), "--iterations", "9", "--out", str(copy), "--quiet"]
    assert main(argv) == 0
    assert _tree(b) == b_before
    assert load_checkpoint(copy)["iteration"] == 9
    logged = [json.loads(line)["iteration"] for line in (copy / "log.jsonl").open()]
    assert logged == sorted(set(logged)) and logged[-1] == 9


def test_train_refuses_a_folder_holding_other_files(small, tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "log.jsonl").write_text('{"step": 1}\n')
    (foreign / "config.json").write_text('{"mine": true}\n')
    assert main(_train(small, foreign)) == 2
    assert "is not empty" in _error(capsys)
    assert (foreign / "config.json").read_text() == '{"mine": true}\n'
    file = tmp_path / "file"
    file.write_text("x")
    assert main(_train(small, file)) == 2
    assert "file" in _error(capsys)


def test_one_process_owns_a_run_folder(small, tmp_path, capsys):
    run = tmp_path / "run"
    with claim_folder(run, "arnet train"):  # another run holds it
        assert main(_train(small, run)) == 2
        assert f"in use by process {os.getpid()} (arnet train)" in _error(capsys)
    assert not (run / "config.json").exists()
    # A lock left by a killed process is taken over, with a message.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / LOCK_FILE).write_text(f"{dead.pid} arnet train\n")
    assert main(_train(small, run)) == 0
    assert f"taking over from process {dead.pid}" in capsys.readouterr().err
    assert not (run / LOCK_FILE).exists()  # released and removed


def test_finished_commands_leave_no_lock_and_never_remove_a_held_one(small, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train(small, run)) == 0
    tested = tmp_path / "tested"
    assert main(["test", "--checkpoint", str(run), "--out", str(tested), "--no-plot"]) == 0
    data = tmp_path / "data"
    assert main(["synth", str(data), *SYNTH]) == 0
    for folder in (run, tested, data):
        assert not (folder / LOCK_FILE).exists(), folder
    # A command refused because another process holds the folder leaves that lock alone.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_FOLDER, str(tmp_path / "held")],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        lock = tmp_path / "held" / LOCK_FILE
        assert main(_train(small, tmp_path / "held")) == 2
        assert f"in use by process {holder.pid}" in _error(capsys)
        assert lock.read_text() == f"{holder.pid} arnet train\n"
    finally:
        holder.communicate("done\n")
    assert holder.returncode == 0 and not lock.exists()
    # A command that fails inside its folder removes its own lock too.
    with pytest.raises(RuntimeError), claim_folder(tmp_path / "failed", "arnet test"):
        raise RuntimeError("failed while writing")
    assert not (tmp_path / "failed" / LOCK_FILE).exists()


def test_a_lock_file_removed_by_its_holder_is_not_trusted(tmp_path):
    """A process that opened the lock file just before its holder finished and removed it gets
    its flock on a file no longer in the folder, while a third process may hold the new one:
    that claim must start again and be refused, not hold the folder beside the third."""
    folder = tmp_path / "f"
    with claim_folder(folder, "arnet test"):
        late = subprocess.Popen(
            [sys.executable, "-c", LATE_CLAIM, str(folder)],
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE,
            text=True,
        )
        assert late.stdout.readline().strip() == "opened"  # its open came before the removal
    with claim_folder(folder, "arnet train"):
        out, _ = late.communicate("go\n")
    assert out.strip() == f"refused: {folder}: in use by process {os.getpid()} (arnet train)", out


# Claims a folder, pausing between opening the lock file and locking it until told to go on.
LATE_CLAIM = """
import fcntl, sys
from arnet.errors import FolderError
from arnet.folders import claim_folder
real, paused = fcntl.flock, []
def flock(fd, operation):
    if not paused:
        paused.append(1)
        print("opened", flush=True)
        sys.stdin.readline()
    return real(fd, operation)
fcntl.flock = flock
try:
    with claim_folder(sys.argv[1], "arnet synth"):
        print("claimed")
except FolderError as exc:
    print("refused:", str(exc).split(";")[0])
"""


HOLD_FOLDER = """
import sys
from arnet.folders import claim_folder
with claim_folder(sys.argv[1], "arnet train"):
    print("holding", flush=True)
    sys.stdin.readline()
"""


def test_default_run_folders_never_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("time.strftime", lambda fmt: "20260101-000000")
    first, second = new_run_folder("single"), new_run_folder("single")
    assert first != second and first.is_dir() and second.is_dir()
    assert second.name == "single-20260101-000000-2"
    assert fresh_folder(tmp_path, "x") == tmp_path / "x"


def test_an_impossible_max_seqlen_is_one_line(small, tmp_path, capsys):
    assert main(_train(small, tmp_path / "run", "--max-seqlen", "100000000000")) == 2
    assert "--max-seqlen" in _error(capsys)


# ---------------------------------------------------------------------- 3, 12: synth


def test_synth_overwrite_removes_only_its_own_files(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["synth", str(data), *SYNTH]) == 0
    run = data / "runs" / "kept"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text('{"auc": 0.9}')
    (data / "GT" / "notes.txt").write_text("mine")
    assert main(["synth", str(data), *SYNTH, "--data-seed", "4", "--overwrite"]) == 0
    assert (run / "metrics.json").read_text() == '{"auc": 0.9}'
    assert (data / "GT" / "notes.txt").read_text() == "mine"
    record = json.loads((data / "synth_config.json").read_text())
    assert record["seed"] == 4
    on_disk = {p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file()} - {LOCK_FILE}
    assert on_disk == set(record["files"]) | {"runs/kept/metrics.json", "GT/notes.txt"}
    # A file of another's where synth would write: refused, nothing changed.
    other = tmp_path / "other"
    other.mkdir()
    (other / "train_split.txt").write_text("mine")
    assert main(["synth", str(other), *SYNTH, "--overwrite"]) == 2
    assert "holds no synthetic dataset" in _error(capsys)
    assert (other / "train_split.txt").read_text() == "mine"


def test_demo_and_synth_refuse_a_folder_in_use_or_holding_work(tmp_path, capsys):
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "notes.txt").write_text("keep")
    assert main(["demo", "--out", str(demo), "--iterations", "2", *SYNTH]) == 2
    assert "is not empty" in _error(capsys)
    assert [p.name for p in demo.iterdir()] == ["notes.txt"]
    data = tmp_path / "data"
    with claim_folder(data, "arnet synth"):
        assert main(["synth", str(data), *SYNTH]) == 2
        assert "in use by process" in _error(capsys)
    assert main(["synth", str(data), *SYNTH]) == 0


def test_synth_into_a_file_or_through_a_link_is_one_line(tmp_path, capsys):
    file = tmp_path / "file.txt"
    file.write_text("keep")
    for extra in ([], ["--overwrite"]):
        assert main(["synth", str(file), *SYNTH, *extra]) == 2
        assert "file.txt: exists and is not a folder" in _error(capsys)
    assert file.read_text() == "keep"
    data = tmp_path / "data"
    assert main(["synth", str(data), *SYNTH]) == 0
    link = tmp_path / "link"
    link.symlink_to(data)
    assert main(["synth", str(link), *SYNTH, "--overwrite"]) == 2
    assert "is a symbolic link" in _error(capsys)


# ---------------------------------------------------------------------- 5: test and detect


def test_test_never_replaces_a_runs_results(small, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(_train(small, a)) == 0
    assert main(_train(small, b, "--seed", "5")) == 0
    (a / "metrics.json").write_text('{"auc": "a"}')
    before = _tree(a)
    assert main(["test", "--checkpoint", str(b), "--out", str(a), "--no-plot"]) == 2
    assert "is not empty" in _error(capsys)
    assert _tree(a) == before
    # Without --out, each test gets a fresh folder beside the checkpoint's run.
    for expected in ("test-last", "test-last-2"):
        assert main(["test", "--checkpoint", str(b), "--no-plot", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)["out"]
        assert Path(out) == b / expected and (b / expected / "metrics.json").is_file()


def test_detect_refuses_an_out_holding_results(tmp_path, capsys):
    out = tmp_path / "alerts"
    out.mkdir()
    (out / "detect.json").write_text('{"threshold": 0.3}')
    (out / "v.alerts.csv").write_text("start_frame\n")
    argv = ["detect", str(tmp_path / "v.mp4"), "--checkpoint", str(tmp_path / "c.pt")]
    assert main([*argv, "--out", str(out)]) == 2
    assert "alerts is not empty" in _error(capsys)
    assert (out / "detect.json").read_text() == '{"threshold": 0.3}'


def test_detect_default_folders_are_fresh(tmp_path):
    run = tmp_path / "run"
    assert fresh_folder(run, "detect").name == "detect"
    assert fresh_folder(run, "detect").name == "detect-2"


# ---------------------------------------------------------------------- 10, 11: disk and logs


def test_a_full_disk_is_one_line_naming_the_file(small, tmp_path, capsys, monkeypatch):
    real = atomic.os.replace
    calls = []

    def full(src, dst):
        calls.append(dst)
        if str(dst).endswith(".pt"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", full)
    run = tmp_path / "run"
    assert main(_train(small, run)) == 2
    line = _error(capsys)
    assert "no space left on device" in line and str(run / "checkpoints" / "last.pt") in line
    assert not list((run / "checkpoints").glob("*")), "nothing half-written is left"


def test_a_run_without_last_pt_resumes_from_its_newest_snapshot(small, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train(small, run, "--keep-checkpoints", "0")) == 0
    (run / "checkpoints" / "last.pt").unlink()
    (run / "checkpoints" / "iter_000006.pt").unlink()
    assert load_checkpoint(run)["iteration"] == 3
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert load_checkpoint(run)["iteration"] == 6


def test_resume_cuts_the_logs_back_to_the_checkpoint(small, tmp_path):
    run = tmp_path / "run"
    assert main(_train(small, run, "--log-every", "1", "--keep-checkpoints", "0")) == 0
    full = [json.loads(line) for line in (run / "log.jsonl").open()]
    # As a run killed after logging iteration 6 but before its snapshot leaves it: the last
    # checkpoint at 3, the logs past it, the last line half written.
    shutil.copy(run / "checkpoints" / "iter_000003.pt", run / "checkpoints" / "last.pt")
    with (run / "log.jsonl").open("a") as f:
        f.write('{"iteration": 7, "lo')
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    logged = [json.loads(line) for line in (run / "log.jsonl").open()]
    assert [r["iteration"] for r in logged] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in logged] == [r["loss"] for r in full]  # resume is exact
    results = [json.loads(line)["iteration"] for line in (run / "results.jsonl").open()]
    assert results == [3, 6]
    weights = load_checkpoint(run)["state_dict"]
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert np.isfinite([r["loss"] for r in logged]).all()
