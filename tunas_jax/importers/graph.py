"""The importers' shared graph builder: tensors -> layers of a network description.

Every importer (ONNX, TFLite, jaxpr) walks its model's nodes in order and
calls `GraphBuilder.add` with the node's activation inputs and the
`search_spaces.network.Layer` fields it maps to; constants (weights, shape
arithmetic) never become layers. `build` then applies the peephole fusions
every Edge TPU compiler applies (a batch norm or an activation whose only
input is a conv/dense layer consumed by nothing else becomes that layer's
`batch_norm` / `activation`), so an imported network is costed the way it
will run and compares layer for layer with the native descriptions.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from types import ModuleType

from search_spaces.errors import SpecError
from search_spaces.network import Layer, NetworkDescription, Shape

# Producers a standalone batch norm / activation can fold into.
_BN_HOSTS = ("conv2d", "conv2d_transpose", "fully_connected")
_ACT_HOSTS = (*_BN_HOSTS, "add", "mul")


def optional_import(module: str, extra: str, what: str) -> ModuleType:
    """Import an optional extra's package, or one error saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SpecError(f"{what} needs the {module} package: pip install "
                        f"'tunas-jax[{extra}]'") from None


def to_hwc(dims: list[int] | tuple[int, ...], where: str, channels_first: bool = False,
           hint: str = "") -> Shape:
    """A batch-1 tensor shape as [H, W, C].

    [1, H, W, C] (or [1, C, H, W] when `channels_first`) -> (H, W, C);
    [1, T, C] -> (1, T, C); [1, C] and [C] -> (1, 1, C).
    """
    dims = list(dims)
    if not dims or any(not isinstance(d, int) or d < 1 for d in dims):
        raise SpecError(f"{where}: shape {dims} is not fully known{hint}")
    if len(dims) == 4 and dims[0] == 1:
        return (dims[2], dims[3], dims[1]) if channels_first else (dims[1], dims[2], dims[3])
    if len(dims) == 3 and dims[0] == 1:
        return (1, dims[1], dims[2])
    if len(dims) == 2 and dims[0] == 1:
        return (1, 1, dims[1])
    if len(dims) == 1:
        return (1, 1, dims[0])
    raise SpecError(f"{where}: shape {dims} has no [height, width, channels] reading "
                    "(batch 1, rank 1 to 4)")


def hwc_axis(axis: int, rank: int, channels_first: bool = False) -> int | None:
    """A tensor axis as the description's axis (0 = height, 1 = width, -1 = channels).

    None for the batch axis."""
    axis %= rank
    if rank == 4:
        return ({1: -1, 2: 0, 3: 1} if channels_first else {1: 0, 2: 1, 3: -1}).get(axis)
    if rank == 3:
        return {1: 1, 2: -1}.get(axis)
    return -1 if axis == rank - 1 and axis > 0 else None


class GraphBuilder:
    """Tracks which layer produces each tensor of the imported model, and its shape."""

    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind  # kind names the format in error messages
        self.layers: list[Layer] = []
        self.input_shape: Shape | None = None
        self._tensors: dict[str, tuple[str, Shape]] = {}
        self._names: set[str] = {"input"}

    def set_input(self, tensor: str, shape: Shape) -> None:
        if self.input_shape is not None:
            raise SpecError(f"{self.kind} model: more than one input ({tensor!r}); the network "
                            "description has one input image")
        self.input_shape = shape
        self._tensors[tensor] = ("input", shape)

    def has(self, tensor: str) -> bool:
        """Whether `tensor` is an activation (produced by the input or a layer)."""
        return tensor in self._tensors

    def shape(self, tensor: str) -> Shape:
        return self._tensors[tensor][1]

    def producer(self, tensor: str) -> str:
        """The layer (or 'input') that produces `tensor`."""
        return self._tensors[tensor][0]

    def alias(self, out_tensor: str, in_tensor: str) -> None:
        """`out_tensor` is `in_tensor` (identity, dropout, quantize, a no-op reshape)."""
        self._tensors[out_tensor] = self._tensors[in_tensor]

    def add(self, node: str, out_tensor: str, inputs: list[str], output_shape: Shape,
            **fields) -> Layer:
        """Append the layer `node` maps to; its inputs are activation tensors."""
        sources = [self._tensors[t] for t in inputs]
        layer = Layer(name=self._unique(node), inputs=tuple(s[0] for s in sources),
                      input_shape=sources[0][1], output_shape=output_shape, **fields)
        self.layers.append(layer)
        self._tensors[out_tensor] = (layer.name, output_shape)
        return layer

    def _unique(self, wanted: str) -> str:
        base = re.sub(r"\s+", "_", wanted) or "layer"
        name, i = base, 1
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    def build(self, fuse: bool = True) -> NetworkDescription:
        if self.input_shape is None:
            raise SpecError(f"{self.kind} model: no input tensor found")
        if not self.layers:
            raise SpecError(f"{self.kind} model: no layers to import")
        layers = fuse_layers(self.layers) if fuse else list(self.layers)
        net = NetworkDescription(self.name, self.input_shape, tuple(layers))
        try:
            return net.validate()
        except SpecError as err:  # an importer bug or an odd model: say which
            raise SpecError(f"{self.kind} model imported to an invalid description: {err}"
                            ) from None


def fuse_layers(layers: list[Layer]) -> list[Layer]:
    """Fold standalone batch norms and activations into their single producer."""
    consumers: dict[str, int] = {}
    for layer in layers:
        for src in layer.inputs:
            consumers[src] = consumers.get(src, 0) + 1
    out: list[Layer] = []
    index: dict[str, int] = {}  # layer name -> position in `out`
    rename: dict[str, str] = {}
    for layer in layers:
        layer = dataclasses.replace(layer, inputs=tuple(rename.get(s, s) for s in layer.inputs))
        host = out[index[layer.inputs[0]]] if layer.inputs[0] in index else None
        if (host is not None and len(layer.inputs) == 1
                and consumers.get(host.name, 0) == 1 and host.activation is None):
            merged = None
            if layer.op == "batch_norm" and host.op in _BN_HOSTS and not host.batch_norm:
                merged = dataclasses.replace(host, batch_norm=True)
            elif layer.op == "activation" and host.op in _ACT_HOSTS:
                merged = dataclasses.replace(host, activation=layer.activation)
            if merged is not None:
                out[index[host.name]] = merged
                rename[layer.name] = host.name
                consumers[host.name] = consumers.get(layer.name, 0)
                continue
        index[layer.name] = len(out)
        out.append(layer)
    return out
