"""The dashboard in a real headless Chromium: the live view moving while scores arrive, an alert
from appearance to acknowledgement, names that try to run script, two runs side by side.
Every page is photographed into the test's temporary folder and checked for being a picture.

Skipped, with the reason, only where Chromium or its driver cannot start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed")
pytest.importorskip("sqlalchemy", reason="the live extra is not installed")
pytest.importorskip("selenium", reason="selenium is not installed")

from selenium.common.exceptions import (  # noqa: E402
    NoAlertPresentException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from websupport import (  # noqa: E402
    XSS,
    CameraFeed,
    chromium_driver,
    not_blank,
    serving,
    shared_runs,
    wait_for,
    watch_kit,
    write_video,
)

import arnet  # noqa: E402
from arnet.store import open_store  # noqa: E402
from arnet.web.app import create_app  # noqa: E402

TOKEN = "a-long-enough-test-token"
# The camera `arnet watch` replays at its own frame rate (25 fps): about 15 s of footage.
LIVE_FOOTAGE = "." * 10 + "X" * 6 + "." * 8


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201
    driver = chromium_driver()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two shared runs, plus a copy whose folder and video names try to run script."""
    root = tmp_path_factory.mktemp("runs")
    shutil.copytree(shared_runs(tmp_path_factory), root, dirs_exist_ok=True)
    evil = root / XSS.replace("/", "")
    shutil.copytree(root / "arnet", evil, ignore=shutil.ignore_patterns("checkpoints"))
    with np.load(evil / "scores.npz") as z:
        scores = {k: z[k] for k in z.files}
    first = sorted(scores)[0]
    scores[XSS] = scores.pop(first)
    np.savez(evil / "scores.npz", **scores)
    metrics = json.loads((evil / "metrics.json").read_text())
    for video in metrics["per_video"]:
        if video["name"] == first:
            video["name"] = XSS
    (evil / "metrics.json").write_text(json.dumps(metrics))
    return root


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store") / "events.db"


@pytest.fixture(scope="module")
def store(store_path: Path):  # noqa: ANN201
    with open_store(store_path) as s:
        yield s


@pytest.fixture(scope="module")
def site(store, runs: Path):  # noqa: ANN001, ANN201
    with serving(create_app(store, runs, poll_seconds=0.2)) as base:
        yield base


def no_dialog(driver) -> None:  # noqa: ANN001
    """No alert() dialog is open (script from a name would have opened one)."""
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018  (reading it is the check)


def page_errors(driver) -> list[str]:  # noqa: ANN001
    """Script errors and refused resources logged by the page (favicon misses aside)."""
    return [
        e["message"]
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and "favicon" not in e["message"]
    ]


def shot(driver, tmp_path: Path, name: str) -> Path:  # noqa: ANN001
    path = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(path))
    not_blank(path)
    return path


# Read in one script call: the live view redraws a card whenever scores arrive, so an element
# found in one call may be gone by the next.
_CARD = (
    "const card = [...document.querySelectorAll('article.camera')]"
    ".find((c) => c.dataset.camera === arguments[0]);"
    "if (!card) return null;"
    "const chart = card.querySelector('svg.chart');"
    "return {title: card.querySelector('h2').textContent,"
    " facts: card.querySelector('.facts').textContent,"
    " last: chart ? chart.dataset.lastSegment : null,"
    " path: chart ? card.querySelector('path.series').getAttribute('d') : null};"
)


def camera_card(driver, name: str) -> dict | None:  # noqa: ANN001
    """The live view's card of camera `name` (title, facts, last segment, chart path)."""
    return driver.execute_script(_CARD, name)


def test_live_view_while_a_replayed_video_is_watched(
    browser, store_path, runs, tmp_path_factory, tmp_path
) -> None:  # noqa: ANN001
    """`arnet watch --realtime` replays a video into the store in another process; the live
    view follows it without reloading, its alert opens and is acknowledged."""
    import livekit

    run, _ = watch_kit(tmp_path_factory)
    video = write_video(tmp_path / "yard.avi", livekit.footage(LIVE_FOOTAGE, seed=5))
    src = Path(arnet.__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "arnet", "watch", f"yard={video}", "--realtime"]
    command += ["--checkpoint", str(run), "--db", str(store_path)]
    log = (tmp_path / "watch.log").open("w")
    watcher = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    store = open_store(store_path)
    try:
        with serving(create_app(store, runs, poll_seconds=0.2)) as base:
            browser.get(base + "/")
            card = wait_for(
                lambda: camera_card(browser, "yard"), timeout=240, what="the watched camera"
            )
            assert card["title"] == "yard"

            def last_segment() -> int:
                return int(camera_card(browser, "yard")["last"] or -1)

            first = wait_for(lambda: last_segment() + 1, timeout=120, what="scores") - 1
            first_path = camera_card(browser, "yard")["path"]
            wait_for(lambda: last_segment() >= first + 3, timeout=120, what="the chart to move")
            assert camera_card(browser, "yard")["path"] != first_path
            assert browser.current_url == base + "/"  # the same page, never reloaded
            wait_for(
                lambda: "yard" in browser.find_element(By.ID, "open-alerts").text,
                timeout=120,
                what="the alert in the live view",
            )
            shot(browser, tmp_path, "live-watch")
            assert watcher.wait(timeout=240) == 0  # the file ended: the watcher stops
            # ... and the card says so, still without a reload.
            wait_for(lambda: "stopped" in camera_card(browser, "yard")["facts"], what="state")
            (alert,) = store.alerts(camera="yard")[0]
            browser.get(f"{base}/alerts/{alert['id']}")
            image = wait_for(lambda: browser.find_elements(By.ID, "peak-image"))[0]
            wait_for(lambda: browser.execute_script("return arguments[0].naturalWidth", image))
            browser.find_element(By.ID, "note").send_keys("bright square, checked")
            browser.find_element(By.ID, "acknowledge").click()
            wait_for(lambda: "checked" in browser.find_element(By.ID, "acknowledgements").text)
            shot(browser, tmp_path, "alert-watch")
            assert (
                store.alert(alert["id"])["acknowledgements"][0]["note"] == "bright square, checked"
            )
            assert page_errors(browser) == []
    finally:
        if watcher.poll() is None:
            watcher.terminate()
            watcher.wait(timeout=60)
        log.close()
        store.close()


def test_alert_appears_opens_and_is_acknowledged(browser, site, store, tmp_path) -> None:  # noqa: ANN001
    feed = CameraFeed(store, "loading-bay", burst=8, burst_length=6)
    feed.write(3)
    browser.get(site + "/")
    wait_for(lambda: camera_card(browser, "loading-bay"), what="the camera's card")

    def alert_link():  # noqa: ANN202
        for link in browser.find_elements(By.CSS_SELECTOR, "#open-alerts-table a"):
            if "loading-bay" in link.find_element(By.XPATH, "../..").text:
                return link
        return None

    with feed.running(every=0.2):
        wait_for(alert_link, what="the alert in the live view")
    shot(browser, tmp_path, "live-alert")
    # The table is redrawn whenever the alert changes: click once the feed has stopped, and
    # again if a last update redrew it under the pointer.
    for _ in range(5):
        try:
            wait_for(alert_link).click()
            break
        except StaleElementReferenceException:
            continue
    wait_for(lambda: "/alerts/" in browser.current_url, what="the alert page")
    (alert_id,) = feed.alert_ids
    assert browser.current_url.endswith(f"/alerts/{alert_id}")

    image = wait_for(lambda: browser.find_elements(By.ID, "peak-image"), what="the image")[0]
    wait_for(lambda: browser.execute_script("return arguments[0].naturalWidth", image) == 160)
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart rect.alert-span")
    assert "loading-bay" in browser.find_element(By.ID, "title").text
    shot(browser, tmp_path, "alert")

    note = "forklift reversing, driver told"
    browser.find_element(By.ID, "note").send_keys(note)
    browser.find_element(By.ID, "by").send_keys("sam")
    browser.find_element(By.ID, "acknowledge").click()
    wait_for(
        lambda: note in browser.find_element(By.ID, "acknowledgements").text,
        what="the acknowledgement on the page",
    )
    stored = store.alert(alert_id)["acknowledgements"]
    assert [(a["note"], a["by"]) for a in stored] == [(note, "sam")]
    shot(browser, tmp_path, "alert-acknowledged")

    browser.get(site + "/alerts?camera=loading-bay")
    row = wait_for(
        lambda: browser.find_elements(
            By.CSS_SELECTOR, f"#alerts-table tr[data-alert='{alert_id}']"
        ),
        what="the alerts table",
    )[0]
    assert "loading-bay" in row.text and "yes" in row.text
    shot(browser, tmp_path, "alerts")
    assert page_errors(browser) == []


def test_malicious_names_show_as_text(browser, site, store, tmp_path) -> None:  # noqa: ANN001
    feed = CameraFeed(store, XSS, burst=2, burst_length=2)
    feed.write(6)
    (alert_id,) = feed.alert_ids
    pages = {
        "live": ("/", lambda: camera_card(browser, XSS)),
        "alerts": (
            "/alerts",
            lambda: browser.find_elements(By.CSS_SELECTOR, f"tr[data-alert='{alert_id}']"),
        ),
        "alert": (f"/alerts/{alert_id}", lambda: XSS in browser.find_element(By.ID, "title").text),
        "run": (
            "/runs/view?run=" + quote(XSS, safe=""),
            lambda: browser.find_elements(By.CSS_SELECTOR, "#run[data-ready='true']"),
        ),
    }
    for name, (path, ready) in pages.items():
        browser.get(site + path)
        wait_for(ready, what=f"the {name} page")
        no_dialog(browser)
        # The name is on the page as text, and no element was made from it.
        assert XSS in browser.find_element(By.TAG_NAME, "main").text, name
        assert browser.execute_script("return document.querySelectorAll('img[src=x]').length") == 0
        shot(browser, tmp_path, f"xss-{name}")
        assert page_errors(browser) == [], name


def test_runs_page_shows_two_runs_side_by_side(browser, site, tmp_path) -> None:  # noqa: ANN001
    browser.get(site + "/runs")
    wait_for(lambda: browser.find_elements(By.ID, "runs-table"), what="the runs table")
    for name in ("arnet", "sweep/naive"):
        row = browser.find_element(By.CSS_SELECTOR, f"tr[data-run='{name}']")
        row.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
    shot(browser, tmp_path, "runs")
    browser.find_element(By.ID, "compare").click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#run[data-ready='true']"))
    assert "run=arnet&run=sweep%2Fnaive" in browser.current_url
    headers = browser.find_elements(By.CSS_SELECTOR, ".run-header .column h2")
    assert [h.text for h in headers] == ["arnet", "sweep/naive"]
    metrics = browser.find_element(By.ID, "metrics-table").text
    assert "frame AUC (all videos)" in metrics
    # Per-video plots: one row per video, one plot per run, anomalous frames shaded.
    rows = browser.find_elements(By.CSS_SELECTOR, ".video-row")
    assert rows and all(len(r.find_elements(By.CSS_SELECTOR, "svg.chart")) == 2 for r in rows)
    assert rows[0].find_elements(By.CSS_SELECTOR, "rect.truth")
    curves = browser.find_elements(By.CSS_SELECTOR, ".curves svg.chart")
    assert len(curves) == 4  # loss and AUC of each run
    shot(browser, tmp_path, "runs-side-by-side")
    assert page_errors(browser) == []


def test_token_login_then_live_updates(browser, store, runs, tmp_path) -> None:  # noqa: ANN001
    feed = CameraFeed(store, "behind-token", burst=10_000)
    feed.write(3)
    with serving(create_app(store, runs, token=TOKEN, poll_seconds=0.2)) as base:
        browser.get(base + "/")
        assert "needs its token" in browser.find_element(By.TAG_NAME, "body").text
        browser.get(base + "/?token=" + TOKEN)
        assert browser.current_url == base + "/"  # the token left the address bar
        wait_for(lambda: camera_card(browser, "behind-token"), what="the live view")
        shot(browser, tmp_path, "token-live")
        browser.get(base + "/api")
        wait_for(lambda: len(browser.find_elements(By.CLASS_NAME, "endpoint")) >= 10)
        shot(browser, tmp_path, "api")
    browser.delete_all_cookies()


# Each chart: its drawn (viewBox) and shown widths, the texts that stick out of it, its plot
# frame's and score curve's heights on the screen, and its threshold labels.
_CHARTS = (
    "return [...document.querySelectorAll(arguments[0] + ' svg.chart')].map((svg) => {"
    " const box = svg.getBoundingClientRect();"
    " const out = (r) => r.left < box.left - 0.5 || r.right > box.right + 0.5"
    "   || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5;"
    " const path = svg.querySelector('path.series');"
    " return {drawn: svg.viewBox.baseVal.width, shown: box.width,"
    "  clipped: [...svg.querySelectorAll('text')].filter((t) => out(t.getBoundingClientRect()))"
    "   .map((t) => t.textContent),"
    "  plot: svg.querySelector('rect.frame').getBoundingClientRect().height,"
    "  curve: path ? path.getBoundingClientRect().height : 0,"
    "  thresholds: svg.querySelectorAll('line.threshold').length,"
    "  labels: [...svg.querySelectorAll('text.threshold-label')].map((t) => t.textContent)};"
    "});"
)


def charts_on(driver, scope: str = "") -> list[dict]:  # noqa: ANN001
    return driver.execute_script(_CHARTS, scope)


def sideways(driver) -> int:  # noqa: ANN001
    """How far the page scrolls sideways (0: it fits the window)."""
    return driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )


@pytest.fixture(scope="module")
def long_run(runs: Path) -> str:
    """A run of 1200 iterations in the runs folder (its charts end at a four-digit label)."""
    from websupport import WEB_DATA

    from arnet.cli import main
    from arnet.formats.synth import write_synthetic

    data = runs.parent / "long-data"
    write_synthetic(data, WEB_DATA)
    argv = ["train", "--data", str(data), "--iterations", "1200", "--snapshot-every", "600"]
    argv += ["--videos-per-class", "4", "--device", "cpu", "--quiet", "--log-every", "50"]
    assert main([*argv, "--no-tensorboard", "--out", str(runs / "long")]) == 0
    return "long"


class HoveringFeed(CameraFeed):
    """nearest-normal's scores: a normal camera hovering just above its 0.50 threshold, then an
    event at 0.70-0.76."""

    def score(self, i: int) -> float:
        if self.burst <= i < self.burst + self.burst_length:
            return 0.73 + 0.03 * np.sin(i)
        return 0.505 + 0.02 * np.sin(i / 3.0)


def test_score_charts_fit_the_scores_and_show_the_threshold(browser, site, store, tmp_path) -> None:  # noqa: ANN001
    browser.get_log("browser")  # what earlier tests left in the log is theirs
    feed = HoveringFeed(store, "near-normal", threshold=0.5, burst=20, burst_length=5)
    feed.write(40)
    browser.get(site + "/")
    wait_for(lambda: (camera_card(browser, "near-normal") or {}).get("last") == "39")
    card = "article.camera[data-camera='near-normal']"
    (chart,) = wait_for(lambda: charts_on(browser, card), what="the card's chart")
    # the scores span 0.485-0.76: on the whole 0-1 axis they would fill a quarter of the plot
    assert chart["curve"] > 0.6 * chart["plot"], chart
    assert chart["thresholds"] == 1 and chart["labels"] == ["threshold 0.50"]
    shot(browser, tmp_path, "live-hovering")
    (alert_id,) = feed.alert_ids
    browser.get(f"{site}/alerts/{alert_id}")
    (chart,) = wait_for(lambda: charts_on(browser, "#alert"), what="the alert's chart")
    assert chart["curve"] > 0.6 * chart["plot"] and chart["labels"] == ["threshold 0.50"]
    shot(browser, tmp_path, "alert-hovering")
    assert page_errors(browser) == []


def test_an_acknowledged_open_alert_no_longer_alarms_its_camera(
    browser, site, store, tmp_path
) -> None:  # noqa: ANN001
    browser.get_log("browser")  # what earlier tests left in the log is theirs
    feed = CameraFeed(store, "night-gate", burst=2, burst_length=10_000)  # stays open
    feed.write(6)
    (alert_id,) = feed.alert_ids
    browser.get(site + "/")
    card = "article.camera[data-camera='night-gate']"

    def alarmed() -> bool:
        return "alerting" in browser.find_element(By.CSS_SELECTOR, card).get_attribute("class")

    wait_for(alarmed, what="the red card of the open alert")
    store.acknowledge(alert_id, "seen on the monitor", by="kim")
    # the same page, without a reload: the card says the alert goes on, and is calm
    wait_for(lambda: not alarmed(), what="the card to calm down")
    text = browser.find_element(By.CSS_SELECTOR, card).text
    assert f"alert {alert_id} acknowledged, still going on" in text
    shot(browser, tmp_path, "live-acknowledged-open")
    assert page_errors(browser) == []


def test_the_single_run_view_draws_charts_at_their_size_and_fits_narrow_screens(
    browser, site, store, long_run, tmp_path
) -> None:  # noqa: ANN001
    browser.get_log("browser")  # what earlier tests left in the log is theirs
    browser.get(f"{site}/runs/view?run={long_run}")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#run[data-ready='true']"))
    found = charts_on(browser)
    assert len(found) >= 3  # the loss, the AUC and video plots
    for chart in found:
        assert chart["shown"] <= chart["drawn"] + 1, chart  # never blown up
        assert chart["clipped"] == [], chart  # "1200" and every other label whole
    shot(browser, tmp_path, "run-single")
    feed = CameraFeed(store, "narrow-cam", burst=3, burst_length=2)
    feed.write(8)
    (alert_id,) = feed.alert_ids
    pages = ["/", "/alerts", f"/alerts/{alert_id}", "/runs", f"/runs/view?run={long_run}"]
    pages.append("/runs/view?run=arnet&run=sweep%2Fnaive")
    try:
        browser.set_window_size(400, 900)
        for path in pages:
            browser.get(site + path)
            wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "svg.chart, table"))
            wait_for(
                lambda: browser.execute_script(
                    "const run = document.getElementById('run');"
                    "return !run || run.dataset.ready === 'true';"
                ),
                what=f"{path} drawn",
            )
            assert sideways(browser) == 0, path
            name = "narrow" + path.replace("/", "-").replace("?", "-").split("&")[0]
            shot(browser, tmp_path, name)
    finally:
        browser.set_window_size(1280, 900)
    assert page_errors(browser) == []


def test_the_alert_page_shows_where_a_grid_model_found_the_anomaly(
    browser, site, store, tmp_path
) -> None:  # noqa: ANN001
    browser.get_log("browser")  # what earlier tests left in the log is theirs
    pytest.importorskip("cv2", reason="the extract extra is not installed")
    pytest.importorskip("av", reason="the extract extra is not installed")
    import livekit
    from helpers import write_video

    from arnet.detection.detector import load_detector
    from arnet.detection.heatmaps import PICTURE_GAP
    from arnet.live.scorer import SegmentScorer
    from arnet.live.sources import parse_sources
    from arnet.live.tracker import Thresholds
    from arnet.live.watch import Watcher, WatchOptions

    detector, _ = load_detector(livekit.make_grid_checkpoint(tmp_path / "grid"), device="cpu")
    video = write_video(tmp_path / "dock.mp4", livekit.footage("....XX....", seed=3))
    t = detector.threshold
    watcher = Watcher(
        SegmentScorer(detector),
        store,
        parse_sources([f"dock={video}"]),
        Thresholds(t, t),
        WatchOptions(quiet=True),
    )
    watcher.start()
    watcher.run()
    ((alert,), _) = store.alerts(camera="dock")
    browser.get(f"{site}/alerts/{alert['id']}")
    image = wait_for(lambda: browser.find_elements(By.ID, "peak-image"), what="the picture")[0]
    size = livekit.SIZE
    # the peak frame, and beside it the frame under the heat map of its cells
    wait_for(
        lambda: (
            browser.execute_script("return arguments[0].naturalWidth", image)
            == 2 * size + PICTURE_GAP
        ),
        what="the picture with its heat map",
    )
    assert "heat map" in browser.find_element(By.CSS_SELECTOR, "figure.peak figcaption").text
    shot(browser, tmp_path, "alert-heat-map")
    assert page_errors(browser) == []
