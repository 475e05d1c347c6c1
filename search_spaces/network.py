"""The flat network description: one JSON entry per layer, the cost models' input.

Format (`format: "tunas-jax/network"`, `format_version: 1`):

    {"format": "tunas-jax/network", "format_version": 1, "name": "...",
     "input_shape": [H, W, C],
     "layers": [{"name": "stem", "op": "conv2d", "inputs": ["input"],
                 "input_shape": [H, W, C], "output_shape": [H', W', C'],
                 "kernel_size": 3, "stride": 2, "padding": "same", "groups": 1,
                 "use_bias": false, "batch_norm": true, "activation": "relu"}, ...]}

Ops and their fields:
- `conv2d`: kernel_size, stride, padding (`same`: out = ceil(in / stride);
  `valid`: out = floor((in - k) / stride) + 1), groups (1 = full conv,
  groups = channels = depthwise), use_bias, batch_norm, activation.
- `fully_connected`: input [1, 1, Cin] -> [1, 1, Cout]; use_bias.
- `pool`: pool_type `avg` | `max`, kernel_size, stride, padding; `global: true`
  pools the whole map to 1x1.
- `add`: elementwise sum of its inputs (all the same shape).
- `concat`: channel concatenation of its inputs.

`inputs` names earlier layers (or `input`); `input_shape` is the shape of the
first input. Shapes are checked against the producers when loading, so a
hand-written description (MobileNetV2, ResNet-50, VGG-16, ...) is validated
exactly like a generated one.

Counts: conv2d params = k*k*(Cin/groups)*Cout (+ Cout bias) (+ 2*Cout batch
norm gamma/beta; moving statistics are not trainable); fully_connected
params = Cin*Cout (+ Cout). MACs: conv2d = H'*W'*k*k*(Cin/groups)*Cout,
fully_connected = Cin*Cout; pool, add and concat count 0 MACs.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from search_spaces.errors import SpecError
from search_spaces.fileio import read_json

FORMAT = "tunas-jax/network"
FORMAT_VERSION = 1
OPS = ("conv2d", "fully_connected", "pool", "add", "concat")
Shape = tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class Layer:
    name: str
    op: str
    inputs: tuple[str, ...]
    input_shape: Shape
    output_shape: Shape
    kernel_size: int = 1
    stride: int = 1
    padding: str = "same"
    groups: int = 1
    use_bias: bool = False
    batch_norm: bool = False
    activation: str | None = None
    pool_type: str | None = None
    global_pool: bool = False

    @property
    def params(self) -> int:
        _, _, cin = self.input_shape
        cout = self.output_shape[2]
        if self.op == "conv2d":
            n = self.kernel_size**2 * (cin // self.groups) * cout
        elif self.op == "fully_connected":
            n = cin * cout
        else:
            return 0
        return n + (cout if self.use_bias else 0) + (2 * cout if self.batch_norm else 0)

    @property
    def macs(self) -> int:
        cin = self.input_shape[2]
        h, w, cout = self.output_shape
        if self.op == "conv2d":
            return h * w * self.kernel_size**2 * (cin // self.groups) * cout
        if self.op == "fully_connected":
            return cin * cout
        return 0

    @property
    def weight_count(self) -> int:
        """Kernel weights only (what an accelerator stores; BN folds into them)."""
        if self.op not in ("conv2d", "fully_connected"):
            return 0
        k = self.kernel_size if self.op == "conv2d" else 1
        return k * k * (self.input_shape[2] // self.groups) * self.output_shape[2]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "op": self.op, "inputs": list(self.inputs),
            "input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
        }
        if self.op in ("conv2d", "pool"):
            out.update(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding)
        if self.op == "conv2d":
            out.update(groups=self.groups)
        if self.op in ("conv2d", "fully_connected"):
            out.update(use_bias=self.use_bias, batch_norm=self.batch_norm,
                       activation=self.activation)
        if self.op == "pool":
            out.update(pool_type=self.pool_type, **{"global": self.global_pool})
        return out


def _spatial(size: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1


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

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "name": self.name,
            "input_shape": list(self.input_shape),
            "layers": [layer.to_json() for layer in self.layers],
        }

    def validate(self) -> NetworkDescription:
        shapes: dict[str, Shape] = {"input": self.input_shape}
        for i, layer in enumerate(self.layers):
            where = f"layers[{i}] ({layer.name!r})"
            if layer.name in shapes:
                raise SpecError(f"{where}.name: duplicate layer name; names must be unique")
            if layer.op not in OPS:
                raise SpecError(f"{where}.op: {layer.op!r} is unknown; use one of {OPS}")
            if not layer.inputs:
                raise SpecError(f"{where}.inputs: empty; name the producing layer(s) or 'input'")
            for src in layer.inputs:
                if src not in shapes:
                    raise SpecError(f"{where}.inputs: {src!r} is not an earlier layer or 'input'")
            in_shapes = [shapes[s] for s in layer.inputs]
            if tuple(layer.input_shape) != in_shapes[0]:
                raise SpecError(f"{where}.input_shape: {list(layer.input_shape)} but input "
                                f"{layer.inputs[0]!r} produces {list(in_shapes[0])}")
            expected = self._expected_output(layer, in_shapes, where)
            if tuple(layer.output_shape) != expected:
                raise SpecError(f"{where}.output_shape: {list(layer.output_shape)} but the "
                                f"layer computes {list(expected)}")
            shapes[layer.name] = expected
        return self

    @staticmethod
    def _expected_output(layer: Layer, in_shapes: list[Shape], where: str) -> Shape:
        h, w, c = in_shapes[0]
        if layer.op in ("conv2d", "pool"):
            if layer.kernel_size < 1 or layer.stride < 1:
                raise SpecError(f"{where}: kernel_size and stride must be >= 1")
            if layer.padding not in ("same", "valid"):
                raise SpecError(f"{where}.padding: {layer.padding!r}; use 'same' or 'valid'")
        if layer.op == "conv2d":
            cout = layer.output_shape[2]
            if layer.groups < 1 or c % layer.groups or cout % layer.groups:
                raise SpecError(f"{where}.groups: {layer.groups} must divide input channels {c} "
                                f"and output channels {cout}")
            return (_spatial(h, layer.kernel_size, layer.stride, layer.padding),
                    _spatial(w, layer.kernel_size, layer.stride, layer.padding), cout)
        if layer.op == "fully_connected":
            if (h, w) != (1, 1):
                raise SpecError(f"{where}: fully_connected needs a 1x1 input; pool first")
            return (1, 1, layer.output_shape[2])
        if layer.op == "pool":
            if layer.pool_type not in ("avg", "max"):
                raise SpecError(f"{where}.pool_type: {layer.pool_type!r}; use 'avg' or 'max'")
            if layer.global_pool:
                return (1, 1, c)
            return (_spatial(h, layer.kernel_size, layer.stride, layer.padding),
                    _spatial(w, layer.kernel_size, layer.stride, layer.padding), c)
        if layer.op == "add":
            if any(s != in_shapes[0] for s in in_shapes):
                raise SpecError(f"{where}: add inputs have different shapes {in_shapes}")
            return in_shapes[0]
        # concat
        if any(s[:2] != (h, w) for s in in_shapes):
            raise SpecError(f"{where}: concat inputs differ in height/width {in_shapes}")
        return (h, w, sum(s[2] for s in in_shapes))

    @classmethod
    def from_json(cls, data: Any) -> NetworkDescription:
        if not isinstance(data, dict):
            raise SpecError("network description: expected a JSON object")
        if data.get("format") != FORMAT:
            raise SpecError(f"network description.format: {data.get('format')!r}; "
                            f"expected {FORMAT!r}")
        if data.get("format_version") != FORMAT_VERSION:
            raise SpecError(f"network description.format_version: {data.get('format_version')!r};"
                            f" this version of tunas-jax reads {FORMAT_VERSION}")
        fields = {f.name for f in dataclasses.fields(Layer)} - {"global_pool"}
        layers = []
        for i, raw in enumerate(data.get("layers") or []):
            if not isinstance(raw, dict):
                raise SpecError(f"layers[{i}]: expected a JSON object")
            raw = dict(raw)
            global_pool = bool(raw.pop("global", False))
            unknown = sorted(set(raw) - fields)
            if unknown:
                raise SpecError(f"layers[{i}]: unknown key(s) {unknown}; allowed {sorted(fields)}")
            for key in ("name", "op", "inputs", "input_shape", "output_shape"):
                if key not in raw:
                    raise SpecError(f"layers[{i}]: missing key {key!r}")
            try:
                layers.append(Layer(
                    **{**raw, "inputs": tuple(raw["inputs"]),
                       "input_shape": _shape(raw["input_shape"], f"layers[{i}].input_shape"),
                       "output_shape": _shape(raw["output_shape"], f"layers[{i}].output_shape")},
                    global_pool=global_pool))
            except TypeError as err:
                raise SpecError(f"layers[{i}]: {err}") from None
        if not layers:
            raise SpecError("network description.layers: empty; list at least one layer")
        return cls(
            name=str(data.get("name", "network")),
            input_shape=_shape(data.get("input_shape"), "network description.input_shape"),
            layers=tuple(layers),
        ).validate()


def _shape(value: Any, where: str) -> Shape:
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(isinstance(v, int) and v > 0 for v in value)):
        raise SpecError(f"{where}: {value!r} must be [height, width, channels] positive ints")
    return (value[0], value[1], value[2])


def load(path: str | os.PathLike) -> NetworkDescription:
    """Load a network-description JSON file; SpecError with one clear line on bad input."""
    return NetworkDescription.from_json(read_json(path, "network description"))
