"""Fault injection: `train`, `pack`, `extract` and `detect` killed (SIGKILL) at seeded random
points, a disk that fills up, and two processes against one run folder.

A killed command runs in a subprocess whose file operations (opening a file for writing,
renaming, deleting, syncing) are counted; it kills itself just before the K-th one, K drawn
from a seeded generator, so every case is reproducible and no timing is involved. Afterwards:
every file left is loadable, nothing saved earlier was replaced, and finishing the work (resume,
or the same command again) gives exactly what an uninterrupted run gives.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from arnet.cli import main
from arnet.folders import LOCK_FILE
from arnet.formats import open_dataset
from arnet.training.checkpoint import load_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"
SEEDS = (0, 1)  # kill points per command; each case a subprocess (torch loads in each)

# Runs `arnet ARGS` and kills itself (SIGKILL) just before its FAULT_AT-th file operation.
RUNNER = textwrap.dedent(
    """
    import builtins, io, os, shutil, signal, sys

    at, seen = int(os.environ.get("FAULT_AT", "0")), [0]

    def tick():
        seen[0] += 1
        if seen[0] == at:
            os.kill(os.getpid(), signal.SIGKILL)

    def counted(fn, writing=None):
        def inner(*args, **kwargs):
            if writing is None or writing(args, kwargs):
                tick()
            return fn(*args, **kwargs)
        return inner

    def writes(args, kwargs):
        mode = args[1] if len(args) > 1 else kwargs.get("mode", "r")
        return isinstance(mode, str) and any(c in mode for c in "wax+")

    for name in ("replace", "rename", "unlink", "rmdir", "fsync", "ftruncate"):
        setattr(os, name, counted(getattr(os, name)))
    shutil.rmtree = counted(shutil.rmtree)
    io.open = builtins.open = counted(builtins.open, writes)

    if os.environ.get("FAULT_PLAIN_CPU"):
        import torch

        torch.backends.mkldnn.enabled = False  # as in the test process: the same numbers

    from arnet.cli import main

    sys.exit(main(sys.argv[1:]))
    """
)


def _run(tmp: Path, argv: list[str], at: int = 0) -> int:
    """The exit status of `arnet ARGV`, killed before file operation `at` (0: never)."""
    runner = tmp / "fault_runner.py"
    if not runner.exists():
        runner.write_text(RUNNER)
    env = {**os.environ, "PYTHONPATH": str(SRC), "FAULT_AT": str(at)}
    env["FAULT_PLAIN_CPU"] = "" if torch.backends.mkldnn.enabled else "1"
    env.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    done = subprocess.run(
        [sys.executable, str(runner), *argv], env=env, capture_output=True, text=True
    )
    assert "Traceback" not in done.stderr and done.returncode in (0, -9), done.stderr
    return done.returncode


@contextlib.contextmanager
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Count, in this process, the file operations RUNNER counts (to draw kill points from)."""
    import builtins
    import io

    seen = [0]

    def counted(fn, writing=None):
        def inner(*args, **kwargs):
            if writing is None or writing(args, kwargs):
                seen[0] += 1
            return fn(*args, **kwargs)

        return inner

    def writes(args, kwargs):
        mode = args[1] if len(args) > 1 else kwargs.get("mode", "r")
        return isinstance(mode, str) and any(c in mode for c in "wax+")

    with monkeypatch.context() as patch:
        for name in ("replace", "rename", "unlink", "rmdir", "fsync", "ftruncate"):
            patch.setattr(os, name, counted(getattr(os, name)))
        patch.setattr(shutil, "rmtree", counted(shutil.rmtree))
        opener = counted(builtins.open, writes)
        patch.setattr(builtins, "open", opener)
        patch.setattr(io, "open", opener)
        yield seen


def _kill_points(total: int) -> list[int]:
    """Where to kill a command of `total` file operations, one point per seed."""
    return sorted({int(np.random.default_rng(seed).integers(1, total + 1)) for seed in SEEDS})


def _hidden_temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*.tmp")]


def assert_loadable(folder: Path) -> None:
    """Every file under `folder` (hidden temporaries aside) reads whole as what it claims."""
    for path in folder.rglob("*"):
        if not path.is_file() or path.name == LOCK_FILE or path.name.startswith("."):
            continue
        if any(part.startswith(".") and part.endswith(".tmp") for part in path.parts):
            continue
        suffix = path.suffix
        if suffix == ".pt":
            load_checkpoint(path)
        elif suffix == ".json":
            json.loads(path.read_text())
        elif suffix == ".jsonl":
            for line in path.read_text().splitlines():
                json.loads(line)
        elif suffix in (".npy", ".npz"):
            with (
                contextlib.closing(np.load(path, allow_pickle=False))
                if suffix == ".npz"
                else (contextlib.nullcontext(np.load(path, allow_pickle=False))) as arrays
            ):
                assert arrays is not None
        elif suffix == ".csv":
            rows = list(csv.reader(path.open()))
            assert rows and all(len(r) == len(rows[0]) for r in rows), path
        elif suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
        elif suffix == ".pickle":
            from arnet.formats.pickles import load_pickle

            load_pickle(path)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run)["state_dict"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults") / "data"
    argv = ["synth", str(root), "--train-videos", "8", "--train-anomalous", "3"]
    argv += ["--test-videos", "6", "--test-anomalous", "2", "--dim", "8"]
    argv += ["--min-segments", "4", "--max-video-segments", "12"]
    assert main(argv) == 0
    return root


def _train_args(data: Path, out: Path) -> list[str]:
    return ["train", "--data", str(data), "--iterations", "12", "--snapshot", "3",
            "--log-every", "1", "--sample_size", "3", "--keep-checkpoints", "2",
            "--no-plot", "--no-tensorboard", "--quiet", "--out", str(out)]  # fmt: skip


# ---------------------------------------------------------------------- train


def test_train_killed_anywhere_resumes_bit_identically(data, tmp_path, capsys, monkeypatch):
    reference = tmp_path / "reference"
    with counting(monkeypatch) as seen:
        assert main(_train_args(data, reference)) == 0
    for at in _kill_points(seen[0]):
        run = tmp_path / f"killed-{at}"
        code = _run(tmp_path, _train_args(data, run), at=at)
        assert code == -9
        assert_loadable(run)
        checkpoints = list((run / "checkpoints").glob("*.pt"))
        if not checkpoints:  # killed before the first snapshot: nothing to resume, one line
            assert main(["train", "--resume", str(run)]) == 2
            assert "checkpoint not found" in capsys.readouterr().err
            continue
        assert main(["train", "--resume", str(run), "--quiet"]) == 0
        assert not _hidden_temporaries(run), "a killed run's temporaries are removed"
        mine, theirs = _weights(run), _weights(reference)
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
        for log in ("log.jsonl", "results.jsonl"):
            got = [json.loads(line) for line in (run / log).open()]
            want = [json.loads(line) for line in (reference / log).open()]
            assert [r["iteration"] for r in got] == [r["iteration"] for r in want]
        assert_loadable(run)


def test_train_with_held_out_videos_killed_anywhere_keeps_its_choice(
    data, tmp_path, capsys, monkeypatch
):
    """--val-fraction: a run killed anywhere and resumed holds out the same videos, logs the
    same held-out figures and selects the same snapshot, with the same weights and threshold."""
    held = ["--val-fraction", "0.3"]
    reference = tmp_path / "reference"
    with counting(monkeypatch) as seen:
        assert main(_train_args(data, reference) + held) == 0
    resumed = 0
    for at in _kill_points(seen[0]):
        run = tmp_path / f"killed-{at}"
        assert _run(tmp_path, _train_args(data, run) + held, at=at) == -9
        assert_loadable(run)
        if not list((run / "checkpoints").glob("*.pt")):
            continue  # killed before the first snapshot: nothing to resume (test above)
        assert main(["train", "--resume", str(run), "--quiet"]) == 0
        resumed += 1
        assert not _hidden_temporaries(run)
        for name in ("validation.json", "validation.jsonl", "selected.json"):
            got, want = (f / name for f in (run, reference))
            if name.endswith(".jsonl"):
                assert got.read_text() == want.read_text(), name
            else:
                mine, theirs = json.loads(got.read_text()), json.loads(want.read_text())
                mine.pop("checkpoint", None), theirs.pop("checkpoint", None)  # its own folder
                assert mine == theirs, name
        mine, theirs = (
            load_checkpoint(f / "checkpoints" / "selected.pt") for f in (run, reference)
        )
        assert mine["iteration"] == theirs["iteration"]
        assert all(torch.equal(mine["state_dict"][k], v) for k, v in theirs["state_dict"].items())
        assert_loadable(run)
    assert resumed, "no kill point fell after the first snapshot"


# Runs `arnet ARGS` and sends itself FAULT_SIGNAL just before the FAULT_NTH write of a file
# named FAULT_FILE (renamed into place, as every result is, or appended to, as logs are).
SIGNAL_RUNNER = textwrap.dedent(
    """
    import builtins, io, os, signal, sys

    name, nth = os.environ["FAULT_FILE"], int(os.environ["FAULT_NTH"])
    sig, seen = getattr(signal, os.environ["FAULT_SIGNAL"]), [0]

    def hit(path):
        if os.path.basename(os.fspath(path)) == name:
            seen[0] += 1
            if seen[0] == nth:
                os.kill(os.getpid(), sig)

    real_replace, real_open = os.replace, builtins.open

    def replace(src, dst, *args, **kwargs):
        hit(dst)
        return real_replace(src, dst, *args, **kwargs)

    def opener(file, mode="r", *args, **kwargs):
        if isinstance(mode, str) and "a" in mode:
            hit(file)
        return real_open(file, mode, *args, **kwargs)

    os.replace = replace
    io.open = builtins.open = opener
    if os.environ.get("FAULT_PLAIN_CPU"):
        import torch

        torch.backends.mkldnn.enabled = False  # as in the test process: the same numbers

    from arnet.cli import main

    sys.exit(main(sys.argv[1:]))
    """
)


def _signalled(tmp: Path, argv: list[str], signal_name: str, file: str, nth: int):
    """`arnet ARGV` in a subprocess sent `signal_name` before its `nth` write of `file`."""
    runner = tmp / "signal_runner.py"
    runner.write_text(SIGNAL_RUNNER)
    env = {**os.environ, "PYTHONPATH": str(SRC), "FAULT_SIGNAL": signal_name,
           "FAULT_FILE": file, "FAULT_NTH": str(nth)}  # fmt: skip
    env["FAULT_PLAIN_CPU"] = "" if torch.backends.mkldnn.enabled else "1"
    env.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    done = subprocess.run(
        [sys.executable, str(runner), *argv], env=env, capture_output=True, text=True
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def _evaluated_at(run: Path) -> dict[str, int | None]:
    """The iteration each of a run's files stands for."""
    report = (run / "report.html").read_text()
    return {
        "last.pt": load_checkpoint(run / "checkpoints" / "last.pt")["iteration"],
        "metrics.json": json.loads((run / "metrics.json").read_text())["iteration"],
        "results.jsonl": [json.loads(line) for line in (run / "results.jsonl").open()][-1][
            "iteration"
        ],
        "report.html": int(report.split("<p>iteration ")[1].split("<")[0]),
    }


def test_sigterm_during_a_snapshot_stops_as_ctrl_c_does(data, tmp_path):
    """SIGTERM (a service manager stopping the run) while a snapshot is being written: the
    snapshot is finished, the run stops after it with its checkpoint saved, exit status 143,
    and every file agrees on the iteration; resuming gives the uninterrupted run's weights."""
    reference = tmp_path / "reference"
    assert main(_train_args(data, reference)) == 0
    run = tmp_path / "run"
    done = _signalled(tmp_path, _train_args(data, run), "SIGTERM", "metrics.json", 2)
    assert done.returncode == 143, (done.returncode, done.stderr)
    assert "SIGTERM: stopping after this step" in done.stderr
    assert "arnet train: stopped (SIGTERM)" in done.stderr
    assert set(_evaluated_at(run).values()) == {6}  # the snapshot at 6, finished
    assert_loadable(run)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    mine, theirs = _weights(run), _weights(reference)
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_resume_cuts_the_evaluation_files_back_to_the_checkpoint(data, tmp_path):
    """A run killed after writing a snapshot's evaluation but before its checkpoint: resumed,
    its metrics, per-video table, scores and report are of the checkpoint's evaluation again,
    whenever the resumed run stops (here by SIGTERM after one step), and the dashboard says so."""
    from arnet.web.runs import RunFolders

    argv = _train_args(data, tmp_path / "at-3")
    argv[argv.index("12")] = "3"
    assert main(argv) == 0  # what the run's files were at its snapshot at iteration 3
    at_3 = tmp_path / "at-3"
    run = tmp_path / "run"
    done = _signalled(tmp_path, _train_args(data, run), "SIGKILL", "last.pt", 2)
    assert done.returncode == -9
    assert _evaluated_at(run) == {"last.pt": 3, "metrics.json": 6, "results.jsonl": 6,
                                  "report.html": 6}  # fmt: skip
    resume = ["train", "--resume", str(run), "--quiet"]
    for stopped_at in (4, 5):  # resumed from the snapshot at 3, then from last.pt at 4
        done = _signalled(tmp_path, resume, "SIGTERM", "log.jsonl", 2)  # after its cut
        assert done.returncode == 143, done.stderr
        assert _evaluated_at(run) == {"last.pt": stopped_at, "metrics.json": 3,
                                      "results.jsonl": 3, "report.html": 3}  # fmt: skip
        for name in ("metrics.json", "per_video.csv"):
            assert (run / name).read_text() == (at_3 / name).read_text(), name
        with np.load(run / "scores.npz") as mine, np.load(at_3 / "scores.npz") as theirs:
            assert sorted(mine.files) == sorted(theirs.files)
            assert all(np.array_equal(mine[k], theirs[k]) for k in theirs.files)
        assert RunFolders(tmp_path).summary(run)["iteration"] == 3
    assert main(resume) == 0
    assert set(_evaluated_at(run).values()) == {12}


def test_two_processes_against_one_run_folder(data, tmp_path, capsys):
    run = tmp_path / "run"
    argv = _train_args(data, run)
    argv[argv.index("12")] = "150"  # long enough to be running when the second one starts
    argv[argv.index("3")] = "150"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    first = subprocess.Popen(
        [sys.executable, "-m", "arnet", *argv], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        lock = run / LOCK_FILE
        while first.poll() is None and not (lock.is_file() and lock.read_text().strip()):
            time.sleep(0.02)  # until the first one holds the folder
        assert first.poll() is None, first.stderr.read()
        assert main(_train_args(data, run)) == 2
        err = capsys.readouterr().err
        assert f"in use by process {first.pid} (arnet train)" in err
    finally:
        code = first.wait()
    assert code == 0, first.stderr.read()
    assert load_checkpoint(run)["iteration"] == 150
    logged = [json.loads(line)["iteration"] for line in (run / "log.jsonl").open()]
    assert logged == list(range(1, 151))


# ---------------------------------------------------------------------- pack


def test_pack_killed_anywhere_keeps_the_earlier_store(data, tmp_path):
    store = tmp_path / "store"
    assert main(["pack", str(data), str(store)]) == 0  # the earlier store (float16)
    earlier = {p.name: p.read_bytes() for p in store.iterdir() if p.name != LOCK_FILE}
    argv = ["pack", str(data), str(store), "--overwrite", "--dtype", "float32"]
    for seed in SEEDS:
        at = int(np.random.default_rng(seed).integers(1, 10))
        assert _run(tmp_path, argv, at=at) in (-9, 0)
        if store.exists():  # the earlier store as it was, or the new one whole
            stored = json.loads((store / "arnet-store.json").read_text())["dtype"]
            if stored == "float16":
                assert {p.name: p.read_bytes() for p in store.iterdir()} == earlier
            train_set, test_set = open_dataset(store)
            assert len(train_set) == 8 and len(test_set) == 6
        else:  # killed between moving the earlier store aside and renaming the new one in
            assert list(tmp_path.glob(".store.old.*.tmp"))
        assert main(argv) == 0  # the next run cleans up and finishes the work
        assert not _hidden_temporaries(tmp_path)
        assert json.loads((store / "arnet-store.json").read_text())["dtype"] == "float32"
        assert main(["pack", str(data), str(store), "--overwrite"]) == 0  # back to float16
        assert {p.name: p.read_bytes() for p in store.iterdir()} == earlier


# ---------------------------------------------------------------------- extract and detect


def _videos(folder: Path) -> Path:
    from helpers import write_video

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, n in enumerate((24, 16)):
        background = rng.integers(40, 90, size=(48, 64, 3), dtype=np.uint8)
        frames = []
        for t in range(n):
            frame = background.copy()
            frame[10:26, (3 * t) % 48 : (3 * t) % 48 + 16] = 255 if i == 0 else 120
            frames.append(frame)
        write_video(folder / f"v{i}.mp4", frames, fps=8)
    return folder


@pytest.fixture
def _plain_cpu_convolutions():
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False  # the native kernels are faster on inputs this small
    yield
    torch.backends.mkldnn.enabled = enabled


@pytest.mark.usefixtures("_plain_cpu_convolutions")
def test_extract_and_detect_killed_anywhere(tmp_path, capsys):
    pytest.importorskip("av")
    videos = _videos(tmp_path / "videos")
    extract = ["extract", str(videos), "--random-init", "--modal", "rgb", "--short-side", "24",
               "--crop-size", "16", "--frames-per-segment", "8", "--quiet"]  # fmt: skip
    reference = tmp_path / "reference"
    assert main([*extract, "--out", str(reference)]) == 0
    features = sorted(p.relative_to(reference) for p in reference.rglob("feature.npy"))
    assert len(features) == 2
    for seed in SEEDS[:1]:
        out = tmp_path / f"extract-{seed}"
        at = int(np.random.default_rng(seed).integers(1, 12))
        code = _run(tmp_path, [*extract, "--out", str(out)], at=at)
        assert code in (-9, 0)
        assert_loadable(out)
        assert main([*extract, "--out", str(out)]) == 0  # resumes: the rest of the videos
        assert not _hidden_temporaries(out)
        for name in features:
            assert np.array_equal(np.load(out / name), np.load(reference / name)), name

    # A detector on those features (zero weights: every score 0.5).
    model = tmp_path / "model.pt"
    _save_detector_checkpoint(model, reference)
    detect = ["detect", *(str(v) for v in sorted(videos.iterdir())), "--checkpoint", str(model),
              "--quiet"]  # fmt: skip
    first = tmp_path / "alerts"
    assert main([*detect, "--out", str(first), "--threshold", "0.3"]) == 0
    earlier = {p.name: p.read_bytes() for p in first.iterdir()}
    for seed in SEEDS[:1]:
        out = tmp_path / f"detect-{seed}"
        at = int(np.random.default_rng(seed).integers(1, 12))
        code = _run(tmp_path, [*detect, "--out", str(out), "--threshold", "0.7"], at=at)
        assert code in (-9, 0)
        assert_loadable(out)
        # A second detect into a folder holding results: refused, the first ones kept.
        assert main([*detect, "--out", str(first), "--threshold", "0.7"]) == 2
        assert "is not empty" in capsys.readouterr().err
        assert {p.name: p.read_bytes() for p in first.iterdir()} == earlier


def _save_detector_checkpoint(path: Path, data: Path) -> None:
    """A checkpoint of the single model on `data`'s rgb features, its weights zero."""
    from arnet.config import TrainConfig
    from arnet.models import create_model, model_spec
    from arnet.training.checkpoint import CHECKPOINT_FORMAT, save_checkpoint

    model = create_model("single", 1024)
    with torch.no_grad():
        for weight in model.parameters():
            weight.zero_()
    config = TrainConfig(data=str(data), feature_modal="rgb", frames_per_segment=8)
    save_checkpoint(
        path,
        {
            "format": CHECKPOINT_FORMAT,
            "model": model_spec(model),
            "state_dict": model.state_dict(),
            "iteration": 1,
            "config": config.to_dict(),
        },
    )


# ---------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path):
    """A 300 KiB file system: a tmpfs where this process may mount one, else skipped."""
    from helpers import mounted_tmpfs

    with mounted_tmpfs(tmp_path / "disk", "300k") as mount:
        yield mount


def test_a_full_disk_is_one_line_and_leaves_nothing_corrupt(data, small_disk, capsys):
    run = small_disk / "run"
    argv = _train_args(data, run)
    argv += ["--model", "single"]  # a 8-d model: a few checkpoints fit, then the disk is full
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * (240 * 1024))
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("arnet ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "no space left on device" in lines[0] and str(run) in lines[0]
    assert_loadable(run)
    if list(run.glob("checkpoints/*.pt")):  # what was saved resumes once there is room again
        ballast.unlink()
        assert main(["train", "--resume", str(run), "--quiet"]) == 0
        assert load_checkpoint(run)["iteration"] == 12
