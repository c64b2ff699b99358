"""Learning: the loop (`trainer.py`), checkpoints (`checkpoint.py`), a run folder's logs
(`runlog.py`), device and precision (`runtime.py`), the one-go fit of models trained without
gradients (`bank.py`), held-out training videos (`validation.py`) and one run per seed
(`sweep.py`)."""
