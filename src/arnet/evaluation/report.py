"""What a person reads after a run: metric tables, result files and an HTML report."""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import csv_row, write_atomic, write_json_atomic
from ..config import FRAMES_PER_SEGMENT
from ..data.dataset import FeatureDataset
from ..folders import RunFolder
from .metrics import Metrics, json_ready

_HEADLINE = (
    ("auc", "frame AUC (all videos)"),
    ("auc_anomalous", "frame AUC (anomalous videos)"),
    ("ap", "average precision"),
    ("far_all", "false alarm rate (all videos)"),
    ("far_normal", "false alarm rate (normal videos)"),
    ("far_anomalous", "false alarm rate (anomalous videos)"),
)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def event_rows(metrics: Metrics) -> list[tuple[str, str]]:
    """The event-level figures as (label, value) rows; none when they were not computed."""
    e = metrics.events
    if e is None:
        return []
    fps = "per video" if e.fps is None and math.isfinite(e.normal_video_hours) else e.fps
    rule = f"alerts (min {e.min_alert_frames} frame(s), merge gap {e.merge_gap})"
    return [
        ("events found (event recall)", f"{e.events_found} / {e.events} ({_fmt(e.event_recall)})"),
        (
            "delay to the first alert, mean / median",
            f"{_fmt(e.event_delay_frames, 1)} / {_fmt(e.event_delay_frames_median, 1)} frames, "
            f"{_fmt(e.event_delay_s, 2)} / {_fmt(e.event_delay_s_median, 2)} s",
        ),
        (
            "false alerts per hour of normal video",
            f"{_fmt(e.false_alerts_per_hour, 1)} ({e.false_alerts} in "
            f"{_fmt(e.normal_video_hours * 60, 2)} min)",
        ),
        ("false alerts on anomalous videos", str(e.false_alerts_anomalous_videos)),
        (rule, f"{e.alerts} at {_fmt(fps if fps is not None else 'unknown', 2)} fps"),
    ]


def metrics_table(metrics: Metrics, title: str | None = None) -> str:
    """The headline metrics as an aligned two-column text table."""
    rows = [(label, _fmt(getattr(metrics, key))) for key, label in _HEADLINE]
    rows.append(("threshold of the false-alarm rates", _fmt(metrics.threshold, 2)))
    rows.append(("test videos / frames", f"{metrics.videos} / {metrics.frames}"))
    rows += event_rows(metrics)
    width = max(len(r[0]) for r in rows)
    lines = [title] if title else []
    lines += [f"{label:<{width}}  {value}" for label, value in rows]
    return "\n".join(lines)


_VIDEO_COLUMNS = (
    "name",
    "label",
    "segments",
    "frames",
    "anomalous_frames",
    "max_score",
    "mean_score",
    "auc",
    "false_alarm_rate",
)


def per_video_table(metrics: Metrics) -> str:
    """One text row per test video."""
    rows = [_VIDEO_COLUMNS] + [
        tuple(_fmt(getattr(v, c), 3) for c in _VIDEO_COLUMNS) for v in metrics.per_video
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_VIDEO_COLUMNS))]
    return "\n".join("  ".join(f"{c:<{w}}" for c, w in zip(r, widths)) for r in rows)


# What `write_evaluation` writes into a folder (besides the plots/ folder): one evaluation.
EVALUATION_FILES = ("scores.npz", "metrics.json", "per_video.csv", "curves.png", "report.html")
PLOTS_FOLDER = "plots"


def remove_evaluation(out_dir: str | Path) -> None:
    """Remove the files of the evaluation written into `out_dir` (`write_evaluation`)."""
    out = Path(out_dir)
    for name in EVALUATION_FILES:
        (out / name).unlink(missing_ok=True)
    plots = out / PLOTS_FOLDER
    if plots.is_dir() and not plots.is_symlink():
        shutil.rmtree(plots)


def write_evaluation(
    out_dir: str | Path,
    scores: dict[str, np.ndarray],
    dataset: FeatureDataset,
    metrics: Metrics | None,
    *,
    iteration: int | None = None,
    plot: bool = True,
    frames_per_segment: int = FRAMES_PER_SEGMENT,
    threshold: float = 0.5,
    snapshot: str | None = None,
) -> None:
    """Write one evaluation into `out_dir`: scores.npz, metrics.json, per_video.csv, plots/
    (one PNG per video) and report.html. Earlier files of the same names are replaced.
    `snapshot` (how the evaluated snapshot was chosen) goes into metrics.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Every file through write_atomic: a full disk leaves the previous one, never half of it.
    # numpy's stub matches **scores against allow_pickle: bool too
    write_atomic(out / "scores.npz", lambda f: np.savez_compressed(f, **scores))  # type: ignore[arg-type]
    if metrics is not None:
        write_json_atomic(
            out / "metrics.json",
            {
                "iteration": iteration,
                **({"snapshot": snapshot} if snapshot else {}),
                **metrics.summary(),
                "per_video": [json_ready(dataclasses.asdict(v)) for v in metrics.per_video],
            },
        )
        table = io.StringIO(newline="")
        writer = csv.writer(table)
        writer.writerow(_VIDEO_COLUMNS)
        for v in metrics.per_video:
            writer.writerow(csv_row(getattr(v, c) for c in _VIDEO_COLUMNS))
        data = table.getvalue().encode()
        write_atomic(out / "per_video.csv", lambda f: f.write(data))
    if plot:
        from .plots import plot_videos

        plot_videos(
            out / PLOTS_FOLDER,
            scores,
            dict(zip(dataset.names, dataset.frame_labels)),
            frames_per_segment,
            threshold,
        )
    write_html_report(out, metrics, iteration)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _curves(out: Path, metrics: Metrics | None, iteration: int | None) -> str | None:
    """Plot training loss and test AUC over iterations to curves.png; its name, or None (no
    training logs). The evaluation being written (`metrics` at `iteration`) is on the chart
    even before results.jsonl logs it."""
    losses = _read_jsonl(out / RunFolder.LOSSES)
    results = _read_jsonl(out / RunFolder.RESULTS)
    if not losses and not results:
        return None
    if metrics is not None and iteration is not None:
        if all(r.get("iteration") != iteration for r in results):
            results = [*results, {"iteration": iteration, "auc": metrics.auc}]
            results.sort(key=lambda r: r["iteration"])
    import matplotlib.pyplot as plt

    from . import plots  # noqa: F401  (selects the file-only backend)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3), dpi=80)
    if losses:
        axes[0].plot([r["iteration"] for r in losses], [r["loss"] for r in losses])
    axes[0].set(title="training loss", xlabel="iteration")
    if results:
        axes[1].plot([r["iteration"] for r in results], [r["auc"] for r in results], marker="o")
    axes[1].set(title="test frame AUC", xlabel="iteration")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    try:
        write_atomic(out / "curves.png", lambda f: fig.savefig(f, format="png"))
    finally:
        plt.close(fig)
    return "curves.png"


def write_html_report(out_dir: str | Path, metrics: Metrics | None, iteration: int | None) -> Path:
    """report.html: headline metrics, curves, per-video table with links to the plots."""
    from .plots import plot_filename

    out = Path(out_dir)
    esc = html.escape
    parts = [
        "<!doctype html><meta charset='utf-8'><title>arnet report</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}</style>",
        f"<h1>arnet report: {esc(out.name)}</h1>",
    ]
    if iteration is not None:
        parts.append(f"<p>iteration {iteration}</p>")
    curves = _curves(out, metrics, iteration)
    if metrics is not None:
        parts.append("<h2>Metrics</h2><table>")
        parts += [
            f"<tr><th>{esc(label)}</th><td>{_fmt(getattr(metrics, key))}</td></tr>"
            for key, label in _HEADLINE
        ]
        parts += [
            f"<tr><th>{esc(label)}</th><td>{esc(value)}</td></tr>"
            for label, value in event_rows(metrics)
        ]
        parts.append("</table>")
    if curves:
        parts.append(f"<h2>Training</h2><img src='{curves}'>")
    if metrics is not None:
        parts.append(
            "<h2>Videos</h2><table><tr>"
            + "".join(f"<th>{c}</th>" for c in _VIDEO_COLUMNS)
            + "</tr>"
        )
        for v in metrics.per_video:
            name = esc(v.name)
            plot = out / "plots" / plot_filename(v.name)
            cell = f"<a href='plots/{esc(plot.name)}'>{name}</a>" if plot.exists() else name
            parts.append(
                "<tr><td>"
                + cell
                + "</td>"
                + "".join(f"<td>{_fmt(getattr(v, c), 3)}</td>" for c in _VIDEO_COLUMNS[1:])
                + "</tr>"
            )
        parts.append("</table>")
    text = ("\n".join(parts) + "\n").encode()
    return write_atomic(out / "report.html", lambda f: f.write(text))
