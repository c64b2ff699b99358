"""The `arnet` command: its commands, the parser that knows them, and the error policy.

A command's options are defined (arnet.cli.options, arnet.cli.video_options) and its module
imported only when that command runs or shows its help; `arnet --help` and `arnet --version`
load no torch.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .. import __version__
from ..errors import CheckpointError, DataError, TrainingError
from . import feedback, live, options, video_options


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
        video_options._extract,
        "video",
    ),
    "detect": Command(
        "per-frame anomaly scores and alert intervals for videos, from a checkpoint",
        video_options._detect,
        "video",
    ),
    "export": Command(
        "write a run's scoring head (and backbone) as ONNX or TorchScript files",
        video_options._export,
        "export",
    ),
    "models": Command("list the models", options._models, "training"),
    "watch": Command(
        "score live cameras and streams; alerts into an event store",
        live.add_watch_arguments,
        "live",
    ),
    "alerts": Command(
        "list, filter, export or acknowledge stored alerts", live.add_alerts_arguments, "live"
    ),
    "feedback": Command(
        "a run's detector versions made from operators' verdicts: list, undo, use, apply",
        feedback.add_feedback_arguments,
        "feedback",
    ),
    "serve": Command("web dashboard of cameras, alerts and training runs", options._serve, "web"),
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

    def error(self, message: str) -> Any:
        """One line naming the option, exit status 2 (not argparse's usage block first)."""
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


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


def describe_os_error(exc: OSError) -> str:
    """One line for an operating-system error: the file, then what went wrong."""
    what = (exc.strerror or str(exc)).lower() if exc.strerror else str(exc)
    if exc.filename is None:
        return what
    if exc.filename2 is not None:
        return f"{exc.filename} -> {exc.filename2}: {what}"
    return f"{exc.filename}: {what}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 130 interrupted by
    Ctrl-C, 143 stopped by SIGTERM)."""
    args = build_parser().parse_args(argv)
    run = runner(args.command)
    try:
        return run(args)
    except (DataError, CheckpointError, TrainingError, ValueError) as exc:
        print(f"arnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a folder given where a file is wanted, a permission
        print(f"arnet {args.command}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except MemoryError as exc:
        print(
            f"arnet {args.command}: error: out of memory ({exc or 'allocation failed'}); "
            "smaller batches, sequences or datasets need less",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM where a command stops as for Ctrl-C
        signum = getattr(exc, "signum", signal.SIGINT)
        how = (
            "interrupted" if signum == signal.SIGINT else f"stopped ({signal.Signals(signum).name})"
        )
        print(f"arnet {args.command}: {how}", file=sys.stderr)
        return 128 + signum
