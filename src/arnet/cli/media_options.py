"""`arnet watch`'s options for clips, retention and masks, and what they become.

Standard library only at load time (as every option module): `arnet --help` stays light.
"""

from __future__ import annotations

import argparse
from typing import Any

from .options import _positive_real

CLIP_SECONDS = 5.0


def _seconds(text: str) -> float:
    from ..live.clips import parse_seconds

    try:
        return parse_seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"a number >= 0, got {text!r}")
    return value


def add_clip_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "clips (off unless one of these is given; then 5 s before and after each alert)"
    )
    g.add_argument(
        "--clip-before",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help=f"record a clip per alert from this long before it (e.g. 5s; default "
        f"{CLIP_SECONDS:g} s once clips are on)",
    )
    g.add_argument(
        "--clip-after",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help=f"... to this long after it ends (default {CLIP_SECONDS:g} s once clips are on)",
    )
    g.add_argument(
        "--clips",
        default=None,
        metavar="DIR",
        help="folder of the clips (default: beside a SQLite store, STORE-clips/; needed with "
        "PostgreSQL)",
    )
    g.add_argument(
        "--clip-short-side",
        type=int,
        default=360,
        metavar="PIXELS",
        help="clips are scaled down to this short side (0: as decoded; default 360)",
    )
    g.add_argument(
        "--clip-memory",
        type=_positive_real,
        default=128.0,
        metavar="MB",
        help="frames held per camera for the clips' pre-roll, at most (default 128 MB)",
    )


def clip_settings(args: argparse.Namespace) -> Any:
    """The `ClipSettings` the options ask for, or None (clips off).

    Raises:
        DataError: --clips missing with a database URL, or a folder that cannot be written.
    """
    from ..errors import DataError
    from ..live.clips import ClipSettings, check_folder, default_folder

    if args.clip_before is None and args.clip_after is None and args.clips is None:
        return None
    folder = args.clips or default_folder(args.db)
    if folder is None:
        raise DataError(f"--db {args.db}: a database server keeps no files; give --clips DIR")
    settings = ClipSettings(
        folder,
        before=CLIP_SECONDS if args.clip_before is None else args.clip_before,
        after=CLIP_SECONDS if args.clip_after is None else args.clip_after,
        short_side=args.clip_short_side,
        memory_mb=args.clip_memory,
    )
    check_folder(settings.folder)
    return settings


def add_retention_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "retention (pruned in small batches while watching; nothing is pruned unless asked)"
    )
    g.add_argument(
        "--keep-days",
        type=_positive_real,
        default=None,
        metavar="N",
        help="prune scores, events and closed alerts (images, clips) older than N days",
    )
    g.add_argument(
        "--keep-gb",
        type=_positive_real,
        default=None,
        metavar="X",
        help="prune the oldest first while this watcher's cameras hold more than X GB "
        "(clips, images and rows)",
    )
    g.add_argument(
        "--keep-acknowledged-days",
        type=_positive_real,
        default=None,
        metavar="M",
        help="keep acknowledged alerts, their clips and scores M days (default 4 x --keep-days)",
    )


def retention_policy(args: argparse.Namespace) -> Any:
    """The `RetentionPolicy` the options ask for, or None (nothing is pruned).

    Raises:
        DataError: --keep-acknowledged-days shorter than --keep-days, or without either.
    """
    if args.keep_days is None and args.keep_gb is None and args.keep_acknowledged_days is None:
        return None
    from ..store.retention import RetentionPolicy

    return RetentionPolicy(args.keep_days, args.keep_gb, args.keep_acknowledged_days)


def add_mask_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mask",
        action="append",
        default=[],
        metavar="CAMERA=SPEC",
        help="what of a camera counts for nothing: a PNG (white = ignore) at the camera's frame "
        "size or the checkpoint's cell grid, or cells ROW:COL,... of the checkpoint's grid "
        "(RxC/ROW:COL,... with a checkpoint that maps no cells); repeat per camera",
    )


def masks(args: argparse.Namespace, cameras: list[str], grid: tuple[int, int] | None) -> Any:
    """{camera: Mask} of the --mask options (checked against the cameras and the grid)."""
    from ..live.masks import parse_masks

    return parse_masks(args.mask, cameras, grid)
