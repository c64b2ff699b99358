"""A run folder's files besides its checkpoints (`trainer`): the JSON-lines logs, TensorBoard
scalars, and the folder checks and log truncation done before a run starts or resumes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import write_atomic
from ..errors import TrainingError
from ..folders import RunFolder, remove_stale_temporaries, require_empty


class RunLog:
    """JSON-lines logs, plus TensorBoard scalars when TensorBoard is installed."""

    def __init__(self, out_dir: Path, tensorboard: bool) -> None:
        self.out_dir = out_dir
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # the [tensorboard] extra is optional
                pass
            else:
                self.writer = SummaryWriter(str(out_dir / RunFolder.TENSORBOARD))

    def append(self, file: str, record: dict[str, Any]) -> None:
        path = self.out_dir / file
        try:
            with path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:  # a full disk: name the file
            if exc.filename is None and exc.errno is not None:
                exc.filename = str(path)
            raise
        if self.writer is not None:
            step = record["iteration"]
            for key, value in record.items():
                if key != "iteration" and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{file.split('.')[0]}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def prepare_run_folder(out: Path, resumed_from: Path | None, iteration: int) -> None:
    """Check the run folder is this run's to write, and cut its logs back to the
    checkpoint (a killed run may have logged past its last snapshot)."""
    last_path = RunFolder(out).last
    source = _run_folder_of(resumed_from) if resumed_from else None
    if resumed_from is None:
        if last_path.exists():
            raise TrainingError(
                f"{out} already holds a run ({last_path}); resume it from that "
                "checkpoint or choose another run folder"
            )
        require_empty(out, "train into a new or empty folder, or resume a run with --resume")
    elif source is None or source != out.absolute().resolve():
        require_empty(
            out,
            f"a run resumed from {resumed_from} continues in its own folder, or in "
            "a new or empty one as a copy",
        )
    remove_stale_temporaries(out)
    remove_stale_temporaries(RunFolder(out).checkpoints)
    if resumed_from is not None:
        for name in RunFolder.LOGS:
            origin = (source or out) / name
            if origin.is_file() or (out / name).is_file():
                truncate_log(out / name, iteration, origin)


def _run_folder_of(checkpoint: Path) -> Path | None:
    """The run folder holding `checkpoint` (RUN/checkpoints/*.pt), or None for a loose file."""
    run = RunFolder.of_checkpoint(checkpoint.resolve())
    return None if run is None else run.path


def truncate_log(path: Path, iteration: int, source: Path | None = None) -> None:
    """Rewrite the JSON-lines log `path` (from `source`, default itself) keeping the records of
    iterations up to `iteration` in increasing order: no line logged after the checkpoint, no
    iteration twice, no half-written last line of a killed run."""
    source = source or path
    kept: list[str] = []
    last = 0
    for line, record in _records(source):
        it = record["iteration"]
        if last < it <= iteration:
            kept.append(line)
            last = it
    text = "".join(line + "\n" for line in kept).encode()
    write_atomic(path, lambda f: f.write(text))


def last_record(path: Path) -> dict[str, Any] | None:
    """The last readable record of a JSON-lines log (None: none, or no log)."""
    records = [record for _, record in _records(path)]
    return records[-1] if records else None


def _records(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(line, record) of every line of a JSON-lines log that holds a record of an iteration."""
    lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
    found = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and type(record.get("iteration")) is int:
            found.append((line, record))
    return found
