"""Property tests: random architectures of every shipped space survive JSON and build.

indices -> Architecture -> JSON text -> Architecture -> standalone model; the
model's output shape and trainable-parameter count must match the network
description (`search_spaces.network.describe`).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search_spaces import Architecture, get_space
from supernet import StandaloneModel, build_model, count_params
from tasks import describe

jax.config.update("jax_disable_most_optimizations", True)

# Compiling a network dominates; few examples per space keep this file fast.
FAST = settings(max_examples=4, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def indices_of(space_name: str) -> st.SearchStrategy[tuple[int, ...]]:
    space = get_space(space_name)
    return st.tuples(*(st.integers(0, n - 1) for n in space.num_choices))


def round_trip(space_name: str, indices: tuple[int, ...]) -> Architecture:
    space = get_space(space_name)
    arch = Architecture.from_indices(space, indices)
    loaded = Architecture.from_json(json.loads(json.dumps(arch.to_json())))
    assert loaded.indices == arch.indices and loaded.spec == arch.spec
    return loaded


@nnx.jit
def forward(model, x):
    return model(x)[0]


@FAST
@given(indices=indices_of("micro"))
def test_micro_architectures_build_and_run(indices):
    arch = round_trip("micro", indices)
    space = get_space("micro")
    size, classes = space.default_image_size, space.default_num_classes
    model = build_model(arch.spec, classes, rngs=nnx.Rngs(0))
    assert count_params(model) == describe(arch.spec, size, classes).params
    x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
    logits = forward(model, x)
    assert logits.shape == (2, classes)
    assert np.isfinite(np.asarray(logits)).all()


def abstract_forward(spec, num_classes: int, image_size: int):
    """(param count, logits shape) of building and running the model, traced only."""

    def build_and_run():
        model = StandaloneModel(spec, num_classes, rngs=nnx.Rngs(0))
        logits, _ = model(jnp.zeros((2, image_size, image_size, 3)))
        return nnx.state(model, nnx.Param), logits

    params, logits = jax.eval_shape(build_and_run)
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)), logits.shape


def check_large_space(space_name: str, indices: tuple[int, ...]) -> None:
    arch = round_trip(space_name, indices)
    space = get_space(space_name)
    size, classes = space.default_image_size, space.default_num_classes
    # Shapes and counts at the space's own 224 px without computing anything.
    params, shape = abstract_forward(arch.spec, classes, size)
    assert shape == (2, classes)
    assert params == describe(arch.spec, size, classes).params


@FAST
@given(indices=indices_of("mobilenet_edgetpu_v2"))
def test_mobilenet_edgetpu_v2_architectures_build(indices):
    check_large_space("mobilenet_edgetpu_v2", indices)


@FAST
@given(indices=indices_of("proxylessnas"))
def test_proxylessnas_architectures_build(indices):
    check_large_space("proxylessnas", indices)


@settings(max_examples=1, deadline=None, derandomize=True)
@given(v2=indices_of("mobilenet_edgetpu_v2"), proxyless=indices_of("proxylessnas"))
def test_large_space_members_run_on_small_images(v2, proxyless):
    # 'same' padding takes a 224-px network down to 1x1 maps on 32 px input.
    for space_name, indices in (("mobilenet_edgetpu_v2", v2), ("proxylessnas", proxyless)):
        arch = round_trip(space_name, indices)
        model = build_model(arch.spec, 7, rngs=nnx.Rngs(0))
        model.eval()
        logits = forward(model, jnp.ones((2, 32, 32, 3)))
        assert logits.shape == (2, 7)
        assert np.isfinite(np.asarray(logits)).all()
