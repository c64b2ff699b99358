"""Inference runtimes for frame networks: PyTorch (the reference), ONNX Runtime and OpenVINO.

A frame network (frames (M, 3, H, W) in [-1, 1] -> features (M, D)) is exported to ONNX in
memory and compiled by the runtime for each frame size it meets (EfficientNet's "same"
padding depends on the size, so an exported graph holds one size). The runtimes are the
`export` extra (`pip install "arnet-vad[export]"`); the features agree with PyTorch's to about
1e-5 (tests/test_extract_speed.py).

Why a runtime at all: on CPUs without AVX-512, PyTorch's depthwise convolutions (most of
EfficientNet's layers) run several times slower than OpenVINO's or ONNX Runtime's kernels
(README, "Extraction speed").
"""

from __future__ import annotations

import importlib
import io
import threading
import warnings
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ExtractError, MissingExtraError
from ..videoconfig import PRECISIONS, RUNTIMES

EXPORT_HINT = 'pip install "arnet-vad[export]"'
ONNX_OPSET = 17


def require_runtime(module: str, purpose: str) -> ModuleType:
    """Import a module of the `export` extra, or raise MissingExtraError saying how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs the {module!r} module, which is not installed: {EXPORT_HINT}"
        ) from exc


def onnx_bytes(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> bytes:
    """Export `module` (traced on `example`) to an ONNX model held in memory."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # Tracing turns shape arithmetic (EfficientNet's padding) into constants, which is
        # what we want for one frame size; the tracer warns about each such place.
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(
                module.eval(),
                example,
                buffer,  # type: ignore[arg-type]  # a file object is taken; the stub omits it
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
    return buffer.getvalue()


def frame_network_onnx(network: nn.Module, height: int, width: int) -> bytes:
    """A frame network as ONNX for frames of one size; the frame count is free."""
    example = torch.zeros(2, 3, height, width)
    return onnx_bytes(
        network, (example,), ["frames"], ["features"], {"frames": {0: "n"}, "features": {0: "n"}}
    )


class CompiledNetwork:
    """One compiled ONNX graph: `run(x float32 (M, ...)) -> (M, D)` on one runtime.

    Args:
        model: the ONNX model (bytes).
        runtime: `onnxruntime` or `openvino`.
        threads: CPU threads the runtime may use.
        request_frames: frames per inference request. With two threads, OpenVINO runs two
            requests at once (its throughput mode), one per core; one-frame requests keep each
            request's activations in cache (`RuntimeNetwork.request_frames` says when longer
            ones pay); None: the whole input in one request (a sequence read together).
        precision: `f32` (PyTorch's results to float rounding on every CPU) or `bf16`
            (OpenVINO only: faster on CPUs with native bfloat16, other features).

    Raises:
        ExtractError: an unknown runtime or precision, or bf16 asked of ONNX Runtime.
    """

    def __init__(
        self,
        model: bytes,
        runtime: str,
        threads: int,
        request_frames: int | None = 1,
        precision: str = "f32",
    ) -> None:
        check_precision(runtime, precision)
        self.runtime = runtime
        self.precision = precision
        self.request_frames = request_frames
        self._lock = threading.Lock()  # a session runs one batch at a time
        if runtime == "onnxruntime":
            ort = require_runtime("onnxruntime", "the onnxruntime runtime")
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
            self._input = self._session.get_inputs()[0].name
        elif runtime == "openvino":
            ov = require_runtime("openvino", "the openvino runtime")
            core = ov.Core()
            compiled = core.compile_model(
                core.read_model(model=model, weights=b""),
                "CPU",
                {
                    "INFERENCE_NUM_THREADS": threads,
                    "PERFORMANCE_HINT": "THROUGHPUT",
                    "INFERENCE_PRECISION_HINT": precision,
                },
            )
            self._model = compiled
            requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            self._queue = ov.AsyncInferQueue(compiled, max(1, requests))
            self._outputs: dict[int, np.ndarray] = {}
            self._queue.set_callback(self._collect)
        else:
            raise ExtractError(f"runtime must be one of {RUNTIMES[1:]}, got {runtime!r}")

    def inference_precision(self) -> str:
        """The precision the runtime reports it computes in (`f32` or `bf16`)."""
        if self.runtime == "onnxruntime":
            return "f32"  # its CPU provider has no reduced-precision fallback on x86
        return self._model.get_property("INFERENCE_PRECISION_HINT").get_type_name()

    def _collect(self, request: Any, index: int) -> None:
        self._outputs[index] = request.get_output_tensor(0).data.copy()

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x)  # the graph's input type: float32 frames, uint8 pixels
        with self._lock:
            step = max(1, self.request_frames or x.shape[0])
            if self.runtime == "onnxruntime":
                parts = [
                    self._session.run(None, {self._input: x[start : start + step]})[0]
                    for start in range(0, x.shape[0], step)
                ]
                return np.concatenate(parts)
            self._outputs = {}
            for i, start in enumerate(range(0, x.shape[0], step)):
                self._queue.start_async({0: x[start : start + step]}, i)
            self._queue.wait_all()
            return np.concatenate([self._outputs[i] for i in range(len(self._outputs))])


class RuntimeNetwork(nn.Module):
    """A frame network run by ONNX Runtime or OpenVINO: a drop-in for the PyTorch module.

    The PyTorch module is kept to export from; each new frame size is exported and compiled
    once (a few seconds), then reused.

    Args:
        network: (M, 3, H, W) -> (M, D), the PyTorch reference.
        runtime: `onnxruntime` or `openvino`.
        threads: CPU threads for the runtime (None: torch.get_num_threads()).
        precision: the runtime's inference precision (PRECISIONS; `CompiledNetwork`).

    Attributes:
        request_frames: frames per inference request. One frame is the fastest for
            extraction alone; `arnet watch` asks for 8, because beside its Python threads (a
            camera reader per source) a request that ends every few milliseconds often waits
            for the interpreter before the next one starts, and the cores idle: with one-frame
            requests 8 cameras at short side 112 fell behind using 70% of the CPU, with 8 they
            keep up (benchmarks/watch.py --live; README, "Live capacity").
    """

    request_frames = 1

    def __init__(
        self,
        network: nn.Module,
        runtime: str,
        threads: int | None = None,
        precision: str = "f32",
    ) -> None:
        super().__init__()
        if runtime not in RUNTIMES[1:]:
            raise ExtractError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        check_precision(runtime, precision)
        require_runtime("onnx", f"the {runtime} runtime")  # the exporter needs it
        require_runtime(runtime, f"the {runtime} runtime")
        self.network = network.eval()
        self.runtime = runtime
        self.threads = threads
        self.precision = precision
        self._compiled: dict[tuple[int, ...], CompiledNetwork] = {}

    def compiled(self, shape: tuple[int, ...]) -> CompiledNetwork:
        """The compiled graph for frames of `shape` (C, H, W), made on first use."""
        if shape not in self._compiled:
            model = frame_network_onnx(self.network, shape[1], shape[2])
            threads = self.threads or torch.get_num_threads()
            self._compiled[shape] = CompiledNetwork(
                model, self.runtime, threads, precision=self.precision
            )
        return self._compiled[shape]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.detach().float().cpu().contiguous().numpy()
        compiled = self.compiled(tuple(x.shape[1:]))
        compiled.request_frames = self.request_frames  # graphs take any request size
        return torch.from_numpy(compiled.run(x))


def check_precision(runtime: str, precision: str) -> None:
    """Refuse a precision that is unknown or that `runtime` does not offer, naming the option."""
    if precision not in PRECISIONS:
        raise ExtractError(
            f"--runtime-precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
        )
    if precision != "f32" and runtime != "openvino":
        raise ExtractError(
            f"--runtime-precision {precision} is offered by the openvino runtime only, "
            f"not {runtime}"
        )


def runtime_network(
    network: nn.Module, runtime: str, threads: int | None = None, precision: str = "f32"
) -> nn.Module:
    """`network` itself for `torch`, else a RuntimeNetwork around it."""
    if runtime == "torch":
        check_precision(runtime, precision)
        return network
    return RuntimeNetwork(network, runtime, threads, precision)
