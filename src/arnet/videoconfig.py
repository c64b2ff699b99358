"""The video pipeline's choices and defaults: preprocessing, optical flow, frame backbones and
their runtimes, and the names of the backbones arnet ships.

Standard library only, so that `arnet extract`, `detect` and `watch` show their options and
`--help` without loading torch, OpenCV or a runtime. The extract modules take these values from
here; the first value of each choice is its default. `tests/test_cli.py` checks the backbone
names against the registry and these defaults against the extract modules'.
"""

from __future__ import annotations

BACKBONES = ("i3d", "efficientnet-lite0", "motion-grid")
"""The backbones the extract modules register, in registry order (`list_backbones()` starts
with them; a plug-in's come after)."""
DEFAULT_BACKBONE = "i3d"

CROP_MODES = ("center", "ten", "full")
TAIL_POLICIES = ("drop", "pad")
SHORT_SIDE = 256
"""The short side frames are resized to (the field's I3D preprocessing)."""
CROP_SIZE = 224

FLOW_METHODS = ("tvl1", "dis", "farneback")
"""Optical flow methods: TV-L1 (the field's I3D flow features), DIS, Farneback."""
FLOW_BOUND = 20.0

POOLS = ("mean", "mean_std", "mean_diff")
"""2D backbones: how a segment's frame features are pooled."""
SPATIAL = ("mean", "max")
"""2D backbones: how a frame's feature map is pooled over space."""
MOTION_GRID = (8, 12)
"""motion-grid's cells (rows, columns) unless --grid says otherwise."""

RUNTIMES = ("torch", "onnxruntime", "openvino")
# Inference precision of a runtime. OpenVINO's CPU plugin picks bfloat16 by itself on CPUs with
# AVX-512 BF16 or AMX (features then move by up to 0.6 against PyTorch's), so the precision is
# always set, f32 unless asked, and recorded with the features.
PRECISIONS = ("f32", "bf16")

# Frame folders carry no frame rate; 25 fps (PAL, CUHK Avenue) is a common rate of surveillance
# footage. It only affects reported times; `--fps` gives the true one.
DEFAULT_FOLDER_FPS = 25.0
