"""Models of architectures: the weight-sharing supernet (a pure JAX function over a
plain pytree of shared weights) and the standalone nnx model of one architecture.

- `make_plan(space, max_branches_per_layer, input_channels)`,
  `init_params(plan, task, key)`, `apply(plan, task, params, indices, images,
  op_warm=None) -> (output, endpoints)`: the supernet, one compiled function for
  every architecture of a space (`supernet.supernet`).
- `build_model(spec, task, rngs=...)`: the standalone nnx model of one
  architecture, `model(x) -> (output, endpoints)`; one module per node of the
  lowering (`search_spaces.graph`) (`supernet.standalone`).
- `inherit(model, space, plan, params, indices)`: hand the supernet's shared
  weights to a standalone model (`supernet.inherit`).

Both derive from the one lowering of `search_spaces`; the head comes from a
`tasks.Task`. Imports `search_spaces` and `tasks`.
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
    GraphBlock,
    StandaloneModel,
    abstract_model,
    build_model,
    count_params,
    get_layer,
    layer_modules,
)
from supernet.supernet import apply, backbone, init_params, kernel_l2

__all__ = [
    "BN_EPSILON", "BN_MOMENTUM", "CONV_IMPLS", "BatchNorm", "ConvBN", "GraphBlock",
    "StandaloneModel", "SupernetPlan", "abstract_model", "apply", "backbone", "build_model",
    "child_weights", "conv2d", "conv_kernel_init", "count_params", "get_layer", "inherit",
    "init_params", "kernel_l2", "layer_modules", "make_plan",
]
