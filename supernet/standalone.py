"""The standalone Flax (nnx) model of one architecture, built from its layer graph.

The model is derived from the one lowering (`search_spaces.graph.lower`): one
module per node, named like the node, so that the cost models, the parameter
counts and the supernet all agree on what each layer is:

    description layer        module (attribute path)          state leaves
    stem                     model.stem           ConvBN      kernel, bn.{scale,bias,mean,var}
    blocks.{i}.<node>        model.blocks[i].<node>  ConvBN   (expand, depthwise, group,
                                                              fused, project for the IBNs)
    blocks.{i}.add           (no parameters: a residual node)
    head                     model.head           ConvBN
    <task head layers>       model.task_head.<name>  (classification: pool, logits)

`i` is the index into `spec.blocks`, skipped blocks included (they have no
nodes), so a backbone layer name split on '.' is exactly the path of its
module and of its leaves in `nnx.state(model)`: e.g. the state path
`('blocks', 3, 'group', 'kernel')` holds the [k, k, Cin/groups, Cout] kernel
of layer `blocks.3.group`. `layer_modules` lists every parametrized layer by
description name (the task head's included); the supernet hands its weights
over through it (`supernet.inherit`).

`model(x)` returns `(output, endpoints)`: the task head's output and the
backbone's feature maps by name (`stride_2` ... `stride_32`, `features`),
as the supernet does.

Mode: a new model is in training mode (batch norm uses batch statistics and
updates its running averages; dropout active). `model.eval()` switches to the
running averages and disables dropout, `model.train()` switches back;
`nnx.view(model, use_running_average=True, deterministic=True)` gives an
eval view without mutating the model.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import jax
from flax import nnx

from search_spaces import ModelSpec, Node, get_block_type, lower
from supernet.layers import ConvBN, ConvImpl
from tasks import Classification, Task


class GraphBlock(nnx.Module):
    """One block position: a module per lowered node (none for a skipped block)."""

    def __init__(self, nodes: tuple[Node, ...], *, rngs: nnx.Rngs,
                 conv_impl: ConvImpl = "auto") -> None:
        self.nodes = nodes  # the block's own lowering: inputs 'block_input' or its nodes
        for node in self.nodes:
            if node.op == "conv2d":
                setattr(self, node.name, _conv_module(node, rngs, conv_impl))

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes if n.op == "conv2d")

    def __call__(self, x: jax.Array) -> jax.Array:
        if not self.nodes:
            return x
        values = {"block_input": x}
        for node in self.nodes:
            inputs = [values[i] for i in node.inputs]
            if node.op == "add":
                out = sum(inputs[1:], inputs[0])
            else:
                out = getattr(self, node.name)(inputs[0])
            values[node.name] = out
        return out


def _conv_module(node: Node, rngs: nnx.Rngs, conv_impl: ConvImpl) -> ConvBN:
    if node.activation not in (None, "relu"):
        raise ValueError(f"{node.name}: activation {node.activation!r} is not supported by the "
                         "standalone ConvBN (relu or none)")
    return ConvBN(node.cin, node.cout, node.kernel_size, node.stride, node.groups,
                  relu=node.activation == "relu", rngs=rngs, conv_impl=conv_impl)


class StandaloneModel(nnx.Module):
    """stem -> blocks -> head conv -> the task's head; `model(x) -> (output, endpoints)`."""

    def __init__(self, spec: ModelSpec, task: Task | int, *, rngs: nnx.Rngs,
                 input_channels: int = 3, dropout_rate: float = 0.0,
                 conv_impl: ConvImpl = "auto") -> None:
        spec.validate()
        task = Classification(task) if isinstance(task, int) else task
        task = task.with_head(dict(spec.task_head))  # the architecture's head settings
        self.task = task
        self.input_channels = input_channels
        graph = lower(spec, input_channels)
        self.endpoint_nodes = dict(graph.endpoints)
        self.stem = _conv_module(graph.node("stem"), rngs, conv_impl)
        self.blocks = nnx.List([
            GraphBlock(get_block_type(b.block_type).lower(b), rngs=rngs, conv_impl=conv_impl)
            for b in spec.blocks])
        # None: a spec without head conv (head_filters 0).
        self.head = (_conv_module(graph.node("head"), rngs, conv_impl) if spec.head_filters
                     else None)
        widths = {name: (input_channels if node == "input" else graph.node(node).cout)
                  for name, node in graph.endpoints.items()}
        self.task_head = task.build_head(widths, rngs=rngs, dropout_rate=dropout_rate)

    @property
    def num_classes(self) -> int:
        return self.task.num_classes

    def backbone(self, x: jax.Array) -> dict[str, jax.Array]:
        """The endpoints: the last feature map at each stride, and `features`."""
        if x.ndim != 4 or x.shape[-1] != self.input_channels:
            raise ValueError(f"input shape {x.shape}: expected NHWC with "
                             f"{self.input_channels} channels")
        tensors = {"input": x}
        x = tensors["stem"] = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if block.nodes:
                tensors[f"blocks.{i}.{block.nodes[-1].name}"] = x
        if self.head is not None:
            tensors["head"] = self.head(x)
        return {name: tensors[node] for name, node in self.endpoint_nodes.items()}

    def __call__(self, x: jax.Array, rngs: Any = None) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(task output, endpoints) of an NHWC float batch."""
        endpoints = self.backbone(x)
        return self.task_head(endpoints, rngs=rngs), endpoints


def build_model(spec: ModelSpec, task: Task | int, *, rngs: nnx.Rngs, input_channels: int = 3,
                dropout_rate: float = 0.0, conv_impl: ConvImpl = "auto") -> StandaloneModel:
    """The standalone model of `spec` with `task`'s head (an int: classification with that
    many classes); training mode, see the module docstring."""
    return StandaloneModel(spec, task, rngs=rngs, input_channels=input_channels,
                           dropout_rate=dropout_rate, conv_impl=conv_impl)


def abstract_model(spec: ModelSpec, task: Task | int, input_channels: int = 3,
                   **kwargs) -> StandaloneModel:
    """The model with shape-only (`jax.ShapeDtypeStruct`) leaves: no compute, no memory."""
    return nnx.eval_shape(lambda: build_model(spec, task, rngs=nnx.Rngs(0),
                                              input_channels=input_channels, **kwargs))


def layer_modules(model: StandaloneModel) -> Iterator[tuple[str, nnx.Module]]:
    """(description layer name, module) for every parametrized layer, in network order."""
    yield "stem", model.stem
    for i, block in enumerate(model.blocks):
        for name in block.layer_names:
            yield f"blocks.{i}.{name}", getattr(block, name)
    if model.head is not None:
        yield "head", model.head
    yield from model.task_head.named_layers()


def get_layer(model: StandaloneModel, name: str) -> nnx.Module:
    """The module of a description layer name, e.g. 'blocks.3.group'."""
    for layer_name, module in layer_modules(model):
        if layer_name == name:
            return module
    raise KeyError(f"layer {name!r} has no parametrized module in this model")


def count_params(model: nnx.Module) -> int:
    """Trainable parameters (nnx.Param leaves; BN running statistics excluded).

    Works on a concrete model and on `abstract_model(...)`.
    """
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    return sum(math.prod(leaf.shape) for leaf in leaves)
