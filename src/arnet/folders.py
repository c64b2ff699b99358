"""Folders a command writes into: owned by one process at a time, made fresh without a gap
between checking and creating, and never holding another command's work.

- `claim_folder` locks a folder (an exclusive `flock` on its `.arnet.lock`, which holds the
  owner's PID and command) for as long as a command writes into it, and removes the lock file
  when the command ends. The kernel drops the lock when its process dies, so a lock file left by
  a killed process is taken over (with a message); a live owner makes the claim fail at once,
  naming the process.
- `fresh_folder` creates `PARENT/NAME`, or `NAME-2`, `NAME-3`, ... when that exists, with one
  `mkdir` each: two processes can never both get the same folder.
- `removed_if_left_empty` takes back a fresh folder that a refused command leaves empty, so a
  refusal never leaves an empty run or export folder behind.
- `remove_stale_temporaries` deletes the hidden `.NAME.PID.tmp` files and folders that a killed
  process left beside `NAME` (the writers of `arnet.atomic`, `pack` and `synth` make them).
- `RunFolder` is the one place that spells a training run's files (its checkpoints, config and
  logs): every reader and writer of a run asks it for a path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import FolderError

LOCK_FILE = ".arnet.lock"
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


def notice(message: str) -> None:
    """A message for the person at the terminal (stderr), not part of a command's output."""
    print(message, file=sys.stderr, flush=True)


def process_alive(pid: int) -> bool:
    """Whether process `pid` is running (a zombie, killed but not yet reaped, is not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def process_identity(pid: int | None = None) -> str | None:
    """What tells process `pid` (default: this one) from any other, on this machine or another,
    also from a later process given the same PID: the kernel's boot id, the PID namespace and
    the process's start time, `BOOT/NAMESPACE/START`. None when /proc cannot say (then only
    the PID is known)."""
    pid = os.getpid() if pid is None else pid
    start = _start_time(pid)
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None
    return f"{boot}/{namespace}/{start}" if start else None


def machine_of(identity: str | None) -> str | None:
    """The machine part of a `process_identity` (boot id and PID namespace): two processes
    of one machine part see each other's PIDs."""
    return identity.rpartition("/")[0] if identity else None


def identity_running(pid: int, identity: str | None) -> bool:
    """Whether the process `identity` names (one of this machine, as `process_identity` gave
    it) still runs as `pid`: a later process given the same PID is not it."""
    if not process_alive(pid):
        return False
    start = _start_time(pid)
    return identity is None or start is None or start == identity.rpartition("/")[2]


def _start_time(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, from /proc), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def _holder(fd: int) -> tuple[int, str] | None:
    """(PID, command) written in a lock file, or None when it is empty or unreadable."""
    text = os.pread(fd, 256, 0).decode(errors="replace").strip()
    pid, _, command = text.partition(" ")
    return (int(pid), command or "arnet") if pid.isdigit() else None


@contextlib.contextmanager
def claim_folder(folder: str | Path, command: str) -> Iterator[Path]:
    """Hold `folder` (created if missing) for this process while the block runs; the lock file
    is removed when the block ends, however it ends (a killed process leaves it behind).

    Raises:
        FolderError: another running process holds it (its PID and command are named).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise FolderError(f"{folder}: exists and is not a folder") from None
    lock = folder / LOCK_FILE
    fd = _lock(folder, lock)
    try:
        holder = _holder(fd)
        if holder and holder[0] != os.getpid():
            notice(
                f"{folder}: taking over from process {holder[0]} ({holder[1]}), which stopped "
                "without finishing"
            )
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {command}\n".encode(), 0)
        except OSError as exc:  # a full disk
            exc.filename = exc.filename or str(lock)
            raise
        try:
            yield folder
        finally:
            # Removed while still locked, and only if the name is still this lock's file: a
            # process that opened it meanwhile finds it gone once it gets the lock (`_lock`),
            # and a file made by anyone else under the name is never touched.
            with contextlib.suppress(OSError):
                if _same_file(fd, lock):
                    os.unlink(lock)
    finally:
        os.close(fd)  # releases the lock


def _lock(folder: Path, lock: Path) -> int:
    """An open descriptor of `lock`, exclusively locked by this process.

    The lock file is removed by its holder when done, so the file opened here may have been
    removed (and another one made under its name) before the lock was granted: the lock counts
    only while the name still leads to the locked file, else the claim starts again.
    """
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            held = exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
            holder = _holder(fd) if held else None
            os.close(fd)
            if not held:
                raise
            who = f"process {holder[0]} ({holder[1]})" if holder else "another process"
            raise FolderError(
                f"{folder}: in use by {who}; wait for it to finish or choose another folder"
            ) from None
        if _same_file(fd, lock):
            return fd
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` names the file open as `fd` (False when the name is gone)."""
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def contents(folder: Path) -> list[str]:
    """Names in `folder` other than its lock file (empty for a missing folder)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name != LOCK_FILE)


def require_free(folder: Path) -> None:
    """Refuse a folder that a running process holds (`claim_folder`), naming the process."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY)
    except OSError:  # no lock file: nobody holds it
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        holder = _holder(fd)
        if holder and holder[0] == os.getpid():  # this process holds it (claim_folder)
            return
        who = f"process {holder[0]} ({holder[1]})" if holder else "another process"
        raise FolderError(
            f"{folder}: in use by {who}; wait for it to finish or choose another folder"
        ) from None
    finally:
        os.close(fd)


def require_empty(folder: Path, what: str) -> None:
    """Refuse a folder that holds anything (but its lock file): `what` says what to do."""
    if folder.exists() and not folder.is_dir():
        raise FolderError(f"{folder}: exists and is not a folder")
    if folder.is_dir():
        require_free(folder)
    names = contents(folder)
    if names:
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise FolderError(f"{folder} is not empty (holds {shown}); {what}")


@contextlib.contextmanager
def claim_empty_folder(folder: str | Path, command: str, what: str) -> Iterator[Path]:
    """`claim_folder`, then `require_empty` under the lock: of two commands given the same
    empty folder, the second is refused however their steps interleave."""
    with claim_folder(folder, command) as path:
        require_empty(path, what)
        yield path


def fresh_folder(parent: str | Path, name: str) -> Path:
    """Create and return PARENT/NAME, or the first of NAME-2, NAME-3, ... not taken yet."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = parent / (name if n == 1 else f"{name}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FolderError(f"{parent}: no free folder name {name}-N left")


@contextlib.contextmanager
def removed_if_left_empty(folder: Path) -> Iterator[Path]:
    """Run the block; when it fails and `folder` (made by this command) holds nothing but its
    lock file, remove the folder, so that the refusal leaves nothing behind."""
    try:
        yield folder
    except BaseException:
        if folder.is_dir() and not contents(folder):
            with contextlib.suppress(OSError):  # another process may have written into it
                (folder / LOCK_FILE).unlink(missing_ok=True)
                folder.rmdir()
        raise


def same_or_inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies inside it (symbolic links followed)."""
    path, folder = path.absolute().resolve(), folder.absolute().resolve()
    return path == folder or folder in path.parents


def temporary_name(path: Path) -> Path:
    """The hidden temporary `.NAME.PID.tmp` beside `path` that this process writes first."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def stale_temporaries(folder: Path, names: Iterable[str] | None = None) -> list[Path]:
    """Temporaries in `folder` (of `names` only, when given) whose process is gone."""
    wanted = None if names is None else set(names)
    found = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if not match or (wanted is not None and match["name"] not in wanted):
            continue
        if int(match["pid"]) != os.getpid() and not process_alive(int(match["pid"])):
            found.append(entry)
    return sorted(found)


def remove_stale_temporaries(folder: str | Path, names: Iterable[str] | None = None) -> list[Path]:
    """Delete what `stale_temporaries` finds, saying so; returns what was removed."""
    removed = []
    for path in stale_temporaries(Path(folder), names):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:  # another process cleaned it first
            continue
        notice(f"removed {path}, left by a process that was killed while writing")
        removed.append(path)
    return removed


def remove_stale_temporaries_under(root: str | Path) -> list[Path]:
    """`remove_stale_temporaries` in `root` and every folder below it (one walk)."""
    removed: list[Path] = []
    root = Path(root)
    if not root.is_dir():
        return removed
    for folder, _, _ in os.walk(root):
        removed += remove_stale_temporaries(folder)
    return removed


@dataclass(frozen=True, init=False)
class RunFolder:
    """A training run's folder and the names of what it holds.

    ```
    RUN/config.json                      the TrainConfig the run was trained with
    RUN/log.jsonl, results.jsonl         losses per logged iteration; evaluations per snapshot
    RUN/validation.json[l], selected.json  --val-fraction: held-out figures, the chosen snapshot
    RUN/checkpoints/iter_NNNNNN.pt       one per snapshot; last.pt the newest; selected.pt chosen
    RUN/tensorboard/                     --tensorboard
    ```
    """

    path: Path

    CHECKPOINTS = "checkpoints"
    LAST = "last.pt"
    SELECTED = "selected.pt"
    CONFIG = "config.json"
    LOSSES = "log.jsonl"
    RESULTS = "results.jsonl"
    VALIDATION = "validation.json"
    VALIDATION_LOG = "validation.jsonl"
    SELECTION = "selected.json"
    TENSORBOARD = "tensorboard"
    # the JSON-lines logs a resumed run cuts back to its checkpoint's iteration
    LOGS = (LOSSES, RESULTS, VALIDATION_LOG)
    # what marks a folder as a run (or an evaluation) for the dashboard
    MARKERS = ("metrics.json", RESULTS, CONFIG)

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> RunFolder | None:
        """The run holding `checkpoint` (RUN/checkpoints/*.pt), the folder itself when given
        a folder, or None for a loose checkpoint file."""
        checkpoint = Path(checkpoint)
        if checkpoint.is_dir():
            return cls(checkpoint)
        if checkpoint.parent.name == cls.CHECKPOINTS:
            return cls(checkpoint.parent.parent)
        return None

    @property
    def checkpoints(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def last(self) -> Path:
        return self.checkpoints / self.LAST

    @property
    def selected(self) -> Path:
        """The snapshot chosen on held-out training videos (`--val-fraction`)."""
        return self.checkpoints / self.SELECTED

    @staticmethod
    def snapshot_name(iteration: int) -> str:
        return f"iter_{iteration:06d}.pt"

    def snapshot(self, iteration: int) -> Path:
        return self.checkpoints / self.snapshot_name(iteration)

    def snapshots(self) -> list[Path]:
        """The run's iter_*.pt snapshots, oldest first."""
        return sorted(self.checkpoints.glob("iter_*.pt"))

    def resume_checkpoint(self) -> Path:
        """The checkpoint a run continues from: last.pt, or the newest iter_*.pt when last.pt is
        missing (a disk that filled while it was being written)."""
        if self.last.is_file():
            return self.last
        snapshots = self.snapshots()
        return snapshots[-1] if snapshots else self.last

    def file(self, name: str) -> Path:
        """`RUN/name`, for one of the names above."""
        return self.path / name
