"""Measuring: the scoring core (`scoring.py`), the field's metrics (`metrics.py`), evaluation
of a model on a test set with its files (`evaluate.py`), plots and the HTML report."""
