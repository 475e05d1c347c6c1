"""Hand the supernet's shared weights to the standalone model of one architecture.

`child_weights` cuts, for each layer of the child's lowering, its kernel and
batch-norm scale/bias out of the shared tensor its `weights` key names,
exactly as the supernet's forward pass does (prefixes, block diagonals,
per-kernel-size depthwise kernels), and the task head's weights through the
task; `inherit` writes them into a `supernet.standalone` model. With batch
statistics both models then compute the same function.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from search_spaces import SearchSpace
from supernet.plan import SupernetPlan
from supernet.standalone import StandaloneModel, layer_modules
from supernet.supernet import Params, kernel_of


def child_weights(space: SearchSpace, plan: SupernetPlan, params: Params, indices: Any,
                  task: Any) -> dict[str, dict[str, Any]]:
    """{layer name: {"kernel", "scale", "bias"}} (the task head's layers: as the task
    gives them, e.g. classification's {"logits": {"kernel", "bias"}})."""
    indices = np.asarray(indices)
    out: dict[str, dict[str, Any]] = {}
    width, unit_widths = plan.input_channels, []  # the child's width after each unit
    for unit, unit_plan in zip(space.units, plan.units, strict=True):
        p = params[unit.name]
        # The child's exact layer shapes (a masked plan's branches are wider).
        for node in space.unit_nodes(unit, indices, plan.input_channels):
            if node.op != "conv2d":
                continue
            width = node.cout
            stored = p[node.weights]
            kernel = kernel_of(unit_plan.weights[node.weights], stored["kernel"], node.cin,
                               node.cout, node.groups)
            if kernel.ndim == 2:  # a 1x1 kernel stored as a matrix
                kernel = kernel[None, None]
            out[node.name] = {"kernel": kernel, "scale": stored["scale"][:node.cout],
                              "bias": stored["bias"][:node.cout]}
        unit_widths.append(width)
    widths = {name: unit_widths[i] for name, i in plan.endpoints.items()}
    task = task.with_head(dict(space.head_values(indices)))  # the child's head settings
    out.update(task.inherit_head(params["task_head"], widths))
    return out


def inherit(model: StandaloneModel, space: SearchSpace, plan: SupernetPlan, params: Params,
            indices: Any) -> StandaloneModel:
    """Write the child's shared weights into `model` (built from the same architecture)."""
    weights = child_weights(space, plan, params, indices, model.task)
    for name, module in layer_modules(model):
        w = weights.pop(name)
        if module.kernel.shape != w["kernel"].shape:
            raise ValueError(f"{name}: model kernel {module.kernel.shape} but the supernet "
                             f"gives {w['kernel'].shape}; build the model from the same indices")
        module.kernel[...] = jnp.asarray(w["kernel"])
        if "scale" in w:
            module.bn.scale[...] = jnp.asarray(w["scale"])
            module.bn.bias[...] = jnp.asarray(w["bias"])
            if "conv_bias" in w:  # a conv bias before batch norm (tasks.head_parts)
                module.bias[...] = jnp.asarray(w["conv_bias"])
        elif "bias" in w:
            module.bias[...] = jnp.asarray(w["bias"])
        # else: a bare conv (e.g. segmentation's ASPP depthwise convs): the kernel only
    if weights:
        raise ValueError(f"layers {sorted(weights)} have no module in the model")
    return model
