"""The standalone Flax (nnx) model of one architecture (a `ModelSpec`).

Structure and names mirror `search_spaces.network.describe(spec, ...)` one to
one, so that the cost models, the parameter counts and a future
weight-sharing supernet all agree on what each layer is:

    description layer        module (attribute path)          state leaves
    stem                     model.stem           ConvBN      kernel, bn.{scale,bias,mean,var}
    blocks.{i}.expand        model.blocks[i].expand     ConvBN
    blocks.{i}.depthwise     model.blocks[i].depthwise  ConvBN (groups = channels)
    blocks.{i}.group         model.blocks[i].group      ConvBN (grouped kxk)
    blocks.{i}.fused         model.blocks[i].fused      ConvBN (full kxk)
    blocks.{i}.project       model.blocks[i].project    ConvBN (1x1, no ReLU)
    blocks.{i}.add           (no parameters: `model.blocks[i].residual`)
    head                     model.head           ConvBN
    pool                     (no parameters: global average pool)
    logits                   model.logits         nnx.Linear  kernel [C, classes], bias

`i` is the index into `spec.blocks`, skipped blocks included (they are a
parameter-free `Skip`), so a layer name split on '.' is exactly the path of
its module and of its leaves in `nnx.state(model)`: e.g. the state path
`('blocks', 3, 'group', 'kernel')` holds the [k, k, Cin/groups, Cout] kernel
of layer `blocks.3.group`. A supernet hands its weights over by building an
`nnx.State` with these paths (see `layer_modules`) and calling
`nnx.update(model, state)`.

Mode: a new model is in training mode (batch norm uses batch statistics and
updates its running averages; dropout active). `model.eval()` switches to the
running averages and disables dropout, `model.train()` switches back;
`nnx.view(model, use_running_average=True, deterministic=True)` gives an
eval view without mutating the model.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import jax
import jax.numpy as jnp
from flax import nnx

from search_spaces.blocks import Block, BlockType
from search_spaces.model_spec import ModelSpec
from supernet.layers import DENSE_INIT, ConvBN, ConvImpl


class Skip(nnx.Module):
    """A skipped block: the identity, no parameters."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return x


class IBNBlock(nnx.Module):
    """One inverted-bottleneck block (semantics in `search_spaces.blocks`).

    Its convs are attributes named like the description's layer suffixes
    (`expand`, `depthwise` | `group` | `fused`, `project`); `layer_names`
    lists the present ones in execution order.
    """

    def __init__(self, block: Block, *, rngs: nnx.Rngs, conv_impl: ConvImpl = "auto") -> None:
        block.validate()
        if block.skipped:
            raise ValueError("a skipped block is a `Skip`, not an IBNBlock")
        cin, expanded = block.input_filters, block.expanded_filters
        names: list[str] = []
        if block.block_type == BlockType.FUSED_IBN:
            if block.has_kxk_conv:
                self.fused = ConvBN(cin, expanded, block.kernel_size, block.stride,
                                    rngs=rngs, conv_impl=conv_impl)
                names.append("fused")
        else:
            if block.pointwise_expansion > 1:
                self.expand = ConvBN(cin, block.kxk_in_channels, rngs=rngs,
                                     conv_impl=conv_impl)
                names.append("expand")
            kind = "depthwise" if block.block_type == BlockType.DW_IBN else "group"
            setattr(self, kind, ConvBN(block.kxk_in_channels, expanded, block.kernel_size,
                                       block.stride, block.groups, rngs=rngs,
                                       conv_impl=conv_impl))
            names.append(kind)
        # With no kxk conv (fused_ibn, e = 1) the projection carries the stride.
        conv_in = expanded if block.has_kxk_conv else cin
        self.project = ConvBN(conv_in, block.output_filters, 1,
                              1 if block.has_kxk_conv else block.stride, relu=False,
                              rngs=rngs, conv_impl=conv_impl)
        names.append("project")
        self.layer_names = tuple(names)
        self.residual = block.residual

    def __call__(self, x: jax.Array) -> jax.Array:
        y = x
        for name in self.layer_names:
            y = getattr(self, name)(y)
        return y + x if self.residual else y


class StandaloneModel(nnx.Module):
    """stem -> blocks -> head -> global average pool -> [dropout] -> logits (with bias)."""

    def __init__(self, spec: ModelSpec, num_classes: int, *, rngs: nnx.Rngs,
                 input_channels: int = 3, dropout_rate: float = 0.0,
                 conv_impl: ConvImpl = "auto") -> None:
        spec.validate()
        if num_classes < 1:
            raise ValueError(f"num_classes={num_classes} must be >= 1")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate={dropout_rate} must be in [0, 1)")
        self.input_channels = input_channels
        self.num_classes = num_classes
        self.stem = ConvBN(input_channels, spec.stem_filters, spec.stem_kernel_size,
                           spec.stem_stride, rngs=rngs, conv_impl=conv_impl)
        self.blocks = nnx.List([
            Skip() if b.skipped else IBNBlock(b, rngs=rngs, conv_impl=conv_impl)
            for b in spec.blocks
        ])
        last = spec.blocks[-1].output_filters
        self.head = ConvBN(last, spec.head_filters, rngs=rngs, conv_impl=conv_impl)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
        self.logits = nnx.Linear(spec.head_filters, num_classes, kernel_init=DENSE_INIT,
                                 bias_init=nnx.initializers.zeros_init(), rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        """Pooled head features [N, head_filters]."""
        if x.ndim != 4 or x.shape[-1] != self.input_channels:
            raise ValueError(f"input shape {x.shape}: expected NHWC with "
                             f"{self.input_channels} channels")
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        x = self.head(x)
        return jnp.mean(x, axis=(1, 2))

    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits [N, num_classes] of an NHWC float batch."""
        return self.logits(self.dropout(self.features(x)))


def build_model(spec: ModelSpec, num_classes: int, *, rngs: nnx.Rngs, input_channels: int = 3,
                dropout_rate: float = 0.0, conv_impl: ConvImpl = "auto") -> StandaloneModel:
    """The standalone model of `spec` (training mode; see the module docstring)."""
    return StandaloneModel(spec, num_classes, rngs=rngs, input_channels=input_channels,
                           dropout_rate=dropout_rate, conv_impl=conv_impl)


def abstract_model(spec: ModelSpec, num_classes: int, input_channels: int = 3,
                   **kwargs) -> StandaloneModel:
    """The model with shape-only (`jax.ShapeDtypeStruct`) leaves: no compute, no memory."""
    return nnx.eval_shape(lambda: build_model(spec, num_classes, rngs=nnx.Rngs(0),
                                              input_channels=input_channels, **kwargs))


def layer_modules(model: StandaloneModel) -> Iterator[tuple[str, ConvBN | nnx.Linear]]:
    """(description layer name, module) for every parametrized layer, in network order."""
    yield "stem", model.stem
    for i, block in enumerate(model.blocks):
        if isinstance(block, IBNBlock):
            for name in block.layer_names:
                yield f"blocks.{i}.{name}", getattr(block, name)
    yield "head", model.head
    yield "logits", model.logits


def get_layer(model: StandaloneModel, name: str) -> ConvBN | nnx.Linear:
    """The module of a description layer name, e.g. 'blocks.3.group'."""
    node = model
    for part in name.split("."):
        try:
            node = node[int(part)] if part.isdigit() else getattr(node, part)
        except (AttributeError, IndexError):
            raise KeyError(f"layer {name!r} has no module in this model") from None
    if not isinstance(node, ConvBN | nnx.Linear):
        raise KeyError(f"layer {name!r} is not a parametrized layer")
    return node


def count_params(model: nnx.Module) -> int:
    """Trainable parameters (nnx.Param leaves; BN running statistics excluded).

    Works on a concrete model and on `abstract_model(...)`.
    """
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    return sum(math.prod(leaf.shape) for leaf in leaves)
