"""`arnet inspect`: what a dataset holds, and everything wrong with it, in any layout."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from .catalog import KINDS, SPLITS, Catalog, Problem
from .opening import open_catalog, scan_values


@dataclass
class InspectReport:
    """The figures and problems of one dataset.

    Attributes:
        catalog: the opened (and, unless skipped, value-scanned) catalog.
        summary: JSON-ready figures (see `summarize`).
    """

    catalog: Catalog
    summary: dict[str, Any]

    @property
    def problems(self) -> list[Problem]:
        return self.catalog.problems

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.catalog.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary,
            "ok": self.ok,
            "problems": [vars(p) for p in self.problems],
        }


def inspect_catalog(catalog: Catalog, values: bool = True) -> InspectReport:
    """Open a reader's catalog, check it (every value too, unless `values` is False), and
    summarise it."""
    open_catalog(catalog)
    if values:
        scan_values(catalog)
    return InspectReport(catalog, summarize(catalog))


def _distribution(values: list[int]) -> dict[str, float] | None:
    if not values:
        return None
    a = np.asarray(values)
    return {
        "min": int(a.min()),
        "median": float(np.median(a)),
        "mean": round(float(a.mean()), 1),
        "max": int(a.max()),
        "total": int(a.sum()),
    }


def summarize(catalog: Catalog) -> dict[str, Any]:
    """Videos per split and label, feature shape, segment and frame distributions, ground truth
    coverage and problem counts of an opened catalog."""
    frames_per_segment = catalog.frames_per_segment
    opened = [v for v in catalog.videos if v.features is not None]
    shapes = Counter(tuple(v.features.shape[1:]) for v in opened)
    dtypes = Counter(str(v.features.dtype) for v in opened)
    splits: dict[str, Any] = {}
    for split in SPLITS:
        videos = catalog.split(split)
        with_gt = [v for v in videos if v.frame_labels is not None]
        covered = sum(frames_per_segment * v.segments for v in with_gt)
        anomalous_frames = sum(
            int(v.frame_labels[: frames_per_segment * v.segments].sum())
            for v in with_gt
            if v.frame_labels is not None
        )
        splits[split] = {
            "videos": len(videos),
            "anomalous": sum(v.label == 1 for v in videos),
            "normal": sum(v.label == 0 for v in videos),
            "unlabelled": sum(v.label is None for v in videos),
            "broken": sum(v.broken for v in videos),
            "segments": _distribution([v.segments for v in videos if v.features is not None]),
            "frames": _distribution(
                [len(v.frame_labels) for v in with_gt if v.frame_labels is not None]
            ),
            "ground_truth_videos": len(with_gt),
            "anomalous_frame_share": round(anomalous_frames / covered, 4) if covered else None,
        }
    common = shapes.most_common(1)[0][0] if shapes else None
    gt = catalog.ground_truth
    return {
        "path": str(catalog.root),
        "format": catalog.format,
        "notes": list(catalog.notes),
        "dim": int(common[-1]) if common else None,
        "crops": int(common[0]) if common and len(common) == 2 else None,
        "dtype": dtypes.most_common(1)[0][0] if dtypes else None,
        "tail": catalog.tail,
        "frames_per_segment": frames_per_segment,
        "ground_truth": None if gt is None else {"source": gt.source, "kind": gt.kind},
        "splits": splits,
        "errors": len(catalog.errors),
        "warnings": len(catalog.warnings),
    }


def _dist_text(d: dict[str, float] | None) -> str:
    if d is None:
        return "n/a"
    return f"{d['min']} / {d['median']:g} / {d['mean']:g} / {d['max']}  (total {d['total']:,})"


def render(report: InspectReport) -> str:
    """The report as text for a terminal."""
    s = report.summary
    lines = [f"dataset: {s['path']} ({s['format']} layout)"]
    lines += [f"  {note}" for note in s["notes"]]
    crops = f", {s['crops']} crops per segment" if s["crops"] else ""
    lines.append(f"features: dimension {s['dim']}{crops}, {s['dtype']}")
    lines.append("videos:      anomalous   normal  unlabelled    total")
    for split in SPLITS:
        x = s["splits"][split]
        lines.append(
            f"  {split:<8} {x['anomalous']:>10} {x['normal']:>8} {x['unlabelled']:>11} "
            f"{x['videos']:>8}"
        )
    lines.append("segments per video (min / median / mean / max):")
    for split in SPLITS:
        lines.append(f"  {split:<8} {_dist_text(s['splits'][split]['segments'])}")
    lines.append("frames per video, from the ground truth (min / median / mean / max):")
    for split in SPLITS:
        lines.append(f"  {split:<8} {_dist_text(s['splits'][split]['frames'])}")
    gt = s["ground_truth"]
    lines.append(
        "ground truth: "
        + ("none" if gt is None else f"{gt['source']} ({gt['kind']})")
        + f"; tail policy {s['tail']!r}, {s['frames_per_segment']} frames per segment"
    )
    for split in SPLITS:
        x = s["splits"][split]
        share = x["anomalous_frame_share"]
        lines.append(
            f"  {split:<8} {x['ground_truth_videos']}/{x['videos']} videos"
            + ("" if share is None else f", {100 * share:.1f}% of covered frames anomalous")
        )
    problems = report.problems
    if not problems:
        lines.append("problems: none")
    else:
        lines.append(f"problems: {s['errors']} error(s), {s['warnings']} warning(s)")
        for p in sorted(problems, key=lambda p: p.severity != "error"):
            lines.append(f"  {p}")
        kinds = sorted({p.kind for p in problems})
        lines.append("kinds: " + "; ".join(f"{k}: {KINDS[k]}" for k in kinds))
    return "\n".join(lines)
