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

# Importing a backbone module registers its backbones; this order is the order
# `list_backbones()` returns them.
# isort: off
from . import i3d, image, motion  # noqa: F401
# isort: on

from .backbones import (
    Backbone,
    ModuleBackbone,
    create_backbone,
    list_backbones,
    register_backbone,
)
from .dataset import extract_dataset
from .optional import require
from .pipeline import ExtractConfig, FeatureExtractor, VideoFeatures
from .preprocess import Preprocessing
from .video import VideoInput, find_inputs

__all__ = [
    "Backbone",
    "ExtractConfig",
    "FeatureExtractor",
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
