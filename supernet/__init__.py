"""Flax models of architectures: the weight-sharing supernet and the standalone model.

- `make_plan(space, max_branches_per_layer)`, `init_params(plan, num_classes, key)`,
  `apply(plan, params, indices, images, op_warm=None)`: the supernet, one
  compiled function for every architecture of a space (`supernet.supernet`).
- `build_model(spec, num_classes, rngs=...)`: the standalone nnx model of one
  architecture; its module tree mirrors the layer names of
  `search_spaces.network.describe` (`supernet.standalone`).
- `inherit(model, space, plan, params, indices)`: hand the supernet's shared
  weights to a standalone model (`supernet.inherit`).

Imports `search_spaces` only.
"""

from supernet.inherit import child_weights, inherit
from supernet.layers import (
    BN_EPSILON,
    BN_MOMENTUM,
    CONV_IMPLS,
    BatchNorm,
    ConvBN,
    conv2d,
    conv_kernel_init,
)
from supernet.plan import SupernetPlan, make_plan
from supernet.standalone import (
    IBNBlock,
    Skip,
    StandaloneModel,
    abstract_model,
    build_model,
    count_params,
    get_layer,
    layer_modules,
)
from supernet.supernet import apply, init_params

__all__ = [
    "BN_EPSILON", "BN_MOMENTUM", "CONV_IMPLS", "BatchNorm", "ConvBN", "IBNBlock", "Skip",
    "StandaloneModel", "SupernetPlan", "abstract_model", "apply", "build_model",
    "child_weights", "conv2d", "conv_kernel_init", "count_params", "get_layer", "inherit",
    "init_params", "layer_modules", "make_plan",
]
