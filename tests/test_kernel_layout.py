"""Shared full kxk kernels stored as the tiles group convs read: same kernels, fewer weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import search_spaces
from supernet import init_params, make_plan
from supernet.kernel_layout import make_shared_kernel
from supernet.supernet import num_weights
from tasks import Classification

# (cin, cout, groups) reads shaped like grouped_ibn's: prefixes of the widest, groups that
# do not nest (8 channels per group in one read, 12 -> 24 in another).
READS = [(48, 96, 4), (48, 96, 8), (48, 48, 6), (24, 48, 3)]


def dense(full, cin, cout, groups):
    ci, co = cin // groups, cout // groups
    return jnp.concatenate([full[:, :, i * ci:(i + 1) * ci, i * co:(i + 1) * co]
                            for i in range(groups)], axis=-1)


def test_tiles_give_every_group_conv_the_kernel_of_the_whole_storage():
    layout = make_shared_kernel(3, READS)
    whole = make_shared_kernel(3, [*READS, (48, 96, 1)])  # a 1-group read: stored whole
    assert whole.tile_ids is None and whole.shape == (3, 3, 48, 96)
    assert layout.tile_ids is not None
    stored_weights = int(np.prod(layout.shape))
    assert stored_weights < 0.5 * 3 * 3 * 48 * 96
    full = jax.random.normal(jax.random.key(0), (3, 3, 48, 96))
    stored = layout.pack(full)
    assert stored.shape == layout.shape
    for cin, cout, groups in READS:
        np.testing.assert_array_equal(layout.grouped_kernel(stored, cin, cout, groups),
                                      dense(full, cin, cout, groups))
        np.testing.assert_array_equal(whole.grouped_kernel(full, cin, cout, groups),
                                      dense(full, cin, cout, groups))
    # Every stored tile is read by some configuration: nothing stored is dead weight.
    read = np.zeros(full.shape, bool)
    for cin, cout, groups in READS:
        ci, co = cin // groups, cout // groups
        for i in range(groups):
            read[:, :, i * ci:(i + 1) * ci, i * co:(i + 1) * co] = True
    assert stored_weights == read.sum()


def test_tile_gradients_are_the_whole_kernels_gradients_packed():
    layout = make_shared_kernel(3, READS)
    full = jax.random.normal(jax.random.key(1), (3, 3, 48, 96))
    for cin, cout, groups in READS:
        cotangent = jax.random.normal(jax.random.key(cin + groups), (3, 3, cin // groups, cout))
        def via_tiles(stored, read=(cin, cout, groups), cotangent=cotangent):
            return jnp.sum(layout.grouped_kernel(stored, *read) * cotangent)

        def via_whole(full, read=(cin, cout, groups), cotangent=cotangent):
            return jnp.sum(dense(full, *read) * cotangent)
        got = jax.grad(via_tiles)(layout.pack(full))
        want = jax.grad(via_whole)(full)
        np.testing.assert_array_equal(got, layout.pack(want))


def test_a_read_the_layout_was_not_built_for_is_refused():
    layout = make_shared_kernel(3, [(48, 96, 8)])
    with pytest.raises(ValueError, match="does not store"):
        layout.grouped_kernel(jnp.zeros(layout.shape), 48, 96, 4)


def test_mobilenet_edgetpu_v2_supernet_stores_a_quarter_of_its_full_kernels():
    plan = make_plan(search_spaces.get_space("mobilenet_edgetpu_v2"))
    shapes = jax.eval_shape(lambda: init_params(plan, Classification(1001),
                                                jax.random.key(0)))
    layouts = [w.layout for bp in plan.blocks for w in bp.weights.values() if w.layout]
    full = sum(layout.kernel_size ** 2 * layout.cin * layout.cout for layout in layouts)
    stored = sum(int(np.prod(layout.shape)) for layout in layouts)
    assert full > 2.4e9 and stored < 0.25 * full  # 2.52 billion whole, 0.59 as tiles
    assert num_weights(shapes) < 0.7e9
