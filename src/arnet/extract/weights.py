"""Reading local weight files: their SHA-256 and their tensors, never code.

Used by every backbone that loads a file and by `arnet detect`, which checks a weight file
against the SHA-256 an extraction recorded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..errors import ExtractError
from ..training.checkpoint import read_torch_file


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_weight_file(path: Path, what: str) -> dict[str, torch.Tensor]:
    """A state dict of tensors from a local weight file, loaded without executing code.

    Accepts a bare state dict or one under a "state_dict" key, and drops the "module." prefix
    that DataParallel adds.

    Raises:
        ExtractError: naming the file, when it is missing, unreadable or holds no tensors.
    """
    if not path.is_file():
        raise ExtractError(f"{path}: {what} weight file not found")
    state = read_torch_file(path, f"{what} weight file", ExtractError)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExtractError(f"{path}: holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}
