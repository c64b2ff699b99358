"""`arnet export`: a run's scoring head and backbone as ONNX or TorchScript files."""

from __future__ import annotations

import argparse
import json

from ..detection.export import MANIFEST, export_run, parse_size


def run_export(args: argparse.Namespace) -> int:
    size = parse_size(args.input_size) if args.input_size else None
    out, manifest = export_run(args.run, args.format, args.out, size, args.overwrite)
    if args.json:
        print(json.dumps({"out": str(out), **manifest}))
        return 0
    lines = [f"{manifest['model']} head: {out / manifest['head']['file']}"]
    backbone = manifest["backbone"]
    if backbone:
        lines.append(
            f"{backbone['name']} backbone ({backbone['width']}x{backbone['height']} frames): "
            f"{out / backbone['file']}"
        )
    else:
        lines.append("no backbone exported (only efficientnet-lite0 rgb features have one)")
    lines.append(f"manifest: {out / MANIFEST}")
    print("\n".join(lines))
    return 0
