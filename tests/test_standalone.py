"""The standalone nnx model: published parameter counts, layer mapping, modes, residuals."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from search_spaces import Block, BlockType, ModelSpec, get_preset, get_space
from search_spaces.presets import CLASSIFICATION_PRESETS
from supernet import (
    abstract_model,
    build_model,
    count_params,
    get_layer,
    layer_modules,
)
from supernet import conv2d as conv2d_eager
from tasks import describe

jax.config.update("jax_disable_most_optimizations", True)


@nnx.jit
def forward(model, x):
    return model(x)[0]


def tiny_spec() -> ModelSpec:
    """Every block kind once, at micro sizes, with a residual and a skip."""
    gc = Block(BlockType.GC_IBN, 16, 16, 1, 3, 2, 1, 2, residual=True)
    blocks = (
        Block(BlockType.FUSED_IBN, 8, 16, 2, None, 1, 1, None),
        gc,
        Block(BlockType.SKIP, 16, 16),
        Block(BlockType.GROUPED_IBN, 16, 24, 2, 5, 4, 2, 4),
        Block(BlockType.DW_IBN, 24, 24, 1, 3, 2, 2, 48, residual=True),
        Block(BlockType.FUSED_IBN, 24, 32, 1, 3, 2, 1, 1),
    )
    return ModelSpec(8, 3, 2, blocks, 64).validate()


@pytest.mark.parametrize("name,published", [
    ("mobilenet_edgetpu_v1", 4_092_713),
    ("mobilenet_edgetpu_v2_reference_config", 6_069_657),
])
def test_published_param_counts(name, published):
    model = abstract_model(get_preset(name), 1001)
    assert count_params(model) == published
    # BN running statistics exist but are not trainable parameters.
    stats = jax.tree.leaves(nnx.state(model, nnx.BatchStat))
    assert stats and all(isinstance(s, jax.ShapeDtypeStruct) for s in stats)


@pytest.mark.parametrize("name", CLASSIFICATION_PRESETS)
def test_preset_layers_mirror_description(name):
    spec = get_preset(name)
    model = abstract_model(spec, 1001)
    net = describe(spec, 224, 1001)
    described = {layer.name: layer for layer in net.layers if layer.params}
    modules = dict(layer_modules(model))
    assert list(modules) == list(described)
    for layer_name, module in modules.items():
        layer = described[layer_name]
        assert count_params(module) == layer.params, layer_name
        assert get_layer(model, layer_name) is module
        if layer.op == "conv2d":
            k, cin, cout = layer.kernel_size, layer.input_shape[2], layer.output_shape[2]
            assert module.kernel.shape == (k, k, cin // layer.groups, cout)
            assert (module.stride, module.groups, module.relu) == (
                layer.stride, layer.groups, layer.activation == "relu")
    assert count_params(model) == net.params


@pytest.mark.parametrize("name", CLASSIFICATION_PRESETS)
def test_every_preset_runs(name):
    model = build_model(get_preset(name), 10, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    logits = forward(model, x)
    assert logits.shape == (2, 10)
    assert np.isfinite(np.asarray(logits)).all()


def test_state_paths_are_layer_names():
    model = build_model(tiny_spec(), 10, rngs=nnx.Rngs(0))
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    assert flat[("blocks", 1, "group", "kernel")].shape == (3, 3, 8, 32)
    assert flat[("blocks", 3, "expand", "bn", "scale")].shape == (32,)
    assert flat[("task_head", "logits", "bias")].shape == (10,)
    assert not model.blocks[2].nodes  # skipped: no layers
    assert not any(path[:2] == ("blocks", 2) for path in flat)
    with pytest.raises(KeyError):
        get_layer(model, "blocks.2.project")


def test_train_and_eval_modes():
    model = build_model(tiny_spec(), 10, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (3, 32, 32, 3)) * 2 + 1
    # Same first sample, different companion (same shapes: one compile per mode).
    batch_a, batch_b = x[:2], x[jnp.array([0, 2])]
    stem_mean = np.asarray(model.stem.bn.mean[...]).copy()

    train_a = forward(model, batch_a)
    # Training: batch statistics, so a sample's logits depend on the rest of the
    # batch, and the running averages move.
    assert not np.allclose(forward(model, batch_b)[0], train_a[0], atol=1e-4)
    assert not np.allclose(model.stem.bn.mean[...], stem_mean)

    model.eval()
    eval_a = forward(model, batch_a)
    moved_mean = np.asarray(model.stem.bn.mean[...]).copy()
    np.testing.assert_allclose(forward(model, batch_b)[0], eval_a[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.stem.bn.mean[...], moved_mean)
    assert not np.allclose(eval_a, train_a, atol=1e-3)

    model.train()
    assert model.stem.bn.use_running_average is False
    view = nnx.view(model, use_running_average=True, deterministic=True)
    assert view.stem.bn.use_running_average and not model.stem.bn.use_running_average
    np.testing.assert_allclose(forward(view, batch_a), eval_a, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(forward(model, batch_a)[1], train_a[1], rtol=1e-4, atol=1e-4)


def test_dropout_only_in_training():
    model = build_model(tiny_spec(), 10, rngs=nnx.Rngs(0), dropout_rate=0.5)
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    model.eval()
    a, b = forward(model, x), forward(model, x)
    np.testing.assert_allclose(a, b)
    model.train()
    model.set_attributes(use_running_average=True)  # isolate dropout from batch norm
    assert not np.allclose(forward(model, x), a, atol=1e-5)


def test_residual_block_adds_its_input():
    model = build_model(tiny_spec(), 10, rngs=nnx.Rngs(0))
    block = model.blocks[1]
    assert block.nodes[-1].op == "add"  # a residual
    x = jax.random.normal(jax.random.key(2), (2, 8, 8, 16))
    block_forward = nnx.jit(lambda b, x: b(x))
    assert not np.allclose(block_forward(block, x), x, atol=1e-3)
    # A zero projection (BN scale and bias 0) leaves only the residual path.
    block.project.bn.scale[...] = jnp.zeros(16)
    block.project.bn.bias[...] = jnp.zeros(16)
    np.testing.assert_allclose(block_forward(block, x), x, rtol=1e-6, atol=1e-6)
    # Without the residual (stride-2 block) the same zeroing gives zeros.
    plain = model.blocks[3]
    assert all(n.op != "add" for n in plain.nodes)
    plain.project.bn.scale[...] = jnp.zeros(24)
    plain.project.bn.bias[...] = jnp.zeros(24)
    np.testing.assert_allclose(block_forward(plain, x), 0.0, atol=1e-6)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [7, 8])
def test_conv_forms_agree(stride, size):
    conv2d = jax.jit(conv2d_eager, static_argnums=(2, 3, 4))
    keys = jax.random.split(jax.random.key(3), 4)
    x = jax.random.normal(keys[0], (2, size, size, 16))
    group_kernel = jax.random.normal(keys[1], (3, 3, 4, 32))
    dw_kernel = jax.random.normal(keys[2], (5, 5, 1, 16))
    ref = conv2d(x, group_kernel, stride, 4, "xla")
    assert ref.shape == (2, math.ceil(size / stride), math.ceil(size / stride), 32)
    np.testing.assert_allclose(conv2d(x, group_kernel, stride, 4, "split"), ref,
                               rtol=1e-4, atol=1e-4)
    ref = conv2d(x, dw_kernel, stride, 16, "xla")
    np.testing.assert_allclose(conv2d(x, dw_kernel, stride, 16, "shift"), ref,
                               rtol=1e-4, atol=1e-4)
    # A group conv is the block-diagonal part of a full conv.
    full = jnp.zeros((3, 3, 16, 32))
    for g in range(4):
        full = full.at[:, :, 4 * g:4 * g + 4, 8 * g:8 * g + 8].set(
            group_kernel[:, :, :, 8 * g:8 * g + 8])
    np.testing.assert_allclose(conv2d(x, full, stride), conv2d(x, group_kernel, stride, 4),
                               rtol=1e-4, atol=1e-4)


def test_kernel_init_is_tunas():
    """TuNAS's initializers: He normal on fan_in (truncated at 2 sd) for convs, a depthwise
    conv's fan_in k*k; N(0, 0.01) for the classifier, zero bias."""
    model = build_model(get_preset("mobilenet_edgetpu_v1"), 1001, rngs=nnx.Rngs(0))
    head = np.asarray(model.head.kernel[...])  # 1x1 conv, fan_in = its input channels
    fan_in = head.shape[2]
    assert fan_in != head.shape[3]
    assert np.std(head) == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)
    assert np.abs(head).max() <= 2 * math.sqrt(2 / fan_in) / 0.8796 + 1e-6  # truncated
    dw = get_layer(model, "blocks.17.depthwise")
    assert dw.groups == dw.out_channels == 768
    assert np.std(np.asarray(dw.kernel[...])) == pytest.approx(math.sqrt(2 / 25), rel=0.05)
    logits = np.asarray(model.task_head.logits.kernel[...])
    assert np.std(logits) == pytest.approx(0.01, rel=0.05)
    assert np.abs(logits).max() > 3 * 0.01  # a normal, not a bounded uniform
    assert not np.asarray(model.task_head.logits.bias[...]).any()


def test_space_member_matches_preset_counts():
    # MobileNetEdgeTPUv2-S is a member of the v2 space: same model both ways.
    space = get_space("mobilenet_edgetpu_v2")
    spec = get_preset("mobilenet_edgetpu_v2_s")
    indices = space.encode(spec)
    assert indices is not None
    decoded = space.decode(indices)
    strip = [dataclasses.replace(b, stage=0) for b in decoded.blocks]
    assert strip == [dataclasses.replace(b, stage=0) for b in spec.blocks]
    assert count_params(abstract_model(decoded, 1001)) == describe(spec, 224, 1001).params
