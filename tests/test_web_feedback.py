"""Verdicts from the dashboard: the alert page's buttons in a real headless Chromium behind the
token guard, two operators who disagree, and the API's answers to a verdict on another
detector's alert, an unknown verdict and a request without the token."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed")
pytest.importorskip("sqlalchemy", reason="the live extra is not installed")

from fastapi.testclient import TestClient  # noqa: E402

from arnet.store import open_store  # noqa: E402
from arnet.web.app import create_app  # noqa: E402

TOKEN = "a-long-enough-test-token"
RUN = "/srv/runs/site"


def _alert_with_features(store, camera: str, run: str = RUN, version: int = 2) -> int:  # noqa: ANN001
    """An alert as a watcher writes it: scores, the alert, its detector and features."""
    cam = store.register_camera(camera, "rtsp://cam/1", start_threshold=0.5, stop_threshold=0.5)
    segments = [
        {
            "segment": i,
            "start_frame": 16 * i,
            "end_frame": 16 * i + 15,
            "start_time": 1000.0 + i,
            "end_time": 1001.0 + i,
            "score": 0.9 if 2 <= i <= 3 else 0.1,
        }
        for i in range(6)
    ]
    alert = {
        "state": "closed",
        "start_segment": 2,
        "end_segment": 3,
        "start_frame": 32,
        "end_frame": 63,
        "start_time": 1002.0,
        "end_time": 1004.0,
        "peak_score": 0.9,
        "peak_frame": 32,
        "peak_time": 1002.0,
        "threshold": 0.5,
        "detector": (run, version),
        "segment_features": {2: np.ones(4, np.float32), 3: np.full(4, 2.0, np.float32)},
    }
    (alert_id,) = store.commit_segments(cam["id"], segments, [alert])
    return alert_id


@pytest.fixture()
def store(tmp_path: Path):  # noqa: ANN201
    with open_store(tmp_path / "events.db") as s:
        yield s


def test_the_verdict_api_behind_the_token(store) -> None:  # noqa: ANN001
    alert_id = _alert_with_features(store, "gate")
    np.testing.assert_array_equal(store.alert_features(alert_id), [[1.0] * 4, [2.0] * 4])
    client = TestClient(create_app(store, token=TOKEN), base_url="http://127.0.0.1")
    url = f"/api/alerts/{alert_id}/verdict"
    assert client.post(url, json={"verdict": "real"}).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    # a form post from another site is refused before it reaches the store
    assert client.post(url, data={"verdict": "real"}, headers=auth).status_code == 415
    wrong = client.post(url, json={"verdict": "maybe"}, headers=auth)
    assert wrong.status_code == 422
    other = client.post(url, json={"verdict": "real", "run": "/srv/runs/other"}, headers=auth)
    assert other.status_code == 409
    assert f"was scored by {RUN}@2, not /srv/runs/other" in other.json()["detail"]
    older = client.post(url, json={"verdict": "real", "run": RUN, "version": 1}, headers=auth)
    assert older.status_code == 409 and "not /srv/runs/site@1" in older.json()["detail"]
    assert (
        client.post("/api/alerts/999/verdict", json={"verdict": "real"}, headers=auth).status_code
        == 404
    )
    ok = client.post(
        url, json={"verdict": "real", "run": RUN, "version": 2, "by": "ana"}, headers=auth
    )
    assert ok.status_code == 200 and ok.json()["verdict"] == "real"
    shown = client.get(f"/api/alerts/{alert_id}", headers=auth).json()
    assert shown["detector"] == {"run": RUN, "version": 2} and shown["verdict"] == "real"
    listed = client.get("/api/alerts", headers=auth).json()["alerts"]
    assert listed[0]["verdict"] == "real"


def test_two_operators_judge_an_alert_on_its_page(store, tmp_path: Path) -> None:  # noqa: ANN001
    pytest.importorskip("selenium", reason="selenium is not installed")
    from selenium.webdriver.common.by import By
    from websupport import chromium_driver, not_blank, serving, wait_for

    alert_id = _alert_with_features(store, "loading-bay")
    driver = chromium_driver()
    try:
        with serving(create_app(store, token=TOKEN, poll_seconds=0.2)) as base:
            driver.get(f"{base}/alerts/{alert_id}?token={TOKEN}")
            wait_for(lambda: driver.find_elements(By.ID, "verdict-false-alarm"), what="buttons")
            assert "none yet" in driver.find_element(By.ID, "verdict").text
            assert RUN in driver.find_element(By.CSS_SELECTOR, ".facts-table").text
            driver.find_element(By.ID, "verdict-by").send_keys("ana")
            driver.find_element(By.ID, "verdict-note").send_keys("a shadow")
            driver.find_element(By.ID, "verdict-false-alarm").click()
            wait_for(
                lambda: driver.find_element(By.ID, "verdict").text == "false-alarm",
                what="the first verdict on the page",
            )
            # a second operator disagrees: the latest counts, both are kept
            driver.find_element(By.ID, "verdict-by").send_keys("li")
            driver.find_element(By.ID, "verdict-real").click()
            wait_for(lambda: driver.find_element(By.ID, "verdict").text == "real", what="real")
            history = driver.find_element(By.ID, "verdicts").text
            assert "by ana: false-alarm · a shadow" in history and "by li: real" in history
            path = tmp_path / "alert-verdicts.png"
            assert driver.save_screenshot(str(path))
            not_blank(path)
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert [e for e in errors if "favicon" not in e["message"]] == []
    finally:
        driver.quit()
    stored = store.alert(alert_id)
    assert stored["verdict"] == "real"
    assert [(v["verdict"], v["by"], v["note"]) for v in stored["verdicts"]] == [
        ("false-alarm", "ana", "a shadow"),
        ("real", "li", ""),
    ]
