"""Masks (`arnet watch --mask CAMERA=SPEC`): what happens in a masked region changes no score,
for a cell model (nearest-normal on motion-grid cells, a cell list) and for pooled features
(EfficientNet-Lite0 on the whole frame, a PNG at the frame's size); the mask is stored with the
camera for the dashboard; a mask of the wrong size, a cell outside the grid, an unknown camera
are refused in one line naming the camera and the sizes. Frames are lossless PNG files in a
frame folder, so two cameras differ only where the test makes them differ."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("cv2")
pytest.importorskip("sqlalchemy")

from livekit import SIZE, L, footage, make_checkpoint, make_grid_checkpoint, wait_for  # noqa: E402

from arnet.cli import main  # noqa: E402
from arnet.errors import DataError  # noqa: E402
from arnet.store import open_store  # noqa: E402
from arnet.store.media import mask as stored_mask  # noqa: E402

PATTERN = "......"  # six quiet segments; the second camera has a square in segments 2-3


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("runs")
    return {"pooled": make_checkpoint(base / "pooled"), "grid": make_grid_checkpoint(base / "grid")}


def _frames(square: bool) -> list[np.ndarray]:
    still = footage(".", seed=4)[0]  # a still camera: one noise frame throughout
    frames = [still.copy() for _ in range(len(PATTERN) * L)]
    if square:
        for i, f in enumerate(frames[2 * L : 4 * L]):  # moving in the top-left quarter
            k = i % 5  # (cells 0:0, 0:1, 1:0, 1:1 of 4x4)
            f[k : k + 12, 4 - k : 16 - k] = 235
    return frames


def _folder(path: Path, frames: list[np.ndarray]) -> Path:
    import cv2

    path.mkdir()
    for i, image in enumerate(frames):
        cv2.imwrite(str(path / f".{i}.png"), image[:, :, ::-1])
        (path / f".{i}.png").rename(path / f"{i:04d}.png")
    return path


def _watch(run: Path, db: Path, sources: list[str], masks: list[str]) -> None:
    from arnet.detection.detector import load_detector
    from arnet.live.masks import parse_masks
    from arnet.live.scorer import SegmentScorer
    from arnet.live.sources import parse_sources
    from arnet.live.tracker import Thresholds
    from arnet.live.watch import Watcher, WatchOptions

    detector = load_detector(run, device="cpu")[0]
    parsed = parse_sources(sources)
    options = WatchOptions(
        quiet=True, masks=parse_masks(masks, [s.name for s in parsed], detector.cell_grid)
    )
    with open_store(db) as store:
        watcher = Watcher(
            SegmentScorer(detector),
            store,
            parsed,
            Thresholds(detector.threshold, detector.threshold),
            options,
        )

        def stopper() -> None:
            wait_for(
                lambda: all(len(store.scores(s.name, limit=None)) == len(PATTERN) for s in parsed),
                timeout=300,
            )
            watcher.stop()

        watcher.start()
        helper = threading.Thread(target=stopper, daemon=True)
        helper.start()
        watcher.run()
        watcher.close()
        helper.join()


def _scores(db: Path, camera: str) -> list[float]:
    with open_store(db, "read") as store:
        return [s["score"] for s in store.scores(camera, limit=None)]


def _alerts(db: Path, camera: str) -> int:
    with open_store(db, "read") as store:
        return store.alerts(camera=camera)[1]


@pytest.mark.parametrize(
    ("model", "spec"),
    [("grid", "0:0,0:1,1:0,1:1"), ("grid", "quarter.png"), ("pooled", "quarter.png")],
)
def test_a_masked_region_changes_no_score(runs, tmp_path: Path, model: str, spec: str) -> None:  # noqa: ANN001
    import cv2

    quiet = _folder(tmp_path / "quiet", _frames(False))
    busy = _folder(tmp_path / "busy", _frames(True))
    png = np.zeros((SIZE, SIZE, 3), np.uint8)
    png[0:16, 0:16] = 255
    cv2.imwrite(str(tmp_path / "quarter.png"), png)
    spec = str(tmp_path / spec) if spec.endswith(".png") else spec
    # unmasked, the square alerts and changes the scores
    plain = tmp_path / "plain.db"
    _watch(runs[model], plain, [f"quiet={quiet}", f"busy={busy}"], [])
    busy_plain, quiet_plain = np.array(_scores(plain, "busy")), np.array(_scores(plain, "quiet"))
    assert np.abs(busy_plain - quiet_plain)[2:4].min() > 0.1  # segments 2-3
    # masked, the busy camera scores exactly as the quiet one: the square counts for nothing
    masked = tmp_path / "masked.db"
    _watch(
        runs[model], masked, [f"quiet={quiet}", f"busy={busy}"], [f"busy={spec}", f"quiet={spec}"]
    )
    np.testing.assert_array_equal(_scores(masked, "busy"), _scores(masked, "quiet"))
    assert _alerts(masked, "busy") == _alerts(masked, "quiet")
    with open_store(masked, "read") as store:
        described = stored_mask(store, "busy")
    if model == "grid" and not spec.endswith(".png"):
        assert described == {"kind": "cells", "rows": 4, "cols": 4,
                             "cells": [[0, 0], [0, 1], [1, 0], [1, 1]]}  # fmt: skip
    else:
        assert described["kind"] == "pixels" and (described["width"], described["height"]) == (
            32,
            32,
        )
        assert described["ignored_share"] == 0.25
        decoded = cv2.imdecode(
            np.frombuffer(__import__("base64").b64decode(described["png"]), np.uint8), 0
        )
        assert (decoded[0:16, 0:16] == 255).all() and decoded.sum() == 255 * 256
    # watched again without --mask: the camera's mask is cleared
    _watch(runs[model], masked, [f"quiet={quiet}", f"busy={busy}"], [])
    with open_store(masked, "read") as store:
        assert stored_mask(store, "busy") is None


def test_a_grid_sized_png_masks_cells(runs, tmp_path: Path) -> None:  # noqa: ANN001
    import cv2

    from arnet.live.masks import parse_masks

    png = np.zeros((4, 4), np.uint8)
    png[3, 1] = png[0, 2] = 255
    cv2.imwrite(str(tmp_path / "cells.png"), png)
    (m,) = parse_masks([f"gate={tmp_path / 'cells.png'}"], ["gate"], (4, 4)).values()
    assert m.describe()["cells"] == [[0, 2], [3, 1]]
    # the same cells drawn over a 32x32 frame: 8x8 pixels each; the heat map zeroed there
    where = m.at(32, 32)
    assert where.sum() == 2 * 64 and where[24:32, 8:16].all() and where[0:8, 16:24].all()
    blanked = m.blank_cells(np.ones((4, 4)))
    assert blanked[3, 1] == 0 and blanked[0, 2] == 0 and blanked.sum() == 14


def test_bad_masks_are_refused_naming_the_camera_and_sizes(runs, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    import cv2

    from arnet.live.masks import parse_masks

    cv2.imwrite(str(tmp_path / "wide.png"), np.zeros((48, 64, 3), np.uint8))
    (tmp_path / "junk.png").write_bytes(b"not a png")
    cases = [
        ("gate", (4, 4), "4:0", "cell 4:0 is outside camera 'gate''s 4x4 grid"),
        ("gate", (4, 4), "1-2", "'1-2' is not a cell ROW:COL"),
        ("gate", None, "0:1", "this checkpoint maps no cells; give the grid first"),
        ("gate", None, "2x2/1:1,2:0", "cell 2:0 is outside camera 'gate''s 2x2 grid"),
        ("gate", None, str(tmp_path / "none.png"), "none.png: no such file"),
        ("gate", None, str(tmp_path / "junk.png"), "junk.png: not a readable image"),
        ("yard", None, "0:0", "no camera 'yard' is watched (cameras: gate)"),
    ]
    for camera, grid, value, message in cases:
        with pytest.raises(DataError, match=None) as info:
            parse_masks([f"{camera}={value}"], ["gate"], grid)
        assert message in str(info.value), str(info.value)
    with pytest.raises(DataError, match="masked twice"):
        parse_masks(["gate=0:0", "gate=1:1"], ["gate"], (4, 4))
    assert parse_masks(["gate=2x2/1:1"], ["gate"], None)["gate"].at(32, 32)[16:, 16:].all()
    # a PNG of another size than the camera's frames: one line naming both sizes, exit 2
    frames = _folder(tmp_path / "frames", _frames(False)[: 2 * L])
    db = tmp_path / "e.db"
    argv = ["watch", "--checkpoint", str(runs["pooled"]), "--db", str(db), "--quiet",
            f"gate={frames}", "--mask", f"gate={tmp_path / 'wide.png'}"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "the mask is 64x48, camera 'gate''s frames are 32x32" in err
    with open_store(db, "read") as store:  # nothing was scored with a wrong mask
        assert store.scores("gate", limit=None) == []
    argv[-1] = "yard=0:0"
    assert main(argv) == 2
    assert "no camera 'yard' is watched" in capsys.readouterr().err
