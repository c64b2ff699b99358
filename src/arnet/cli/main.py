"""The `arnet` command: its commands, the parser that knows them, and the error policy.

A command's options are defined (arnet.cli.options) and its module imported only when that
command runs or shows its help; `arnet --help` and `arnet --version` load no torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .. import __version__
from ..errors import CheckpointError, DataError, TrainingError
from . import options


class Command(NamedTuple):
    """One `arnet` command: its help line, its options and the module that runs it."""

    help: str
    define: Callable[[argparse.ArgumentParser], None]
    module: str  # arnet.cli.<module>.run_<command> runs it


COMMANDS: dict[str, Command] = {
    "synth": Command("write a synthetic dataset in the AR-Net layout", options._synth, "data"),
    "train": Command("train a model on segment features", options._train, "training"),
    "test": Command(
        "score the test videos with a checkpoint and evaluate", options._test, "training"
    ),
    "demo": Command(
        "synthetic data -> AR-Net and a naive baseline -> metrics", options._demo, "training"
    ),
    "inspect": Command(
        "validate a dataset in any layout and report what it holds", options._inspect, "data"
    ),
    "pack": Command("convert a dataset into one memory-mapped arnet store", options._pack, "data"),
    "extract": Command(
        "extract segment features from videos or frame folders (AR-Net layout)",
        options._extract,
        "video",
    ),
    "detect": Command(
        "per-frame anomaly scores and alert intervals for videos, from a checkpoint",
        options._detect,
        "video",
    ),
    "models": Command("list the models", options._models, "training"),
}


class _CommandParser(argparse.ArgumentParser):
    """A command's parser whose options are defined the first time it parses or shows help."""

    def __init__(self, *args: Any, define: Callable[..., None] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._define = define

    def _defined(self) -> None:
        if self._define is not None:
            define, self._define = self._define, None
            define(self)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._defined()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._defined()
        return super().format_help()

    def format_usage(self) -> str:
        self._defined()
        return super().format_usage()


def build_parser() -> argparse.ArgumentParser:
    """The `arnet` parser; each command's options are defined when it is first used."""
    parser = argparse.ArgumentParser(
        prog="arnet", description="Weakly supervised video anomaly detection (AR-Net and beyond)."
    )
    parser.add_argument("--version", action="version", version=f"arnet {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser
    )
    for name, command in COMMANDS.items():
        sub.add_parser(name, help=command.help, define=command.define)
    return parser


def runner(command: str) -> Callable[[argparse.Namespace], int]:
    """The function that runs `command` (its module is imported here, not before)."""
    module = importlib.import_module(f"{__package__}.{COMMANDS[command].module}")
    return getattr(module, f"run_{command}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    run = runner(args.command)
    try:
        return run(args)
    except (DataError, CheckpointError, TrainingError, ValueError, FileNotFoundError) as exc:
        print(f"arnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"arnet {args.command}: interrupted", file=sys.stderr)
        return 130
