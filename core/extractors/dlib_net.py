"""dlib's face descriptor network (dlib_face_recognition_resnet_model_v1) in pure torch.

(The `dlib-resnet` extractor backend, facefleet.core.extractors.dlib_resnet, runs it; this
module reads the weights file and builds the network.)

The weights are read straight from dlib's own ``.dat`` file, in Python, from the format
(no dlib import needed). The network is ``anet_type`` of dlib's
examples/dnn_face_recognition_ex.cpp: a 29-conv ResNet with ``affine`` layers (frozen
batch norm) instead of batch norm, a 150x150 RGB input and a 128-d output.

The file format, as dlib's serialize() functions write it
-------------------------------------------------------------
* integers: one control byte (low nibble = number of bytes that follow, 0x80 = negative),
  then the magnitude little-endian; 0 is written as ``01 00``.
* strings: an unsigned integer length, then the bytes.  bool: the ASCII byte '0' or '1'.
* float/double scalars: dlib's portable ``float_details``: an int64 mantissa and an int16
  exponent, each as an integer above; value = mantissa * 2**exponent (exponent 32000/32001/
  32002 = +inf/-inf/NaN).  Files older than that hold the number as ASCII text + ' '.
* tensors: int version 2, four int64 dims (n, k, nr, nc), then n*k*nr*nc raw little-endian
  IEEE float32s -- so the weights load with a single np.frombuffer per tensor.
* a network is written outside-in, each ``add_layer`` as: version, its sub-network (so the
  whole prefix of the file is the nest of version numbers), its layer details, then three
  bools and two (empty) tensors of training state.  Tags and skips write only a version
  (1): *which* tag a skip or add_prev refers to is part of the C++ type, not of the file, so
  the topology has to come from the network definition (ANET_SPEC below) and the file is
  checked against it layer by layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facefleet.core.errors import ModelError

DLIB_INPUT_SIZE = 150
DESCRIPTOR_SIZE = 128
# dlib's distance threshold for "same person" on raw (not normalised) descriptors.
DLIB_SAME_PERSON_DISTANCE = 0.6

# ============================================================================================
# The network definition (anet_type), input side first
# ============================================================================================


@dataclass(frozen=True)
class LayerSpec:
    """One layer of the C++ type.

    kind: con | affine | relu | max_pool | avg_pool | add_prev | fc | tag | skip.
    args: con (filters, nr, nc, stride_y, stride_x); pools (nr, nc, stride_y, stride_x), 0 = the
    whole input; fc (outputs,); tag/skip/add_prev (tag id,).
    """

    kind: str
    args: tuple[int, ...] = ()

    @property
    def computational(self) -> bool:
        # Only add_layer<> layers have details in the file; tags and skips are type-level.
        return self.kind not in ("tag", "skip")


def _block(filters: int, stride: int) -> list[LayerSpec]:
    """block<N,affine,stride>: con(stride) affine relu con(1) affine."""
    return [
        LayerSpec("con", (filters, 3, 3, stride, stride)),
        LayerSpec("affine"),
        LayerSpec("relu"),
        LayerSpec("con", (filters, 3, 3, 1, 1)),
        LayerSpec("affine"),
    ]


def _ares(filters: int) -> list[LayerSpec]:
    """relu<add_prev1<block<N,1,tag1<x>>>>: an identity residual."""
    return [
        LayerSpec("tag", (1,)),
        *_block(filters, 1),
        LayerSpec("add_prev", (1,)),
        LayerSpec("relu"),
    ]


def _ares_down(filters: int) -> list[LayerSpec]:
    """relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,2,tag1<x>>>>>>>: a stride-2
    residual whose shortcut is a 2x2 average pool of the input (no 1x1 projection)."""
    return [
        LayerSpec("tag", (1,)),
        *_block(filters, 2),
        LayerSpec("tag", (2,)),
        LayerSpec("skip", (1,)),
        LayerSpec("avg_pool", (2, 2, 2, 2)),
        LayerSpec("add_prev", (2,)),
        LayerSpec("relu"),
    ]


def anet_spec() -> list[LayerSpec]:
    """anet_type of dnn_face_recognition_ex.cpp, from the input to the fc output."""
    spec = [
        LayerSpec("con", (32, 7, 7, 2, 2)),
        LayerSpec("affine"),
        LayerSpec("relu"),
        LayerSpec("max_pool", (3, 3, 2, 2)),
    ]
    for filters, downs, plain in ((32, 0, 3), (64, 1, 3), (128, 1, 2), (256, 1, 2), (256, 1, 0)):
        spec += _ares_down(filters) * downs
        for _ in range(plain):
            spec += _ares(filters)
    spec += [LayerSpec("avg_pool", (0, 0, 1, 1)), LayerSpec("fc", (DESCRIPTOR_SIZE,))]
    return spec


ANET_SPEC: tuple[LayerSpec, ...] = tuple(anet_spec())

# ============================================================================================
# Reading dlib's serialization format
# ============================================================================================


class DatFormatError(Exception):
    """The bytes do not follow the format; the message says what was expected where."""


_FLOAT_INF, _FLOAT_NINF, _FLOAT_NAN = 32000, 32001, 32002


class DlibStream:
    """A cursor over the file's bytes with one reader per dlib primitive type."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def _take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise DatFormatError(
                f"file ends inside {what} (at byte {self.pos}, needs {n} more bytes, "
                f"{self.remaining()} left): truncated"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def _int(self, signed: bool, what: str) -> int:
        control = self._take(1, what)[0]
        size = control & 0x0F
        negative = bool(control & 0x80)
        # The three reserved bits are always 0; anything else means we are out of step.
        if control & 0x70 or size == 0 or size > 8 or (negative and not signed):
            raise DatFormatError(
                f"bad integer control byte 0x{control:02x} for {what} at byte {self.pos - 1}"
            )
        value = int.from_bytes(self._take(size, what), "little")
        return -value if negative else value

    def int(self, what: str = "an integer") -> int:
        return self._int(True, what)

    def uint(self, what: str = "an unsigned integer") -> int:
        return self._int(False, what)

    def bool(self, what: str = "a bool") -> bool:
        ch = self._take(1, what)[0]
        if ch not in (ord("0"), ord("1")):
            raise DatFormatError(
                f"expected '0'/'1' for {what} at byte {self.pos - 1}, got 0x{ch:02x}"
            )
        return ch == ord("1")

    def string(self, what: str = "a string", max_len: int = 1 << 16) -> str:
        n = self.uint(f"the length of {what}")
        if n > max_len:
            raise DatFormatError(f"implausible length {n} for {what} at byte {self.pos}")
        return bytes(self._take(n, what)).decode("latin-1")

    def float(self, what: str = "a float") -> float:
        """dlib's float_details (or the older ASCII text format)."""
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            return self._ascii_float(what)
        mantissa = self.int(f"the mantissa of {what}")
        exponent = self.int(f"the exponent of {what}")
        if exponent == _FLOAT_INF:
            return math.inf
        if exponent == _FLOAT_NINF:
            return -math.inf
        if exponent == _FLOAT_NAN:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def _ascii_float(self, what: str) -> float:
        end = bytes(self.data[self.pos : self.pos + 64]).find(b" ")
        if end < 0:
            raise DatFormatError(f"unterminated text number for {what} at byte {self.pos}")
        text = bytes(self._take(end + 1, what))[:-1].decode("ascii", "replace")
        try:
            return float({"inf": "inf", "ninf": "-inf", "NaN": "nan"}.get(text, text))
        except ValueError:
            raise DatFormatError(f"bad text number {text!r} for {what}") from None

    def tensor(self, what: str = "a tensor") -> np.ndarray:
        """A resizable_tensor: version 2, (n, k, nr, nc), raw float32 LE data."""
        version = self.int(f"the version of {what}")
        if version != 2:
            raise DatFormatError(f"{what}: tensor version {version}, expected 2")
        shape = tuple(self.int(f"the shape of {what}") for _ in range(4))
        if min(shape) < 0:
            raise DatFormatError(f"{what}: negative tensor shape {shape}")
        count = math.prod(shape)
        raw = self._take(4 * count, f"the data of {what} {shape}")
        # One vectorised decode per tensor; astype() copies it into a writable native array.
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias_tensor(self, what: str = "an alias tensor") -> tuple[int, int, int, int]:
        """An alias_tensor: only a shape (a view into the layer's params tensor)."""
        version = self.int(f"the version of {what}")
        if version != 1:
            raise DatFormatError(f"{what}: alias tensor version {version}, expected 1")
        n, k, nr, nc = (self.int(f"the shape of {what}") for _ in range(4))
        return n, k, nr, nc


@dataclass
class DlibLayer:
    """One layer as read from the file: its type string, settings and parameter arrays."""

    spec: LayerSpec
    version: str = ""  # the type string the details start with, e.g. "con_4"
    config: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)

    def describe(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in self.config.items())
        shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in self.params.items())
        name = self.spec.kind + (
            f"{self.spec.args[0]}" if self.spec.kind in ("tag", "skip", "add_prev") else ""
        )
        return f"{name:<9} {self.version:<10} {settings}" + (f"  [{shapes}]" if shapes else "")


@dataclass
class DlibNetFile:
    """Everything read from a dlib anet_type .dat file."""

    path: Path
    input_means: tuple[float, float, float]  # R, G, B
    input_size: tuple[int, int]
    loss: dict[str, float]
    layers: list[DlibLayer]  # input side first, tags and skips included

    def describe(self) -> str:
        r, g, b = self.input_means
        lines = [
            f"input_rgb_image_sized  means R={r:.6g} G={g:.6g} B={b:.6g}  "
            f"size {self.input_size[0]}x{self.input_size[1]}"
        ]
        lines += [f"{i:3d} {layer.describe()}" for i, layer in enumerate(self.layers)]
        lines.append(f"loss_metric  {', '.join(f'{k}={v:.6g}' for k, v in self.loss.items())}")
        return "\n".join(lines)


def _check_args(layer: DlibLayer, found: tuple[int, ...]) -> None:
    want = layer.spec.args[: len(found)]
    if tuple(found) != tuple(want):
        raise DatFormatError(
            f"{layer.spec.kind} layer has settings {found}, anet_type "
            f"needs {want}: a different network"
        )


def _version(s: DlibStream, allowed: Sequence[str], what: str) -> str:
    version = s.string(f"the type name of {what}", max_len=64)
    if version not in allowed:
        raise DatFormatError(
            f"expected {what} ({'/'.join(allowed)}) at byte {s.pos}, "
            f"found {version!r}: a different network"
        )
    return version


def _read_con(s: DlibStream, layer: DlibLayer) -> None:
    layer.version = _version(s, ("con_4", "con_5", "con_6"), "a con_ layer")
    params = s.tensor("con_ params")
    filters = s.int("con_ num_filters")
    nr, nc, sy, sx = (s.int("con_ geometry") for _ in range(4))
    py, px = s.int("con_ padding_y"), s.int("con_ padding_x")
    _check_args(layer, (filters, nr, nc, sy, sx))
    fshape = s.alias_tensor("con_ filters")
    bshape = s.alias_tensor("con_ biases")
    for name in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
        s.float(f"con_ {name}")
    use_bias = s.bool("con_ use_bias") if layer.version in ("con_5", "con_6") else True
    use_relu = s.bool("con_ use_relu") if layer.version == "con_6" else False
    flat = params.reshape(-1)
    n_filt = math.prod(fshape)
    n_bias = math.prod(bshape) if use_bias else 0
    if fshape[0] != filters or fshape[2:] != (nr, nc) or flat.size != n_filt + n_bias:
        raise DatFormatError(
            f"con_ params of {flat.size} floats do not fit filters {fshape} + biases {bshape}"
        )
    layer.config = {
        "filters": filters,
        "kernel": (nr, nc),
        "stride": (sy, sx),
        "padding": (py, px),
        "bias": use_bias,
        "relu": use_relu,
    }
    layer.params["weight"] = flat[:n_filt].reshape(fshape)
    if use_bias:
        layer.params["bias"] = flat[n_filt:].reshape(filters)


def _read_affine(s: DlibStream, layer: DlibLayer) -> None:
    version = s.string("the type name of an affine_ layer", max_len=64)
    if version in ("bn_con2", "bn_fc2"):
        raise DatFormatError(
            "a bn_ layer where anet_type has affine_: a training-mode "
            "network, not the released model"
        )
    if version not in ("affine_", "affine_2"):
        raise DatFormatError(f"expected an affine_ layer, found {version!r}: a different network")
    layer.version = version
    params = s.tensor("affine_ params").reshape(-1)
    gshape = s.alias_tensor("affine_ gamma")
    bshape = s.alias_tensor("affine_ beta")
    mode = s.int("affine_ mode")
    disabled = s.bool("affine_ disabled") if version == "affine_2" else False
    if mode != 0:  # CONV_MODE: one scale and shift per channel
        raise DatFormatError(f"affine_ in mode {mode}, anet_type uses CONV_MODE (0)")
    n = math.prod(gshape)
    if math.prod(bshape) != n or params.size != 2 * n:
        raise DatFormatError(
            f"affine_ params of {params.size} floats do not fit gamma {gshape} + beta {bshape}"
        )
    layer.config = {"channels": n, "disabled": disabled}
    layer.params["gamma"], layer.params["beta"] = params[:n].copy(), params[n:].copy()


def _read_relu(s: DlibStream, layer: DlibLayer) -> None:
    layer.version = _version(s, ("relu_", "relu_2"), "a relu_ layer")
    disabled = s.bool("relu_ disabled") if layer.version == "relu_2" else False
    layer.config = {"disabled": disabled} if disabled else {}


def _read_pool(s: DlibStream, layer: DlibLayer) -> None:
    name = f"{layer.spec.kind}_2"
    layer.version = _version(s, (name,), f"a {layer.spec.kind}_ layer")
    nr, nc, sy, sx = (s.int(f"{name} geometry") for _ in range(4))
    py, px = s.int(f"{name} padding_y"), s.int(f"{name} padding_x")
    _check_args(layer, (nr, nc, sy, sx))
    layer.config = {"window": (nr, nc), "stride": (sy, sx), "padding": (py, px)}


def _read_add_prev(s: DlibStream, layer: DlibLayer) -> None:
    layer.version = _version(s, ("add_prev_",), "an add_prev_ layer")


def _read_fc(s: DlibStream, layer: DlibLayer) -> None:
    layer.version = _version(s, ("fc_2", "fc_3"), "an fc_ layer")
    outputs, inputs = s.uint("fc_ num_outputs"), s.uint("fc_ num_inputs")
    params = s.tensor("fc_ params").reshape(-1)
    wshape = s.alias_tensor("fc_ weights")
    s.alias_tensor("fc_ biases")
    bias_mode = s.int("fc_ bias_mode")
    for name in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
        s.float(f"fc_ {name}")
    use_bias = s.bool("fc_ use_bias") if layer.version == "fc_3" else True  # fc_2: implied
    _check_args(layer, (outputs,))
    if bias_mode != 1:  # FC_NO_BIAS
        raise DatFormatError("fc_ layer has a bias; anet_type ends in fc_no_bias")
    if wshape[:2] != (inputs, outputs) or params.size != inputs * outputs:
        raise DatFormatError(f"fc_ params of {params.size} floats do not fit {inputs}x{outputs}")
    # dlib computes out = x @ W with W stored (num_inputs, num_outputs).
    layer.config = {"inputs": inputs, "outputs": outputs, "bias": False, "use_bias": use_bias}
    layer.params["weight"] = params.reshape(inputs, outputs)


_DETAIL_READERS = {
    "con": _read_con,
    "affine": _read_affine,
    "relu": _read_relu,
    "max_pool": _read_pool,
    "avg_pool": _read_pool,
    "add_prev": _read_add_prev,
    "fc": _read_fc,
}


def _read_training_state(s: DlibStream, add_layer_version: int, over_input: bool) -> None:
    """The per-layer trailer: setup/stale/disabled flags and (empty) gradient buffers."""
    for name in (
        "this_layer_setup_called",
        "gradient_input_is_stale",
        "get_output_and_gradient_input_disabled",
    ):
        s.bool(name)
    s.tensor("x_grad")
    s.tensor("cached_output")
    if over_input:
        s.tensor("grad_final")
        if add_layer_version >= 3:
            s.uint("sample_expansion_factor")
    elif add_layer_version >= 2:
        s.tensor("params_grad")


def _read_loss(s: DlibStream) -> dict[str, float]:
    version = s.int("the add_loss_layer version")
    if version != 1:
        raise DatFormatError(f"add_loss_layer version {version}, expected 1: not a dlib network")
    kind = _version(s, ("loss_metric_", "loss_metric_2"), "a loss_metric_ layer")
    if kind == "loss_metric_":  # the values that used to be hard coded
        return {"margin": 0.1, "distance_threshold": 0.75}
    return {"margin": s.float("loss margin"), "distance_threshold": s.float("loss threshold")}


def _read_input(s: DlibStream) -> tuple[tuple[float, float, float], tuple[int, int]]:
    _version(s, ("input_rgb_image_sized",), "the input_rgb_image_sized<150> input layer")
    means = (s.float("avg_red"), s.float("avg_green"), s.float("avg_blue"))
    size = (s.uint("input rows"), s.uint("input cols"))
    if size != (DLIB_INPUT_SIZE, DLIB_INPUT_SIZE):
        raise DatFormatError(f"input layer of {size[0]}x{size[1]}, anet_type takes 150x150")
    return means, size


def parse_dlib_net(data: bytes, path: Path, spec: Sequence[LayerSpec] = ANET_SPEC) -> DlibNetFile:
    """Read a serialized ``anet_type`` net; raises DatFormatError on any mismatch."""
    s = DlibStream(data)
    loss = _read_loss(s)
    # The prefix: one version per layer, output side first (each layer writes its version,
    # then its sub-network).
    versions: list[int] = []
    for i, layer in enumerate(reversed(spec)):
        v = s.int(f"the version of layer {len(spec) - 1 - i} ({layer.kind})")
        innermost = i == len(spec) - 1
        ok = (2, 3) if innermost else ((1, 2) if layer.computational else (1,))
        if v not in ok:
            raise DatFormatError(
                f"layer {len(spec) - 1 - i} ({layer.kind}) has version {v} "
                f"at byte {s.pos}: not the anet_type layer nest"
            )
        versions.append(v)
    versions.reverse()
    means, size = _read_input(s)
    layers = [DlibLayer(layer) for layer in spec]
    # The suffix: layer details, input side first.
    for i, layer in enumerate(layers):
        if not layer.spec.computational:
            continue
        _DETAIL_READERS[layer.spec.kind](s, layer)
        _read_training_state(s, versions[i], over_input=i == 0)
    if s.remaining():
        raise DatFormatError(f"{s.remaining()} bytes left after the last layer: not anet_type")
    return DlibNetFile(Path(path), means, size, loss, layers)


def read_dlib_net(dat_path: str | Path) -> DlibNetFile:
    """Read the .dat file; every problem is a ModelError naming the file."""
    path = Path(dat_path)
    if not path.is_file():
        raise ModelError("dlib face recognition model file not found", subject=path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read dlib model file ({exc.strerror})", subject=path) from None
    if path.suffix == ".bz2" or data[:3] == b"BZh":
        raise ModelError("still bzip2-compressed; decompress it first (bunzip2)", subject=path)
    try:
        return parse_dlib_net(data, path)
    except DatFormatError as exc:
        raise ModelError(
            f"not a readable dlib_face_recognition_resnet_model_v1 network: {exc}", subject=path
        ) from None


# ============================================================================================
# The torch network
# ============================================================================================


class Affine(nn.Module):
    """dlib's affine_ layer in CONV_MODE: y = gamma[c] * x + beta[c] (frozen batch norm)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    # dlib and torch agree: 1 + (n + 2p - k) // s (windows never hang over the far edge).
    return 1 + (size + 2 * padding - kernel) // stride


def _add_zero_padded(a: torch.Tensor, b: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """dlib's add_prev: the sum is as large as the larger input in every dimension and
    missing elements count as 0 -- i.e. both are zero-padded at the end (more channels;
    bottom/right) before adding.  `shape` = the static (C, H, W) of the result."""
    c, h, w = shape

    def pad(t: torch.Tensor) -> torch.Tensor:
        dc, dh, dw = c - t.shape[1], h - t.shape[2], w - t.shape[3]
        return F.pad(t, (0, dw, 0, dh, 0, dc)) if dc or dh or dw else t

    return pad(a) + pad(b)


class ResidualBlock(nn.Module):
    """ares / ares_down: relu(block(x) + shortcut(x)), shortcut = x or avg_pool2x2(x)."""

    def __init__(self, cin: int, cout: int, stride: int, in_hw: int) -> None:
        super().__init__()
        self.downsample = stride != 1
        # dlib's con_ default padding: 0 when strided, k//2 otherwise (checked against the file).
        pad1 = 0 if self.downsample else 1
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, pad1)
        self.aff1 = Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.aff2 = Affine(cout)
        main_hw = _conv_out(_conv_out(in_hw, 3, stride, pad1), 3, 1, 1)
        short_hw = _conv_out(in_hw, 2, 2, 0) if self.downsample else in_hw
        # Static so the ONNX graph has no shape arithmetic; e.g. 8x8 -> conv 3x3 but pool 4x4.
        self.out_shape = (max(cin, cout), max(main_hw, short_hw), max(main_hw, short_hw))
        self.out_hw = self.out_shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.downsample else x
        return F.relu(_add_zero_padded(y, shortcut, self.out_shape))


class DlibResNet(nn.Module):
    """dlib_face_recognition_resnet_model_v1 as a torch module.

    Input: (N, 3, 150, 150) float32, RGB, already normalised as dlib does
    ((pixel - mean) / 256, see `preprocess`).  Output: (N, 128) raw descriptors, *not* unit
    length (dlib compares them by euclidean distance with threshold 0.6).
    """

    def __init__(
        self,
        widths: Sequence[int],
        strides: Sequence[int],
        input_means: tuple[float, float, float] = (122.782, 117.001, 104.298),
    ) -> None:
        super().__init__()
        self.register_buffer("input_means", torch.tensor(input_means, dtype=torch.float32))
        self.conv0 = nn.Conv2d(3, 32, 7, 2, 0)
        self.aff0 = Affine(32)
        hw = _conv_out(_conv_out(DLIB_INPUT_SIZE, 7, 2, 0), 3, 2, 0)
        blocks, cin = [], 32
        for cout, stride in zip(widths, strides, strict=True):
            blocks.append(ResidualBlock(cin, cout, stride, hw))
            cin, hw = blocks[-1].out_shape[0], blocks[-1].out_hw
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(cin, DESCRIPTOR_SIZE, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.aff0(self.conv0(x))), 3, 2)
        for block in self.blocks:
            x = block(x)
        # avg_pool_everything: the mean over all of the (here 2x2) positions.
        return self.fc(x.mean(dim=(2, 3)))


def _group_blocks(layers: Sequence[DlibLayer]) -> list[list[DlibLayer]]:
    """Split the residual part of the layer list at each tag1 (a block's start)."""
    groups: list[list[DlibLayer]] = []
    for layer in layers:
        if layer.spec == LayerSpec("tag", (1,)):
            groups.append([])
        groups[-1].append(layer)
    return groups


def _set(param: torch.Tensor, value: np.ndarray, what: str) -> None:
    value_t = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    if tuple(param.shape) != tuple(value_t.shape):
        raise ValueError(f"{what}: shape {tuple(value_t.shape)} where {tuple(param.shape)} needed")
    with torch.no_grad():
        param.copy_(value_t)


def _load_conv(conv: nn.Conv2d, layer: DlibLayer, what: str) -> None:
    geometry = (tuple(conv.padding), tuple(conv.stride))
    if geometry != (layer.config["padding"], layer.config["stride"]):
        raise ValueError(f"{what}: padding/stride {layer.config} differ from the torch layer")
    if layer.config["relu"]:
        raise ValueError(f"{what}: con_ with a fused relu is not part of anet_type")
    _set(conv.weight, layer.params["weight"], what)
    _set(conv.bias, layer.params.get("bias", np.zeros(conv.out_channels)), what)


def _load_affine(aff: Affine, layer: DlibLayer, what: str) -> None:
    if layer.config["disabled"]:  # a disabled affine_ is the identity
        _set(aff.gamma, np.ones_like(layer.params["gamma"]), what)
        _set(aff.beta, np.zeros_like(layer.params["beta"]), what)
        return
    _set(aff.gamma, layer.params["gamma"], what)
    _set(aff.beta, layer.params["beta"], what)


def build_torch_net(net: DlibNetFile) -> DlibResNet:
    """A DlibResNet holding the weights read from the file."""
    layers = net.layers
    stem, residual, head = layers[:4], layers[4:-2], layers[-2:]
    if any(layer.config.get("disabled") for layer in layers if layer.spec.kind == "relu"):
        raise ValueError("a disabled relu_ layer; not the released model")
    groups = _group_blocks(residual)
    widths = [g[1].config["filters"] for g in groups]
    strides = [g[1].config["stride"][0] for g in groups]
    model = DlibResNet(widths, strides, net.input_means)
    _load_conv(model.conv0, stem[0], "layer 0 (con)")
    _load_affine(model.aff0, stem[1], "layer 1 (affine)")
    for b, (block, group) in enumerate(zip(model.blocks, groups, strict=True)):
        convs = [layer for layer in group if layer.spec.kind == "con"]
        affs = [layer for layer in group if layer.spec.kind == "affine"]
        _load_conv(block.conv1, convs[0], f"block {b} conv1")
        _load_affine(block.aff1, affs[0], f"block {b} affine1")
        _load_conv(block.conv2, convs[1], f"block {b} conv2")
        _load_affine(block.aff2, affs[1], f"block {b} affine2")
    _set(model.fc.weight, head[1].params["weight"].T, "fc")  # dlib stores (in, out)
    return model.eval()


def load_dlib_resnet(dat_path: str | Path) -> DlibResNet:
    """dlib_face_recognition_resnet_model_v1.dat -> a DlibResNet in eval mode.

    Raises ModelError naming the file when it is missing, truncated or another network.
    """
    net = read_dlib_net(dat_path)
    try:
        return build_torch_net(net)
    except (ValueError, KeyError, IndexError) as exc:
        raise ModelError(f"does not build into anet_type: {exc}", subject=dat_path) from None


# ============================================================================================
# Preprocessing (input_rgb_image_sized::to_tensor)
# ============================================================================================


def preprocess(
    chips_rgb: np.ndarray, means: Sequence[float] = (122.782, 117.001, 104.298)
) -> torch.Tensor:
    """(N, 150, 150, 3) or (150, 150, 3) RGB uint8 chips -> (N, 3, 150, 150) float32.

    Exactly dlib's input layer: (pixel - channel mean) / 256 -- 256, not 255, and no std.
    (In facefleet's mean/std terms on x/255: mean = means/255, std = 256/255.)
    """
    chips = np.asarray(chips_rgb)
    if chips.ndim == 3:
        chips = chips[None]
    if chips.ndim != 4 or chips.shape[1:] != (DLIB_INPUT_SIZE, DLIB_INPUT_SIZE, 3):
        raise ValueError(f"chips must be (N, 150, 150, 3) RGB, got {chips.shape}")
    mean = np.asarray(means, dtype=np.float32)
    x = (chips.astype(np.float32) - mean) / np.float32(256.0)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


@torch.inference_mode()
def descriptors(model: DlibResNet, chips_rgb: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Raw 128-d dlib descriptors of RGB chips, (N, 128) float32."""
    means = tuple(model.input_means.tolist())
    out = [
        model(preprocess(chips_rgb[i : i + batch_size], means)).numpy()
        for i in range(0, len(chips_rgb), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, DESCRIPTOR_SIZE), np.float32)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Unit-length rows: what facefleet's cosine/euclidean metrics expect (dlib's raw
    descriptors have norms of about 1.3-1.7)."""
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)
