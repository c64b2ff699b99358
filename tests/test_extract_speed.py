"""The fast extraction path: runtimes, the decoding thread and the frame stride give the
reference path's features; the stride is recorded; errors cross the thread intact."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

pytest.importorskip("av", reason="the extract extra (PyAV) is not installed")
pytest.importorskip("cv2", reason="the extract extra (OpenCV) is not installed")
pytest.importorskip("efficientnet_lite_pytorch", reason="the extract extra is not installed")

from helpers import write_video  # noqa: E402

from arnet.cli import main  # noqa: E402
from arnet.errors import ExtractError  # noqa: E402
from arnet.extract import (  # noqa: E402
    ExtractConfig,
    FeatureExtractor,
    Preprocessing,
    create_backbone,
    find_inputs,
)
from arnet.extract.tuning import limit_allocator_churn, prefetch  # noqa: E402


def moving_frames(n: int, seed: int = 0, size: tuple[int, int] = (60, 80)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(*size, 3), dtype=np.uint8)
    frames = []
    for i in range(n):
        frame = base.copy()
        frame[10:30, (3 * i) % 50 : (3 * i) % 50 + 20] = (250, 40, 40)
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A frame folder (PNG, lossless) and an H.264 file of 40 generated frames."""
    import cv2

    root = tmp_path_factory.mktemp("speed")
    frames = moving_frames(40)
    folder = root / "clip_frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame[:, :, ::-1])
    video = write_video(root / "clip_video.mp4", frames, fps=10, codec="libx264")
    return {"frames": folder, "video": video, "pixels": frames}


def extract(video, runtime="torch", stride=1, prefetch_frames=64, pool="mean_std"):
    options = {} if runtime == "torch" else {"runtime": runtime}
    backbone = create_backbone("efficientnet-lite0", pool=pool, **options)
    config = ExtractConfig(
        Preprocessing(short_side=48, crop="full", tail="pad", frame_stride=stride),
        batch_size=2,
        prefetch=prefetch_frames,
    )
    return FeatureExtractor({"rgb": backbone}, config).extract(video)


@pytest.mark.parametrize("kind", ["frames", "video"])
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_runtime_and_decoding_thread_match_the_reference_path(inputs, kind, runtime):
    pytest.importorskip(runtime, reason=f"the export extra ({runtime}) is not installed")
    pytest.importorskip("onnx", reason="the export extra (onnx) is not installed")
    video = find_inputs([inputs[kind]])[0]
    reference = extract(video, "torch", prefetch_frames=0)
    fast = extract(video, runtime, prefetch_frames=8)
    assert (fast.frames, fast.segments, fast.padded, fast.overlap) == (40, 3, 0, 8)
    ref, got = reference.features["rgb"], fast.features["rgb"]
    assert got.shape == ref.shape == (3, 2560)
    assert np.abs(got - ref).max() < 1e-4
    assert np.abs(ref).max() > 0.1  # not a trivially equal pair of zeros


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_longer_runtime_requests_give_the_same_features(runtime):
    """`arnet watch` sends 8 frames per request (`RuntimeNetwork.request_frames`), extraction
    one; a graph compiled for one request size runs the other, to the same features."""
    pytest.importorskip(runtime, reason=f"the export extra ({runtime}) is not installed")
    pytest.importorskip("onnx", reason="the export extra (onnx) is not installed")
    from arnet.extract.runtimes import RuntimeNetwork

    network = create_backbone("efficientnet-lite0", runtime=runtime, threads=1).network
    assert isinstance(network, RuntimeNetwork) and network.request_frames == 1
    frames = torch.rand(11, 3, 64, 96, generator=torch.Generator().manual_seed(0)) * 2 - 1
    one = network(frames)
    network.request_frames = 8  # 8 + 3 frames, on the graph already compiled
    eight = network(frames)
    assert one.shape == eight.shape == (11, 1280)
    torch.testing.assert_close(eight, one, rtol=0, atol=1e-5)


def test_frame_stride_pools_every_kth_frame_and_is_recorded(inputs, tmp_path, capsys):
    video = find_inputs([inputs["frames"]])[0]
    strided = extract(video, stride=4, pool="mean")
    assert (strided.frames, strided.segments) == (40, 3)  # counts as at stride 1

    # by hand: frames 0, 4, 8, 12 of each segment; the last segment, of the last 16 frames
    # (24-39, overlapping the one before), keeps the stride's frames among them
    backbone = create_backbone("efficientnet-lite0")
    import cv2

    pixels = [cv2.resize(f, (64, 48), interpolation=cv2.INTER_LINEAR) for f in inputs["pixels"]]
    x = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.inference_mode():
        per_frame = backbone.network(x.contiguous(memory_format=torch.channels_last)).numpy()
    want = np.stack(
        [
            per_frame[[0, 4, 8, 12]].mean(0),
            per_frame[[16, 20, 24, 28]].mean(0),
            per_frame[[24, 28, 32, 36]].mean(0),
        ]
    )
    assert np.abs(strided.features["rgb"] - want).max() < 1e-4

    out = tmp_path / "data"
    argv = ["extract", str(inputs["video"]), "--out", str(out), "--backbone", "efficientnet-lite0",
            "--short-side", "48", "--crop", "full", "--frame-stride", "2", "--json"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["preprocessing"]["frame_stride"] == 2
    folder = out / "features_video" / "efficientnet-lite0"
    recorded = json.loads((folder / "extraction.json").read_text())
    assert recorded["preprocessing"]["frame_stride"] == 2
    info = json.loads((folder / "videos" / "clip_video.json").read_text())
    assert (info["frames"], info["segments"]) == (40, 2)
    # another stride is other settings: refused in the same folder
    assert main([*argv[:-1], "--frame-stride", "4"]) == 2
    assert "extraction.json: features there were extracted with other settings" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        (["--frame-stride", "3"], "frame_stride"),
        (["--frame-stride", "2", "--backbone", "i3d", "--random-init"], "i3d"),
        (["--runtime", "openvino", "--backbone", "i3d", "--random-init"], "--runtime"),
    ],
)
def test_bad_speed_options_are_one_line(inputs, tmp_path, capsys, extra, names):
    argv = ["extract", str(inputs["video"]), "--out", str(tmp_path / "o"), "--quiet"]
    if "--backbone" not in extra:
        argv += ["--backbone", "efficientnet-lite0"]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and names in err, err


def test_an_unreadable_frame_is_named_across_the_decoding_thread(inputs, tmp_path):
    import shutil

    folder = tmp_path / "broken"
    shutil.copytree(inputs["frames"], folder)
    (folder / "021.png").write_bytes(b"not a png")
    video = find_inputs([folder])[0]
    with pytest.raises(ExtractError, match="021.png: not a readable image"):
        extract(video, prefetch_frames=4)


def test_prefetch_keeps_order_and_stops_with_its_consumer():
    assert list(prefetch(range(100), depth=3)) == list(range(100))
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    before = threading.active_count()
    stream = prefetch(endless(), depth=2)
    assert [next(stream) for _ in range(5)] == [0, 1, 2, 3, 4]
    stream.close()  # the consumer stops: the producer thread must end
    assert threading.active_count() == before
    assert len(produced) <= 5 + 2 + 2  # never more than the buffer ahead


def test_allocator_setting_applies_on_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the allocator setting is glibc's")
    assert limit_allocator_churn() is True


def test_openvino_precision_is_pinned_and_recorded(inputs, tmp_path, capsys):
    """OpenVINO picks bfloat16 by itself on CPUs with AVX-512 BF16 / AMX: arnet always asks
    for f32 unless told, records the precision, and bf16 features are other settings."""
    pytest.importorskip("openvino", reason="the export extra (openvino) is not installed")
    pytest.importorskip("onnx", reason="the export extra (onnx) is not installed")
    from arnet.extract.runtimes import CompiledNetwork, frame_network_onnx

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    graph = frame_network_onnx(net, 8, 8)
    assert CompiledNetwork(graph, "openvino", 1).inference_precision() == "f32"
    backbone = create_backbone("efficientnet-lite0", runtime="openvino", threads=1)
    assert backbone.describe()["precision"] == "f32"
    assert backbone.network.compiled((3, 32, 32)).inference_precision() == "f32"
    import openvino as ov

    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        assert CompiledNetwork(graph, "openvino", 1, precision="bf16").inference_precision() == (
            "bf16"
        )

    out = tmp_path / "data"
    argv = ["extract", str(inputs["video"]), "--out", str(out), "--backbone", "efficientnet-lite0",
            "--short-side", "48", "--crop", "full", "--runtime", "openvino", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    record = json.loads((out / "features_video/efficientnet-lite0/extraction.json").read_text())
    assert record["backbones"]["rgb"]["precision"] == "f32"
    # the same features in PyTorch (f32) join the folder; bf16 ones are other settings
    assert main([*argv[:-3], "--quiet"]) == 0
    assert main([*argv, "--runtime-precision", "bf16"]) == 2
    assert "extracted with other settings (backbones)" in capsys.readouterr().err


def test_reduced_precision_is_refused_where_the_runtime_has_none(inputs, tmp_path, capsys):
    for runtime in ("torch", "onnxruntime"):
        argv = ["extract", str(inputs["video"]), "--out", str(tmp_path / runtime),
                "--backbone", "efficientnet-lite0", "--runtime", runtime,
                "--runtime-precision", "bf16"]  # fmt: skip
        assert main(argv) == 2
        want = f"--runtime-precision bf16 is offered by the openvino runtime only, not {runtime}"
        assert want in capsys.readouterr().err
