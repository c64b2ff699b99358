"""Event-level figures (arnet.evaluation.metrics.event_metrics) against a plain loop version,
and what `arnet test` writes of them."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from arnet.cli.main import main
from arnet.errors import DataError
from arnet.evaluation.metrics import anomalous_events, event_metrics, frame_metrics


def _loop_alerts(frame_scores, threshold, min_frames, merge_gap):
    """The alert rule spelt out frame by frame: runs at or above the threshold, runs at most
    `merge_gap` quiet frames apart joined, runs shorter than `min_frames` dropped."""
    runs = []
    start = None
    for i, s in enumerate(list(frame_scores) + [-1.0]):
        on = s >= threshold
        if on and start is None:
            start = i
        elif not on and start is not None:
            runs.append([start, i - 1])
            start = None
    merged = []
    for r in runs:
        if merged and r[0] - merged[-1][1] - 1 <= merge_gap:
            merged[-1][1] = r[1]
        else:
            merged.append(r)
    return [r for r in merged if r[1] - r[0] + 1 >= min_frames]


def _loop_events(labels):
    events, start = [], None
    for i, y in enumerate(list(labels) + [0]):
        if y and start is None:
            start = i
        elif not y and start is not None:
            events.append((start, i - 1))
            start = None
    return events


def _loop_figures(scores, frames, labels, threshold, fps, fps_per_segment, min_frames, gap):
    found, events, delays, false_normal, false_anomalous, normal_frames = 0, 0, [], 0, 0, 0
    alerts_total = 0
    for name, s in scores.items():
        covered = len(s) * fps_per_segment
        frame_scores = [v for v in s for _ in range(fps_per_segment)]
        truth = list(frames[name][:covered])
        alerts = _loop_alerts(frame_scores, threshold, min_frames, gap)
        alerts_total += len(alerts)
        if not labels[name]:
            false_normal += len(alerts)
            normal_frames += covered
            continue
        for first, last in _loop_events(truth):
            events += 1
            hits = [f for f in range(first, last + 1) if any(a <= f <= b for a, b in alerts)]
            if hits:
                found += 1
                delays.append(hits[0] - first)
        for a, b in alerts:
            if not any(truth[a : b + 1]):
                false_anomalous += 1
    hours = normal_frames / fps / 3600
    return {
        "events": events,
        "events_found": found,
        "event_recall": found / events if events else math.nan,
        "event_delay_frames": sum(delays) / len(delays) if delays else math.nan,
        "event_delay_s": sum(delays) / len(delays) / fps if delays else math.nan,
        "alerts": alerts_total,
        "false_alerts": false_normal,
        "false_alerts_anomalous_videos": false_anomalous,
        "false_alerts_per_hour": false_normal / hours if normal_frames else math.nan,
    }


def _random_set(rng, n_videos=10, fps_per_segment=16):
    scores, frames, labels = {}, {}, {}
    for i in range(n_videos):
        T = int(rng.integers(1, 25))
        anomalous = i % 2 == 0
        f = np.zeros(T * fps_per_segment + int(rng.integers(0, fps_per_segment)), np.uint8)
        if anomalous:  # one to four random intervals, some touching, some past the segments
            for _ in range(int(rng.integers(1, 5))):
                a = int(rng.integers(0, len(f)))
                f[a : a + int(rng.integers(1, 60))] = 1
        name = f"v{i}"
        scores[name] = np.round(rng.random(T), 1)  # ties at the threshold
        frames[name], labels[name] = f, int(anomalous)
    return scores, frames, labels


@pytest.mark.parametrize("seed", range(12))
def test_event_figures_equal_the_loop_version_on_random_intervals(seed):
    rng = np.random.default_rng(seed)
    scores, frames, labels = _random_set(rng)
    threshold = float(rng.choice([0.3, 0.5, 0.7, 0.9]))
    min_frames = int(rng.choice([1, 1, 17, 40]))
    gap = int(rng.choice([0, 0, 16, 50]))
    fps = float(rng.choice([10.0, 25.0, 29.97]))
    got = event_metrics(scores, frames, labels, threshold, fps, 16, min_frames, gap).summary()
    want = _loop_figures(scores, frames, labels, threshold, fps, 16, min_frames, gap)
    for key, value in want.items():
        if isinstance(value, float) and math.isnan(value):
            assert got[key] is None, key
        else:
            assert got[key] == pytest.approx(value), key
    assert got["event_fps"] == fps
    assert got["event_min_alert_frames"] == min_frames and got["event_merge_gap"] == gap


def test_events_are_contiguous_anomalous_ranges():
    assert anomalous_events(np.array([0, 1, 1, 0, 0, 1, 0, 1])) == [(1, 2), (5, 5), (7, 7)]
    assert anomalous_events(np.zeros(5)) == []


def test_a_known_case_frame_by_frame():
    """Two segments of 4 frames; one event over frames 2..5; the alert starts at frame 4."""
    scores = {"a": np.array([0.1, 0.9]), "n": np.array([0.9, 0.2, 0.8])}
    frames = {"a": np.array([0, 0, 1, 1, 1, 1, 0, 0]), "n": np.zeros(12)}
    labels = {"a": 1, "n": 0}
    e = event_metrics(scores, frames, labels, 0.5, 10.0, 4)
    assert (e.events, e.events_found, e.event_recall) == (1, 1, 1.0)
    assert e.event_delay_frames == 2 and e.event_delay_s == pytest.approx(0.2)
    # the normal video: two alerts in 12 frames at 10 fps
    assert e.false_alerts == 2 and e.false_alerts_per_hour == pytest.approx(2 / (1.2 / 3600))
    assert e.false_alerts_anomalous_videos == 0 and e.alerts == 3


def test_without_a_frame_rate_the_figures_count_frames():
    scores = {"a": np.array([0.9]), "n": np.array([0.9])}
    frames = {"a": np.ones(16), "n": np.zeros(16)}
    e = event_metrics(scores, frames, {"a": 1, "n": 0}, 0.5).summary()
    assert e["event_recall"] == 1.0 and e["event_delay_frames"] == 0.0
    assert e["false_alerts"] == 1
    assert e["event_delay_s"] is None and e["false_alerts_per_hour"] is None
    assert e["event_fps"] is None


def test_per_video_rates_and_thresholds_at_the_ends():
    scores = {"a": np.array([0.2, 1.0]), "n": np.array([1.0])}
    frames = {"a": np.r_[np.zeros(16), np.ones(16)], "n": np.zeros(16)}
    labels = {"a": 1, "n": 0}
    e = event_metrics(scores, frames, labels, 0.5, {"a": 10.0, "n": 20.0})
    assert e.fps is None  # two rates
    assert e.normal_video_hours == pytest.approx(16 / 20 / 3600)
    # above every score: nothing alerts (a calibrated threshold may sit just above 1.0)
    above = event_metrics(scores, frames, labels, float(np.nextafter(1.0, 2.0)), 10.0)
    assert (above.alerts, above.events_found, above.event_recall) == (0, 0, 0.0)
    every = event_metrics(scores, frames, labels, 0.0, 10.0)
    assert every.event_recall == 1.0 and every.alerts == 2


@pytest.mark.parametrize("fps", [0.0, -5.0, math.nan, "fast", {"a": 10.0}])
def test_a_bad_frame_rate_is_one_error_naming_the_video(fps):
    scores = {"a": np.array([0.9]), "n": np.array([0.1])}
    frames = {"a": np.ones(16), "n": np.zeros(16)}
    with pytest.raises(DataError, match="'n'|'a'"):
        event_metrics(scores, frames, {"a": 1, "n": 0}, 0.5, fps)


def test_frame_metrics_carry_the_events_in_their_summary():
    scores = {"a": np.array([0.1, 0.9]), "n": np.array([0.2])}
    frames = {"a": np.r_[np.zeros(16), np.ones(16)], "n": np.zeros(16)}
    m = frame_metrics(scores, frames, {"a": 1, "n": 0}, 16, 0.5, fps=10.0)
    summary = m.summary()
    assert summary["event_recall"] == 1.0 and summary["false_alerts_per_hour"] == 0.0
    json.dumps(summary)  # JSON-ready


def _json_out(capsys):
    return json.loads(capsys.readouterr().out)


def test_arnet_test_reports_events_at_recorded_rates_or_fps(tmp_path, tiny_data, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    run = tmp_path / "run"
    train = ["train", "--data", str(data), "--iterations", "3"]
    train += ["--out", str(run), "--no-plot", "--json"]
    assert main(train) == 0
    capsys.readouterr()
    test = ["test", "--checkpoint", str(run), "--no-plot", "--json"]
    assert main([*test, "--out", str(tmp_path / "t1")]) == 0
    m = _json_out(capsys)["metrics"]
    assert m["events"] > 0 and 0 <= m["event_recall"] <= 1
    assert m["false_alerts_per_hour"] is None  # no rate recorded, none given
    assert main([*test, "--out", str(tmp_path / "t2"), "--fps", "10"]) == 0
    m = _json_out(capsys)["metrics"]
    assert m["event_fps"] == 10.0 and m["false_alerts_per_hour"] is not None
    saved = json.loads((tmp_path / "t2" / "metrics.json").read_text())
    assert saved["false_alerts_per_hour"] == m["false_alerts_per_hour"]
    assert "false alerts per hour" in (tmp_path / "t2" / "report.html").read_text()
    # the rates `arnet extract` records per video
    videos = data / "features_video" / "i3d" / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    names = (data / "test_split.txt").read_text().split()
    for name in names:
        (videos / f"{name}.json").write_text(json.dumps({"name": name, "fps": 5.0}))
    assert main([*test, "--out", str(tmp_path / "t3")]) == 0
    m = _json_out(capsys)["metrics"]
    assert m["event_fps"] == 5.0
    # --fps overrides them; a rate that is not positive is refused by name
    assert main([*test, "--out", str(tmp_path / "t4"), "--fps", "20"]) == 0
    assert _json_out(capsys)["metrics"]["event_fps"] == 20.0
    with pytest.raises(SystemExit) as exc:
        main([*test, "--out", str(tmp_path / "t5"), "--fps", "0"])
    assert exc.value.code == 2
    assert "--fps" in capsys.readouterr().err
    assert not (tmp_path / "t5").exists()
