"""arnet: weakly supervised video anomaly detection (AR-Net, ICME 2020, and beyond).

The public API, loaded on first use (so that `import arnet` and `arnet --help` load no torch):

```python
import arnet

train_set, test_set = arnet.open_dataset("data/shanghaitech")
result = arnet.train(arnet.TrainConfig(data="data/shanghaitech", iterations=1200), "runs/a")
detector, _ = arnet.load_detector("runs/a")          # scores and alerts for any video
model = arnet.create_model("single", 2048)           # arnet.list_models() lists them
```
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> the module that defines it
_API = {
    # settings and errors
    "TrainConfig": "arnet.config",
    "DataError": "arnet.errors",
    "ExtractError": "arnet.errors",
    "ExportError": "arnet.errors",
    "CheckpointError": "arnet.errors",
    "TrainingError": "arnet.errors",
    "FolderError": "arnet.errors",
    "MissingExtraError": "arnet.errors",
    # data
    "FeatureDataset": "arnet.data.dataset",
    "Batch": "arnet.data.dataset",
    "open_dataset": "arnet.formats",
    "list_formats": "arnet.formats",
    "register_format": "arnet.formats",
    "ExtractionRecord": "arnet.formats.extraction",
    "SynthConfig": "arnet.formats.synth",
    "write_synthetic": "arnet.formats.synth",
    # models and objectives
    "ScoringModel": "arnet.models",
    "create_model": "arnet.models",
    "list_models": "arnet.models",
    "model_entry": "arnet.models",
    "register_model": "arnet.models",
    "register_objective": "arnet.models",
    "list_objectives": "arnet.models",
    "build_objective": "arnet.models",
    # measuring
    "score_arrays": "arnet.evaluation.scoring",
    "predict": "arnet.evaluation.scoring",
    "evaluate": "arnet.evaluation.evaluate",
    "evaluate_model": "arnet.evaluation.evaluate",
    "Metrics": "arnet.evaluation.metrics",
    # training
    "Trainer": "arnet.training.trainer",
    "train": "arnet.training.trainer",
    "Checkpoint": "arnet.training.checkpoint",
    "RunFolder": "arnet.folders",
    "load_checkpoint": "arnet.training.checkpoint",
    "model_from_checkpoint": "arnet.training.checkpoint",
    # video and deployment
    "create_backbone": "arnet.extract",
    "load_detector": "arnet.detection.detector",
    "export_run": "arnet.detection.export",
    "load_exported": "arnet.detection.export",
    # live
    "open_store": "arnet.store",
}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'arnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
