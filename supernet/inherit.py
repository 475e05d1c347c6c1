"""Hand the supernet's shared weights to the standalone model of one architecture.

`child_weights` cuts, for each network-description layer of the child, its
kernel and batch-norm scale/bias out of the shared tensors exactly as the
supernet's forward pass does (prefixes, block diagonals, per-kernel-size
depthwise kernels); `inherit` writes them into a `supernet.standalone` model.
With batch statistics both models then compute the same function.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from search_spaces import BlockType, SearchSpace
from supernet.plan import SupernetPlan, layer_configs
from supernet.standalone import StandaloneModel, layer_modules
from supernet.supernet import Params


def child_weights(space: SearchSpace, plan: SupernetPlan, params: Params,
                  indices: Any) -> dict[str, dict[str, Any]]:
    """{layer name: {"kernel", "scale", "bias"} (logits: "kernel", "bias")}."""
    indices = np.asarray(indices)
    spec = space.decode(indices)
    out: dict[str, dict[str, Any]] = {}

    def conv(name: str, kernel: Any, bn: Params, width: int) -> None:
        out[name] = {"kernel": kernel, "scale": bn["scale"][:width], "bias": bn["bias"][:width]}

    stem_w = int(plan.stem_lookup.row(indices)[1])
    conv("stem", params["stem"]["kernel"][..., :stem_w], params["stem"], stem_w)
    for i, (bp, block) in enumerate(zip(plan.blocks, spec.blocks, strict=True)):
        if block.skipped:
            continue
        p = params[bp.name]
        # The child's exact layer shapes (a masked plan's branches are wider).
        e, k, pr = layer_configs(block)
        if e is not None:
            conv(f"blocks.{i}.expand", p["expand"]["kernel"][None, None, :e.cin, :e.width],
                 p["expand"], e.width)
        if k is not None:
            kernel_name = f"{k.family}_{k.kernel_size}"
            w = p[kernel_name]
            if k.family == "dw":
                conv(f"blocks.{i}.depthwise", w["kernel"][..., :k.cout], w, k.cout)
            else:
                name = "fused" if block.block_type == BlockType.FUSED_IBN else "group"
                kernel = bp.kernels[kernel_name].grouped_kernel(w["kernel"], k.cin, k.cout,
                                                                k.groups)
                conv(f"blocks.{i}.{name}", kernel, w, k.cout)
        conv(f"blocks.{i}.project", p["project"]["kernel"][None, None, :pr.cin, :pr.cout],
             p["project"], pr.cout)
    head = plan.head_configs[int(plan.head_lookup.row(indices)[0])]
    conv("head", params["head"]["kernel"][None, None, :head.cin, :head.cout], params["head"],
         head.cout)
    out["logits"] = {"kernel": params["logits"]["kernel"][:head.cout],
                     "bias": params["logits"]["bias"]}
    return out


def inherit(model: StandaloneModel, space: SearchSpace, plan: SupernetPlan, params: Params,
            indices: Any) -> StandaloneModel:
    """Write the child's shared weights into `model` (built from the same architecture)."""
    weights = child_weights(space, plan, params, indices)
    for name, module in layer_modules(model):
        w = weights.pop(name)
        if name == "logits":
            module.kernel[...] = jnp.asarray(w["kernel"])
            module.bias[...] = jnp.asarray(w["bias"])
            continue
        if module.kernel.shape != w["kernel"].shape:
            raise ValueError(f"{name}: model kernel {module.kernel.shape} but the supernet "
                             f"gives {w['kernel'].shape}; build the model from the same indices")
        module.kernel[...] = jnp.asarray(w["kernel"])
        module.bn.scale[...] = jnp.asarray(w["scale"])
        module.bn.bias[...] = jnp.asarray(w["bias"])
    if weights:
        raise ValueError(f"layers {sorted(weights)} have no module in the model")
    return model
