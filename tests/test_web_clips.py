"""The alert's clip on the dashboard: served by the app with range requests behind the token
guard (FastAPI's test client), and played by the alert page in a real headless Chromium with
the score curve drawn under it, its cursor following the video. The store and the clip are
made by `arnet watch --clip-before 1s --clip-after 1s` of a replayed video."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed")
pytest.importorskip("sqlalchemy", reason="the live extra is not installed")

from fastapi.testclient import TestClient  # noqa: E402
from websupport import chromium_driver, not_blank, serving, wait_for, watch_kit  # noqa: E402

from arnet.store import open_store  # noqa: E402
from arnet.store.media import clip, set_mask  # noqa: E402
from arnet.web.app import create_app  # noqa: E402

LOCAL = "http://127.0.0.1"
TOKEN = "a-long-enough-test-token"


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from arnet.cli import main

    run, video = watch_kit(tmp_path_factory)
    db = tmp_path_factory.mktemp("watched") / "events.db"
    argv = ["watch", f"gate={video}", "--checkpoint", str(run), "--db", str(db), "--quiet",
            "--clip-before", "1s", "--clip-after", "1s"]  # fmt: skip
    assert main(argv) == 0
    with open_store(db) as s:
        yield s


def _alert(store) -> dict:  # noqa: ANN001
    (alert,) = store.alerts(camera="gate")[0]
    return alert


def test_the_clip_is_served_with_ranges_behind_the_token(watched) -> None:  # noqa: ANN001
    alert = _alert(watched)
    row = clip(watched, alert["id"])
    data = Path(row["path"]).read_bytes()
    assert Path(row["path"]).parent.parent == Path(watched.url[len("sqlite:///") :]).with_name(
        "events-clips"
    )
    client = TestClient(create_app(watched), base_url=LOCAL)
    info = client.get(f"/api/alerts/{alert['id']}/clip/info").json()
    assert info["available"] and info["url"] == f"/api/alerts/{alert['id']}/clip"
    assert "path" not in info  # the server's paths are not shown
    assert (info["start_frame"], info["end_frame"]) == (row["start_frame"], row["end_frame"])
    whole = client.get(info["url"])
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    part = client.get(info["url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert client.get(info["url"], headers={"Range": f"bytes={len(data) + 5}-"}).status_code == 416
    # none for an alert without a clip or one that does not exist
    assert client.get("/api/alerts/999/clip").status_code == 404
    assert client.get("/api/alerts/999/clip/info").status_code == 404
    with open_store(watched.url[len("sqlite:///") :]) as store:  # an alert without a clip
        camera = store.register_camera("plain", "x")
        row = {"state": "closed", "start_segment": 0, "end_segment": 0, "start_frame": 0,
               "end_frame": 15, "start_time": 1.0, "end_time": 2.0, "peak_score": 0.9,
               "peak_frame": 0, "peak_time": 1.0, "threshold": 0.5}  # fmt: skip
        (plain,) = store.commit_segments(camera["id"], [], [row])
    assert client.get(f"/api/alerts/{plain}/clip/info").json() is None
    assert client.get(f"/api/alerts/{plain}/clip").status_code == 404
    assert client.get("/api/alerts/-1/clip").status_code in (404, 422)
    assert client.get("/api/cameras/mask", params={"camera": "gate"}).json() is None
    guarded = TestClient(create_app(watched, token=TOKEN), base_url=LOCAL)
    assert guarded.get(info["url"]).status_code == 401
    assert guarded.get(f"/api/alerts/{alert['id']}/clip/info").status_code == 401
    ok = guarded.get(info["url"], headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.content == data


def test_a_clip_gone_from_the_disk_is_named(watched, tmp_path: Path) -> None:  # noqa: ANN001
    alert = _alert(watched)
    path = Path(clip(watched, alert["id"])["path"])
    moved = tmp_path / "away.mp4"
    path.rename(moved)
    try:
        client = TestClient(create_app(watched), base_url=LOCAL)
        gone = client.get(f"/api/alerts/{alert['id']}/clip")
        assert gone.status_code == 404 and "gone from the disk" in gone.json()["detail"]
        assert client.get(f"/api/alerts/{alert['id']}/clip/info").json()["available"] is False
    finally:
        moved.rename(path)


def test_the_alert_page_plays_the_clip_over_its_score_curve(watched, tmp_path: Path) -> None:  # noqa: ANN001
    alert = _alert(watched)
    row = clip(watched, alert["id"])
    camera_id = watched.camera("gate")["id"]
    mask = {
        "kind": "cells",
        "rows": 4,
        "cols": 4,
        "cells": [[0, 0], [3, 3]],
        "region": [0, 0, 1, 1],
    }
    set_mask(watched, camera_id, mask)
    driver = chromium_driver()
    try:
        with serving(create_app(watched)) as base:
            driver.get(f"{base}/alerts/{alert['id']}")
            video = wait_for(
                lambda: driver.find_element("id", "clip-video"), what="the clip's video element"
            )
            # the browser fetched and decoded the H.264 clip: its first frame is shown
            wait_for(
                lambda: driver.execute_script("return arguments[0].readyState >= 2", video),
                timeout=30,
                what="the clip to load",
            )
            size = driver.execute_script(
                "return [arguments[0].videoWidth, arguments[0].videoHeight, arguments[0].duration]",
                video,
            )
            frames = row["end_frame"] - row["start_frame"] + 1
            assert size[:2] == [row["width"], row["height"]]
            assert abs(size[2] - frames / row["fps"]) < 0.2
            chart = driver.find_element("id", "clip-chart")
            series = chart.find_element("css selector", "path[data-name='clip-score']")
            assert len(series.get_attribute("d").split("L")) > 4  # the curve is drawn
            cursor = chart.find_element("css selector", "line.clip-cursor")
            assert int(cursor.get_attribute("data-frame")) == row["start_frame"]
            # seeking the video moves the cursor to that frame on the curve
            target = row["start_frame"] + int(1.0 * row["fps"])
            driver.execute_script("arguments[0].currentTime = 1.0", video)
            wait_for(
                lambda: abs(int(cursor.get_attribute("data-frame")) - target) <= 1,
                timeout=30,
                what="the cursor to follow the video",
            )
            x0 = float(driver.execute_script("return arguments[0].px(arguments[1])", chart, 0))
            assert float(cursor.get_attribute("x1")) > x0
            # the camera's mask over the video: its two cells
            overlay = driver.find_element("id", "mask-overlay")
            assert len(overlay.find_elements("css selector", "rect.masked")) == 2
            shot = tmp_path / "alert-clip.png"
            driver.save_screenshot(str(shot))
            not_blank(shot)
            logs = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert not logs, json.dumps(logs)
    finally:
        driver.quit()
        set_mask(watched, camera_id, None)
