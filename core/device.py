"""Choosing the compute device: CUDA when present and asked for, else the CPU."""

from __future__ import annotations

from typing import Any

from facefleet.core.errors import ModelError


def limit_threads(threads: int) -> None:
    """Threads for torch and OpenCV in this process (ONNX Runtime takes its count per
    session, from the detector's config): oversubscribed threads on a small machine make
    every process slower than one thread each."""
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


def onnx_session_options(threads: int | None = None) -> Any:
    """ONNX Runtime options shared by every session: full graph optimisation and, when
    given, this many intra-op threads (ONNX Runtime ignores torch's thread setting)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


def onnx_session_of(model: Any, input_size: int, threads: int | None = None) -> Any:
    """A torch network taking (N, 3, S, S) exported to an ONNX Runtime session on the CPU,
    in memory (about a second, once per process): ~3x faster than torch eager on 2 cores."""
    import io
    import warnings

    import onnxruntime as ort
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own deprecation
        torch.onnx.export(
            model.cpu().eval(),
            torch.zeros(1, 3, input_size, input_size),
            buffer,
            input_names=["input"],
            output_names=["embedding"],
            dynamic_axes={"input": {0: "n"}, "embedding": {0: "n"}},
            opset_version=17,
            dynamo=False,
        )
    return ort.InferenceSession(
        buffer.getvalue(), onnx_session_options(threads), providers=["CPUExecutionProvider"]
    )


def resolve_device(name: str = "auto") -> str:
    """Map "auto" | "cpu" | "cuda" to a concrete torch device string."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for, but no CUDA GPU is visible to torch")
    if name not in ("cpu", "cuda"):
        raise ModelError(f"unknown device {name!r}; use auto, cpu or cuda")
    return name
