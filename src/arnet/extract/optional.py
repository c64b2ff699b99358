"""Optional libraries of the `extract` extra, imported where they are used.

`import arnet.extract` works without them; the first use says which package to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import MissingExtraError

EXTRA_HINT = 'pip install "arnet-vad[extract]"'


def require(module: str, purpose: str) -> ModuleType:
    """Import an optional module, or raise MissingExtraError naming the extra to install.

    Args:
        module: the module to import (e.g. "av", "cv2").
        purpose: what needs it, for the message (e.g. "decoding video").
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs the {module!r} module, which is not installed: {EXTRA_HINT}"
        ) from exc
