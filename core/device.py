"""Choosing the compute device: CUDA when present and asked for, else the CPU."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from facefleet.core.errors import ModelError


def limit_threads(threads: int) -> None:
    """Threads for OpenCV, and torch where it is loaded, in this process (ONNX Runtime
    takes its count per session, from the detector's config): oversubscribed threads on a
    small machine make every process slower than one thread each. Torch is not imported
    for this: a worker whose models all run in ONNX Runtime never loads it (about 500 MB
    of resident memory), and a later import reads OMP_NUM_THREADS, which workers set."""
    import cv2

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
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
    return onnx_session(onnx_export(model, input_size), threads)


def onnx_session(model: bytes | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime session on the CPU from a serialized model or its file."""
    import onnxruntime as ort

    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(
        source, onnx_session_options(threads), providers=["CPUExecutionProvider"]
    )


def cached_onnx_session(
    cached: Path | None, export: Callable[[], bytes], threads: int | None = None
) -> Any:
    """The session of the model in file `cached`; when that file does not exist yet, of
    `export()`, which is then written there (atomically: several worker processes may race)
    so that later processes load it without torch."""
    if cached is not None and cached.is_file():
        return onnx_session(cached, threads)
    model = export()
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f".{cached.name}.{os.getpid()}.part")
        partial.write_bytes(model)
        partial.replace(cached)
    return onnx_session(model, threads)


def onnx_export(model: Any, input_size: int) -> bytes:
    """A torch network taking (N, 3, S, S) with a dynamic batch, serialized as ONNX."""
    import io
    import warnings

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
    return buffer.getvalue()


def resolve_device(name: str = "auto") -> str:
    """Map "auto" | "cpu" | "cuda" to a concrete torch device string. On a machine without
    an NVIDIA driver "auto" is "cpu" without asking torch, so a CPU worker need not load it."""
    if name == "auto" and not _nvidia_driver_present():
        return "cpu"
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for, but no CUDA GPU is visible to torch")
    if name not in ("cpu", "cuda"):
        raise ModelError(f"unknown device {name!r}; use auto, cpu or cuda")
    return name


def _nvidia_driver_present() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()
