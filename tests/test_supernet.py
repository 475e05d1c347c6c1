"""The weight-sharing supernet: one trace for every path, exact inheritance, op warmup."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from search_spaces import FILTERS, BlockSpec, OneOf, SearchSpace, StageSpec
from supernet import (
    apply,
    build_model,
    child_weights,
    inherit,
    init_params,
    kernel_l2,
    layer_modules,
    make_plan,
)
from supernet.plan import LayerConfig
from supernet.supernet import _branch
from supernet.supernet import _unit as _block
from supernet.supernet import _unit_once as _block_once
from supernet.switch import switch_layer
from tasks import Classification

jax.config.update("jax_disable_most_optimizations", True)

OPS = ("dw_ibn", "fused_ibn", "gc_ibn", "grouped_ibn")
TASK = Classification(5)


def tiny_space() -> SearchSpace:
    """The whole vocabulary on 16 px with few choices, so compiling stays fast."""
    def block(stride, skippable, expansions, pointwise_expansions):
        return BlockSpec(op=OneOf((*OPS, "skip") if skippable else OPS),
                         kernel_size=OneOf((3, 5)), expansion_ratio=OneOf(expansions, FILTERS),
                         pointwise_expansion=OneOf(pointwise_expansions, FILTERS),
                         group_size=OneOf((8, 16)), stride=stride)
    # Block 0 has fused_ibn at e = 1 (no kxk conv); in block 1 grouped_ibn's group conv
    # reads its own shared kernel, which only group convs read (stored as tiles).
    blocks = (block(2, False, (1, 2), (1,)), block(1, True, (2, 4), (1, 2)))
    return SearchSpace(
        name="tiny", stem_filters=8, stem_kernel_size=3, stem_stride=2,
        stages=(StageSpec(OneOf((8, 16), FILTERS), blocks),),
        head_filters=16, default_image_size=16, default_num_classes=5, min_group_size=4)


@pytest.fixture(scope="module")
def setup():
    space = tiny_space()
    plan = make_plan(space)
    params = init_params(plan, TASK, jax.random.key(0))
    images = jax.random.normal(jax.random.key(1), (4, 16, 16, 3))
    return space, plan, params, images


def test_one_trace_for_many_architectures(setup):
    space, plan, params, images = setup
    traces = []
    labels = jnp.arange(4) % 5

    @jax.jit
    def step(params, indices):
        traces.append(1)

        def loss(params):
            logits = apply(plan, TASK, params, indices, images)[0]
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return jax.value_and_grad(loss)(params)

    seen = set()
    for indices in space.sample(np.random.default_rng(0), 12):
        loss, _ = step(params, jnp.asarray(indices, jnp.int32))
        assert np.isfinite(float(loss))
        seen.add(tuple(indices))
    assert len(seen) > 5
    assert len(traces) == 1


def test_init_is_tunas(setup):
    """Shared conv kernels: He normal on fan_in (k*k for depthwise, k*k*cin otherwise);
    classifier N(0, 0.01): each kernel divided by its expected std pools to std 1."""
    _, plan, params, _ = setup
    scaled = []
    for unit in plan.units:
        for name, spec in unit.weights.items():
            fan_in = (spec.kernel_size ** 2 * (1 if spec.kind == "depthwise" else spec.cin))
            scaled.append(np.asarray(params[unit.name][name]["kernel"]).ravel()
                          / math.sqrt(2 / fan_in))
    scaled = np.concatenate(scaled)
    assert scaled.size > 5000
    assert np.std(scaled) == pytest.approx(1.0, rel=0.05)
    assert np.abs(scaled).max() <= 2 / 0.8796 + 1e-5  # truncated at 2 sd
    logits = np.asarray(params["task_head"]["logits"]["kernel"])
    assert np.std(logits) == pytest.approx(0.01, rel=0.15)


def test_standalone_inherits_the_same_function(setup):
    space, plan, params, images = setup
    supernet_logits = jax.jit(lambda p, i: apply(plan, TASK, p, i, images)[0])
    for indices in space.sample(np.random.default_rng(1), 6):
        model = build_model(space.decode(indices), 5, rngs=nnx.Rngs(3))
        inherit(model, space, plan, params, indices)
        expected = supernet_logits(params, jnp.asarray(indices, jnp.int32))
        np.testing.assert_allclose(model(images)[0], expected, rtol=1e-4, atol=1e-4)


def _standalone_logits_and_grads(space, plan, params, indices, images, probe):
    """The standalone model's logits, and its gradient of sum(logits * probe) pulled back
    into shared-weight space through the weight slicing (`child_weights`)."""
    model = build_model(space.decode(indices), 5, rngs=nnx.Rngs(3))
    inherit(model, space, plan, params, indices)
    logits = model(images)[0]
    graphdef, _, rest = nnx.split(model, nnx.Param, ...)
    model_grads = nnx.grad(lambda m: jnp.sum(m(images)[0] * probe))(model)
    grad_model = nnx.merge(graphdef, model_grads, rest)
    per_layer = {name: ({"kernel": m.kernel[...], "bias": m.bias[...]} if name == "logits"
                        else {"kernel": m.kernel[...], "scale": m.bn.scale[...],
                              "bias": m.bn.bias[...]})
                 for name, m in layer_modules(grad_model)}
    _, pull_back = jax.vjp(lambda p: child_weights(space, plan, p, indices, TASK), params)
    return logits, pull_back(per_layer)[0]


def _architectures_with_grouped(space, seed):
    """Four sampled architectures and one with grouped_ibn at e1 = 2 in block 1 (a group
    conv reading a tile-stored kernel)."""
    archs = list(space.sample(np.random.default_rng(seed), 4))
    grouped = archs[0].copy()
    pos = {d.name: d.position for d in space.decisions}
    grouped[pos["stages.0.blocks.1.op"]] = OPS.index("grouped_ibn")
    grouped[pos["stages.0.blocks.1.pointwise_expansion"]] = 1
    return [*archs, grouped]


def _assert_trees_close(got, expected):
    for (path, g), e in zip(jax.tree_util.tree_leaves_with_path(got),
                            jax.tree_util.tree_leaves(expected), strict=True):
        np.testing.assert_allclose(g, e, rtol=2e-4, atol=2e-5,
                                   err_msg=jax.tree_util.keystr(path))


def test_supernet_gradients_equal_the_standalone_models(setup):
    """The hand-written VJPs (`switch_layer`, `ops.group_conv`) against plain autodiff of the
    standalone model: the gradient in shared-weight space is the standalone gradient pulled
    back through the weight slicing (`child_weights`)."""
    space, plan, params, images = setup
    probe = jax.random.normal(jax.random.key(7), (4, 5))
    # One compiled supernet gradient for every architecture (as in a search).
    supernet_grad = jax.jit(jax.grad(
        lambda p, i: jnp.sum(apply(plan, TASK, p, i, images)[0] * probe)))
    for indices in _architectures_with_grouped(space, 5):
        _, expected = _standalone_logits_and_grads(space, plan, params, indices, images, probe)
        _assert_trees_close(supernet_grad(params, jnp.asarray(indices, jnp.int32)), expected)


def test_masked_layers_compute_the_same_child(setup):
    """A plan masking every layer of more than one configuration (TuNAS-style: the widest
    branch, the child's widths and groups traced) gives the standalone model's logits and
    gradients, with the exact plan's weights."""
    space, exact_plan, params, images = setup
    plan = make_plan(space, max_branches_per_layer=1)
    kxk = plan.blocks[1].branches[plan.blocks[1].roles.index("kxk")]
    assert len(kxk) < len(exact_plan.blocks[1].branches[exact_plan.blocks[1].roles.index("kxk")])
    assert any(isinstance(c, LayerConfig) and c.masked and c.groups == 0
               for c in kxk)  # traced groups
    assert jax.tree.map(jnp.shape, init_params(plan, TASK, jax.random.key(0))) \
        == jax.tree.map(jnp.shape, params)
    probe = jax.random.normal(jax.random.key(8), (4, 5))

    @jax.jit
    def logits_and_grads(params, indices):
        logits, vjp = jax.vjp(lambda p: apply(plan, TASK, p, indices, images)[0], params)
        return logits, vjp(probe)[0]

    for indices in _architectures_with_grouped(space, 6):
        want_logits, want_grads = _standalone_logits_and_grads(space, plan, params, indices,
                                                               images, probe)
        logits, grads = logits_and_grads(params, jnp.asarray(indices, jnp.int32))
        np.testing.assert_allclose(logits, want_logits, rtol=1e-4, atol=1e-4)
        _assert_trees_close(grads, want_grads)


def test_gradients_reach_only_the_sampled_path(setup):
    space, plan, params, images = setup
    values = {d.name: d.choices[0] for d in space.decisions}
    values.update({"stages.0.blocks.0.op": "dw_ibn", "stages.0.blocks.0.kernel_size": 3,
                   "stages.0.blocks.1.op": "skip", "stages.0.filters": 8})
    indices = jnp.asarray(space.indices_for(values), jnp.int32)
    grads = jax.grad(lambda p: jnp.sum(apply(plan, TASK, p, indices, images)[0] ** 2))(params)
    b0, b1 = grads["stages.0.blocks.0"], grads["stages.0.blocks.1"]
    assert float(jnp.abs(b0["dw_3"]["kernel"]).sum()) > 0
    assert float(jnp.abs(b0["dw_5"]["kernel"]).sum()) == 0      # other kernel size: untouched
    assert float(jnp.abs(b0["fused_3"]["kernel"]).sum()) == 0   # other op: untouched
    assert float(jnp.abs(b0["project"]["kernel"][:, 8:]).sum()) == 0  # beyond the prefix
    assert all(float(jnp.abs(g).sum()) == 0 for g in jax.tree.leaves(b1))  # skipped block


def test_op_warmup_averages_the_block_over_warm_choices(setup):
    space, plan, params, _ = setup
    bp = plan.blocks[0]
    p = params[bp.name]
    x = jax.random.normal(jax.random.key(4), (4, 8, 8, bp.in_width))
    indices = jnp.asarray(space.sample(np.random.default_rng(2)), jnp.int32)
    op_pos = next(d.position for d in space.decisions if d.name == "stages.0.blocks.0.op")
    warm = jnp.zeros(space.num_decisions, bool).at[op_pos].set(True)
    averaged = _block(bp, p, indices, x, warm)
    manual = sum(_block_once(bp, p, indices.at[op_pos].set(c), x) for c in range(len(OPS)))
    np.testing.assert_allclose(averaged, manual / len(OPS), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_block(bp, p, indices, x, jnp.zeros_like(warm)),
                               _block_once(bp, p, indices, x), rtol=1e-6, atol=1e-6)


def _block_case(setup, block, seed, values):
    """A block's plan and weights, an input for it, decision positions, and the
    architecture of every first choice but `values`."""
    space, plan, params, _ = setup
    bp = plan.blocks[block]
    x = jax.random.normal(jax.random.key(seed), (4, 8, 8, bp.in_width))
    choices = {d.name: d.choices[0] for d in space.decisions} | values
    indices = jnp.asarray(space.indices_for(choices), jnp.int32)
    return (space, plan, params, bp, params[bp.name], x,
            {d.name: d.position for d in space.decisions}, indices)


def test_op_warmup_mixes_a_kernel_size_at_its_switch(setup):
    """A warm kernel size (a decision of the kxk switch alone) is mixed at that switch, as
    TuNAS mixes a OneOf where it sits: project(mean of the kxk outputs), not the mean
    of whole blocks; and a warm unit pays one kxk branch per kernel size, not one unit
    per combination."""
    space, plan, params, bp, p, x, pos, indices = _block_case(
        setup, 0, 4, {"stages.0.blocks.0.op": "dw_ibn", "stages.0.blocks.0.expansion_ratio": 2})
    k_pos = pos["stages.0.blocks.0.kernel_size"]
    assert bp.warm_local[bp.roles.index("kxk")] == (k_pos, pos["stages.0.blocks.0.group_size"])
    assert bp.warm_structural == (pos["stages.0.blocks.0.op"],)
    warm = jnp.zeros(space.num_decisions, bool).at[k_pos].set(True)
    mixed = _block(bp, p, indices, x, warm)

    def roles(idx, upto):  # the unit's switches up to role `upto` (exclusive) on x
        y, row = x, bp.lookup.row(idx)
        for r in range(upto):
            names = sorted({c.weights for c in bp.branches[r] if isinstance(c, LayerConfig)})
            y = switch_layer(row[r], [_branch(c, bp, r) for c in bp.branches[r]],
                             bp.widths[r], {n: p[n] for n in names}, y, config=row)
        return y, row

    kxk, project = bp.roles.index("kxk"), bp.roles.index("project")
    outs = [roles(indices.at[k_pos].set(c), kxk + 1)[0] for c in range(2)]
    _, row = roles(indices, 0)
    names = sorted({c.weights for c in bp.branches[project] if isinstance(c, LayerConfig)})
    want = switch_layer(row[project], [_branch(c, bp, project) for c in bp.branches[project]],
                        bp.widths[project], {n: p[n] for n in names}, (outs[0] + outs[1]) / 2,
                        config=row)
    np.testing.assert_allclose(mixed, want, rtol=1e-4, atol=1e-5)
    whole_blocks = sum(_block_once(bp, p, indices.at[k_pos].set(c), x) for c in range(2)) / 2
    assert float(jnp.abs(mixed - whole_blocks).max()) > 1e-3  # not today's unit average
    # Both kernels get gradient (each ran), weighted by the mixture.
    grads = jax.grad(lambda q: jnp.sum(_block(bp, q, indices, x, warm) ** 2))(p)
    assert all(float(jnp.abs(grads[k]["kernel"]).sum()) > 0 for k in ("dw_3", "dw_5"))
    assert float(jnp.abs(grads["fused_3"]["kernel"]).sum()) == 0  # op not warm
    # Weight decay under warmup: each member's kernels, weighted as its output.
    l2 = [float(kernel_l2(plan, params, indices.at[k_pos].set(c))) for c in range(2)]
    assert l2[0] != l2[1]
    assert float(kernel_l2(plan, params, indices, warm)) == pytest.approx(sum(l2) / 2,
                                                                          rel=1e-5)


def test_op_warmup_of_a_skippable_block_is_x_plus_the_mean_of_its_ops(setup):
    """TuNAS's warm skippable layer: x + (sum of the ops' f(x)) / n, skip counting 0."""
    space, _, _, bp, p, x, pos, indices = _block_case(setup, 1, 6, {})
    op_pos = pos["stages.0.blocks.1.op"]
    warm = jnp.zeros(space.num_decisions, bool).at[op_pos].set(True)
    choices = space.decisions[op_pos].choices
    outs = [_block_once(bp, p, indices.at[op_pos].set(c), x) for c in range(len(choices))]
    identity = outs[choices.index("skip")]
    np.testing.assert_allclose(identity, x[..., :bp.out_width], rtol=1e-6)
    residuals = [o - identity for o in outs]  # f(x) of each op (0 for skip)
    np.testing.assert_allclose(_block(bp, p, indices, x, warm),
                               x[..., :bp.out_width] + sum(residuals) / len(choices),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernel_size, groups, stride, size", [
    (1, 1, 1, 6), (3, 1, 1, 6), (5, 1, 1, 6), (3, 2, 1, 6), (5, 4, 1, 6),
    (3, 1, 2, 6), (5, 2, 2, 6), (3, 4, 2, 7), (5, 1, 2, 7), (1, 2, 2, 6), (4, 1, 2, 6)])
@pytest.mark.parametrize("native", [False, True], ids=["per_group", "native"])
def test_group_conv_vjp_matches_lax_conv_autodiff(kernel_size, groups, stride, size, native,
                                                  monkeypatch):
    from supernet import ops

    if native:  # the form for many groups on CPU, and for any on GPU/TPU
        monkeypatch.setattr(ops, "CPU_SPLIT_MAX_GROUPS", 0)

    rng = np.random.default_rng(kernel_size * 100 + groups * 10 + stride)
    x = jnp.asarray(rng.standard_normal((2, size, size + 1, 8)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((kernel_size, kernel_size, 8 // groups, 12)),
                         jnp.float32)

    def reference(x, kernel):
        return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            feature_group_count=groups)

    out, vjp = jax.vjp(lambda x, k: ops.group_conv(x, k, stride, groups), x, kernel)
    ref_out, ref_vjp = jax.vjp(reference, x, kernel)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
    cotangent = jnp.asarray(rng.standard_normal(ref_out.shape), jnp.float32)
    for got, want in zip(vjp(cotangent), ref_vjp(cotangent), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_masked_mobilenet_plan_covers_every_row_with_few_branches():
    """MobileNetEdgeTPUv2's 6,165 exact layer configurations do not compile; masked, each
    row of the lookup table must land on a branch at least as wide as the child's layer,
    with traced groups wherever the child's conv is grouped."""
    import search_spaces

    space = search_spaces.get_space("mobilenet_edgetpu_v2")
    plan = make_plan(space, max_branches_per_layer=1)
    assert sum(len(b) for u in plan.blocks for b in u.branches) < 300
    for unit in plan.blocks:
        rows = unit.lookup.table[unit.lookup.table[:, unit.skip_column] == 0]
        for row in rows:
            for r, branches in enumerate(unit.branches):
                cfg = branches[row[r]]
                cin_col, cout_col, groups_col = unit.config_columns(r)
                if not isinstance(cfg, LayerConfig):
                    continue
                assert cfg.masked or len(branches) <= 1
                assert cfg.cin >= row[cin_col] and cfg.cout >= row[cout_col]
                if not cfg.depthwise and row[groups_col] > 1:
                    assert cfg.groups == 0
    with pytest.raises(ValueError, match="max_branches_per_layer"):
        make_plan(space, max_branches_per_layer=0)


@pytest.mark.parametrize("limit", [None, 1], ids=["exact", "masked"])
def test_kernel_l2_covers_exactly_the_child_kernels(setup, limit):
    """TuNAS's weight decay: L2 over the conv kernels the child uses (its slices and
    channels, masked layers included), never batch norm or the classifier; its gradient
    is 2 * w on exactly those entries (zero on every other branch's weights)."""
    space, _, _, _ = setup
    plan = make_plan(space, limit)
    params = init_params(plan, TASK, jax.random.key(0))
    l2_and_grad = jax.jit(jax.value_and_grad(lambda p, i: kernel_l2(plan, p, i)))
    for indices in _architectures_with_grouped(space, 9):
        per_layer = child_weights(space, plan, params, indices, TASK)
        convs = {n: w for n, w in per_layer.items() if n != "logits"}
        want = sum(float(jnp.sum(w["kernel"] ** 2)) for w in convs.values())
        got, grads = l2_and_grad(params, jnp.asarray(indices, jnp.int32))
        assert float(got) == pytest.approx(want, rel=1e-5)
        # The gradient: the child's kernels doubled, pulled back through the slicing.
        _, pull_back = jax.vjp(lambda p, i=indices: child_weights(space, plan, p, i, TASK),
                               params)
        cotangent = jax.tree.map(jnp.zeros_like, per_layer)
        for name in convs:
            cotangent[name]["kernel"] = 2 * per_layer[name]["kernel"]
        _assert_trees_close(grads, pull_back(cotangent)[0])


def test_weight_decay_reaches_only_the_sampled_kernels(setup):
    """A search step's decay (search_step.shared_weight_loss): with zero task gradient, the
    sampled kernel shrinks and nothing else moves: not the other branches, not batch norm,
    not the classifier (optax.add_decayed_weights over the whole tree moved them all)."""
    from tunas_jax import search_step

    space, plan, params, _ = setup
    values = {d.name: d.choices[0] for d in space.decisions}
    values.update({"stages.0.blocks.0.op": "dw_ibn", "stages.0.blocks.0.kernel_size": 3,
                   "stages.0.blocks.1.op": "skip", "stages.0.filters": 8})
    indices = jnp.asarray(space.indices_for(values), jnp.int32)
    cfg = type("Opt", (), {"name": "momentum", "momentum": 0.9, "base_learning_rate": 0.1,
                           "warmup_fraction": 0.0, "weight_decay": 0.1})()
    optimizer, _ = search_step.make_optimizer(cfg, 10, 256)
    grads = jax.grad(lambda p: search_step.shared_weight_loss(
        plan, p, indices, jnp.float32(0.0), cfg.weight_decay))(params)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    new = optax.apply_updates(params, updates)
    old0, new0 = params["stages.0.blocks.0"], new["stages.0.blocks.0"]
    dw = old0["dw_3"]["kernel"][..., :old0["dw_3"]["kernel"].shape[-1]]
    assert float(jnp.sum(new0["dw_3"]["kernel"] ** 2)) < float(jnp.sum(dw ** 2))
    np.testing.assert_array_equal(new0["dw_5"]["kernel"], old0["dw_5"]["kernel"])
    np.testing.assert_array_equal(new0["fused_3"]["kernel"], old0["fused_3"]["kernel"])
    np.testing.assert_array_equal(new0["project"]["kernel"][:, 8:],
                                  old0["project"]["kernel"][:, 8:])
    for leaf_new, leaf_old in zip(jax.tree.leaves(new["stages.0.blocks.1"]),
                                  jax.tree.leaves(params["stages.0.blocks.1"]), strict=True):
        np.testing.assert_array_equal(leaf_new, leaf_old)  # skipped block
    for name in ("scale", "bias"):
        np.testing.assert_array_equal(new0["dw_3"][name], old0["dw_3"][name])
    for leaf_new, leaf_old in zip(jax.tree.leaves(new["task_head"]),
                                  jax.tree.leaves(params["task_head"]), strict=True):
        np.testing.assert_array_equal(leaf_new, leaf_old)
