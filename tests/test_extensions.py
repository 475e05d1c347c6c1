"""Extending tunas-jax from outside the package: a toy block type, space and task, defined
and registered in this file only, go through a real search (supernet, controller, cost
model, outputs) and a standalone training step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import search_spaces
import supernet
import tasks
from search_spaces import (
    FILTERS,
    Block,
    BlockKind,
    BlockSpec,
    Layer,
    OneOf,
    SearchSpace,
    StageSpec,
    register_block_type,
    register_space,
)
from search_spaces.graph import add, conv
from tunas_jax import search, train_step

jax.config.update("jax_disable_most_optimizations", True)


# ---- a block type: one kxk full conv (+ residual), no expansion -------------------------
class ToyConv(BlockKind):
    name = "toy_conv"

    def reads(self, values):
        return frozenset({"kernel_size"})

    def decode(self, spec, values, cin, cout, stage, min_group_size):
        residual = spec.residual and spec.stride == 1 and cin == cout
        return Block(self.name, cin, cout, spec.stride, values["kernel_size"], 1, 1, 1,
                     residual, stage)

    def validate(self, block, fail):
        if block.kernel_size is None or block.kernel_size % 2 == 0:
            fail("kernel_size", "a toy conv needs an odd kernel")

    def lower(self, block):
        nodes = [conv("conv", "block_input", block.input_filters, block.output_filters,
                      block.kernel_size, block.stride, role="kxk",
                      weights=f"toy_{block.kernel_size}")]
        if block.residual:
            nodes.append(add("add", ("conv", "block_input"), block.output_filters))
        return tuple(nodes)


register_block_type(ToyConv(), replace=True)


def toy_space() -> SearchSpace:
    blocks = (
        BlockSpec(op=OneOf(("toy_conv", "dw_ibn")), kernel_size=OneOf((3, 5)),
                  expansion_ratio=OneOf((1, 2), FILTERS), pointwise_expansion=1, stride=2),
        BlockSpec(op=OneOf(("toy_conv", "skip")), kernel_size=OneOf((3, 5)),
                  expansion_ratio=1, pointwise_expansion=1, stride=1),
    )
    return SearchSpace(name="toy_space", stem_filters=8, stem_kernel_size=3, stem_stride=2,
                       stages=(StageSpec(OneOf((8, 16), FILTERS), blocks),), head_filters=16,
                       default_image_size=8, default_num_classes=2)


# ---- a task: is the digit odd? a linear head on the stride-4 endpoint ---------------------
class ParityHead(nnx.Module):
    def __init__(self, width, *, rngs):
        self.odd = nnx.Linear(width, 1, rngs=rngs)

    def named_layers(self):
        yield "odd", self.odd

    def __call__(self, endpoints, rngs=None):
        return self.odd(jnp.mean(endpoints["stride_4"], axis=(1, 2)))[:, 0]


class Parity(tasks.Task):
    name = "toy_parity"
    primary_metric = "accuracy"

    def __init__(self, num_classes=None):
        self.num_classes = 2  # whatever the dataset has: the task predicts odd/even

    def head_layers(self, endpoints):
        source, shape = endpoints["stride_4"]
        h, _, c = shape
        return [Layer(name="pool", op="pool", inputs=(source,), input_shape=shape,
                      output_shape=(1, 1, c), kernel_size=h, padding="valid",
                      pool_type="avg", global_pool=True),
                Layer(name="odd", op="fully_connected", inputs=("pool",),
                      input_shape=(1, 1, c), output_shape=(1, 1, 1), use_bias=True)]

    def init_head(self, key, endpoint_widths):
        return {"kernel": 0.01 * jax.random.normal(key, (endpoint_widths["stride_4"], 1)),
                "bias": jnp.zeros((1,))}

    def apply_head(self, params, endpoints, *, train):
        pooled = jnp.mean(endpoints["stride_4"], axis=(1, 2))
        return (pooled @ params["kernel"] + params["bias"])[:, 0]

    def inherit_head(self, params, endpoint_widths):
        return {"odd": {"kernel": params["kernel"][:endpoint_widths["stride_4"]],
                        "bias": params["bias"]}}

    def build_head(self, endpoint_widths, *, rngs, dropout_rate=0.0):
        return ParityHead(endpoint_widths["stride_4"], rngs=rngs)

    def loss(self, output, batch, *, label_smoothing=0.0):
        odd = (batch["label"] % 2).astype(jnp.float32)
        loss = optax.sigmoid_binary_cross_entropy(output, odd).mean()
        return loss, {"accuracy": self.quality(output, batch)}

    def quality(self, output, batch):
        return jnp.mean((output > 0) == (batch["label"] % 2 == 1))

    def eval_sums(self, output, batch, mask):
        right = ((output > 0) == (batch["label"] % 2 == 1)) & mask
        return {"right": right.sum(), "count": mask.sum()}

    def finish_eval(self, sums):
        return {"accuracy": float(sums["right"]) / max(float(sums["count"]), 1.0)}


tasks.register_task("toy_parity", Parity, replace=True)


@pytest.fixture(autouse=True)
def toy_registered():
    register_space("toy_space", toy_space, replace=True)
    yield
    del search_spaces.SPACES["toy_space"]
    search_spaces.get_space.cache_clear()


def test_toy_block_lowers_into_every_view():
    space = search_spaces.get_space("toy_space")
    indices = space.indices_for({d.name: d.choices[0] for d in space.decisions})
    spec = space.decode(indices)
    assert [b.block_type for b in spec.blocks] == ["toy_conv", "toy_conv"]
    # The kernel decision of a skipped toy block is inactive; of a toy conv, active.
    skip = list(indices)
    skip[space.decisions[-2].position] = 1  # second block: skip (its op decision)
    mask = space.active_mask(np.asarray([indices, skip]))
    kernel = next(d.position for d in space.decisions
                  if d.name == "stages.0.blocks.1.kernel_size")
    assert mask[0, kernel] and not mask[1, kernel]
    description = tasks.describe(spec, 8, Parity())
    assert [layer.name for layer in description.layers] == [
        "stem", "blocks.0.conv", "blocks.1.conv", "blocks.1.add", "head", "pool", "odd"]
    model = supernet.build_model(spec, Parity(), rngs=nnx.Rngs(0))
    assert supernet.count_params(model) == description.params


def test_toy_supernet_equals_the_standalone_model():
    space = search_spaces.get_space("toy_space")
    plan = supernet.make_plan(space)
    params = supernet.init_params(plan, Parity(), jax.random.key(0))
    images = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
    for indices in space.sample(np.random.default_rng(0), 5):
        model = supernet.build_model(space.decode(indices), Parity(), rngs=nnx.Rngs(1))
        supernet.inherit(model, space, plan, params, indices)
        want, _ = model(images)
        got, endpoints = supernet.apply(plan, Parity(), params, jnp.asarray(indices), images)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        assert set(endpoints) == {"stride_2", "stride_4", "features"}


def test_toy_search_and_standalone_training_step(tmp_path):
    config = search.load_search_config("experiments/search/micro_digits.py", {
        "space": "toy_space", "task": "toy_parity", "steps": "4", "batch_size": "8",
        "valid_batch_size": "8", "dataset.image_size": "8", "log_every": "2",
        "checkpoint_every": "4", "compilation_cache_dir": "none", "num_devices": "1",
        "data_threads": "1", "target_latency_ms": "0.002",
        "cost_model.workdir": str(tmp_path / "cost_model")})
    config.cost_model.overrides = {"space": "toy_space", "num_architectures": 100,
                                   "num_steps": 100, "workers": 1, "model": "linear"}
    summary = search.run_search(config, str(tmp_path / "search"), log=lambda _: None)
    arch = search_spaces.load(tmp_path / "search" / "architecture.json")
    assert arch.space.name == "toy_space" and summary["steps"] == 4
    assert np.isfinite(summary["argmax"]["simulated_latency_ms"])

    model = supernet.build_model(arch.spec, Parity(), rngs=nnx.Rngs(0))
    train_config = search.load_config("experiments/train/micro_digits.py")
    fns, state = train_step.make_step_functions(model, train_config, steps_per_epoch=10,
                                                num_steps=10)
    batch = {"image": jax.random.normal(jax.random.key(2), (8, 8, 8, 3)),
             "label": jnp.arange(8) % 10}
    state, metrics = fns.train_step(state, batch)
    assert int(state["step"]) == 1 and np.isfinite(float(metrics["loss"]))
    assert 0.0 <= float(metrics["accuracy"]) <= 1.0
    result = train_step.evaluate(fns, state, [{**batch, "mask": jnp.ones(8, bool)}])
    assert set(result) == {"accuracy"}
