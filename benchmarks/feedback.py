"""Operator feedback on UCSD Ped2 replayed as cameras: false alerts before and after.

    python benchmarks/feedback.py                       # the weak split, 5 replay orders
    python benchmarks/feedback.py --orders 1 --json /tmp/feedback.json

1. Features of every Ped2 video: motion-grid flow (8 x 12 cells, short side 120, Farneback;
   the README's recipe), made by benchmarks/ped2.py's extraction and cached (`--cache`).
2. The detector: `arnet train --model nearest-normal` on the weak split's training videos
   (6 anomalous + 4 normal; video labels only), version 0 of its run folder.
3. The replay: the 12 normal test videos (Train001-006, 009-013, 016), one after another, each
   watched by `arnet watch`'s own machinery (a `Watcher` over the video's frame folder, which
   ends with `--idle-stop`, a real SQLite event store, the run's `LiveFeedback`). After each
   video the operator marks every alert it raised as a false alarm (`add_verdict`, naming the
   run); the watcher applies the verdicts (a new version of the run) and takes the new bank up
   without a restart before the next video. Nothing else is tuned: the alert threshold is the
   run's own (chosen on its training videos), the same before and after.
4. The figures, per replay order (the given order, then `--orders - 1` random ones from
   numpy's default_rng(seed), seed = 1, 2, ...):
   - false alerts per hour on the normal test videos not yet replayed, with version 0 (the
     baseline: no feedback) and with the version in use, after half of them were replayed
     (the other half held out) and at every step;
   - false alerts per hour on the 12 normal videos watched again after the replay (the same
     scenes: the false alarms an operator dismissed, coming back), version 0 and the last;
   - every anomalous event of the 6 anomalous test videos (their labelled frame ranges, never
     replayed, never judged): alerted (an alert overlaps it) with version 0 and with the last
     version; and the frame-level AUC over those 6 videos;
   - the live scores of each replayed video against the same footage scored offline by the
     version in use (`nearest-normal` scores each segment alone, so they agree).
   The held-out videos are scored offline with the watcher's own extractor and the model of
   each version: what `arnet watch` would give them.

Hours of footage are at `--fps` (10: UCSD Ped2's camera rate as usually stated); alerts per
1,000 frames are printed too, which do not depend on it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import ped2  # noqa: E402  (its extraction and defaults)

NORMAL_TEST = (
    "Train001 Train002 Train003 Train004 Train005 Train006 Train009 Train010 Train011 "
    "Train012 Train013 Train016"
).split()


def features_cache(args: argparse.Namespace) -> Path:
    """The motion-grid features of every Ped2 video (extracted once, then reused)."""
    ns = argparse.Namespace(
        data=args.data,
        cache=args.cache,
        grid="8x12",
        motion_short_side=120,
        batch_size=8,
        device="cpu",
        quiet=True,
    )
    folder, *_ = ped2.extract(ns, "motion-flow")
    return folder


def fit(features: Path, out: Path) -> Path:
    from arnet.cli import main

    argv = ["train", "--data", str(features), "--feature-backbone", "motion-grid"]
    argv += ["--feature-modal", "flow", "--model", "nearest-normal", "--out", str(out)]
    argv += ["--device", "cpu", "--quiet", "--no-plot"]
    if main(argv) != 0:
        raise SystemExit("arnet train failed")
    return out


def alert_runs(frame_scores: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Alerts (first, last frame, 0-based) as `watch` opens them with one threshold, no
    minimum length and no merging: maximal runs of frames at or above it."""
    above = np.concatenate([[False], frame_scores >= threshold, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


class Footage:
    """Every test video's features (the live extractor's) and frame count, and its labels."""

    def __init__(self, detector, data: Path) -> None:  # noqa: ANN001
        from arnet.extract.video import find_inputs

        labels = json.loads((data / "labels.json").read_text())
        test = (data / "splits" / "weak_test.txt").read_text().split()
        self.frames = {v: int(labels[v]["frames"]) for v in test}
        self.events = {v: [tuple(r) for r in labels[v]["anomalous_frames"]] for v in test}
        self.features = {}
        for video in find_inputs([str(data / "frames" / v) for v in test]):
            extracted = detector.extractor.extract(video)
            self.features[video.name] = extracted.features[detector.output]
        self.anomalous = [v for v in test if self.events[v]]

    def scores(self, model, video: str) -> np.ndarray:  # noqa: ANN001
        """Frame scores of `video` under `model` (segment scores repeated per frame)."""
        import torch

        from arnet.detection.detector import frame_scores

        with torch.no_grad():
            seg = model(torch.from_numpy(self.features[video])[None])[0].numpy()
        return frame_scores(seg, self.frames[video])

    def false_alerts(self, model, videos: list[str], threshold: float) -> tuple[int, int]:  # noqa: ANN001
        """(alerts, frames) on normal videos: every alert is false."""
        count = sum(len(alert_runs(self.scores(model, v), threshold)) for v in videos)
        return count, sum(self.frames[v] for v in videos)

    def events_alerted(self, model, threshold: float) -> tuple[int, int, float]:  # noqa: ANN001
        """(anomalous events alerted, events, frame AUC over the anomalous videos)."""
        from sklearn.metrics import roc_auc_score

        hit = total = 0
        ys, ss = [], []
        for v in self.anomalous:
            s = self.scores(model, v)
            runs = alert_runs(s, threshold)
            y = np.zeros(len(s), dtype=int)
            for first, last in self.events[v]:  # 1-based, inclusive
                total += 1
                y[first - 1 : last] = 1
                hit += any(a <= last - 1 and b >= first - 1 for a, b in runs)
            ys.append(y)
            ss.append(s)
        return hit, total, float(roc_auc_score(np.concatenate(ys), np.concatenate(ss)))


def per_hour(alerts: int, frames: int, fps: float) -> float:
    return alerts / (frames / fps / 3600.0)


def replay(order: list[str], run0: Path, footage: Footage, args: argparse.Namespace) -> dict:
    """One operator replaying the normal videos in `order`, marking every alert false."""
    from arnet.detection.detector import load_detector
    from arnet.live.feedback import LiveFeedback
    from arnet.live.scorer import SegmentScorer
    from arnet.live.sources import parse_sources
    from arnet.live.tracker import Thresholds
    from arnet.live.watch import Watcher, WatchOptions
    from arnet.store import open_store

    work = Path(tempfile.mkdtemp(prefix="arnet-feedback-"))
    run = work / "run"
    shutil.copytree(run0, run, ignore=shutil.ignore_patterns("versions"))
    run = run.resolve()
    detector, _ = load_detector(run, device="cpu")
    base, _ = load_detector(run, device="cpu")  # version 0 throughout: the baseline
    threshold = detector.threshold
    thresholds = Thresholds(threshold, threshold)
    scorer = SegmentScorer(detector)
    steps = []
    live_gap = 0.0
    with open_store(work / "events.db") as store:
        feedback = LiveFeedback(detector.model, run, store, True, lambda _line: None)
        for k, video in enumerate(order):
            rest = order[k:]
            before = footage.false_alerts(base.model, rest, threshold)
            after = footage.false_alerts(detector.model, rest, threshold)
            steps.append({"replayed": k, "held_out": rest, "before": before, "after": after})
            folder = Path(args.data) / "frames" / video
            sources = parse_sources([f"{video}={folder}"], fps=args.fps, idle_stop=0.3)
            watcher = Watcher(
                scorer, store, sources, thresholds, WatchOptions(quiet=True), feedback=feedback
            )
            watcher.start()
            watcher.run()
            live = np.array([s["score"] for s in store.scores(video, limit=None)])
            offline = footage.scores(detector.model, video)[
                :: detector.extractor.config.preprocessing.frames_per_segment
            ]
            live_gap = max(live_gap, float(np.abs(live - offline[: len(live)]).max()))
            alerts, _ = store.alerts(camera=video, limit=None)
            for a in alerts:
                store.add_verdict(a["id"], "false-alarm", by="operator", run=str(run))
            steps[-1]["alerts_marked"] = len(alerts)
            feedback.poll(force=True)
            steps[-1]["version"] = feedback.version
        # the same footage again (tomorrow's false alarms of the same scenes), offline
        again = (
            footage.false_alerts(base.model, order, threshold),
            footage.false_alerts(detector.model, order, threshold),
        )
        final = footage.events_alerted(detector.model, threshold)
        first = footage.events_alerted(base.model, threshold)
        bank = int(detector.model.bank.shape[0] + detector.model.examples.shape[0])
    shutil.rmtree(work)
    half = len(order) // 2
    return {
        "order": order,
        "steps": steps,
        "half": steps[half],
        "rewatched": again,
        "events_before": first,
        "events_after": final,
        "bank_before": int(base.model.bank.shape[0]),
        "bank_after": bank,
        "versions": steps[-1]["version"],
        "live_vs_offline_max_abs": live_gap,
        "threshold": threshold,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(ped2.DEFAULT_DATA), help="the ucsd-ped2 folder")
    p.add_argument("--cache", default="/tmp/arnet-feedback-ped2", help="feature cache")
    p.add_argument("--orders", type=int, default=5, help="replay orders (the first: as listed)")
    p.add_argument("--fps", type=float, default=10.0, help="frame rate of the footage")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the figures here")
    args = p.parse_args()
    started = time.monotonic()
    features = features_cache(args)
    with tempfile.TemporaryDirectory(prefix="arnet-feedback-run-") as tmp:
        run = fit(features, Path(tmp) / "run")
        from arnet.detection.detector import load_detector

        detector, _ = load_detector(run, device="cpu")
        footage = Footage(detector, Path(args.data))
        rng_orders = [list(NORMAL_TEST)]
        for seed in range(1, args.orders):
            rng_orders.append(list(np.random.default_rng(seed).permutation(NORMAL_TEST)))
        results = [replay(order, run, footage, args) for order in rng_orders]
    fps = args.fps

    def rate(pair: tuple[int, int]) -> float:
        return per_hour(pair[0], pair[1], fps)

    print(f"UCSD Ped2, weak split, motion-grid flow + nearest-normal; {fps:g} fps; "
          f"threshold {results[0]['threshold']:.3f} (the run's own)")  # fmt: skip
    print("\nFalse alerts on the normal test videos not yet replayed, per hour (per 1,000 frames)")
    print(f"{'order':<8} {'held out':>9} {'version 0':>22} {'after feedback':>22} {'versions':>9}")
    for i, r in enumerate(results):
        h = r["half"]
        b, a = h["before"], h["after"]
        print(
            f"{'given' if i == 0 else f'seed {i}':<8} {len(h['held_out']):>9} "
            f"{rate(b):>10.1f} ({1000 * b[0] / b[1]:>6.2f}) {rate(a):>12.1f} "
            f"({1000 * a[0] / a[1]:>6.2f}) {r['versions']:>9}"
        )
    befores = [rate(r["half"]["before"]) for r in results]
    afters = [rate(r["half"]["after"]) for r in results]
    sd = statistics.stdev if len(results) > 1 else (lambda _x: 0.0)
    print(
        f"mean ± std over {len(results)} order(s): version 0 {statistics.mean(befores):.1f} ± "
        f"{sd(befores):.1f}, after {statistics.mean(afters):.1f} ± {sd(afters):.1f} "
        f"(worst after: {max(afters):.1f})"
    )
    print("\nThe 12 normal videos watched again after the replay (the same scenes), per hour:")
    for i, r in enumerate(results):
        b, a = r["rewatched"]
        print(f"  {'given' if i == 0 else f'seed {i}':<8} version 0 {rate(b):.1f} ({b[0]} alerts), "
              f"last version {rate(a):.1f} ({a[0]} alerts)")  # fmt: skip
    print("\nGiven order, step by step (alerts on the videos not yet replayed):")
    for s in results[0]["steps"]:
        print(
            f"  after {s['replayed']:>2} video(s): {len(s['held_out']):>2} held out, "
            f"version 0 {s['before'][0]:>3} alert(s), in use {s['after'][0]:>3}; "
            f"then {s['alerts_marked']} marked false -> version {s['version']}"
        )
    print("\nAnomalous events of the 6 anomalous test videos (never replayed):")
    for i, r in enumerate(results):
        (hb, tb, auc_b), (ha, ta, auc_a) = r["events_before"], r["events_after"]
        print(
            f"  {'given' if i == 0 else f'seed {i}':<8} alerted: version 0 {hb}/{tb}, last "
            f"version {ha}/{ta}; frame AUC on them {100 * auc_b:.2f} -> {100 * auc_a:.2f}; bank "
            f"{r['bank_before']} -> {r['bank_after']} segments; live vs offline score "
            f"max |diff| {r['live_vs_offline_max_abs']:.2e}"
        )
    print(f"\n{time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
