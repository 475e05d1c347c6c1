"""One lowering: a concrete network (`ModelSpec`) as a graph of layers with endpoints.

Every other view of a network is derived from this graph, so there is one
place that says what a block computes:

- the flat network description the simulator costs (`describe`, here);
- the standalone nnx model (`supernet.standalone` builds one module per node);
- the supernet (`supernet.plan` enumerates the nodes of every configuration of
  a block position and shares weights by each node's `weights` key);
- the fast per-architecture coster (`cost_models.arch_cost`, per unit).

A `Node` is a conv (kxk, stride, groups, batch norm, activation) or an `add`.
Besides its name it carries two supernet facts: its `role` (which of a block's
switches it belongs to: `expand`, `kxk`, `project` for the IBN types) and its
`weights` key (nodes of different configurations with the same key share one
weight tensor, sliced to their own shape).

Endpoints: the graph names the feature map at each stride the backbone
reaches (`stride_2`, `stride_4`, ... up to `stride_32`: the last tensor at
that stride) and `features`, the backbone's final (head conv) output, so a
task's head can attach to any of them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from search_spaces.block_types import get_block_type
from search_spaces.errors import SpecError
from search_spaces.model_spec import ModelSpec
from search_spaces.network import Layer, NetworkDescription


@dataclasses.dataclass(frozen=True)
class Node:
    """One layer. `op` is 'conv2d' or 'add'; `inputs` are node names or 'input'
    (inside a block's lowering, 'block_input' and earlier nodes of the block)."""

    name: str
    op: str
    inputs: tuple[str, ...]
    cin: int
    cout: int
    kernel_size: int = 1
    stride: int = 1
    groups: int = 1
    activation: str | None = "relu"
    batch_norm: bool = True
    role: str = ""
    weights: str = ""

    @property
    def depthwise(self) -> bool:
        return self.op == "conv2d" and self.groups > 1 and self.groups == self.cin == self.cout

    def renamed(self, prefix: str, block_input: str) -> Node:
        """The node inside a whole network: names prefixed, 'block_input' resolved."""
        inputs = tuple(block_input if i == "block_input" else prefix + i for i in self.inputs)
        return dataclasses.replace(self, name=prefix + self.name, inputs=inputs)


def conv(name: str, inputs: str | Sequence[str], cin: int, cout: int, kernel_size: int = 1,
         stride: int = 1, groups: int = 1, activation: str | None = "relu", *, role: str,
         weights: str) -> Node:
    """A conv + batch norm (+ activation) node."""
    inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
    return Node(name, "conv2d", inputs, cin, cout, kernel_size, stride, groups, activation,
                True, role, weights)


def add(name: str, inputs: Sequence[str], width: int) -> Node:
    return Node(name, "add", tuple(inputs), width, width, activation=None, batch_norm=False,
                role="residual")


@dataclasses.dataclass(frozen=True)
class LayerGraph:
    """The lowered backbone: nodes in execution order, and named endpoints."""

    nodes: tuple[Node, ...]
    endpoints: dict[str, str]  # endpoint name -> node name (or 'input')
    input_channels: int
    task_head: tuple[tuple[str, Any], ...] = ()  # the spec's searched head settings

    @property
    def output(self) -> str:
        return self.endpoints["features"]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


def stem_node(cin: int, cout: int, kernel_size: int, stride: int) -> Node:
    return conv("stem", "input", cin, cout, kernel_size, stride, role="stem", weights="stem")


def head_node(cin: int, cout: int, source: str) -> Node:
    return conv("head", source, cin, cout, role="head", weights="head")


def block_nodes(block: Any, index: int, source: str) -> tuple[Node, ...]:
    """The nodes of `spec.blocks[index]` inside a network, reading tensor `source`."""
    return tuple(n.renamed(f"blocks.{index}.", source)
                 for n in get_block_type(block.block_type).lower(block))


def lower(spec: ModelSpec, input_channels: int = 3) -> LayerGraph:
    """The layer graph of a concrete network (stem, blocks, head conv)."""
    nodes = [stem_node(input_channels, spec.stem_filters, spec.stem_kernel_size,
                       spec.stem_stride)]
    current, stride = "stem", spec.stem_stride
    endpoints: dict[str, str] = {f"stride_{stride}": current}
    for i, block in enumerate(spec.blocks):
        added = block_nodes(block, i, current)
        nodes.extend(added)
        if added:
            current = added[-1].name
        stride *= block.stride
        endpoints[f"stride_{stride}"] = current
    if spec.head_filters:
        nodes.append(head_node(spec.blocks[-1].output_filters, spec.head_filters, current))
        current = "head"
    endpoints["features"] = current  # no head conv (head_filters 0): the last block's
    return LayerGraph(tuple(nodes), endpoints, input_channels, spec.task_head)


def node_layer(node: Node, shapes: dict[str, tuple[int, int, int]]) -> Layer:
    """The network-description layer of `node`, given the shapes of its inputs."""
    h, w, c = shapes[node.inputs[0]]
    if c != node.cin:
        raise SpecError(f"{node.name}: reads {c} channels from {node.inputs[0]!r} but is "
                        f"lowered for {node.cin}")
    if node.op == "add":
        return Layer(name=node.name, op="add", inputs=node.inputs, input_shape=(h, w, c),
                     output_shape=(h, w, c))
    out = (math.ceil(h / node.stride), math.ceil(w / node.stride), node.cout)
    return Layer(name=node.name, op="conv2d", inputs=node.inputs, input_shape=(h, w, c),
                 output_shape=out, kernel_size=node.kernel_size, stride=node.stride,
                 padding="same", groups=node.groups, use_bias=False,
                 batch_norm=node.batch_norm, activation=node.activation)


def node_layers(nodes: Sequence[Node], shapes: dict[str, tuple[int, int, int]]) -> list[Layer]:
    """Layers of `nodes` in order; `shapes` holds the shapes of their outside inputs and
    gets each node's output shape."""
    layers = []
    for node in nodes:
        layer = node_layer(node, shapes)
        shapes[node.name] = layer.output_shape
        layers.append(layer)
    return layers


def describe_graph(graph: LayerGraph, image_size: int, head_layers: Any,
                   name: str = "network") -> NetworkDescription:
    """The flat network description: the graph's layers, then the task's head layers
    (`head_layers({endpoint: (layer name, shape)}) -> list[Layer]`)."""
    shapes = {"input": (image_size, image_size, graph.input_channels)}
    layers = node_layers(graph.nodes, shapes)
    # `input` too: a head with a full-resolution output (segmentation) needs its size.
    layers.extend(head_layers({"input": ("input", shapes["input"]),
                               **{name: (node, shapes[node])
                                  for name, node in graph.endpoints.items()}}))
    return NetworkDescription(name, (image_size, image_size, graph.input_channels),
                              tuple(layers)).validate()
