"""Detection on any video: a checkpoint's detector with its extractor (`detector.py`), the alert
rule (`alerts.py`), heat maps of where an alert is (`heatmaps.py`), and a run exported as ONNX
or TorchScript files with their loader (`export.py`)."""
