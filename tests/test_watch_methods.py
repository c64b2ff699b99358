"""`arnet watch` with each of the field's methods (RTFM, MGFN, UR-DMU, BN-WVAD), temporal
models all: a camera's live scores are the causal scores of the same footage (each segment at
the right end of its own window of past segments, however the segments were batched), and
its alerts are the spans of those scores above the threshold, through the command itself into
a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("cv2")
pytest.importorskip("sqlalchemy")

from livekit import footage, make_checkpoint  # noqa: E402

from arnet.cli import main  # noqa: E402
from arnet.models import model_entry  # noqa: E402
from arnet.store import open_store  # noqa: E402

METHODS = ("rtfm", "mgfn", "urdmu", "bnwvad")


@pytest.mark.parametrize("name", METHODS)
def test_watch_with_a_method_scores_and_alerts_as_detect_does(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from helpers import write_video

    from arnet.detection.detector import load_detector
    from arnet.extract.video import VideoInput
    from arnet.live.scorer import causal_scores

    run = make_checkpoint(tmp_path / "run", model=name, model_args=dict(model_entry(name).example))
    detector = load_detector(run, device="cpu")[0]
    frames = footage("..XXXX....", seed=3)
    video = write_video(tmp_path / "cam.mp4", frames, fps=25)
    extracted, whole = detector.score(VideoInput(video, "cam", "video"))
    features = extracted.features[detector.output]
    causal = causal_scores(detector.model, features, context=64)
    assert len(causal) == 10
    assert not np.allclose(causal, whole, atol=1e-4)  # a temporal model: the future matters
    above = np.flatnonzero(causal >= 0.5)
    spans = [
        (int(r[0]), int(r[-1]))
        for r in np.split(above, np.flatnonzero(np.diff(above) > 1) + 1)
        if len(r)
    ]

    db = tmp_path / "alerts.db"
    assert main(["watch", str(video), "--checkpoint", str(run), "--db", str(db),
                 "--threshold", "0.5", "--quiet"]) == 0  # fmt: skip
    with open_store(db) as store:
        live = store.scores("cam", limit=None)
        assert [s["segment"] for s in live] == list(range(10))
        np.testing.assert_allclose([s["score"] for s in live], causal, rtol=0, atol=1e-5)
        alerts, _ = store.alerts(camera="cam")
        assert sorted((a["start_segment"], a["end_segment"]) for a in alerts) == spans
        assert store.camera("cam")["state"] == "stopped"
    capsys.readouterr()
    assert main(["alerts", "--db", str(db), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["total"] == len(spans)
