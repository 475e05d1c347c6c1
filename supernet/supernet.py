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
- Depthwise kernels separate per kernel size (TuNAS), prefix-shared in width.
- Batch norm scale/bias follow the kernel they normalise (prefix-shared);
  statistics are the batch's own (stateless, as TuNAS during search).

Execution (`apply`): one `lax.switch` per layer over the configurations in the
plan (`supernet.plan`); tensors between layers are carried zero-padded to the
largest width, and each branch computes only the sampled child's shapes, so
a step's cost follows the child. Skipped blocks are a `lax.cond` to identity.
Indices are traced values: sampling a new architecture never retraces.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from supernet import ops
from supernet.plan import BlockPlan, ExpandConfig, KxkConfig, ProjectConfig, SupernetPlan

Params = dict[str, Any]


def _conv_init(key: jax.Array, shape: tuple[int, ...], fan_out: int) -> jax.Array:
    # Variance scaling, fan_out, normal, scale 2.0 (the published conv initializer).
    return jax.random.normal(key, shape) * math.sqrt(2.0 / fan_out)


def _bn(width: int) -> dict[str, jax.Array]:
    return {"scale": jnp.ones((width,)), "bias": jnp.zeros((width,))}


def init_params(plan: SupernetPlan, num_classes: int, key: jax.Array,
                input_channels: int = 3) -> Params:
    keys = iter(jax.random.split(key, 4 + 8 * len(plan.blocks)))
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
        for cfg in bp.kxk[1:]:
            name = f"{cfg.family}_{cfg.kernel_size}"
            if name in p:
                continue
            kk = cfg.kernel_size
            if cfg.family == "dw":
                shape = (kk, kk, 1, bp.mid_width)
                fan_out = kk * kk
            else:
                cin = bp.in_width if cfg.family == "fused" else bp.exp_width
                shape = (kk, kk, cin, bp.mid_width)
                fan_out = kk * kk * bp.mid_width
            p[name] = {"kernel": _conv_init(next(keys), shape, fan_out), **_bn(bp.mid_width)}
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


def group_kernel(full: jax.Array, cin: int, cout: int, groups: int) -> jax.Array:
    """The block diagonal of a shared full kernel [k, k, Cin_max, Cout_max] as a grouped
    HWIO kernel [k, k, cin / groups, cout] (group i: inputs i*ci.., outputs i*co..)."""
    ci, co = cin // groups, cout // groups
    return jnp.concatenate(
        [full[:, :, i * ci:(i + 1) * ci, i * co:(i + 1) * co] for i in range(groups)], axis=-1)


def switch_remat(index: jax.Array, branches: list, params: Params, x: jax.Array) -> jax.Array:
    """`lax.switch(index, branches, params, x)` whose backward pass recomputes the chosen
    branch instead of saving residuals.

    Differentiating a plain `lax.switch` makes every branch emit the union of all
    branches' residuals (zero-filled for the others): with dozens of branches
    per layer that dominated the step. Here the only residuals are the inputs.
    """

    @jax.custom_vjp
    def run(index: jax.Array, params: Params, x: jax.Array) -> jax.Array:
        return lax.switch(index, branches, params, x)

    def fwd(index: jax.Array, params: Params, x: jax.Array):
        return run(index, params, x), (index, params, x)

    def bwd(res, g):
        index, params, x = res

        def grad_branch(branch):
            def go(params, x, g):
                _, vjp = jax.vjp(branch, params, x)
                return vjp(g)
            return go
        grads = lax.switch(index, [grad_branch(b) for b in branches], params, x, g)
        return (None, *grads)

    run.defvjp(fwd, bwd)
    return run(index, params, x)


def _bn_act(y: jax.Array, p: Params, width: jax.Array, relu: bool) -> jax.Array:
    """Batch norm (+ReLU) over the carried width, zero beyond the actual `width`.

    Done outside the switch branches: statistics are per channel, so the
    zero-padded channels don't disturb the real ones, and the mask keeps the
    padding zero (and its scale/bias untrained). Branches stay pure convs,
    which keeps compile time down.
    """
    y = ops.batch_norm(y, p["scale"], p["bias"])
    y = jax.nn.relu(y) if relu else y
    return y * (jnp.arange(y.shape[-1]) < width).astype(y.dtype)


def _expand_branch(cfg: ExpandConfig | None, width: int):
    def run(p: Params, x: jax.Array) -> jax.Array:
        if cfg is None:  # no expansion: pass the block input on
            return ops.pad_channels(x[..., :width], width)
        y = ops.conv1x1(x[..., :cfg.cin], p[:cfg.cin, :cfg.width])
        return ops.pad_channels(y, width)
    return run


def _kxk_branch(cfg: KxkConfig | None, width: int, stride: int):
    def run(p: Params, x: jax.Array) -> jax.Array:
        if cfg is None:  # fused_ibn with e = 1: the 1x1 projection carries the stride
            return ops.pad_channels(x[:, ::stride, ::stride, :width], width)
        w = p[f"{cfg.family}_{cfg.kernel_size}"]
        if cfg.family == "dw":
            y = ops.depthwise_conv(x[..., :cfg.cin], w[..., :cfg.cout], cfg.stride)
        else:
            kernel = group_kernel(w, cfg.cin, cfg.cout, cfg.groups)
            y = ops.group_conv(x[..., :cfg.cin], kernel, cfg.stride, cfg.groups)
        return ops.pad_channels(y, width)
    return run


def _project_branch(cfg: ProjectConfig, width: int):
    def run(p: Params, x: jax.Array) -> jax.Array:
        y = ops.conv1x1(x[..., :cfg.cin], p[:cfg.cin, :cfg.cout])
        return ops.pad_channels(y, width)
    return run


def _kxk_bn(bp: BlockPlan, p: Params, kxk_i: jax.Array, y: jax.Array, width: jax.Array
            ) -> jax.Array:
    """Batch norm of the kxk conv with the scale/bias of the kernel family that ran."""
    names = [f"{c.family}_{c.kernel_size}" if c else None for c in bp.kxk]
    families = sorted({n for n in names if n})
    scale = jnp.stack([p[n]["scale"] for n in families])
    bias = jnp.stack([p[n]["bias"] for n in families])
    which = jnp.asarray([families.index(n) if n else 0 for n in names])[kxk_i]
    return _bn_act(y, {"scale": scale[which], "bias": bias[which]}, width, True)


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
    expand_i, kxk_i, project_i, residual, skip, exp_w, mid_w, out_w = (row[c] for c in range(8))

    def compute(x: jax.Array) -> jax.Array:
        # Each switch gets only the kernels its branches read: its backward returns
        # a gradient (zeros but for the branch taken) for every leaf passed in.
        y = switch_remat(expand_i, [_expand_branch(c, bp.exp_width) for c in bp.expand],
                         p["expand"]["kernel"] if "expand" in p else {}, x)
        if "expand" in p:
            y = jnp.where(exp_w > 0, _bn_act(y, p["expand"], exp_w, True), y)
        kernels = {n: w["kernel"] for n, w in p.items() if n not in ("expand", "project")}
        y = switch_remat(kxk_i, [_kxk_branch(c, bp.mid_width, bp.stride) for c in bp.kxk],
                         kernels, y)
        y = jnp.where(mid_w > 0, _kxk_bn(bp, p, kxk_i, y, mid_w), y)
        y = switch_remat(project_i, [_project_branch(c, bp.out_width) for c in bp.project],
                         p["project"]["kernel"], y)
        y = _bn_act(y, p["project"], out_w, relu=False)
        if bp.can_residual:
            # Residuals only join equal widths, so the carried padding lines up.
            skip_in = ops.pad_channels(x[..., :bp.out_width], bp.out_width)
            y = y + skip_in * residual.astype(y.dtype)
        return y

    if bp.skippable:
        return lax.cond(skip > 0, lambda x: x, compute, x)
    return compute(x)


def apply(plan: SupernetPlan, params: Params, indices: jax.Array, images: jax.Array,
          op_warm: jax.Array | None = None) -> jax.Array:
    """Logits of the architecture `indices` ([D] int32) on `images` [N, H, W, C].

    `op_warm` ([D] bool, optional): OP decisions to average over all choices
    (op warmup). Filter warmup is a change of indices (the controller's
    `apply_filter_warmup`), not a supernet mode.
    """
    stem = params["stem"]
    stem_width = max(plan.stem_widths)

    def stem_branch(width: int):
        def run(p: Params, x: jax.Array) -> jax.Array:
            y = ops.group_conv(x, p[..., :width], plan.stem_stride, 1)
            return ops.pad_channels(y, stem_width)
        return run

    stem_i, stem_w = (plan.stem_lookup.row(indices)[c] for c in range(2))
    x = switch_remat(stem_i, [stem_branch(w) for w in plan.stem_widths], stem["kernel"],
                     images)
    x = _bn_act(x, stem, stem_w, True)
    for bp in plan.blocks:
        x = _block(bp, params[bp.name], indices, x, op_warm)
    head = params["head"]
    head_i, head_w = (plan.head_lookup.row(indices)[c] for c in range(2))
    x = switch_remat(head_i, [_project_branch(c, plan.head_width) for c in plan.head_configs],
                     head["kernel"], x)
    x = _bn_act(x, head, head_w, True)
    pooled = jnp.mean(x, axis=(1, 2))  # padded channels are zero: a full-width FC is exact
    return pooled @ params["logits"]["kernel"] + params["logits"]["bias"]


def num_weights(params: Params) -> int:
    """Total number of shared weights."""
    return int(sum(np.prod(a.shape) for a in jax.tree_util.tree_leaves(params)))
