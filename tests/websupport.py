"""What the dashboard's tests share (imported by the test modules, like pgserver):

- `train_runs`: two short real training runs on the tiny synthetic dataset;
- `watch_kit`: a checkpoint that scores generated footage, and a video file of that footage
  (a replayed camera for `arnet watch`);
- `CameraFeed`: a camera written into a real event store segment by segment through the
  store's write API, raising an alert with a JPEG peak frame when its score crosses the
  threshold, as a watcher does;
- `serving`: the app served by uvicorn on 127.0.0.1 at a free port, in a thread;
- `chromium`: a real headless Chromium driven by Selenium (skipped, with the reason, only
  where it cannot start);
- `not_blank`: a screenshot check.
"""

from __future__ import annotations

import io
import math
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from arnet.formats.synth import SynthConfig, write_synthetic

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
XSS = "<img src=x onerror=alert(1)>"


# Smaller than conftest's TINY: two runs with plots train in seconds.
WEB_DATA = SynthConfig(
    train_videos=12,
    train_anomalous=4,
    test_videos=6,
    test_anomalous=3,
    dim=16,
    min_segments=6,
    max_segments=30,
    event_strength=2.0,
    seed=7,
)
_RUNS: dict[str, Path] = {}


def train_runs(data: Path, root: Path) -> list[str]:
    """Two short runs under `root` (AR-Net and the naive baseline); their names."""
    from arnet.cli import main

    common = ["--data", str(data), "--iterations", "10", "--snapshot-every", "5"]
    common += ["--videos-per-class", "4", "--device", "cpu", "--quiet", "--log-every", "2"]
    common += ["--no-tensorboard"]
    assert main(["train", *common, "--out", str(root / "arnet")]) == 0
    naive = ["--topk-divisor", "1", "--center-weight", "0", "--seed", "2"]
    assert main(["train", *common, *naive, "--out", str(root / "sweep" / "naive")]) == 0
    return ["arnet", "sweep/naive"]


def shared_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runs folder of `train_runs`, made once per test session (read-only: copy it)."""
    if "root" not in _RUNS:
        base = tmp_path_factory.mktemp("web")
        write_synthetic(base / "data", WEB_DATA)
        train_runs(base / "data", base / "runs")
        _RUNS["root"] = base / "runs"
    return _RUNS["root"]


# The replayed camera: '.' a normal 16-frame segment, 'X' an anomalous one.
FOOTAGE = "......XXXX......"


def watch_kit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run folder of a checkpoint for `arnet watch`, a video file of FOOTAGE), made once per
    session. Skips where the extract extra (video decoding, EfficientNet-Lite0) is missing."""
    if "kit" not in _RUNS:
        pytest.importorskip("cv2", reason="the extract extra is not installed")
        pytest.importorskip("av", reason="the extract extra is not installed")
        import livekit

        base = tmp_path_factory.mktemp("watch")
        run = livekit.make_checkpoint(base)
        _RUNS["kit"] = (run, write_video(base / "gate.avi", livekit.footage(FOOTAGE, seed=3)))
    return _RUNS["kit"]


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    """An MJPEG .avi of RGB frames, as a camera recording would be."""
    import cv2

    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for image in frames:
        writer.write(np.ascontiguousarray(image[:, :, ::-1]))
    writer.release()
    return path


def jpeg(seed: int, size: tuple[int, int] = (160, 120)) -> bytes:
    """A real JPEG frame: a gradient with a bright block where `seed` puts it."""
    from PIL import Image

    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    image = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 80)], axis=-1).astype(np.uint8)
    left = 10 + (seed * 23) % (w - 50)
    image[40:80, left : left + 40] = 250
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=85)
    return out.getvalue()


class CameraFeed:
    """One camera's scores written into `store` as a watcher writes them.

    Scores follow a slow sine wave plus a burst above the threshold from `burst` segments on,
    `burst_length` long; the burst opens an alert (state open) that closes when it ends.
    """

    def __init__(
        self,
        store: Any,
        name: str,
        *,
        threshold: float = 0.6,
        burst: int = 30,
        burst_length: int = 8,
        fps: float = 25.0,
        start_time: float | None = None,
    ) -> None:
        self.store, self.name, self.threshold = store, name, threshold
        self.burst, self.burst_length = burst, burst_length
        self.seconds = 16 / fps
        self.t0 = time.time() - 3600 if start_time is None else start_time
        self.camera = store.register_camera(
            name,
            f"replay:{name}.mp4",
            start_threshold=threshold,
            stop_threshold=threshold - 0.1,
            fps=fps,
            frames_per_segment=16,
        )
        store.set_state(self.camera["id"], "streaming", event="connected", frame=0)
        self.next = 0
        self.alert_ids: list[int] = []

    def score(self, i: int) -> float:
        if self.burst <= i < self.burst + self.burst_length:
            return 0.85 + 0.1 * math.sin(i)
        return 0.25 + 0.15 * math.sin(i / 4.0)

    def _segment(self, i: int) -> dict[str, Any]:
        return {
            "segment": i,
            "start_frame": 16 * i,
            "end_frame": 16 * i + 15,
            "start_time": self.t0 + i * self.seconds,
            "end_time": self.t0 + (i + 1) * self.seconds,
            "score": self.score(i),
        }

    def _alert(self, upto: int) -> dict[str, Any] | None:
        """The burst's alert as of segment `upto` (inclusive), or None before it starts."""
        if upto < self.burst:
            return None
        end = min(upto, self.burst + self.burst_length - 1)
        scores = [self.score(i) for i in range(self.burst, end + 1)]
        peak = self.burst + int(np.argmax(scores))
        return {
            "state": "closed" if upto >= self.burst + self.burst_length else "open",
            "start_segment": self.burst,
            "end_segment": end,
            "start_frame": 16 * self.burst,
            "end_frame": 16 * end + 15,
            "start_time": self.t0 + self.burst * self.seconds,
            "end_time": self.t0 + (end + 1) * self.seconds,
            "peak_score": max(scores),
            "peak_frame": 16 * peak + 8,
            "peak_time": self.t0 + (peak + 0.5) * self.seconds,
            "threshold": self.threshold,
            "peak_image": jpeg(peak),
        }

    def write(self, count: int) -> None:
        """Commit the next `count` segments (and the alert they open, extend or close)."""
        first = self.next
        segments = [self._segment(i) for i in range(first, first + count)]
        self.next += count
        alert = self._alert(self.next - 1)
        # The alert row is written while it is open and once more when it closes.
        closing = alert is not None and first <= self.burst + self.burst_length
        rows = [alert] if closing else []
        self.alert_ids = self.store.commit_segments(self.camera["id"], segments, rows) or (
            self.alert_ids
        )

    @contextmanager
    def running(self, every: float = 0.25, per_step: int = 1) -> Iterator[CameraFeed]:
        """Keep writing in a thread while the block runs."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(every):
                self.write(per_step)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=free_port(),
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        app.state.closing.set()  # as `arnet serve` does on Ctrl-C: live streams end
        server.should_exit = True
        thread.join(timeout=30)


def chromium_driver(width: int = 1280, height: int = 900) -> Any:
    """A headless Chromium under Selenium; pytest.skip (with the reason) if it cannot start."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    browser = shutil.which("chromium") or CHROMIUM
    driver_path = shutil.which("chromedriver") or CHROMEDRIVER
    if not Path(browser).exists() or not Path(driver_path).exists():
        pytest.skip(f"Chromium or chromedriver missing ({browser}, {driver_path})")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    except WebDriverException as exc:
        pytest.skip(f"Chromium cannot start here: {str(exc).splitlines()[0]}")


def wait_for(condition: Any, timeout: float = 20.0, every: float = 0.1, what: str = "") -> Any:
    """Poll `condition()` until it returns something true; its value. Fails after `timeout`.

    A live page redraws itself: an element found a moment ago may be gone (stale) or not yet
    drawn, so the browser's element errors count as "not yet"."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except (NoSuchElementException, StaleElementReferenceException) as exc:
            last = exc
        if time.monotonic() > deadline:
            detail = f" (last: {type(last).__name__})" if last else ""
            raise AssertionError(f"timed out waiting for {what or condition}{detail}")
        time.sleep(every)


def not_blank(path: Path, min_std: float = 8.0) -> float:
    """Assert that a screenshot is a picture, not one flat colour; its pixel std."""
    from PIL import Image

    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    std = float(pixels.std())
    assert pixels.size > 10_000 and std > min_std, f"{path} looks blank (std {std:.2f})"
    return std
