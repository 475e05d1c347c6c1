"""Search-space structure, decoding, membership and the published parameter counts."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from search_spaces import (
    OP,
    Architecture,
    Block,
    BlockSpec,
    BlockType,
    OneOf,
    SearchSpace,
    SpecError,
    StageSpec,
    get_preset,
    get_space,
    realize_groups,
    round_filters,
)
from search_spaces.presets import CLASSIFICATION_PRESETS
from tasks import describe

SPACE_NAMES = ("micro", "mobilenet_edgetpu_v2", "proxylessnas")


def test_published_parameter_counts_from_network_description():
    # Figures tested by tensorflow/models' edgetpu tests: 224 px, 1001 classes, BN
    # gamma/beta counted.
    assert describe(get_preset("mobilenet_edgetpu_v1"), 224, 1001).params == 4_092_713
    assert describe(get_preset("mobilenet_edgetpu_v2_reference_config"), 224, 1001).params \
        == 6_069_657


@pytest.mark.parametrize("name", CLASSIFICATION_PRESETS)
def test_every_preset_validates_and_lowers(name):
    spec = get_preset(name).validate()
    description = describe(spec, 224, 1001)
    assert description.params > 1_000_000
    assert description.layers[-1].output_shape == (1, 1, 1001)


def test_v2_s_is_a_member_of_the_v2_space():
    space = get_space("mobilenet_edgetpu_v2")
    spec = get_preset("mobilenet_edgetpu_v2_s")
    indices = space.encode(spec)
    assert indices is not None
    assert space.decode(indices) == spec


def test_v1_is_not_a_member_of_the_v2_space():
    assert get_space("mobilenet_edgetpu_v2").encode(get_preset("mobilenet_edgetpu_v1")) is None


def test_proxylessnas_matches_tunas_structure():
    space = get_space("proxylessnas")
    blocks = space.decode([0] * space.num_decisions).blocks
    assert len(blocks) == 22  # the separable conv + 21 inverted bottlenecks
    skippable = [d for d in space.decisions if d.name.endswith(".op")]
    assert len(skippable) == 15
    # TuNAS's count of architectures: about 10^21.
    assert 1e21 <= space.size < 1e22


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_random_architectures_decode_to_valid_networks(name):
    space = get_space(name)
    for indices in space.sample(np.random.default_rng(0), 64):
        spec = space.decode(indices).validate()
        assert space.encode(spec) is not None
        assert describe(spec, space.default_image_size, space.default_num_classes).params > 0


def test_fingerprint_changes_with_the_definition_not_the_name():
    base = get_space("micro")
    renamed = dataclasses.replace(base, name="other")
    changed = dataclasses.replace(base, head_filters=256)
    assert renamed.fingerprint == base.fingerprint
    assert changed.fingerprint != base.fingerprint


def test_active_mask_follows_the_path_and_agrees_between_numpy_and_jax():
    space = get_space("micro")
    names = [d.name for d in space.decisions]
    values = {d.name: d.choices[0] for d in space.decisions}
    values["stages.1.blocks.1.op"] = "skip"
    values["stages.2.blocks.1.op"] = "dw_ibn"
    values["stages.0.blocks.0.op"] = "grouped_ibn"
    indices = np.array(space.indices_for(values))
    mask = space.active_mask(indices)
    active = dict(zip(names, mask, strict=True))
    assert not active["stages.1.blocks.1.kernel_size"]
    assert not active["stages.1.blocks.1.group_size"]
    assert not active["stages.2.blocks.1.group_size"]  # depthwise: no group size
    assert active["stages.2.blocks.1.kernel_size"]
    assert active["stages.0.blocks.0.group_size"]
    assert all(active[n] for n in names if n.endswith("filters"))
    batch = space.sample(np.random.default_rng(1), 32)
    np.testing.assert_array_equal(space.active_mask(jnp.asarray(batch), xp=jnp),
                                  space.active_mask(batch))


def test_fused_expansion_one_has_no_kernel_decision_on_the_path():
    space = get_space("mobilenet_edgetpu_v2")
    values = {d.name: d.choices[0] for d in space.decisions}
    values["stages.0.blocks.0.op"] = "fused_ibn"
    mask = dict(zip([d.name for d in space.decisions],
                    space.active_mask(np.array(space.indices_for(values))), strict=True))
    assert not mask["stages.0.blocks.0.kernel_size"]
    values["stages.0.blocks.0.op"] = "dw_ibn"
    mask = dict(zip([d.name for d in space.decisions],
                    space.active_mask(np.array(space.indices_for(values))), strict=True))
    assert mask["stages.0.blocks.0.kernel_size"]


def test_realize_groups_prefers_exact_and_respects_minimum():
    assert realize_groups(48, 192, 64) == 3          # published: 192 / 64
    assert realize_groups(40, 160, 64, 32) == 2      # 160/64 inexact -> nearest valid (80/group)
    assert realize_groups(16, 32, 8, 16) == 2        # never below the minimum group size
    assert realize_groups(24, 96, 1000) == 1         # huge request -> full conv


def test_round_filters_matches_the_published_rule():
    assert [round_filters(24 * m) for m in (0.5, 0.75, 1.0, 1.25)] == [16, 24, 24, 32]


def test_space_definition_errors_name_the_field():
    bad_skip = BlockSpec(op=OneOf(("dw_ibn", "skip"), OP), stride=2)
    with pytest.raises(SpecError, match="skip is only allowed"):
        SearchSpace("bad", 8, 3, 2, (StageSpec(8, (BlockSpec("dw_ibn"), bad_skip)),), 16, 32, 10)
    bad_split = BlockSpec(op="grouped_ibn", expansion_ratio=OneOf((3, 6)),
                          pointwise_expansion=OneOf((2,)))
    with pytest.raises(SpecError, match="pointwise_expansion"):
        SearchSpace("bad", 8, 3, 2, (StageSpec(8, (bad_split,)),), 16, 32, 10)


def test_block_validation_errors():
    with pytest.raises(SpecError, match=r"groups.*does not divide"):
        Block(BlockType.GC_IBN, 48, 48, 1, 3, 4, 1, 5).validate()
    with pytest.raises(SpecError, match="residual"):
        Block(BlockType.DW_IBN, 16, 24, 1, 3, 4, 4, 64, residual=True).validate()
    with pytest.raises(SpecError, match="skipped block must keep its shape"):
        Block(BlockType.SKIP, 16, 24).validate()


def test_indices_out_of_range_and_wrong_length_are_refused():
    space = get_space("micro")
    with pytest.raises(SpecError, match="out of range"):
        Architecture.from_indices(space, [99] * space.num_decisions)
    with pytest.raises(SpecError, match="decisions"):
        Architecture.from_indices(space, [0, 0])
