"""How a model runs on this machine: device, precision, compilation, optimiser kernel, allocator;
and how a run meets the machine's limits: a batch too big for its memory, Ctrl-C.

Everything here changes speed, never what is learned (up to float rounding): tests compare
each fast path with the plain one (tests/test_speed_paths.py); benchmarks/speed.py measures.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..config import TrainConfig
from ..data.dataset import FeatureDataset
from ..errors import Stopped


def resolve_device(spec: str = "auto", local_rank: int | None = None) -> torch.device:
    """`auto` -> CUDA when present (cuda:LOCAL_RANK under torchrun), else the CPU; otherwise
    the named device (cpu, cuda, cuda:1).

    Raises:
        ValueError: a CUDA device is asked for where CUDA is not available.
    """
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank or 0)
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} was asked for, but CUDA is not available here")
    return device


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Keep memory that tensors free in the process heap, for the next step to reuse.

    A CPU training step frees and re-allocates tensors of hundreds of megabytes (rows x D
    floats). glibc serves blocks that large with mmap and unmaps them on free, so every step
    the kernel maps them again and zero-fills each page on first touch: about a tenth of a
    step of `single` at the paper's settings (benchmarks/speed.py). With malloc's mmap off and
    its trim threshold at 2 GiB, freed blocks are reused instead; the price is that the
    process's resident memory stays at its peak rather than shrinking between steps.

    Returns:
        Whether the setting was applied (Linux with glibc); elsewhere this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
        )
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def _as_float32(out: Any) -> Any:
    """Floating tensors of a model's output (a tensor, tuple, list or dataclass) as float32."""
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, (tuple, list)):
        return type(out)(_as_float32(o) for o in out)
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        return dataclasses.replace(
            out, **{f.name: _as_float32(getattr(out, f.name)) for f in dataclasses.fields(out)}
        )
    return out


class MixedPrecision(nn.Module):
    """Runs a model under autocast and hands its outputs back in float32.

    Only the model's arithmetic runs in the lower precision: the weights, the optimiser and the
    losses stay float32 (CUDA's autocast refuses binary cross-entropy, and float32 losses and
    scores keep the metrics exact). Methods of the model other than forward (BaS-Net's
    `branches`) are wrapped alike.

    Args:
        model: the model (its parameters are shared, not copied).
        device_type: "cpu" or "cuda".
        dtype: torch.bfloat16 or torch.float16.
    """

    def __init__(self, model: nn.Module, device_type: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.device_type = device_type
        self.dtype = dtype

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        with torch.autocast(self.device_type, dtype=self.dtype):
            out = fn(*args)
        return _as_float32(out)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> Any:
        return self._run(self.model, features, mask)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            attr = getattr(self.model, name)
            if callable(attr) and not isinstance(attr, nn.Module):
                return lambda *args: self._run(attr, *args)
            return attr


def prepare_model(
    model: nn.Module, device: torch.device, precision: str = "fp32", compile: bool = False
) -> nn.Module:
    """What training and scoring call: `model`, compiled and/or under autocast.

    The parameters stay `model`'s own, so the optimiser and checkpoints keep using `model`.

    Args:
        model: a registry model on `device`.
        device: where it runs.
        precision: "fp32", "bf16" (autocast; CPU or CUDA) or "fp16" (autocast; CUDA only).
        compile: wrap the model in torch.compile (dynamic shapes: batch lengths vary).

    Raises:
        ValueError: an unknown precision, or fp16 on a CPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            "precision fp16 needs CUDA: float16 matrix products on a CPU are slower than "
            "float32 (measured 4x); use bf16 there"
        )
    run: nn.Module = torch.compile(model, dynamic=True) if compile else model  # type: ignore[assignment]
    dtype = PRECISIONS[precision]
    if dtype is not None:
        run = MixedPrecision(run, device.type, dtype)
    return run


def make_adam(
    model: nn.Module, lr: float, weight_decay: float, fused: bool = True
) -> torch.optim.Adam:
    """Adam over the model's parameters, fused where torch has the fused kernel (CPU, CUDA).

    The fused update is one pass over each parameter instead of a dozen: measured on a CPU,
    1.4 ms instead of 21 ms per step for `single`'s 4.2M parameters, up to float rounding the
    same update (tests compare them). On CUDA it also takes fp16 loss scaling without a host
    synchronisation. `fused=False` takes torch's default (per-parameter) update, the
    reference code's.
    """
    params = list(model.parameters())
    if not fused:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except RuntimeError:  # a device or dtype without the fused kernel
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@contextlib.contextmanager
def interrupt_between_steps() -> Iterator[Callable[[], int]]:
    """Defer Ctrl-C (SIGINT) and SIGTERM to the next step boundary, so that the state saved on
    interruption is one an uninterrupted run passes through (resume is then exact); a second
    one stops at once (`errors.Stopped`). Yields a function that tells which signal came first
    (0: none yet). Outside the main thread, where signal handlers cannot be set, and for a
    signal that is ignored (SIGINT under nohup or in a background job), it is left as it is."""
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if received:
            raise Stopped(signum)
        received.append(signum)
        again = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        tqdm.write(  # for the person at the terminal: stderr, beside the progress bar
            f"{signal.Signals(signum).name}: stopping after this step ({again} again to stop now)",
            file=sys.stderr,
        )

    if threading.current_thread() is not threading.main_thread():
        yield lambda: 0
        return
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield lambda: received[0] if received else 0
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def require_batch_fits(config: TrainConfig, train_set: FeatureDataset) -> None:
    """Refuse a batch shape that cannot fit in this machine's memory, naming the options, before
    anything is allocated (numpy's own error names neither)."""
    videos = config.draws_per_step * config.videos_per_class * 2
    per_segment = 8 * 2 + 4 * max(train_set.dim, 1)  # sampling draws and positions, features
    need = videos * max(config.max_segments, 1) * per_segment
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return
    if need > memory:
        raise ValueError(
            f"config field 'max_segments' (--max-seqlen) is {config.max_segments}: a batch of "
            f"{videos} videos of that many segments needs {need / 2**30:,.0f} GiB, this machine "
            f"has {memory / 2**30:,.0f} GiB; lower --max-seqlen (or --videos-per-class, "
            "--draws-per-step)"
        )
