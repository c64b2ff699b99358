"""Helpers of the live-detection tests: generated footage, a checkpoint trained on it in the
test, and a real HTTP MJPEG server on the loopback address.

The footage: 32x32 frames of grey noise (normal) and the same with a bright square in it
(anomalous), in 16-frame segments. The checkpoint is an AR-Net `single` model trained for a
few hundred steps on EfficientNet-Lite0 features of such segments (32-pixel frames, whole
frame), recorded with the extraction settings `detect` and `watch` read back.
"""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

SIZE = 32
L = 16
PREPROCESSING = {"short_side": SIZE, "crop": "full", "crop_size": SIZE, "tail": "drop"}


def frame(anomalous: bool, rng: np.random.Generator) -> np.ndarray:
    """One 32x32 RGB frame: dark noise, with a bright square when anomalous."""
    image = rng.integers(20, 70, size=(SIZE, SIZE, 3), dtype=np.uint8)
    if anomalous:
        top, left = rng.integers(2, 14, size=2)
        image[top : top + 16, left : left + 16] = 235
    return image


def footage(pattern: str, seed: int = 0) -> list[np.ndarray]:
    """Frames of segments given as a string: '.' a normal segment, 'X' an anomalous one."""
    rng = np.random.default_rng(seed)
    return [frame(c == "X", rng) for c in pattern for _ in range(L)]


def jpeg_bytes(image: np.ndarray, quality: int = 95) -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()


def make_checkpoint(
    folder: Path, model: str = "single", other_dim: bool = False, model_args: dict | None = None
) -> Path:
    """Train a small model (MODEL_ARGS: its constructor's other arguments) on EfficientNet-Lite0
    features of generated segments; its run folder (checkpoints/last.pt) with the extraction
    recorded beside its 'training data'."""
    from arnet.extract.backbones import create_backbone
    from arnet.extract.pipeline import ExtractConfig, FeatureExtractor
    from arnet.extract.preprocess import Preprocessing
    from arnet.models import create_model
    from arnet.training.checkpoint import save_checkpoint

    extractor = FeatureExtractor(
        {"rgb": create_backbone("efficientnet-lite0", "rgb")},
        ExtractConfig(Preprocessing(**PREPROCESSING), batch_size=16),
    )
    rng = np.random.default_rng(1)
    labels = np.array([0, 1] * 8)
    segments = [[(frame(bool(y), rng), None) for _ in range(L)] for y in labels]
    feats = torch.from_numpy(extractor.encode_segments(segments)["rgb"]).float()
    dim = feats.shape[1] + (8 if other_dim else 0)
    torch.manual_seed(0)
    net = create_model(model, dim, **(model_args or {}))
    if not other_dim:
        opt = torch.optim.Adam(net.parameters(), lr=3e-3, foreach=True)
        y = torch.from_numpy(labels).float()
        net.train()
        for _ in range(40):
            opt.zero_grad()
            scores = net(feats[None], torch.ones(1, len(feats), dtype=torch.bool))[0]
            loss = torch.nn.functional.binary_cross_entropy(scores, y)
            loss.backward()
            opt.step()
        net.eval()
    data = folder / "data"
    record = data / "features_video" / "efficientnet-lite0"
    record.mkdir(parents=True)
    (record / "extraction.json").write_text(json.dumps(extractor.metadata()))
    run = folder / "run"
    save_checkpoint(
        run / "checkpoints" / "last.pt",
        {
            "format": "arnet-checkpoint",
            "model": {"name": model, "kwargs": {"feature_dim": dim, **(model_args or {})}},
            "state_dict": net.state_dict(),
            "iteration": 40,
            "config": {
                "data": str(data),
                "feature_modal": "rgb",
                "feature_backbone": "efficientnet-lite0",
                "threshold": 0.5,
            },
        },
    )
    return run


def make_grid_checkpoint(folder: Path, grid: str = "4x4") -> Path:
    """A `nearest-normal` checkpoint on motion-grid rgb features (ROWSxCOLS cells of the whole
    32x32 frame) of generated videos, fitted without gradients: a model that also says where a
    segment is anomalous (its cell map). Its run folder, as `make_checkpoint`'s."""
    from arnet.extract.backbones import create_backbone
    from arnet.extract.pipeline import ExtractConfig, FeatureExtractor
    from arnet.extract.preprocess import Preprocessing
    from arnet.formats.extraction import feature_groups
    from arnet.models.normal import fit_bank
    from arnet.models.registry import model_spec
    from arnet.training.checkpoint import save_checkpoint

    extractor = FeatureExtractor(
        {"rgb": create_backbone("motion-grid", "rgb", grid=grid)},
        ExtractConfig(Preprocessing(**PREPROCESSING), batch_size=16),
    )
    from helpers import write_video

    from arnet.extract.video import find_inputs

    # fitted on encoded videos, as watched footage is decoded: the codec's noise is normal
    patterns, labels = ["......", "......", "......", "..XX..", ".XXX.."], [0, 0, 0, 1, 1]
    videos = []
    folder.mkdir(parents=True, exist_ok=True)
    for seed, pattern in enumerate(patterns):
        path = write_video(folder / f"train{seed}.mp4", footage(pattern, seed=10 + seed))
        videos.append(extractor.extract(find_inputs([str(path)])[0]).features["rgb"])
    meta = extractor.metadata()
    model, _fit = fit_bank(videos, labels, feature_groups(meta["backbones"], "rgb"))
    data = folder / "data"
    record = data / "features_video" / "motion-grid"
    record.mkdir(parents=True)
    (record / "extraction.json").write_text(json.dumps(meta))
    run = folder / "run"
    save_checkpoint(
        run / "checkpoints" / "last.pt",
        {
            "format": "arnet-checkpoint",
            "model": model_spec(model),
            "state_dict": model.state_dict(),
            "iteration": 0,
            "config": {
                "data": str(data),
                "feature_modal": "rgb",
                "feature_backbone": "motion-grid",
                "threshold": 0.5,
            },
        },
    )
    return run


class MjpegServer:
    """An HTTP server on 127.0.0.1 that sends frames as multipart/x-mixed-replace JPEGs (as
    IP cameras do), at `fps`, from a frame source called per connection.

    Args:
        frames: connection number (0, 1, ...) -> the frames to send; the connection closes
            after the last one (a stream that dies); None -> the server answers with
            `garbage` bytes instead (a corrupt stream).
        fps: sending rate (0: as fast as the client reads).
        hold: when given, the first connection stays open and silent after its frames until
            this event is set (a camera that stalls).
    """

    def __init__(
        self,
        frames: Callable[[int], Sequence[np.ndarray] | None],
        fps: float = 0.0,
        garbage: bytes = b"",
        hold: threading.Event | None = None,
    ) -> None:
        self.frames, self.fps, self.garbage, self.hold = frames, fps, garbage, hold
        self.connections = 0
        self.sent: list[float] = []  # wall time each frame was written
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802  (http.server's name)
                number = server.connections
                server.connections += 1
                chosen = server.frames(number)
                self.send_response(200)
                if chosen is None:
                    self.send_header("Content-Type", "multipart/x-mixed-replace;boundary=frame")
                    self.end_headers()
                    self.wfile.write(server.garbage)
                    return
                self.send_header("Content-Type", "multipart/x-mixed-replace;boundary=frame")
                self.end_headers()
                start = time.monotonic()
                try:
                    for i, image in enumerate(chosen):
                        if server.fps:
                            wait = start + i / server.fps - time.monotonic()
                            if wait > 0:
                                time.sleep(wait)
                        data = jpeg_bytes(image)
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\n"
                            + f"Content-Length: {len(data)}\r\n\r\n".encode()
                            + data
                            + b"\r\n"
                        )
                        self.wfile.flush()
                        server.sent.append(time.time())
                    if number == 0 and server.hold is not None:
                        server.hold.wait()
                except (BrokenPipeError, ConnectionResetError):
                    pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def __enter__(self) -> MjpegServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll until `condition()` holds (True) or `timeout` passes (False); never asserts time.
    A condition that raises counts as not yet holding (e.g. a row not written yet)."""

    def holds() -> bool:
        try:
            return bool(condition())
        except Exception:  # noqa: BLE001
            return False

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if holds():
            return True
        time.sleep(0.1)
    return holds()


def iter_chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
