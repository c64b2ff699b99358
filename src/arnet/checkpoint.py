"""Checkpoints: written atomically, read without executing code, and turned back into models.

A checkpoint is a dict saved with torch.save: the `format` marker, the model's registry name
and arguments, its weights, the iteration, the TrainConfig, and (for resuming) the optimiser
and random-generator states.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import write_atomic
from .errors import CheckpointError
from .models import create_model, model_spec

CHECKPOINT_FORMAT = "arnet-checkpoint"
CHECKPOINT_VERSION = 1
_REQUIRED_FIELDS = ("model", "state_dict", "iteration", "config")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write a checkpoint atomically (and synced to disk), so a crash mid-write never leaves a
    truncated checkpoint in place of a good one."""
    return write_atomic(path, lambda f: torch.save(payload, f), fsync=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read an arnet checkpoint without executing code from it (weights-only unpickling).

    Raises:
        CheckpointError: missing, truncated/corrupt, or not an arnet checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an arnet checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    missing = [k for k in _REQUIRED_FIELDS if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    payload["path"] = str(path)
    return payload


def model_from_checkpoint(payload: dict[str, Any], device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the checkpoint's model (its name and arguments are stored in it)."""
    spec = payload["model"]
    try:
        model = create_model(spec["name"], **spec["kwargs"])
        load_weights(model, payload["state_dict"], payload.get("path", "checkpoint"))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{payload.get('path', 'checkpoint')}: cannot rebuild model ({exc})"
        ) from exc
    return model.to(device)


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load weights strictly, with an error that lists missing and unexpected keys."""
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
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from exc
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds no state dict")
    load_weights(model, state, str(path))
