"""Checkpoints: written atomically, read without executing code, and turned back into models.

A checkpoint is a dict saved with torch.save: the `format` marker, the model's registry name
and arguments, its weights, the iteration, the TrainConfig, and (for resuming) the optimiser
and random-generator states. A run trained with `--val-fraction` adds `validation` (what the
held-out videos said of these weights, their alert threshold included) and `selected` (the best
snapshot so far, its weights included, so that a resumed run keeps its choice); its selected
snapshot is `checkpoints/selected.pt` (arnet.training.validation). A run trained on features
with an extraction record carries a copy of it (`extraction`), so that detection, export and
live watching need nothing but the checkpoint (runs saved before read the dataset's record).

`load_checkpoint` returns a `Checkpoint`: the saved fields (a read-only mapping) and their
parsed owners: `.config` (a TrainConfig, parsed once), `.run_folder`, `.threshold`,
`.extraction`, `.model()`.
"""

from __future__ import annotations

import pickle
import re
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import write_atomic
from ..config import TrainConfig, saved_paths
from ..errors import CheckpointError
from ..folders import RunFolder
from ..formats.extraction import ExtractionRecord
from ..models import create_model, model_spec
from ..models.cells import instances_model
from ..versions import refuse_newer

CHECKPOINT_FORMAT = "arnet-checkpoint"
CHECKPOINT_VERSION = 1
_REQUIRED_FIELDS = ("model", "state_dict", "iteration", "config")
# The snapshot chosen on held-out training videos (`--val-fraction`), beside last.pt.
SELECTED_CHECKPOINT = RunFolder.SELECTED


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write a checkpoint atomically (and synced to disk), so a crash mid-write never leaves a
    truncated checkpoint in place of a good one."""
    return write_atomic(path, lambda f: torch.save(payload, f), fsync=True)


def verify_archive(
    path: str | Path, error: type[Exception] = CheckpointError, what: str = "checkpoint"
) -> None:
    """Check every member of a torch zip archive against its CRC-32 before it is unpickled:
    `torch.load` does not, so bytes damaged after writing would load as other weights.

    A file that is not a zip archive (torch's legacy format, or not a checkpoint at all) is
    left to `torch.load`, which says what it is.

    Raises:
        `error`: naming the file and the first damaged member.
    """
    path = Path(path)
    bad, problem = None, ""
    try:
        with path.open("rb") as f:
            head = f.read(4)
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()  # reads every member once; CRC-32 runs at memory speed
        elif not head:
            problem = f"not a readable {what} (the file is empty)"
        elif head.startswith(b"PK\x03\x04"):
            problem = "damaged file: a truncated zip archive (no end record)"
        elif not head.startswith(b"\x80"):  # torch's legacy format is a pickle
            problem = f"not a readable {what} (not a PyTorch file: it starts with {head!r})"
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        problem = f"damaged file: its archive is inconsistent ({exc})"
    if problem:
        raise error(f"{path}: {problem}")
    if bad is not None:
        raise error(
            f"{path}: damaged file: member {bad!r} fails its CRC-32 check (the bytes changed "
            "after it was written)"
        )


_BLOCKED = re.compile(r"GLOBAL\s+([\w.]+)")  # torch names the global it refused


def read_torch_file(
    path: str | Path,
    what: str = "checkpoint",
    error: type[Exception] = CheckpointError,
    map_location: str | torch.device = "cpu",
) -> Any:
    """Load a torch file without executing code from it, after `verify_archive`.

    Every failure is one line naming the file: damaged bytes, a file holding code or objects
    other than tensors and plain values (refused, never run), or not a torch file at all.
    """
    path = Path(path)
    verify_archive(path, error, what)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        blocked = _BLOCKED.search(text)
        if blocked is not None:
            raise error(
                f"{path}: refused: the {what} holds code ({blocked.group(1)}), which arnet "
                "never runs"
            ) from None
        raise error(f"{path}: not a readable {what} ({_first_reason(text)})") from None
    except Exception as exc:
        raise error(
            f"{path}: not a readable {what} ({type(exc).__name__}: {_first_reason(str(exc))})"
        ) from None


def _first_reason(text: str) -> str:
    """The informative line of torch's several-line unpickling message."""
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:200] if lines else "unknown error"


class Checkpoint(Mapping[str, Any]):
    """A checkpoint read by `load_checkpoint`: its saved fields, as a read-only mapping
    (`checkpoint["state_dict"]`), and what they mean, parsed once.

    Attributes:
        path: the file it was read from.
        config: the run's TrainConfig (relative paths resolved from the run folder).
        run_folder: the run holding it (None for a loose checkpoint file).
    """

    def __init__(self, path: Path, payload: dict[str, Any], config: TrainConfig) -> None:
        self.path = path
        self._payload = payload
        self.config = config
        self.run_folder = RunFolder.of_checkpoint(path)

    def __getitem__(self, key: str) -> Any:
        return self._payload[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._payload)

    def __len__(self) -> int:
        return len(self._payload)

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r}, iteration={self.iteration})"

    @property
    def iteration(self) -> int:
        return int(self._payload["iteration"])

    @property
    def threshold(self) -> float:
        """The alert threshold its model goes with (`checkpoint_threshold`)."""
        return checkpoint_threshold(self)

    @cached_property
    def extraction(self) -> ExtractionRecord | None:
        """How its training features were extracted: the record copied into it at training
        time, else (runs saved before) the training dataset's own record when it is reachable;
        None when there is neither."""
        carried = self._payload.get("extraction")
        if isinstance(carried, dict):
            return ExtractionRecord(carried)
        if not self.config.data:
            return None
        try:
            return ExtractionRecord.of_dataset(self.config.data, self.config.feature_backbone)
        except OSError:
            return None

    def model(self, device: str | torch.device = "cpu") -> nn.Module:
        """Its model with its weights (`model_from_checkpoint`)."""
        return model_from_checkpoint(self, device)


def training_extraction(config: TrainConfig) -> dict[str, Any] | None:
    """The extraction record of a run's training features, as the copy its checkpoints carry
    (None when the features have none).

    Raises:
        DataError: the record is unreadable, naming it.
    """
    if not config.data:
        return None
    record = ExtractionRecord.of_dataset(config.data, config.feature_backbone)
    return None if record is None else record.carried()


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", *, resume: bool = False
) -> Checkpoint:
    """Read an arnet checkpoint without executing code from it (weights-only unpickling),
    after checking its bytes (`verify_archive`) and the types of its fields.

    A run folder stands for its selected snapshot (`checkpoints/selected.pt`, written by
    `--val-fraction`) when it has one, else for its last; with `resume`, always for the
    checkpoint a run continues from (`RunFolder.resume_checkpoint`). Relative paths in its
    config (runs saved before paths were stored absolute) are resolved from the run folder
    (`config.saved_paths`).

    Raises:
        CheckpointError: missing, damaged, holding code, not an arnet checkpoint, or a field
            of the wrong type; naming the file.
    """
    path = Path(path)
    if path.is_dir():
        run = RunFolder(path)
        path = run.selected if run.selected.is_file() and not resume else run.resume_checkpoint()
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    payload = read_torch_file(path, "checkpoint", CheckpointError, map_location)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an arnet checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    refuse_newer(path, "checkpoint", payload, CHECKPOINT_VERSION, CheckpointError)
    missing = [k for k in _REQUIRED_FIELDS if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    folder = RunFolder.of_checkpoint(path)
    config = _check_fields(path, payload, folder.path if folder is not None else path.parent)
    payload["config"] = config.to_dict()
    payload["path"] = str(path)
    return Checkpoint(path, payload, config)


def _check_fields(path: Path, payload: dict[str, Any], run: Path) -> TrainConfig:
    """The checkpoint's fields have the types the code reading them relies on; returns its
    config, its relative paths resolved from `run`."""
    spec = payload["model"]
    if not (
        isinstance(spec, dict)
        and isinstance(spec.get("name"), str)
        and isinstance(spec.get("kwargs"), dict)
    ):
        raise CheckpointError(f"{path}: field 'model' is not a {{name, kwargs}} dict")
    config = payload["config"]
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        raise CheckpointError(
            f"{path}: field 'config' is a {type(config).__name__}, not a dict of settings"
        )
    try:  # every command reading it trusts this config
        parsed = TrainConfig.from_dict(saved_paths(config, run))
        parsed.validate()
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: field 'config' is not a usable training config ({exc})"
        ) from None
    extraction = payload.get("extraction")
    if extraction is not None and not (
        isinstance(extraction, dict) and all(isinstance(k, str) for k in extraction)
    ):
        raise CheckpointError(
            f"{path}: field 'extraction' is a {type(extraction).__name__}, not an extraction "
            "record (a dict)"
        )
    validation = payload.get("validation")
    if validation is not None:
        if not isinstance(validation, dict):
            raise CheckpointError(f"{path}: field 'validation' is not a dict")
        threshold = validation.get("threshold")
        if not isinstance(threshold, float) or not 0.0 <= threshold <= 1.0:
            raise CheckpointError(
                f"{path}: field 'validation' holds threshold {threshold!r}, not a number in [0, 1]"
            )
    iteration = payload["iteration"]
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
        raise CheckpointError(f"{path}: field 'iteration' is {iteration!r}, not a count")
    check_state_dict(payload["state_dict"], str(path))
    return parsed


def check_state_dict(state: Any, source: str) -> None:
    """A dict of name -> tensor whose floating-point values are all finite.

    Raises:
        CheckpointError: naming `source` and the first tensor that is not.
    """
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: weights are a {type(state).__name__}, not a dict")
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{source}: weight {name!r} is a {type(value).__name__}, not a tensor"
            )
        if (value.is_floating_point() or value.is_complex()) and not bool(
            torch.isfinite(value).all()
        ):
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(
                f"{source}: weight {name!r} holds {bad} NaN/Inf value(s) of {value.numel()}: "
                "the checkpoint is damaged or came from a diverged run"
            )


def checkpoint_threshold(payload: Mapping[str, Any]) -> float:
    """The alert threshold a checkpoint's model goes with: the one chosen on its run's held-out
    videos (`--val-fraction`) when it has one, else its config's `threshold`."""
    validation = payload.get("validation")
    if validation is not None:
        return float(validation["threshold"])
    return float(payload["config"].get("threshold", 0.5))


def model_from_checkpoint(
    payload: Mapping[str, Any], device: str | torch.device = "cpu"
) -> nn.Module:
    """Rebuild the checkpoint's model (its name and arguments are stored in it); a run that
    scored cells (config `instances`) gets it back inside its `CellInstances`."""
    spec = payload["model"]
    try:
        model = create_model(spec["name"], **spec["kwargs"])
        load_weights(model, payload["state_dict"], payload.get("path", "checkpoint"))
        config = (
            payload.config
            if isinstance(payload, Checkpoint)
            else TrainConfig.from_dict(payload["config"])
        )
        model = instances_model(model, config)
    except (KeyError, TypeError, ValueError, RuntimeError, MemoryError) as exc:
        # RuntimeError, MemoryError: arguments (a huge feature_dim) that cannot be allocated
        if isinstance(exc, CheckpointError):
            raise
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"{payload.get('path', 'checkpoint')}: cannot rebuild model ({reason})"
        ) from None
    return model.to(device)


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load weights strictly, with an error that lists missing and unexpected keys; NaN or
    Inf weights are refused (`check_state_dict`)."""
    check_state_dict(state_dict, source)
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as exc:  # tensors of the wrong shape
        raise CheckpointError(
            f"{source}: weights do not fit model {model_spec(model)['name']!r}: {exc}"
        ) from exc
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{source}: weights do not fit model {model_spec(model)['name']!r}: "
            f"missing {result.missing_keys}, unexpected {result.unexpected_keys}"
        )


def load_pretrained(model: nn.Module, path: str | Path) -> None:
    """Initialise `model` from an arnet checkpoint or a bare state dict (the reference's .pkl)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: pretrained checkpoint not found")
    payload = read_torch_file(path, "pretrained checkpoint")
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds no state dict")
    load_weights(model, state, str(path))
