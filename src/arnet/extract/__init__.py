"""From raw video to segment features: decoding, preprocessing, optical flow and backbones.

```
video file or frame folder --decode (PyAV / OpenCV)--> RGB frames (H, W, 3) uint8
  --resize short side, crop--> clips (N, C, 16, h, w) in [-1, 1]   (C = 3 rgb, 2 flow)
  --Backbone--> one vector per 16-frame segment --> features (T, D) in the AR-Net layout
```

The video libraries are the `extract` extra (`pip install "arnet-vad[extract]"`); they are
imported where they are used, so `import arnet.extract` works without them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..data import DataError

EXTRA_HINT = 'pip install "arnet-vad[extract]"'


class ExtractError(DataError):
    """A video, frame folder, weight file or extraction setting cannot be used; names it."""


class MissingExtraError(ImportError, ValueError):
    """An optional library of the `extract` extra is not installed (the message says which)."""


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


from .backbones import (  # noqa: E402  (the error classes above are imported by these modules)
    Backbone,
    ModuleBackbone,
    create_backbone,
    list_backbones,
    register_backbone,
)
from . import motion  # noqa: E402, F401  (registers the motion-grid backbone)
from .pipeline import ExtractConfig, FeatureExtractor, VideoFeatures, extract_dataset  # noqa: E402
from .preprocess import Preprocessing  # noqa: E402
from .video import VideoInput, find_inputs  # noqa: E402

__all__ = [
    "Backbone",
    "ExtractConfig",
    "ExtractError",
    "FeatureExtractor",
    "MissingExtraError",
    "ModuleBackbone",
    "Preprocessing",
    "VideoFeatures",
    "VideoInput",
    "create_backbone",
    "extract_dataset",
    "find_inputs",
    "list_backbones",
    "register_backbone",
    "require",
]
