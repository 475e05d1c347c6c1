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

Execution (`apply`): one `lax.switch` per role of every unit over the
configurations in the plan (`supernet.plan`, derived from the one lowering),
through `supernet.switch.switch_layer`. Each branch
computes the sampled child's conv and batch norm at the child's own widths;
tensors between layers are carried zero-padded to the largest width. So a
step's cost follows the child. Skipped blocks are a `lax.cond` to identity.
Indices are traced values: sampling a new architecture never retraces.
A layer the plan masks (more configurations than its branch limit) runs its
widest configuration per op family and kernel size instead, with the child's
group blocks masked out of the full kernel and its output channels past the
child's width zeroed: the same numbers, at the widest layer's cost.

Op warmup (`apply(..., op_warm=...)`): a warm OP decision runs all its choices
and averages them where it sits, as TuNAS's OneOf masks of 1/n: at its switch
when it changes only that switch (kernel and group size), over the whole unit
otherwise (block type, skip). Weight decay (`kernel_l2`): TuNAS's L2 on the
conv kernel entries the sampled child reads, nothing else.
"""

from __future__ import annotations

import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from supernet import ops
from supernet.kernel_layout import block_diagonal_mask
from supernet.plan import LayerConfig, PassConfig, SupernetPlan, UnitPlan, WeightSpec
from supernet.switch import Branch, switch_layer
from tasks import initializers

Params = dict[str, Any]


def _conv_init(key: jax.Array, shape: tuple[int, ...], fan_in: int) -> jax.Array:
    # He normal (tasks.initializers, as the standalone model's convs). Drawn flat, at a
    # size rounded up to 1/8 of its power of two, then cut: each distinct draw shape
    # compiles its own sampler (seconds for a 5-D tile array), and
    # mobilenet_edgetpu_v2 has hundreds of kernel shapes (BENCHMARKS.md: init time).
    # With JAX's partitionable threefry a longer draw starts with the same numbers.
    size = int(np.prod(shape))
    step = max(1, 2 ** (size.bit_length() - 4))
    padded = -(-size // step) * step
    return initializers.he_normal(key, (padded,), fan_in)[:size].reshape(shape)


def init_params(plan: SupernetPlan, task: Any, key: jax.Array) -> Params:
    """Shared weights: per unit, one {kernel, scale, bias} per weights key; then the
    task head's (`task.init_head`) under 'task_head'."""
    keys = (jax.random.fold_in(key, i) for i in itertools.count())  # as many as needed
    params: Params = {}
    for unit in plan.units:
        params[unit.name] = {
            name: {"kernel": _conv_init(next(keys), spec.shape, spec.fan_in),
                   "scale": jnp.ones((spec.cout,)), "bias": jnp.zeros((spec.cout,))}
            for name, spec in unit.weights.items()}
    params["task_head"] = head_task(plan, task).init_head(next(keys), plan.endpoint_widths)
    return params


def _activation(y: jax.Array, name: str | None) -> jax.Array:
    if name is None:
        return y
    if name == "relu":
        return jax.nn.relu(y)
    if name == "relu6":
        return jax.nn.relu6(y)
    raise ValueError(f"activation {name!r} is not supported by the supernet")


def _subsample(x: jax.Array, factor: int) -> jax.Array:
    return x if factor == 1 else x[:, ::factor, ::factor, :]


def kernel_of(spec: WeightSpec, stored: jax.Array, cin: int, cout: int, groups: int
              ) -> jax.Array:
    """The HWIO kernel a conv `cin -> cout` in `groups` groups reads from shared weights
    (`matrix`: [cin, cout] 1x1 kernel)."""
    if spec.kind == "matrix":
        return stored[:cin, :cout]
    if spec.kind == "depthwise":
        return stored[..., :cout]
    return spec.layout.grouped_kernel(stored, cin, cout, groups)


def _read_kernel(cfg: LayerConfig, spec: WeightSpec, w: jax.Array, config: jax.Array,
                 columns: tuple[int, int, int]) -> jax.Array:
    """The kernel branch `cfg` convolves with: the child's own slice of the stored weights
    (a masked branch: the widest slice, the child's group blocks masked)."""
    if spec.kind == "matrix":
        return w[:cfg.cin, :cfg.cout]
    if cfg.depthwise:  # masked or not: zero input channels give zero outputs
        return w[..., :cfg.cout]
    if cfg.masked:  # dense over the widest channels, the child's group blocks masked
        kernel = spec.layout.full_kernel(w)[:, :, :cfg.cin, :cfg.cout]
        if cfg.groups != 1:
            cin_col, cout_col, groups_col = columns
            kernel = kernel * block_diagonal_mask(
                cfg.cin, cfg.cout, config[cin_col], config[cout_col],
                config[groups_col]).astype(kernel.dtype)
        return kernel
    return kernel_of(spec, w, cfg.cin, cfg.cout, cfg.groups)


def _branch(cfg: LayerConfig | PassConfig, unit: UnitPlan, role: int) -> Branch:
    if isinstance(cfg, PassConfig):
        return Branch(lambda p, x, c: _subsample(x, cfg.subsample))
    spec = unit.weights[cfg.weights]
    columns = unit.config_columns(role)

    def conv(p: Params, x: jax.Array, config: jax.Array) -> jax.Array:
        kernel = _read_kernel(cfg, spec, p[cfg.weights]["kernel"], config, columns)
        x = x[..., :cfg.cin]
        if spec.kind == "matrix":
            y = ops.conv1x1(_subsample(x, cfg.stride), kernel)
        elif cfg.depthwise:
            y = ops.depthwise_conv(x, kernel, cfg.stride)
        else:  # a masked branch runs its group conv densely over the masked kernel
            y = ops.group_conv(x, kernel, cfg.stride, 1 if cfg.masked else cfg.groups)
        return _subsample(y, cfg.subsample)

    def post(p: Params, z: jax.Array) -> jax.Array:
        # Batch norm with the scale/bias prefix of the conv's width (the child's own).
        bn, width = p[cfg.weights], z.shape[-1]
        return _activation(ops.batch_norm(z, bn["scale"][:width], bn["bias"][:width]),
                           cfg.activation)

    return Branch(conv, post)


def _used_mask(spec: WeightSpec, cin: jax.Array, cout: jax.Array, groups: jax.Array
               ) -> jax.Array:
    """0/1 over the stored kernel (its own layout): the entries a conv `cin -> cout` in
    `groups` groups reads (traced counts)."""
    if spec.kind == "matrix":
        return block_diagonal_mask(spec.cin, spec.cout, cin, cout, jnp.int32(1))
    if spec.kind == "depthwise":
        return (jnp.arange(spec.cout) < cout).astype(jnp.float32)  # broadcasts over k, k, 1
    layout = spec.layout
    if layout.tile_ids is None:
        return block_diagonal_mask(spec.cin, spec.cout, cin, cout, groups)
    # Stored tiles: the same test on each tile's rows and columns of the full kernel.
    tile_rows, tile_cols = np.nonzero(layout.tile_ids >= 0)  # row-major = storage order
    rows = (tile_rows[:, None] * layout.tile_in + np.arange(layout.tile_in))[:, :, None]
    cols = (tile_cols[:, None] * layout.tile_out + np.arange(layout.tile_out))[:, None, :]
    groups = jnp.maximum(groups, 1)
    same = rows // jnp.maximum(cin // groups, 1) == cols // jnp.maximum(cout // groups, 1)
    mask = ((rows < cin) & (cols < cout) & same).astype(jnp.float32)
    return mask[:, None, None]  # [tiles, 1, 1, tile_in, tile_out]


def _unit_masks(unit: UnitPlan, indices: jax.Array) -> dict[str, jax.Array]:
    """Per weights key, 0/1 over its stored kernel: the entries the child reads."""
    row = unit.lookup.row(indices)
    runs = (row[unit.skip_column] == 0) if unit.skippable else jnp.bool_(True)
    masks: dict[str, jax.Array] = {}
    for r, branches in enumerate(unit.branches):
        cin_col, cout_col, groups_col = unit.config_columns(r)
        for name in sorted({c.weights for c in branches if isinstance(c, LayerConfig)}):
            readers = [b for b, c in enumerate(branches)
                       if isinstance(c, LayerConfig) and c.weights == name]
            read = runs & jnp.isin(row[r], jnp.asarray(readers))
            mask = _used_mask(unit.weights[name], row[cin_col], row[cout_col],
                              row[groups_col]) * read.astype(jnp.float32)
            masks[name] = masks[name] + mask if name in masks else mask
    return masks


def _kernel_l2(plan: SupernetPlan, params: Params, indices: jax.Array,
               op_warm: jax.Array | None, grad: bool) -> Any:
    """The L2 (grad False) or its gradient (a tree like `params`): 2 w on the used
    entries. Elementwise over the stored kernels: no switch, nothing to compile per
    branch."""
    out: dict[str, Any] = {}
    for unit in plan.units:
        p = params[unit.name]
        if op_warm is None or not unit.warm_positions:
            masks = _unit_masks(unit, indices)
        else:  # the mixture's members' masks, weighted as their outputs
            members, weights = _mixture(unit.warm_positions, unit.warm_combos, indices,
                                        op_warm)
            zero = {n: jnp.zeros(jnp.broadcast_shapes(m.shape, p[n]["kernel"].shape))
                    for n, m in _unit_masks(unit, indices).items()}

            def body(total, member_and_weight, unit=unit, zero=zero):
                member, weight = member_and_weight
                term = lax.cond(weight > 0, lambda: {n: weight * jnp.broadcast_to(
                    m, zero[n].shape) for n, m in _unit_masks(unit, member).items()},
                    lambda: zero)
                return jax.tree.map(jnp.add, total, term), None

            masks = lax.scan(body, zero, (members, weights))[0]
        if grad:
            out[unit.name] = {n: {k: (2.0 * v * masks[n] if k == "kernel" and n in masks
                                      else jnp.zeros_like(v)) for k, v in w.items()}
                              for n, w in p.items()}
        else:
            out[unit.name] = sum((jnp.sum(jnp.square(p[n]["kernel"]) * m)
                                  for n, m in masks.items()), jnp.float32(0.0))
    if grad:
        return {**out, "task_head": jax.tree.map(jnp.zeros_like, params["task_head"])}
    return sum(out.values(), jnp.float32(0.0))


def kernel_l2(plan: SupernetPlan, params: Params, indices: jax.Array,
              op_warm: jax.Array | None = None) -> jax.Array:
    """Sum of squares of the conv kernel entries architecture `indices` uses (TuNAS's L2:
    conv kernels only, masked to the sampled branch and its channels; never batch norm
    or the task head). Its gradient is zero on every weight the child does not read, so
    `weight_decay / 2 * kernel_l2` in the loss decays only the sampled path. With
    `op_warm`, a unit's warm mixture decays each member's kernels with its mixture
    weight (the members' L2 averaged as their outputs are)."""
    warm = jnp.zeros(indices.shape, bool) if op_warm is None else op_warm

    # Indices and warm flags are arguments, not closures, so custom_vjp sees every tracer.
    @jax.custom_vjp
    def l2(params: Params, indices: jax.Array, warm: jax.Array) -> jax.Array:
        return _kernel_l2(plan, params, indices, None if op_warm is None else warm, False)

    def l2_fwd(params: Params, indices: jax.Array, warm: jax.Array):
        return l2(params, indices, warm), (params, indices, warm)

    def l2_bwd(residuals, g: jax.Array):
        params, indices, warm = residuals
        grads = _kernel_l2(plan, params, indices, None if op_warm is None else warm, True)
        return jax.tree.map(lambda a: g * a, grads), None, None

    l2.defvjp(l2_fwd, l2_bwd)
    return l2(params, indices, warm)


def _mixture(positions: tuple[int, ...], combos: np.ndarray, indices: jax.Array,
             op_warm: jax.Array) -> tuple[jax.Array, jax.Array]:
    """([M, D] indices, [M] weights) of a warm mixture: every combination of the choices
    at `positions`, weighted by prod_d (1/n_d if decision d is warm, else [choice ==
    sampled]); with nothing warm, the sampled combination alone has weight 1."""
    pos = jnp.asarray(positions)
    table = jnp.asarray(combos)
    num_choices = jnp.asarray(combos.max(axis=0) + 1, jnp.float32)
    factors = jnp.where(op_warm[pos][None, :], 1.0 / num_choices[None, :],
                        (table == indices[pos][None, :]).astype(jnp.float32))
    mixed = jnp.broadcast_to(indices, (len(combos), indices.shape[0])).at[:, pos].set(table)
    return mixed, jnp.prod(factors, axis=1)


def _weighted_sum(fn, members: jax.Array, weights: jax.Array, shape: jax.ShapeDtypeStruct
                  ) -> jax.Array:
    """sum_m weights[m] * fn(members[m]) as a `lax.scan` (fn traced once); a member of
    weight 0 is a skipped `lax.cond`, so a step with nothing warm computes one."""
    def body(total: jax.Array, member_and_weight):
        member, weight = member_and_weight
        out = lax.cond(weight > 0, lambda: weight.astype(shape.dtype) * fn(member),
                       lambda: jnp.zeros(shape.shape, shape.dtype))
        return total + out, None

    # Rematerialized: differentiating a scan of conds otherwise stacks, per member, the
    # union of the cond's residuals (zero-filled for the skipped ones): about 0.9 GB per
    # micro step (BENCHMARKS.md, "op warmup"). The backward recomputes the one member.
    total, _ = lax.scan(jax.checkpoint(body), jnp.zeros(shape.shape, shape.dtype),
                        (members, weights))
    return total


def _unit(unit: UnitPlan, p: Params, indices: jax.Array, x: jax.Array,
          op_warm: jax.Array | None) -> jax.Array:
    """One unit; with `op_warm` ([D] bool), each warm OP decision runs all its choices and
    their outputs are averaged where the decision sits (TuNAS's op warmup, which mixes
    each OneOf's choices with mask 1/n): a decision local to one switch (a kernel size)
    is mixed at that switch (`_unit_once`); one that changes the unit's structure (the
    block type, skip) is mixed over the whole unit, so a skippable block under warmup
    gives x + mean of its ops' f(x), zero for skip (TuNAS's zero op in a residual)."""
    if op_warm is None or not unit.warm_positions:
        return _unit_once(unit, p, indices, x)
    if not unit.warm_structural:
        return _unit_once(unit, p, indices, x, op_warm)
    members, weights = _mixture(unit.warm_structural, unit.warm_structural_combos, indices,
                                op_warm)
    shape = jax.eval_shape(lambda: _unit_once(unit, p, indices, x))
    return _weighted_sum(lambda member: _unit_once(unit, p, member, x, op_warm), members,
                         weights, shape)


def _unit_once(unit: UnitPlan, p: Params, indices: jax.Array, x: jax.Array,
               op_warm: jax.Array | None = None) -> jax.Array:
    """The unit's switches for `indices`; with `op_warm`, the warm decisions local to a
    switch are mixed there (the unit's structure is `indices`' own)."""
    row = unit.lookup.row(indices)

    def compute(x: jax.Array) -> jax.Array:
        y = x
        for r, branches in enumerate(unit.branches):
            # Each switch gets only the weights its branches read: its backward returns
            # a gradient (zeros but for the branch taken) for every leaf passed in.
            names = {c.weights for c in branches if isinstance(c, LayerConfig)}
            masked = any(isinstance(c, LayerConfig) and c.masked for c in branches)
            layer = [_branch(c, unit, r) for c in branches]
            weights = {n: p[n] for n in sorted(names)}
            cout_col = unit.config_columns(r)[1]

            def switch(member_row: jax.Array, y: jax.Array = y, r: int = r, layer=layer,
                       weights=weights, masked: bool = masked, cout_col: int = cout_col
                       ) -> jax.Array:
                return switch_layer(member_row[r], layer, unit.widths[r], weights, y,
                                    config=member_row,
                                    mask_width=member_row[cout_col] if masked else None)

            if op_warm is None or not unit.warm_local[r]:
                y = switch(row)
                continue
            members, mix = _mixture(unit.warm_local[r], unit.warm_local_combos[r], indices,
                                    op_warm)
            rows = jax.vmap(unit.lookup.row)(members)
            y = _weighted_sum(switch, rows, mix, jax.eval_shape(switch, row))
        if unit.can_residual:
            # Residuals only join equal widths, so the carried padding lines up.
            skip_in = ops.pad_channels(x[..., :unit.out_width], unit.out_width)
            y = y + skip_in * row[unit.residual_column].astype(y.dtype)
        return y

    if unit.skippable:
        return lax.cond(row[unit.skip_column] > 0,
                        lambda x: ops.pad_channels(x[..., :unit.out_width], unit.out_width),
                        compute, x)
    return compute(x)


def backbone(plan: SupernetPlan, params: Params, indices: jax.Array, images: jax.Array,
             op_warm: jax.Array | None = None) -> dict[str, jax.Array]:
    """The endpoints of architecture `indices` ([D] int32) on `images` [N, H, W, C]:
    `stride_2` ... the last tensor at each stride, and `features` (the head conv's
    output), each zero-padded on the channel axis to its largest width."""
    by_unit: dict[int, list[str]] = {}
    for name, i in plan.endpoints.items():
        by_unit.setdefault(i, []).append(name)
    endpoints: dict[str, jax.Array] = {}
    x = images
    for i, unit in enumerate(plan.units):
        x = _unit(unit, params[unit.name], indices, x, op_warm)
        for name in by_unit.get(i, ()):
            endpoints[name] = x
    return endpoints


def apply(plan: SupernetPlan, task: Any, params: Params, indices: jax.Array,
          images: jax.Array, op_warm: jax.Array | None = None, *, train: bool = True
          ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(task output, endpoints) of the architecture `indices` ([D] int32) on `images`.

    `op_warm` ([D] bool, optional): OP decisions to average over all choices
    (op warmup). Filter warmup is a change of indices (the controller's
    `apply_filter_warmup`), not a supernet mode.
    """
    endpoints = backbone(plan, params, indices, images, op_warm)
    if not plan.head_choices:
        return task.apply_head(params["task_head"], endpoints, train=train), endpoints
    picked = indices[jnp.asarray(plan.head_positions)]
    return head_task(plan, task).apply_head(params["task_head"], endpoints, train=train,
                                            head_indices=picked), endpoints


def head_task(plan: SupernetPlan, task: Any) -> Any:
    """The task whose head holds every choice of the space's head decisions."""
    if not plan.head_choices:
        return task
    return task.with_head_choices(dict(plan.head_choices))


def num_weights(params: Params) -> int:
    """Total number of shared weights."""
    return int(sum(np.prod(a.shape) for a in jax.tree_util.tree_leaves(params)))
