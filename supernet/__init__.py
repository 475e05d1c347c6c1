"""Flax (nnx) models of architectures: the standalone model of one `ModelSpec`.

`build_model(spec, num_classes, rngs=...)` builds it; its module tree mirrors
the layer names of `search_spaces.network.describe` (see
`supernet.standalone`), which a weight-sharing supernet uses to hand over
its weights. Imports `search_spaces` only.
"""

from supernet.layers import (
    BN_EPSILON,
    BN_MOMENTUM,
    CONV_IMPLS,
    BatchNorm,
    ConvBN,
    conv2d,
    conv_kernel_init,
)
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

__all__ = [
    "BN_EPSILON", "BN_MOMENTUM", "CONV_IMPLS", "BatchNorm", "ConvBN", "IBNBlock", "Skip",
    "StandaloneModel", "abstract_model", "build_model", "conv2d", "conv_kernel_init",
    "count_params", "get_layer", "layer_modules",
]
