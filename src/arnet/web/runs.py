"""Training run folders under `--runs`, read for the dashboard.

A run is named by its folder's path relative to the runs root (`demo-x/arnet`). Every name that
arrives in a URL is resolved and checked to lie inside the root, so no request can read a file
outside it; the files served are the ones `arnet train` writes for people to see.
"""

from __future__ import annotations

import csv
import json
import math
import os
import threading
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..folders import RunFolder

# A folder with one of these is a run (an evaluation, a log or at least a config).
RUN_MARKERS = RunFolder.MARKERS
# Folders inside a run that never hold another run: not walked when listing.
_INNER = {RunFolder.CHECKPOINTS, "plots", RunFolder.TENSORBOARD, "__pycache__"}
# Runs nested deeper than this below the root are not listed (runs/demo-x/arnet is 2).
MAX_DEPTH = 4
# Training curves are thinned to about this many points: a browser draws them, not a reader.
MAX_CURVE_POINTS = 2000
HEADLINE = ("auc", "auc_anomalous", "ap", "far_all", "far_normal", "far_anomalous")


class RunNotFound(LookupError):
    """No run (or no such file of a run) by that name inside the runs root."""


def finite(value: Any) -> Any:
    """`value` with every NaN or infinity as None, recursively: JSON cannot hold them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The readable records of a JSON-lines file (a line a running writer cut short is skipped)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _thin(records: list[dict[str, Any]], limit: int = MAX_CURVE_POINTS) -> list[dict[str, Any]]:
    if len(records) <= limit:
        return records
    step = math.ceil(len(records) / limit)
    return records[::step] + ([records[-1]] if (len(records) - 1) % step else [])


def _spans(labels: np.ndarray) -> list[list[int]]:
    """Runs of anomalous frames as [start, end) pairs."""
    from ..evaluation.plots import spans

    starts, ends = spans(np.asarray(labels).reshape(-1) > 0)
    return [[int(s), int(e)] for s, e in zip(starts, ends)]


class RunFolders:
    """The run folders below one root folder (or none: every lookup is then RunNotFound)."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root).resolve() if root is not None else None
        self._truth: dict[tuple[str, float], dict[str, Any]] = {}
        self._truth_lock = threading.Lock()

    # ------------------------------------------------------------------ names and paths

    def resolve(self, name: str) -> Path:
        """The run folder called `name`, checked to be a run inside the root."""
        path = self._inside(name)
        if path == self.root or not path.is_dir() or not _is_run(path):
            raise RunNotFound(f"no run {name!r}")
        return path

    def _inside(self, name: str) -> Path:
        if self.root is None:
            raise RunNotFound("no runs folder was given (arnet serve --runs DIR)")
        pure = PurePosixPath(name)
        if (
            not name
            or "\x00" in name
            or "\\" in name
            or pure.is_absolute()
            or any(part in ("..", ".") for part in pure.parts)
        ):
            raise RunNotFound(f"no run {name!r}")
        # resolve() follows links: a link inside the root pointing out of it is refused too.
        path = (self.root / pure).resolve()
        if not path.is_relative_to(self.root):
            raise RunNotFound(f"no run {name!r}")
        return path

    def name_of(self, path: Path) -> str:
        assert self.root is not None
        return path.relative_to(self.root).as_posix()

    def file(self, name: str) -> Path:
        """A file a run shows people: its report.html, curves.png or a plots/*.png."""
        path = self._inside(name)
        if not path.is_file():
            raise RunNotFound(f"no file {name!r}")
        if path.name in ("report.html", "curves.png"):
            run = path.parent
        elif path.parent.name == "plots" and path.suffix == ".png":
            run = path.parent.parent
        else:
            raise RunNotFound(f"no file {name!r}")
        if run == self.root or not _is_run(run):
            raise RunNotFound(f"no file {name!r}")
        return path

    # ------------------------------------------------------------------ reading

    def list(self) -> list[dict[str, Any]]:
        """Every run below the root, newest first, with its headline metrics."""
        if self.root is None or not self.root.is_dir():
            return []
        found = []
        for folder, dirs, _files in os.walk(self.root):
            path = Path(folder)
            depth = len(path.relative_to(self.root).parts)
            dirs[:] = sorted(d for d in dirs if d not in _INNER and not d.startswith("."))
            if depth >= MAX_DEPTH:
                dirs[:] = []
            if path != self.root and _is_run(path):
                found.append(self.summary(path))
        found.sort(key=lambda r: r["modified"], reverse=True)
        return found

    def summary(self, path: Path) -> dict[str, Any]:
        config = _read_json(path / RunFolder.CONFIG) or {}
        metrics = _read_json(path / "metrics.json") or {}
        modified = max(
            (p.stat().st_mtime for p in (path / m for m in RUN_MARKERS) if p.is_file()),
            default=0.0,
        )
        return finite(
            {
                "name": self.name_of(path),
                "model": config.get("model"),
                "data": config.get("data"),
                "iteration": metrics.get("iteration"),
                "metrics": {k: metrics.get(k) for k in HEADLINE} if metrics else None,
                "modified": modified,
                "report": (path / "report.html").is_file(),
            }
        )

    def detail(self, name: str) -> dict[str, Any]:
        """A run's config, latest metrics, every evaluation, training losses and videos."""
        path = self.resolve(name)
        metrics = _read_json(path / "metrics.json")
        per_video = (metrics or {}).pop("per_video", None) if isinstance(metrics, dict) else None
        if per_video is None:
            per_video = _read_csv(path / "per_video.csv")
        return finite(
            {
                **self.summary(path),
                "config": _read_json(path / RunFolder.CONFIG),
                "latest": metrics,
                "evaluations": _read_jsonl(path / RunFolder.RESULTS),
                "losses": _thin(_read_jsonl(path / RunFolder.LOSSES)),
                "videos": per_video,
                "scored": _score_names(path),
                "curves": (path / "curves.png").is_file(),
            }
        )

    def video(self, name: str, video: str) -> dict[str, Any]:
        """One test video's segment scores and its anomalous frames as spans (when known)."""
        path = self.resolve(name)
        scores = _scores_of(path, video)
        config = _read_json(path / RunFolder.CONFIG) or {}
        truth = self.ground_truth(path)
        labels = truth["spans"].get(video) if truth["spans"] is not None else None
        return finite(
            {
                "run": name,
                "video": video,
                "scores": [float(s) for s in scores],
                "frames_per_segment": int(config.get("frames_per_segment") or 16),
                "threshold": config.get("threshold", 0.5),
                "anomalous_spans": labels,
                "ground_truth_error": truth["error"],
            }
        )

    def ground_truth(self, path: Path) -> dict[str, Any]:
        """Anomalous frame spans of every test video, read once from the run's dataset.

        Runs keep scores but not labels; the labels stay with the dataset named in config.json.
        A dataset that moved or cannot be read leaves the plots without shading, with the
        reason."""
        config_file = path / RunFolder.CONFIG
        try:
            key = (str(path), config_file.stat().st_mtime)
        except OSError:
            return {"spans": None, "error": f"{config_file} is missing"}
        with self._truth_lock:
            if key not in self._truth:
                self._truth[key] = _load_truth(config_file)
            return self._truth[key]


def _is_run(path: Path) -> bool:
    return any((path / m).is_file() for m in RUN_MARKERS)


def _read_csv(path: Path) -> list[dict[str, Any]] | None:
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return None
    for row in rows:
        for key, value in row.items():
            if key != "name":
                try:
                    row[key] = float(value) if value not in ("", None) else None
                except ValueError:
                    pass
    return rows


def _score_names(path: Path) -> list[str]:
    try:
        with np.load(path / "scores.npz", allow_pickle=False) as z:
            return list(z.files)
    except (OSError, ValueError):
        return []


def _scores_of(path: Path, video: str) -> np.ndarray:
    try:
        with np.load(path / "scores.npz", allow_pickle=False) as z:
            if video not in z.files:
                raise RunNotFound(f"no scores of video {video!r}")
            return np.asarray(z[video], dtype=np.float64).reshape(-1)
    except (OSError, ValueError) as exc:
        raise RunNotFound(f"no scores of video {video!r}: {exc}") from None


def _load_truth(config_file: Path) -> dict[str, Any]:
    from ..config import TrainConfig, saved_paths
    from ..formats import open_dataset

    try:
        saved = json.loads(config_file.read_text())
        config = TrainConfig.from_dict(saved_paths(saved, config_file.parent))
        if not config.data:
            return {"spans": None, "error": "the run names no dataset"}
        test = open_dataset(
            config.data,
            config.format,
            modal=config.feature_modal,
            backbone=config.feature_backbone,
            layer=config.feature_layer,
            test_list=config.test_list,
            ground_truth=config.ground_truth,
            list_root=config.list_root,
            train_anomalous=config.train_anomalous,
            tail=config.tail,
            frames_per_segment=config.frames_per_segment,
            split="test",  # the labels of the videos a run scores; the training set stays shut
        )
    except Exception as exc:  # any unreadable dataset: the page still shows the scores
        return {"spans": None, "error": f"ground truth unavailable: {exc}"}
    spans = {
        name: _spans(labels)
        for name, labels in zip(test.names, test.frame_labels)
        if labels is not None
    }
    return {"spans": spans, "error": None}
