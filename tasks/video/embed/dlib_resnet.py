"""dlib's face-recognition ResNet (dlib_face_recognition_resnet_model_v1) in torch, weights read from dlib's own file.

In: 150x150 RGB face chips, uint8 (n, 150, 150, 3), aligned as dlib.get_face_chips cuts them, and the .dat that
face_recognition_models ships. Out: (n, 128) float32 descriptors, dlib's compute_face_descriptor to float rounding.
Backend: torch (CPU through oneDNN, or CUDA). The file is read here with numpy, following dlib's serialize.h,
dnn/core.h, dnn/layers.h, dnn/input.h and cuda/tensor.h; the layer stack is the one dnn_face_recognition_ex.cpp
declares, and loading checks the file against it layer by layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CHIP = 150  # input_rgb_image_sized<150>


@dataclass(frozen=True)
class Layer:
    """One layer as the file holds it: its kind (dlib's version string less the version) and its fields."""
    kind: str
    fields: dict[str, Any] = field(default_factory=dict)


class _Reader:
    """dlib's serialization primitives over the file's bytes."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("dlib model file ends early")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def integer(self) -> int:
        # A control byte (low nibble: byte count, 0x80: negative) then that many little-endian magnitude bytes;
        # signed and unsigned types share it, unsigned ones never set the sign bit.
        control = self._take(1)[0]
        size = control & 0x0F
        if not 1 <= size <= 8:
            raise ValueError(f"bad dlib integer control byte {control:#x} at {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def number(self) -> float:
        # float_details: value = mantissa * 2**exponent, with three reserved exponents for inf, -inf and NaN.
        # (Files older than 2013 wrote ASCII floats, which dlib tells apart by bits 0x70 of the first byte.)
        if self.data[self.pos] & 0x70:
            raise ValueError("dlib model file uses the pre-2013 ASCII float format")
        mantissa, exponent = self.integer(), self.integer()
        special = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
        return special[exponent] if exponent in special else math.ldexp(mantissa, exponent)

    def flag(self) -> bool:
        return {b"1": True, b"0": False}[self._take(1)]

    def string(self) -> str:
        return self._take(self.integer()).decode("ascii")

    def starts_string(self, prefix: str) -> bool:
        """Whether a string beginning with `prefix` comes next, reading nothing."""
        pos = self.pos
        try:
            return self._take(self.integer()).startswith(prefix.encode())
        except (ValueError, IndexError):
            return False
        finally:
            self.pos = pos

    def version(self, expected: Sequence[int], what: str) -> int:
        v = self.integer()
        if v not in expected:
            raise ValueError(f"unexpected {what} version {v}")
        return v

    def tensor(self) -> np.ndarray:
        # Unlike lone floats, tensors are raw little-endian float32 (dlib/cuda/tensor.h).
        self.version((2,), "tensor")
        shape = tuple(self.integer() for _ in range(4))
        return np.frombuffer(self._take(4 * math.prod(shape)), dtype="<f4").reshape(shape)

    def alias(self) -> tuple[int, ...]:
        """An alias_tensor: a view's shape into a layer's one flat `params` tensor."""
        self.version((1,), "alias_tensor")
        return tuple(self.integer() for _ in range(4))


def _slice(params: np.ndarray, offset: int, shape: tuple[int, ...]) -> np.ndarray:
    """One alias_tensor's view of `params`, as a writable copy (torch will not share the file's read-only bytes)."""
    return params.reshape(-1)[offset:offset + math.prod(shape)].reshape(shape).astype(np.float32)


def _con(r: _Reader, version: str) -> dict[str, Any]:
    params = r.tensor()
    names = ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
    f: dict[str, Any] = {name: r.integer() for name in names}
    filters, biases = r.alias(), r.alias()
    for _ in range(4):
        r.number()  # learning-rate and weight-decay multipliers: training only
    use_bias = r.flag() if version in ("con_5", "con_6") else True
    if version == "con_6" and r.flag():
        raise ValueError("con_ with a fused relu is not part of this model")
    f["weight"] = _slice(params, 0, filters)  # (num_filters, k, nr, nc): torch's OIHW
    f["bias"] = _slice(params, math.prod(filters), biases).reshape(-1) if use_bias else None
    return f


def _fc(r: _Reader, version: str) -> dict[str, Any]:
    f: dict[str, Any] = {"num_outputs": r.integer(), "num_inputs": r.integer()}
    params = r.tensor()
    weights, biases = r.alias(), r.alias()
    bias_mode = r.integer()  # 0 FC_HAS_BIAS, 1 FC_NO_BIAS
    for _ in range(4):
        r.number()
    use_bias = (r.flag() if version == "fc_3" else True) and bias_mode == 0
    # dlib computes output = input x W with W (num_inputs, num_outputs, 1, 1): torch's Linear weight is W's
    # transpose.
    f["weight"] = _slice(params, 0, weights[:2]).T.copy()
    f["bias"] = _slice(params, math.prod(weights), biases).reshape(-1) if use_bias else None
    return f


def _affine(r: _Reader, version: str) -> dict[str, Any]:
    params = r.tensor()
    gamma, beta = r.alias(), r.alias()
    if r.integer() != 0:  # layer_mode: CONV_MODE = 0 (per channel), FC_MODE = 1 (per element)
        raise ValueError("an affine_ in FC mode is not part of this model")
    if version == "affine_2" and r.flag():
        raise ValueError("a disabled affine_ is not part of this model")
    return {"gamma": _slice(params, 0, gamma).reshape(-1),
            "beta": _slice(params, math.prod(gamma), beta).reshape(-1)}


def _pool(r: _Reader, version: str) -> dict[str, Any]:
    return {name: r.integer() for name in ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")}


def _relu(r: _Reader, version: str) -> dict[str, Any]:
    if version == "relu_2" and r.flag():
        raise ValueError("a disabled relu_ is not part of this model")
    return {}


def _input_rgb_image_sized(r: _Reader, version: str) -> dict[str, Any]:
    return {"avg_rgb": (r.number(), r.number(), r.number()), "nr": r.integer(), "nc": r.integer()}


def _loss_metric(r: _Reader, version: str) -> dict[str, Any]:
    return {"margin": r.number(), "dist_thresh": r.number()} if version == "loss_metric_2" else {}


# version string -> (kind, reader of the fields that follow it)
_DETAILS = {
    **{v: ("con", _con) for v in ("con_4", "con_5", "con_6")},
    **{v: ("fc", _fc) for v in ("fc_2", "fc_3")},
    # The released file holds affine_ layers. (dlib would also convert a bn_con2 here, from its running
    # statistics; no such file is read, so that is left out and refused like any other unknown layer.)
    **{v: ("affine", _affine) for v in ("affine_", "affine_2")},
    **{v: ("relu", _relu) for v in ("relu_", "relu_2")},
    "max_pool_2": ("max_pool", _pool),
    "avg_pool_2": ("avg_pool", _pool),
    "add_prev_": ("add_prev", lambda r, v: {}),
    "input_rgb_image_sized": ("input_rgb_image_sized", _input_rgb_image_sized),
    **{v: ("loss_metric", _loss_metric) for v in ("loss_metric_", "loss_metric_2")},
}


def _details(r: _Reader) -> Layer:
    version = r.string()
    if version not in _DETAILS:
        raise ValueError(f"dlib layer {version!r} is not part of this model")
    kind, read = _DETAILS[version]
    return Layer(kind, read(r, version))


def _skip_state(r: _Reader, tensors: int) -> None:
    """An add_layer's training state after its details: three flags and `tensors` gradient/output caches."""
    for _ in range(3):
        r.flag()
    for _ in range(tensors):
        r.tensor()


def _subnet(r: _Reader, out: list[Layer]) -> None:
    """Appends the layers of the subnet that starts here to `out`, input first.

    Each wrapper writes its version, then its whole subnet, then its own layer, so the recursion yields the
    input end first. Tag and skip wrappers are written identically (version 1, then the subnet) and carry no
    id, so both read as "tag"; which is which, and which tag an add_prev adds, the architecture says."""
    version = r.version((1, 2, 3), "layer wrapper")
    if r.starts_string("input"):
        if version == 1:
            raise ValueError("a tag right over the input layer is not part of this model")
        # add_layer over the input layer, dlib's v2 and v3 layouts: the input's details come first.
        out.append(_details(r))
        out.append(_details(r))
        _skip_state(r, 3)
        if version == 3:
            r.integer()  # _sample_expansion_factor
        return
    _subnet(r, out)
    if version == 1:
        out.append(Layer("tag"))
        return
    if version != 2:
        raise ValueError(f"unexpected add_layer version {version} above another layer")
    out.append(_details(r))
    _skip_state(r, 3)  # x_grad, cached_output, params_grad


def read_layers(path: Path) -> list[Layer]:
    """The layers of a dlib loss-network file, input first, loss last."""
    r = _Reader(Path(path).read_bytes())
    r.version((1,), "add_loss_layer")
    loss = _details(r)
    layers: list[Layer] = []
    _subnet(r, layers)
    if r.pos != len(r.data):
        raise ValueError(f"{len(r.data) - r.pos} bytes left after the network in {path}")
    return layers + [loss]


class _Stream:
    """The file's layers, consumed in the order the architecture expects them."""

    def __init__(self, layers: Sequence[Layer]):
        self._layers, self._i = list(layers), 0

    def peek(self) -> str:
        return self._layers[self._i].kind if self._i < len(self._layers) else ""

    def take(self, kind: str, **expected: object) -> dict[str, Any]:
        layer = self._layers[self._i] if self._i < len(self._layers) else Layer("the end of the file")
        wrong = {k: layer.fields.get(k) for k, v in expected.items() if layer.fields.get(k) != v}
        if layer.kind != kind or wrong:
            raise ValueError(f"layer {self._i}: expected {kind} {expected}, the file has {layer.kind} {wrong}")
        self._i += 1
        return layer.fields

    def done(self) -> None:
        if self._i != len(self._layers):
            raise ValueError(f"{len(self._layers) - self._i} layers left after the architecture")


def _con_affine(s: _Stream, **expected: object) -> nn.Conv2d:
    """con then affine, as one Conv2d: inference only, so the per-channel scale and shift fold into the filters."""
    con = s.take("con", **expected)
    affine = s.take("affine")
    stride = con["stride_y"]
    if con["stride_x"] != stride:
        raise ValueError("con_ with unequal strides is not part of this model")
    weight, gamma, beta = (torch.from_numpy(a) for a in (con["weight"], affine["gamma"], affine["beta"]))
    # The architecture uses dlib's default con_ padding: none when strided, "same" otherwise.
    if (con["padding_y"], con["padding_x"]) != ((0, 0) if stride != 1 else (con["nr"] // 2, con["nc"] // 2)):
        raise ValueError("con_ padding differs from dlib's default")
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), stride,
                     (con["padding_y"], con["padding_x"]), bias=True)
    bias = torch.from_numpy(con["bias"]) if con["bias"] is not None else torch.zeros_like(beta)
    conv.weight.data = weight * gamma.view(-1, 1, 1, 1)
    conv.bias.data = bias * gamma + beta
    return conv


def _add_prev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the sum over the larger of the two shapes, the smaller zero-padded at its far ends.

    Downsampling blocks meet it: at 8x8 the strided 3x3 gives 3x3 but the 2x2 average pool 4x4, and the pooled
    shortcut has half the block's channels."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[d], b.shape[d]) for d in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))
    return pad(a) + pad(b)


class _Residual(nn.Module):
    """ares / ares_down: relu(add_prev(block(x), x)), block = con-affine-relu-con-affine; a block whose first
    con is strided (ares_down) adds a 2x2 average pool of x instead."""

    def __init__(self, s: _Stream):
        super().__init__()
        s.take("tag")  # tag1: the block's input
        self.conv1 = _con_affine(s, nr=3, nc=3)
        s.take("relu")
        self.conv2 = _con_affine(s, nr=3, nc=3, stride_y=1, stride_x=1)
        self.down = self.conv1.stride != (1, 1)
        if self.down:
            s.take("tag")  # tag2: the block's output
            s.take("tag")  # skip1: back to the block's input
            s.take("avg_pool", nr=2, nc=2, stride_y=2, stride_x=2, padding_y=0, padding_x=0)
        s.take("add_prev")
        s.take("relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        shortcut = F.avg_pool2d(x, 2) if self.down else x
        return F.relu(_add_prev(y, shortcut))


class DlibResNet(nn.Module):
    """dnn_face_recognition_ex.cpp's anet_type: con 7x7/2, max_pool 3x3/2, 14 residual blocks (4 of them
    halving the side), global average, fc_no_bias<128>. forward takes uint8 chips (n, 150, 150, 3) and returns
    the descriptors (n, 128)."""

    def __init__(self, layers: Sequence[Layer]):
        super().__init__()
        s = _Stream(layers)
        inp = s.take("input_rgb_image_sized", nr=CHIP, nc=CHIP)
        self.register_buffer("avg_rgb", torch.tensor(inp["avg_rgb"], dtype=torch.float32).view(1, 3, 1, 1))
        self.stem = _con_affine(s, nr=7, nc=7, stride_y=2, stride_x=2)
        s.take("relu")
        s.take("max_pool", nr=3, nc=3, stride_y=2, stride_x=2, padding_y=0, padding_x=0)
        blocks = []
        while s.peek() == "tag":
            blocks.append(_Residual(s))
        self.blocks = nn.Sequential(*blocks)
        s.take("avg_pool", nr=0, nc=0)  # avg_pool_everything: a window the size of its input
        fc = s.take("fc")
        if fc["bias"] is not None:
            raise ValueError("an fc_ with a bias is not part of this model")
        self.fc = nn.Linear(int(fc["num_inputs"]), int(fc["num_outputs"]), bias=False)
        self.fc.weight.data = torch.from_numpy(fc["weight"])
        s.take("loss_metric")  # its output is the fc's, unchanged
        s.done()

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        # input_rgb_image_sized: (pixel - channel mean) / 256, planes in R, G, B order.
        x = (chips.permute(0, 3, 1, 2).float() - self.avg_rgb) / 256.0
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        x = self.blocks(x).mean(dim=(2, 3))
        return self.fc(x)


def load(path: Path, device: torch.device | str = "cpu") -> DlibResNet:
    """The network of a dlib_face_recognition_resnet_model_v1 file, in eval mode on `device`."""
    return DlibResNet(read_layers(path)).eval().to(device)
