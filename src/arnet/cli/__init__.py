"""The `arnet` command line (console script `arnet = arnet.cli:main`).

- `options`: every option of every command, TrainConfig options from the config's fields;
- `main`: the commands, the parser and the error policy (one line, exit status 2);
- `common`: turning options into a TrainConfig and a dataset, printing results;
- `data` (synth, inspect, pack), `training` (train, test, demo, models) and `video` (extract,
  detect): the commands themselves, each imported only when it runs.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
