"""Label pickles of the AR-Net layout: loaded without executing code, written atomically.

The reference keeps its labels in pickles; a pickle can run any code when loaded, so this
reader refuses every global beyond what numpy arrays and plain containers are rebuilt from.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from ..atomic import write_atomic
from ..errors import DataError

PICKLE_PROTOCOL = 4
"""Protocol of the pickles written: readable by every Python 3 the reference code runs on."""

# The only globals a ground-truth pickle may reference: what numpy arrays and scalars, and the
# bytes inside them, are rebuilt from. Everything else (os.system, eval, ...) is refused.
_SAFE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, path: Path) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise DataError(
            f"{self._path}: refused to load {module}.{name}: a label pickle may hold only "
            "containers, numbers, strings and numpy arrays"
        )


def load_pickle(path: str | Path) -> Any:
    """Load a pickle without executing code from it.

    Raises:
        DataError: the file is missing, corrupt, or references anything beyond containers,
            numbers, strings and numpy arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with path.open("rb") as f:
            return _RestrictedUnpickler(f, path).load()
    except DataError:
        raise
    except Exception as exc:  # truncated or not a pickle at all
        raise DataError(f"{path}: not a readable pickle ({exc})") from exc


def dump_pickle(path: str | Path, value: Any) -> None:
    """Write `value` to `path` as a pickle, atomically (a reader never sees half a file)."""
    write_atomic(Path(path), lambda f: pickle.dump(value, f, protocol=PICKLE_PROTOCOL))
