"""`arnet feedback`: a run's detector versions made from operators' verdicts.

    arnet feedback list RUN              every version, the one in use marked
    arnet feedback undo RUN              back to the parent of the version in use
    arnet feedback use RUN N             put version N in use (redo an undo; 0: as trained)
    arnet feedback apply RUN --db STORE  a new version from the store's new verdicts

A watcher of a nearest-normal run folder applies new verdicts itself and follows the version
in use without a restart. Only the standard library is imported at load time.
"""

from __future__ import annotations

import argparse
import json
import time

from .live import DEFAULT_STORE


def add_feedback_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON (also after the action)")
    sub = p.add_subparsers(
        dest="action",
        required=True,
        metavar="ACTION",
        help="list, undo, use or apply (arnet feedback ACTION --help)",
    )
    listing = sub.add_parser("list", help="every version of the run, the one in use marked")
    undo = sub.add_parser("undo", help="go back to the parent of the version in use")
    use = sub.add_parser("use", help="put a version in use (0: the run as trained)")
    apply = sub.add_parser(
        "apply", help="make a new version from the verdicts in an event store (nearest-normal)"
    )
    for q in (listing, undo, use, apply):
        q.add_argument("run", metavar="RUN", help="the run folder")
        q.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    use.add_argument("version", type=int, metavar="N", help="the version")
    apply.add_argument(
        "--db",
        default=DEFAULT_STORE,
        metavar="STORE",
        help=f"the event store holding the verdicts (default {DEFAULT_STORE})",
    )


def _run(text: str):  # noqa: ANN202
    from ..errors import DataError
    from ..training.feedback import run_folder

    folder = run_folder(text)
    if folder is None:
        raise DataError(f"{text}: not a run folder (no checkpoints/ in it)")
    return folder


def run_feedback(args: argparse.Namespace) -> int:
    from ..errors import DataError
    from ..training import feedback as versions

    run = _run(args.run)
    if args.action == "list":
        rows = versions.list_versions(run)
        if args.json:
            print(json.dumps(rows, indent=1))
            return 0
        for v in rows:
            when = (
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v["created"]))
                if v.get("created")
                else "-"
            )
            what = v.get("what", "")
            if v["version"]:
                what += (
                    f"; {v['normal_segments']} normal segment(s) from alert(s) "
                    f"{v['normal_alerts']}, {v['anomalous_segments']} real segment(s)"
                )
            mark = "*" if v["current"] else " "
            parent = "" if v["parent"] is None else f" (from {v['parent']})"
            print(f"{mark} {v['version']:>3}  {when}  {what}{parent}")
        return 0
    if args.action == "undo":
        before, now = versions.undo(run)
        line = {"from": before, "to": now}
        print(
            json.dumps(line)
            if args.json
            else f"{run}: version {now} in use (was {before}; `arnet feedback use {run} {before}` "
            "puts it back)"
        )
        return 0
    if args.action == "use":
        before = versions.set_current(run, args.version)
        print(
            json.dumps({"from": before, "to": args.version})
            if args.json
            else f"{run}: version {args.version} in use (was {before})"
        )
        return 0
    # apply
    from ..live.feedback import apply_verdicts
    from ..models.normal import NearestNormal
    from ..store import open_store
    from ..training.checkpoint import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(run), "cpu")
    if not isinstance(model, NearestNormal):
        raise DataError(
            f"{run}: a trained model learns from verdicts by training: arnet train --resume "
            f"{run} --feedback {args.db}"
        )
    with open_store(args.db, "read") as store:
        made = apply_verdicts(run, store, model, "arnet feedback apply")
    if made is None:
        print(json.dumps(None) if args.json else f"{run}: no new verdict changes it")
        return 0
    print(
        json.dumps(made)
        if args.json
        else f"{run}: version {made['version']} in use: {made['normal_segments']} normal "
        f"segment(s) from alert(s) {made['normal_alerts']}, {made['anomalous_segments']} real "
        "segment(s)"
    )
    return 0
