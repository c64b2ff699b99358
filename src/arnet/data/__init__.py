"""Data in memory: `FeatureDataset` and `Batch` (`dataset.py`), the balanced sampler of training
batches (`sampling.py`) and the reference code's sampling for `--compat reference`
(`reference.py`). Datasets on disk are read by `arnet.formats`."""
