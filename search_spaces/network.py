"""The flat network description: one JSON entry per layer, the cost models' input.

Format (`format: "tunas-jax/network"`, `format_version`: 1 or 2):

    {"format": "tunas-jax/network", "format_version": 2, "name": "...",
     "input_shape": [H, W, C],
     "layers": [{"name": "stem", "op": "conv2d", "inputs": ["input"],
                 "input_shape": [H, W, C], "output_shape": [H', W', C'],
                 "kernel_size": 3, "stride": 2, "padding": "same", "groups": 1,
                 "use_bias": false, "batch_norm": true, "activation": "relu"}, ...]}

Every tensor is [height, width, channels] (batch 1). A 2-D tensor of an
imported model (tokens x features, a flattened vector) is [1, N, C] or
[1, 1, C]; `matmul` reads the height as its batch dimension.

Versions. Readers accept 1 and 2. Version 1 has the first five ops below with
square kernels and strides and `same`/`valid` padding. `to_json` writes the
lowest version that holds the description: 1 when every layer is
expressible in version 1 (so v1 files and descriptions of the search spaces
stay byte-identical and older readers keep reading them), else 2.

Ops and their fields (a field an op does not use must keep its default):
- `conv2d`: kernel_size, stride, dilation (an int, or [h, w] for rectangular),
  padding (`same`: out = ceil(in / stride); `valid`: no padding; or explicit
  [top, bottom, left, right]: out = floor((in + pads - d*(k-1) - 1) / s) + 1),
  groups (1 = full conv, groups = Cin = Cout = depthwise; groups = Cin with
  Cout = m * Cin = depthwise with multiplier m), use_bias, batch_norm, activation.
- `conv2d_transpose`: the same fields plus output_padding; out = in * s for
  `same`, else (in - 1) * s + d*(k-1) + 1 - pads + output_padding.
- `fully_connected`: input [1, 1, Cin] -> [1, 1, Cout]; use_bias, batch_norm,
  activation. (A per-position dense layer is a 1x1 conv2d.)
- `pool`: pool_type `avg` | `max`, kernel_size, stride, padding (any window);
  `global: true` pools the whole map to 1x1.
- `add`, `mul`: elementwise over inputs that broadcast (each dimension equal
  or 1; squeeze-excite's [1, 1, C] scale); optional fused activation.
- `concat`: concatenation along `axis` (0, 1 or 2 = -1 = channels, default).
- `batch_norm`, `layer_norm` (over channels): same shape out.
- `activation`: `activation` names the function (ACTIVATIONS).
- `resize`: mode `bilinear` | `nearest`; the output's height and width are
  any size, channels unchanged.
- `reshape`: the same number of elements; `flatten`: -> [1, 1, H*W*C].
- `matmul`: two inputs [B, M, K] and [B, K, N] (or [B, N, K] with
  transpose_b) -> [B, M, N]; both operands are activations (no weights).
- `attention`: multi-head self-attention over the H*W tokens of [H, W, C]:
  Q, K, V and output projections (C x C each), num_heads dividing C, use_bias.
- `softmax`: same shape (along `axis`); `argmax`: `axis` reduced to 1.

`inputs` names earlier layers (or `input`); `input_shape` is the shape of the
first input. Shapes are checked against the producers when loading, so a
hand-written or imported description is validated exactly like a generated
one; a bad one is refused with one error naming the layer and the field.

Counts: conv2d params = kh*kw*(Cin/groups)*Cout (+ Cout bias) (+ 2*Cout
batch norm gamma/beta; moving statistics are not trainable); the same for
conv2d_transpose; fully_connected params = Cin*Cout (+ Cout) (+ 2*Cout);
batch_norm and layer_norm 2*C; attention 4*C*C (+ 4*C bias). MACs: conv2d =
H'*W'*kh*kw*(Cin/groups)*Cout, conv2d_transpose = H*W*kh*kw*(Cin/groups)*Cout
(every input pixel scatters its kernel), fully_connected = Cin*Cout, matmul =
B*M*N*K, attention = 4*T*C*C + 2*T*T*C for T = H*W tokens. Elementwise,
normalization, data-movement and pooling ops count 0 MACs.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from search_spaces.errors import SpecError
from search_spaces.fileio import read_json

FORMAT = "tunas-jax/network"
FORMAT_VERSION = 2  # written when a description uses anything version 1 cannot hold
READ_VERSIONS = (1, 2)
V1_OPS = ("conv2d", "fully_connected", "pool", "add", "concat")
OPS = (*V1_OPS, "conv2d_transpose", "batch_norm", "activation", "mul", "resize", "reshape",
       "flatten", "matmul", "attention", "softmax", "layer_norm", "argmax")
# Ops that run on the compute array (the rest move bytes through memory).
COMPUTE_OPS = ("conv2d", "conv2d_transpose", "fully_connected", "matmul", "attention")
ACTIVATIONS = ("relu", "relu6", "relu_n1_to_1", "leaky_relu", "prelu", "elu", "clip",
               "sigmoid", "hard_sigmoid", "swish", "hard_swish", "gelu", "tanh", "softplus")
RESIZE_MODES = ("bilinear", "nearest")
Shape = tuple[int, int, int]
Pair = int | tuple[int, int]

# The fields each op reads; every other field must keep its default.
_FUSED = ("use_bias", "batch_norm", "activation")
_WINDOW = ("kernel_size", "stride", "padding")
OP_FIELDS: dict[str, tuple[str, ...]] = {
    "conv2d": (*_WINDOW, "dilation", "groups", *_FUSED),
    "conv2d_transpose": (*_WINDOW, "dilation", "output_padding", "groups", *_FUSED),
    "fully_connected": _FUSED,
    "pool": (*_WINDOW, "pool_type", "global_pool"),
    "add": ("activation",),
    "mul": ("activation",),
    "concat": ("axis",),
    "batch_norm": (),
    "layer_norm": (),
    "activation": ("activation",),
    "resize": ("mode",),
    "reshape": (),
    "flatten": (),
    "matmul": ("transpose_b",),
    "attention": ("num_heads", "use_bias"),
    "softmax": ("axis",),
    "argmax": ("axis",),
}


def _pair(value: Any) -> Pair:
    """An int, or an (h, w) pair of different ints (equal pairs collapse to the int)."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        a, b = value
        return a if a == b else (a, b)
    return value


@dataclasses.dataclass(frozen=True)
class Layer:
    # The first fourteen fields keep version 1's order (positional construction).
    name: str
    op: str
    inputs: tuple[str, ...]
    input_shape: Shape
    output_shape: Shape
    kernel_size: Pair = 1
    stride: Pair = 1
    padding: str | tuple[int, int, int, int] = "same"
    groups: int = 1
    use_bias: bool = False
    batch_norm: bool = False
    activation: str | None = None
    pool_type: str | None = None
    global_pool: bool = False
    # Version 2.
    dilation: Pair = 1
    output_padding: Pair = 0
    axis: int = -1
    mode: str | None = None
    num_heads: int = 1
    transpose_b: bool = False

    def __post_init__(self) -> None:
        # Canonical, hashable values: JSON lists become tuples and a square
        # [k, k] becomes k, so a description equals itself after a round trip.
        set_ = object.__setattr__
        for f in ("kernel_size", "stride", "dilation", "output_padding"):
            value = getattr(self, f)
            if not isinstance(value, int):
                set_(self, f, _pair(value))
        if isinstance(self.inputs, list):
            set_(self, "inputs", tuple(self.inputs))
        if isinstance(self.padding, list):
            set_(self, "padding", tuple(self.padding))
        for f in ("input_shape", "output_shape"):
            if isinstance(getattr(self, f), list):
                set_(self, f, tuple(getattr(self, f)))

    # -- geometry --------------------------------------------------------------
    @property
    def kernel_hw(self) -> tuple[int, int]:
        return _hw(self.kernel_size)

    @property
    def stride_hw(self) -> tuple[int, int]:
        return _hw(self.stride)

    @property
    def dilation_hw(self) -> tuple[int, int]:
        return _hw(self.dilation)

    @property
    def kernel_taps(self) -> int:
        kh, kw = self.kernel_hw
        return kh * kw

    # -- counts ----------------------------------------------------------------
    @property
    def params(self) -> int:
        c = self.output_shape[2]
        if self.op in ("batch_norm", "layer_norm"):
            return 2 * c
        if self.op == "attention":
            return 4 * c * c + (4 * c if self.use_bias else 0)
        n = self.weight_count
        if not n:
            return 0
        return n + (c if self.use_bias else 0) + (2 * c if self.batch_norm else 0)

    @property
    def macs(self) -> int:
        cin = self.input_shape[2]
        h, w, cout = self.output_shape
        if self.op == "conv2d":
            return h * w * self.kernel_taps * (cin // self.groups) * cout
        if self.op == "conv2d_transpose":
            ih, iw, _ = self.input_shape
            return ih * iw * self.kernel_taps * (cin // self.groups) * cout
        if self.op == "fully_connected":
            return cin * cout
        if self.op == "matmul":
            return h * w * cout * self.matmul_depth
        if self.op == "attention":
            tokens = h * w
            return 4 * tokens * cout * cout + 2 * tokens * tokens * cout
        return 0

    @property
    def matmul_depth(self) -> int:
        """K of a matmul: the first operand's last dimension."""
        return self.input_shape[2] if self.op == "matmul" else 0

    @property
    def weight_count(self) -> int:
        """Kernel weights only (what an accelerator stores; BN folds into them)."""
        cin, cout = self.input_shape[2], self.output_shape[2]
        if self.op in ("conv2d", "conv2d_transpose"):
            return self.kernel_taps * (cin // self.groups) * cout
        if self.op == "fully_connected":
            return cin * cout
        if self.op == "attention":
            return 4 * cin * cin
        return 0

    @property
    def is_v1(self) -> bool:
        """Whether format version 1 can hold this layer."""
        if self.op not in V1_OPS:
            return False
        if not (isinstance(self.kernel_size, int) and isinstance(self.stride, int)
                and isinstance(self.padding, str) and self.dilation == 1):
            return False
        # Broadcasting adds need the producers' shapes: NetworkDescription checks them.
        return not (self.op == "concat" and self.axis not in (-1, 2))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "op": self.op, "inputs": list(self.inputs),
            "input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
        }
        used = OP_FIELDS.get(self.op, ())
        # Version 1's fields always (byte-identical v1 files); version 2's
        # only where they differ from their default.
        for f in ("kernel_size", "stride", "padding", "groups", "use_bias", "batch_norm",
                  "activation"):
            if f in used and not (f == "activation" and self.op in ("add", "mul")
                                  and self.activation is None):
                out[f] = _to_jsonable(getattr(self, f))
        if self.op == "pool":
            out.update(pool_type=self.pool_type, **{"global": self.global_pool})
        for f in ("dilation", "output_padding", "axis", "mode", "num_heads", "transpose_b"):
            if f in used and getattr(self, f) != _DEFAULTS[f]:
                out[f] = _to_jsonable(getattr(self, f))
        return out


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Layer)}


def _hw(value: Pair) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _to_jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _spatial(size: int, kernel: int, stride: int, padding: str | tuple[int, int],
             dilation: int = 1) -> int:
    """Output size of a conv/pool along one axis; padding = 'same', 'valid' or (before, after)."""
    if padding == "same":
        return math.ceil(size / stride)
    pad = 0 if padding == "valid" else padding[0] + padding[1]
    return (size + pad - dilation * (kernel - 1) - 1) // stride + 1


def _spatial_transpose(size: int, kernel: int, stride: int, padding: str | tuple[int, int],
                       dilation: int, output_padding: int) -> int:
    if padding == "same":
        return size * stride
    pad = 0 if padding == "valid" else padding[0] + padding[1]
    return (size - 1) * stride + dilation * (kernel - 1) + 1 - pad + output_padding


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


@dataclasses.dataclass(frozen=True)
class NetworkDescription:
    name: str
    input_shape: Shape
    layers: tuple[Layer, ...]

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def format_version(self) -> int:
        """What `to_json` writes: 1 if every layer fits version 1, else 2."""
        return 1 if _fits_v1(self.input_shape, self.layers) else FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "format_version": self.format_version, "name": self.name,
            "input_shape": list(self.input_shape),
            "layers": [layer.to_json() for layer in self.layers],
        }

    def validate(self) -> NetworkDescription:
        shapes: dict[str, Shape] = {"input": tuple(self.input_shape)}
        for i, layer in enumerate(self.layers):
            where = f"layers[{i}] ({layer.name!r})"
            if layer.name in shapes:
                raise SpecError(f"{where}.name: duplicate layer name; names must be unique")
            if layer.op not in OPS:
                raise SpecError(f"{where}.op: {layer.op!r} is unknown; use one of {OPS}")
            _check_fields(layer, where)
            if not layer.inputs:
                raise SpecError(f"{where}.inputs: empty; name the producing layer(s) or 'input'")
            for src in layer.inputs:
                if src not in shapes:
                    raise SpecError(f"{where}.inputs: {src!r} is not an earlier layer or 'input'")
            in_shapes = [shapes[s] for s in layer.inputs]
            if tuple(layer.input_shape) != in_shapes[0]:
                raise SpecError(f"{where}.input_shape: {list(layer.input_shape)} but input "
                                f"{layer.inputs[0]!r} produces {list(in_shapes[0])}")
            expected = _expected_output(layer, in_shapes, where)
            if tuple(layer.output_shape) != expected:
                raise SpecError(f"{where}.output_shape: {list(layer.output_shape)} but the "
                                f"layer computes {list(expected)}")
            shapes[layer.name] = expected
        return self

    @classmethod
    def from_json(cls, data: Any) -> NetworkDescription:
        if not isinstance(data, dict):
            raise SpecError("network description: expected a JSON object")
        if data.get("format") != FORMAT:
            raise SpecError(f"network description.format: {data.get('format')!r}; "
                            f"expected {FORMAT!r}")
        version = data.get("format_version")
        if version not in READ_VERSIONS:
            raise SpecError(f"network description.format_version: {version!r}; this version "
                            f"of tunas-jax reads {' and '.join(map(str, READ_VERSIONS))}")
        fields = {f.name for f in dataclasses.fields(Layer)} - {"global_pool"}
        if version == 1:
            fields -= {"dilation", "output_padding", "axis", "mode", "num_heads",
                       "transpose_b"}
        layers = []
        for i, raw in enumerate(data.get("layers") or []):
            if not isinstance(raw, dict):
                raise SpecError(f"layers[{i}]: expected a JSON object")
            raw = dict(raw)
            global_pool = raw.pop("global", False)
            unknown = sorted(set(raw) - fields)
            if unknown:
                raise SpecError(f"layers[{i}]: unknown key(s) {unknown} in format version "
                                f"{version}; allowed {sorted(fields)}")
            for key in ("name", "op", "inputs", "input_shape", "output_shape"):
                if key not in raw:
                    raise SpecError(f"layers[{i}]: missing key {key!r}")
            if not isinstance(raw["inputs"], list) or not all(
                    isinstance(s, str) for s in raw["inputs"]):
                raise SpecError(f"layers[{i}].inputs: {raw['inputs']!r} must be a list of "
                                "layer names")
            layer = Layer(
                **{**raw, "inputs": tuple(raw["inputs"]),
                   "input_shape": _shape(raw["input_shape"], f"layers[{i}].input_shape"),
                   "output_shape": _shape(raw["output_shape"], f"layers[{i}].output_shape")},
                global_pool=global_pool)
            layers.append(layer)
        if not layers:
            raise SpecError("network description.layers: empty; list at least one layer")
        net = cls(
            name=str(data.get("name", "network")),
            input_shape=_shape(data.get("input_shape"), "network description.input_shape"),
            layers=tuple(layers),
        ).validate()
        if version == 1 and net.format_version != 1:
            raise SpecError("network description.format_version: 1, but the layers use "
                            "version 2 features (a v2 op, a rectangular kernel or stride, "
                            "explicit padding, a broadcasting add); set it to 2")
        return net


def _fits_v1(input_shape: Shape, layers: tuple[Layer, ...]) -> bool:
    """Whether format version 1 holds these (validated) layers."""
    shapes = {"input": tuple(input_shape)}
    for layer in layers:
        if not layer.is_v1:
            return False
        if layer.op == "add" and any(shapes[s] != tuple(layer.output_shape)
                                     for s in layer.inputs):
            return False
        shapes[layer.name] = tuple(layer.output_shape)
    return True


_STRUCTURE = ("name", "op", "inputs", "input_shape", "output_shape")
# Per op: the (field, default) pairs it does not use; and its window fields.
_UNUSED = {op: tuple((f, d) for f, d in _DEFAULTS.items() if f not in _STRUCTURE + used)
           for op, used in OP_FIELDS.items()}
_WINDOW_LOW = {op: tuple((f, low) for f, low in (("kernel_size", 1), ("stride", 1),
                                                  ("dilation", 1), ("output_padding", 0))
                         if f in used)
               for op, used in OP_FIELDS.items()}


def _check_fields(layer: Layer, where: str) -> None:
    """Types and ranges of the fields, and that unused fields keep their defaults."""
    used = OP_FIELDS[layer.op]
    for f, default in _UNUSED[layer.op]:
        if getattr(layer, f) != default:
            raise SpecError(f"{where}.{'global' if f == 'global_pool' else f}: "
                            f"{getattr(layer, f)!r} but op {layer.op!r} does not use it; "
                            "remove it")
    for f, low in _WINDOW_LOW[layer.op]:
        value = getattr(layer, f)
        if type(value) is int and value >= low:  # the common case, checked fast
            continue
        if not all(_is_int(v, low) for v in _hw_any(value)):
            raise SpecError(f"{where}.{f}: {_to_jsonable(value)!r}; use an int "
                            f">= {low} or [height, width] of such ints")
    if "padding" in used:
        p = layer.padding
        if not (p in ("same", "valid") or (isinstance(p, tuple) and len(p) == 4
                                          and all(_is_int(v, 0) for v in p))):
            raise SpecError(f"{where}.padding: {_to_jsonable(p)!r}; use 'same', 'valid' or "
                            "[top, bottom, left, right] ints >= 0")
    if "groups" in used and not _is_int(layer.groups, 1):
        raise SpecError(f"{where}.groups: {layer.groups!r}; use an int >= 1")
    for f in ("use_bias", "batch_norm", "global_pool", "transpose_b"):
        if not isinstance(getattr(layer, f), bool):
            key = "global" if f == "global_pool" else f  # the JSON key
            raise SpecError(f"{where}.{key}: {getattr(layer, f)!r}; use true or false")
    if layer.op == "activation" and layer.activation is None:
        raise SpecError(f"{where}.activation: missing; an activation layer names its function "
                        f"({', '.join(ACTIVATIONS)})")
    if layer.activation is not None and layer.activation not in ACTIVATIONS:
        raise SpecError(f"{where}.activation: {layer.activation!r} is unknown; use one of "
                        f"{ACTIVATIONS} or null")
    if layer.op == "resize" and layer.mode not in RESIZE_MODES:
        raise SpecError(f"{where}.mode: {layer.mode!r}; use one of {RESIZE_MODES}")
    if layer.op == "pool" and layer.pool_type not in ("avg", "max"):
        raise SpecError(f"{where}.pool_type: {layer.pool_type!r}; use 'avg' or 'max'")
    if "axis" in used and layer.axis not in (-1, 0, 1, 2):
        raise SpecError(f"{where}.axis: {layer.axis!r}; use 0 (height), 1 (width) or "
                        "2 = -1 (channels)")
    if layer.op == "attention" and not _is_int(layer.num_heads, 1):
        raise SpecError(f"{where}.num_heads: {layer.num_heads!r}; use an int >= 1")


def _hw_any(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, tuple) else (value,)


def _broadcast(in_shapes: list[Shape], where: str, op: str) -> Shape:
    out = tuple(max(s[d] for s in in_shapes) for d in range(3))
    for s in in_shapes:
        if any(s[d] not in (1, out[d]) for d in range(3)):
            raise SpecError(f"{where}.inputs: {op} inputs have shapes "
                            f"{[list(x) for x in in_shapes]} that do not broadcast (each "
                            "dimension must match or be 1)")
    return out  # type: ignore[return-value]


def _expected_output(layer: Layer, in_shapes: list[Shape], where: str) -> Shape:
    h, w, c = in_shapes[0]
    op, cout = layer.op, layer.output_shape[2]
    arity = {"add": None, "mul": None, "concat": None, "matmul": 2}.get(op, 1)
    if arity is not None and len(in_shapes) != arity:
        raise SpecError(f"{where}.inputs: {op} takes {arity} input(s), got {len(in_shapes)}")
    if op in ("add", "mul") and len(in_shapes) < 2:
        raise SpecError(f"{where}.inputs: {op} needs at least 2 inputs")
    if op in ("conv2d", "conv2d_transpose", "pool"):
        (kh, kw), (sh, sw), (dh, dw) = layer.kernel_hw, layer.stride_hw, layer.dilation_hw
        pad = layer.padding
        ph, pw = (pad, pad) if isinstance(pad, str) else ((pad[0], pad[1]), (pad[2], pad[3]))
        if op == "pool" and layer.global_pool:
            return (1, 1, c)
        if op == "conv2d_transpose":
            oph, opw = _hw(layer.output_padding)
            oh = _spatial_transpose(h, kh, sh, ph, dh, oph)
            ow = _spatial_transpose(w, kw, sw, pw, dw, opw)
        else:
            oh, ow = _spatial(h, kh, sh, ph, dh), _spatial(w, kw, sw, pw, dw)
        if oh < 1 or ow < 1:
            raise SpecError(f"{where}.kernel_size: the window {[kh, kw]} (dilation {[dh, dw]}) "
                            f"does not fit the padded {h}x{w} input")
        if op == "pool":
            return (oh, ow, c)
        if c % layer.groups or cout % layer.groups:
            raise SpecError(f"{where}.groups: {layer.groups} must divide input channels {c} "
                            f"and output channels {cout}")
        return (oh, ow, cout)
    if op == "fully_connected":
        if (h, w) != (1, 1):
            raise SpecError(f"{where}.input_shape: fully_connected needs a 1x1 input; pool or "
                            "flatten first (or use a 1x1 conv2d per position)")
        return (1, 1, cout)
    if op in ("add", "mul"):
        return _broadcast(in_shapes, where, op)
    if op == "concat":
        axis = 2 if layer.axis == -1 else layer.axis
        for s in in_shapes:
            if any(s[d] != in_shapes[0][d] for d in range(3) if d != axis):
                raise SpecError(f"{where}.inputs: concat inputs {[list(x) for x in in_shapes]} "
                                f"differ outside the concatenation axis {layer.axis}")
        out = list(in_shapes[0])
        out[axis] = sum(s[axis] for s in in_shapes)
        return tuple(out)  # type: ignore[return-value]
    if op in ("batch_norm", "layer_norm", "activation", "softmax"):
        return (h, w, c)
    if op == "resize":
        oh, ow, _ = layer.output_shape
        return (oh, ow, c)
    if op == "reshape":
        if math.prod(layer.output_shape) != h * w * c:
            raise SpecError(f"{where}.output_shape: {list(layer.output_shape)} holds "
                            f"{math.prod(layer.output_shape)} elements, the input {h * w * c}")
        return tuple(layer.output_shape)  # type: ignore[return-value]
    if op == "flatten":
        return (1, 1, h * w * c)
    if op == "argmax":
        out = [h, w, c]
        out[2 if layer.axis == -1 else layer.axis] = 1
        return tuple(out)  # type: ignore[return-value]
    if op == "matmul":
        bh, bw, bc = in_shapes[1]
        k, n = (bc, bw) if layer.transpose_b else (bw, bc)
        if bh != h or k != c:
            raise SpecError(f"{where}.inputs: matmul operands {list(in_shapes[0])} and "
                            f"{list(in_shapes[1])} do not chain ([B, M, K] x [B, K, N]"
                            f"{', transpose_b: [B, N, K]' if layer.transpose_b else ''})")
        return (h, w, n)
    # attention
    if c % layer.num_heads:
        raise SpecError(f"{where}.num_heads: {layer.num_heads} must divide the {c} channels")
    return (h, w, c)


def _shape(value: Any, where: str) -> Shape:
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(_is_int(v, 1) for v in value)):
        raise SpecError(f"{where}: {value!r} must be [height, width, channels] positive ints")
    return (value[0], value[1], value[2])


def load(path: str | os.PathLike) -> NetworkDescription:
    """Load a network-description JSON file; SpecError with one clear line on bad input."""
    return NetworkDescription.from_json(read_json(path, "network description"))
