"""The weight-sharing supernet: one compiled function runs any architecture of a space.

Weights (a plain pytree from `init_params`; `search_spaces` fixes its shape):
- 1x1 expansion and projection kernels of the largest width; a smaller choice
  uses the first channels (TuNAS's prefix sharing). One expansion and one
  projection kernel per block, shared by every op that has the layer.
- kxk full kernels, one per kernel size and input kind: `fused` (reads the
  block input: fused_ibn and gc_ibn) and `grouped` (reads grouped_ibn's 1x1
  expansion). A group conv with g groups takes its kernel from the block
  diagonal of the shared full kernel, so Fused-IBN (1 group) and GC-IBNs of
  every group size train the same weights (the paper's view of groups as a knob).
  Where only group convs read a full kernel, only the tiles they read are
  stored (`supernet.kernel_layout`: full kernels of 2.52 -> 0.59 billion weights in
  mobilenet_edgetpu_v2).
- Depthwise kernels separate per kernel size (TuNAS), prefix-shared in width.
- Batch norm scale/bias follow the kernel they normalise (prefix-shared);
  statistics are the batch's own (stateless, as TuNAS during search).

Execution (`apply`): one `lax.switch` per layer over the configurations in the
plan (`supernet.plan`), through `supernet.switch.switch_layer`. Each branch
computes the sampled child's conv and batch norm at the child's own widths;
tensors between layers are carried zero-padded to the largest width. So a
step's cost follows the child. Skipped blocks are a `lax.cond` to identity.
Indices are traced values: sampling a new architecture never retraces.
A layer the plan masks (more configurations than its branch limit) runs its
widest configuration per op family and kernel size instead, with the child's
group blocks masked out of the full kernel and its output channels past the
child's width zeroed: the same numbers, at the widest layer's cost.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from supernet import ops
from supernet import plan as plan_lib
from supernet.kernel_layout import SharedKernel, block_diagonal_mask
from supernet.plan import BlockPlan, ExpandConfig, KxkConfig, ProjectConfig, SupernetPlan
from supernet.switch import Branch, ConvFn, switch_layer

Params = dict[str, Any]


def _conv_init(key: jax.Array, shape: tuple[int, ...], fan_out: int) -> jax.Array:
    # Variance scaling, fan_out, normal, scale 2.0 (the published conv initializer).
    # Drawn flat, at a size rounded up to 1/8 of its power of two, then cut: each
    # distinct draw shape compiles its own sampler (2-3 s for a 5-D tile array), and
    # mobilenet_edgetpu_v2 has hundreds of kernel shapes (88 s to initialize, now 37).
    # With JAX's partitionable threefry a longer draw starts with the same numbers.
    size = int(np.prod(shape))
    step = max(1, 2 ** (size.bit_length() - 4))
    padded = -(-size // step) * step
    return jax.random.normal(key, (padded,))[:size].reshape(shape) * math.sqrt(2.0 / fan_out)


def _bn(width: int) -> dict[str, jax.Array]:
    return {"scale": jnp.ones((width,)), "bias": jnp.zeros((width,))}


def init_params(plan: SupernetPlan, num_classes: int, key: jax.Array,
                input_channels: int = 3) -> Params:
    keys = (jax.random.fold_in(key, i) for i in itertools.count())  # as many as needed
    k = plan.stem_kernel_size
    stem_width = max(plan.stem_widths)
    params: Params = {"stem": {"kernel": _conv_init(next(keys), (k, k, input_channels,
                                                                 stem_width), k * k * stem_width),
                               **_bn(stem_width)}}
    for bp in plan.blocks:
        p: Params = {}
        if any(bp.expand[1:]):
            p["expand"] = {"kernel": _conv_init(next(keys), (bp.in_width, bp.exp_width),
                                                bp.exp_width), **_bn(bp.exp_width)}
        for name in sorted({f"{c.family}_{c.kernel_size}" for c in bp.kxk[1:]}):
            if name in bp.kernels:  # a shared full kernel (`supernet.kernel_layout`)
                layout = bp.kernels[name]
                shape, cout = layout.shape, layout.cout
                fan_out = layout.kernel_size ** 2 * cout
            else:  # depthwise, as wide as its widest reader
                cfgs = [c for c in bp.kxk[1:] if f"{c.family}_{c.kernel_size}" == name]
                kk, cout = cfgs[0].kernel_size, max(c.cout for c in cfgs)
                shape, fan_out = (kk, kk, 1, cout), kk * kk
            p[name] = {"kernel": _conv_init(next(keys), shape, fan_out), **_bn(cout)}
        p["project"] = {"kernel": _conv_init(next(keys), (bp.mid_width, bp.out_width),
                                             bp.out_width), **_bn(bp.out_width)}
        params[bp.name] = p
    last = plan.blocks[-1].out_width
    params["head"] = {"kernel": _conv_init(next(keys), (last, plan.head_width),
                                           plan.head_width), **_bn(plan.head_width)}
    limit = math.sqrt(3.0 * (1 / 3.0) / num_classes)  # variance scaling 1/3, fan_out, uniform
    params["logits"] = {
        "kernel": jax.random.uniform(next(keys), (plan.head_width, num_classes),
                                     minval=-limit, maxval=limit),
        "bias": jnp.zeros((num_classes,)),
    }
    return params


def _conv_bn(conv: ConvFn, relu: bool, bn_name: str | None = None) -> Branch:
    """A conv, then batch norm (+ReLU) with the scale/bias prefix of the conv's width,
    from `params[bn_name]` (or `params` itself)."""
    def post(params: Params, z: jax.Array) -> jax.Array:
        bn, width = params[bn_name] if bn_name else params, z.shape[-1]
        y = ops.batch_norm(z, bn["scale"][:width], bn["bias"][:width])
        return jax.nn.relu(y) if relu else y
    return Branch(conv, post)


def _expand_branch(cfg: ExpandConfig | None) -> Branch:
    if cfg is None:  # no expansion: pass the block input on
        return Branch(lambda p, x, c: x)
    return _conv_bn(lambda p, x, c: ops.conv1x1(x[..., :cfg.cin],
                                                p["kernel"][:cfg.cin, :cfg.width]), relu=True)


def _kxk_branch(cfg: KxkConfig | None, stride: int, kernels: dict[str, SharedKernel]
                ) -> Branch:
    if cfg is None:  # fused_ibn with e = 1: the 1x1 projection carries the stride
        return Branch(lambda p, x, c: x[:, ::stride, ::stride, :])
    name = f"{cfg.family}_{cfg.kernel_size}"

    def conv(p: Params, x: jax.Array, config: jax.Array) -> jax.Array:
        w = p[name]["kernel"]
        if cfg.family == "dw":  # masked or not: zero input channels give zero outputs
            return ops.depthwise_conv(x[..., :cfg.cin], w[..., :cfg.cout], cfg.stride)
        if cfg.masked:  # dense over the widest channels, the child's group blocks masked
            kernel = kernels[name].full_kernel(w)[:, :, :cfg.cin, :cfg.cout]
            if cfg.groups != 1:
                kernel = kernel * block_diagonal_mask(
                    cfg.cin, cfg.cout, config[plan_lib.KXK_IN], config[plan_lib.KXK_OUT],
                    config[plan_lib.KXK_GROUPS]).astype(kernel.dtype)
            return ops.group_conv(x[..., :cfg.cin], kernel, cfg.stride, 1)
        kernel = kernels[name].grouped_kernel(w, cfg.cin, cfg.cout, cfg.groups)
        return ops.group_conv(x[..., :cfg.cin], kernel, cfg.stride, cfg.groups)
    return _conv_bn(conv, relu=True, bn_name=name)


def _project_branch(cfg: ProjectConfig, relu: bool = False) -> Branch:
    return _conv_bn(lambda p, x, c: ops.conv1x1(x[..., :cfg.cin],
                                                p["kernel"][:cfg.cin, :cfg.cout]), relu=relu)


def _block(bp: BlockPlan, p: Params, indices: jax.Array, x: jax.Array,
           op_warm: jax.Array | None) -> jax.Array:
    """One block; with `op_warm` ([D] bool), each warm OP decision of the block runs
    all its choices and the outputs are averaged (TuNAS's op warmup).

    The average is a `lax.scan` over every combination of the block's op
    choices, weighted by prod_d (1/n_d if warm else [choice == sampled]); a
    combination of weight 0 is a skipped `lax.cond`, so a step without warm
    decisions pays for one block, and the block body is compiled once.
    """
    if op_warm is None or not bp.warm_positions:
        return _block_once(bp, p, indices, x)
    positions = jnp.asarray(bp.warm_positions)
    combos = jnp.asarray(bp.warm_combos)
    num_choices = jnp.asarray(bp.warm_combos.max(axis=0) + 1, dtype=x.dtype)
    warm = op_warm[positions]
    factors = jnp.where(warm[None, :], 1.0 / num_choices[None, :],
                        (combos == indices[positions][None, :]).astype(x.dtype))
    weights = jnp.prod(factors, axis=1)
    out_shape = jax.eval_shape(lambda: _block_once(bp, p, indices, x))

    def body(total: jax.Array, combo_and_weight):
        combo, weight = combo_and_weight
        combo_indices = indices.at[positions].set(combo)
        out = lax.cond(weight > 0,
                       lambda: weight * _block_once(bp, p, combo_indices, x),
                       lambda: jnp.zeros(out_shape.shape, out_shape.dtype))
        return total + out, None

    total, _ = lax.scan(body, jnp.zeros(out_shape.shape, out_shape.dtype), (combos, weights))
    return total


def _block_once(bp: BlockPlan, p: Params, indices: jax.Array, x: jax.Array) -> jax.Array:
    row = bp.lookup.row(indices)

    def mask(cfgs: tuple, column: int) -> jax.Array | None:
        # Masked layers zero the channels past the child's width (exact ones pad them).
        return row[column] if any(c is not None and c.masked for c in cfgs) else None

    def compute(x: jax.Array) -> jax.Array:
        # Each switch gets only the weights its branches read: its backward returns
        # a gradient (zeros but for the branch taken) for every leaf passed in.
        y = switch_layer(row[plan_lib.EXPAND], [_expand_branch(c) for c in bp.expand],
                         bp.exp_width, p.get("expand", {}), x,
                         mask_width=mask(bp.expand, plan_lib.EXPAND_WIDTH))
        kxk_params = {n: w for n, w in p.items() if n not in ("expand", "project")}
        y = switch_layer(row[plan_lib.KXK], [_kxk_branch(c, bp.stride, bp.kernels)
                                             for c in bp.kxk],
                         bp.mid_width, kxk_params, y, config=row,
                         mask_width=mask(bp.kxk, plan_lib.KXK_OUT))
        y = switch_layer(row[plan_lib.PROJECT], [_project_branch(c) for c in bp.project],
                         bp.out_width, p["project"], y,
                         mask_width=mask(bp.project, plan_lib.OUT_WIDTH))
        residual = row[plan_lib.RESIDUAL]
        if bp.can_residual:
            # Residuals only join equal widths, so the carried padding lines up.
            skip_in = ops.pad_channels(x[..., :bp.out_width], bp.out_width)
            y = y + skip_in * residual.astype(y.dtype)
        return y

    if bp.skippable:
        return lax.cond(row[plan_lib.SKIP] > 0, lambda x: x, compute, x)
    return compute(x)


def apply(plan: SupernetPlan, params: Params, indices: jax.Array, images: jax.Array,
          op_warm: jax.Array | None = None) -> jax.Array:
    """Logits of the architecture `indices` ([D] int32) on `images` [N, H, W, C].

    `op_warm` ([D] bool, optional): OP decisions to average over all choices
    (op warmup). Filter warmup is a change of indices (the controller's
    `apply_filter_warmup`), not a supernet mode.
    """
    def stem_branch(width: int) -> Branch:
        return _conv_bn(lambda p, x, c: ops.group_conv(x, p["kernel"][..., :width],
                                                       plan.stem_stride, 1), relu=True)

    stem_i = plan.stem_lookup.row(indices)[0]
    x = switch_layer(stem_i, [stem_branch(w) for w in plan.stem_widths], max(plan.stem_widths),
                     params["stem"], images)
    for bp in plan.blocks:
        x = _block(bp, params[bp.name], indices, x, op_warm)
    head_i = plan.head_lookup.row(indices)[0]
    x = switch_layer(head_i, [_project_branch(c, relu=True) for c in plan.head_configs],
                     plan.head_width, params["head"], x)
    pooled = jnp.mean(x, axis=(1, 2))  # padded channels are zero: a full-width FC is exact
    return pooled @ params["logits"]["kernel"] + params["logits"]["bias"]


def num_weights(params: Params) -> int:
    """Total number of shared weights."""
    return int(sum(np.prod(a.shape) for a in jax.tree_util.tree_leaves(params)))
