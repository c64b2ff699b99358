"""Feature arrays read lazily: one file mapped only while read, per-crop files seen as one.

Both support what the data path uses: `shape`, `ndim`, `dtype`, `len()`, `x[rows]`,
`x[rows, crop]` and `np.asarray(x)`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import DataError

# ---------------------------------------------------------------------- crops as one array


class CropStack:
    """Per-crop (T, D) arrays seen as one (T, C, D) array, without copying them.

    Per-crop layouts keep each crop of a video in its own file. Stacking them would read every
    file into memory; this view reads only the rows asked for. It supports what the data path
    uses: `shape`, `ndim`, `dtype`, `len()`, `x[rows]`, `x[rows, crop]` and `np.asarray(x)`.
    """

    def __init__(self, crops: Sequence[np.ndarray]) -> None:
        self.crops = list(crops)
        length, dim = self.crops[0].shape
        self.shape = (length, len(self.crops), dim)
        self.ndim = 3
        self.dtype = self.crops[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple) and len(key) == 2 and isinstance(key[1], (int, np.integer)):
            return np.asarray(self.crops[int(key[1])][key[0]])
        if isinstance(key, tuple):
            return np.asarray(self)[key]
        parts = [np.asarray(c[key]) for c in self.crops]
        return np.stack(parts, axis=parts[0].ndim - 1)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.stack([np.asarray(c) for c in self.crops], axis=1)
        return out if dtype is None else out.astype(dtype, copy=False)


# ---------------------------------------------------------------------- feature files


def _map_budget() -> int:
    """A quarter of the open files the process may have, within [16, 4096]."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # no `resource` on Windows
        return 256
    return 4096 if soft == resource.RLIM_INFINITY else max(16, min(4096, soft // 4))


MAX_MAPPED = _map_budget()
"""Feature files kept memory-mapped at a time, over all `NpyFile`s (each map holds a file open)."""
_mapped: OrderedDict[NpyFile, np.memmap] = OrderedDict()
_mapped_lock = threading.Lock()


class NpyFile:
    """A `.npy` feature file, read lazily, without holding the file open between reads.

    A memory map keeps its file open, so mapping every video's file when a catalog is opened
    takes one file descriptor per video: the per-crop folders of UCF-Crime or XD-Violence
    exceed the usual limit of 1024. An NpyFile keeps the header (shape, dtype, where the data
    starts) and maps the file when read, through a cache of the `MAX_MAPPED` most recently
    read files; reads return copies, so no map outlives its place in the cache. Mapping a file
    again costs about 0.1 ms: a dataset of many more files than that trains faster packed
    (`arnet pack`) or in memory. It supports what `CropStack` does.
    """

    def __init__(self, path: Path, mapped: np.memmap) -> None:
        self.path = path
        self.shape = mapped.shape
        self.ndim = mapped.ndim
        self.dtype = mapped.dtype
        self._offset = mapped.offset
        self._order: Literal["C", "F"] = "C" if mapped.flags.c_contiguous else "F"

    def __len__(self) -> int:
        return self.shape[0]

    def _map(self) -> np.memmap:
        with _mapped_lock:
            mapped = _mapped.pop(self, None)
            if mapped is None:
                try:
                    mapped = np.memmap(
                        self.path, self.dtype, "r", self._offset, self.shape, self._order
                    )
                except (OSError, ValueError) as exc:
                    raise DataError(f"{self.path}: cannot read features ({exc})") from exc
            _mapped[self] = mapped
            while len(_mapped) > MAX_MAPPED:
                _mapped.popitem(last=False)
        return mapped

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.array(self._map()[key])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.array(self._map(), dtype=dtype)
