"""The BiFPN head and the `autoseg` space: supernet equals standalone after inheritance
for BiFPN paths, one trace for every head choice, parameter counts equal the network
description's, head decisions carried by architectures and costed, and the released
segmentation presets' parameter counts equal an independent count of the reference
models (tensorflow/models `official/projects/edgetpu/vision`)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import supernet
from cost_models.interface import SimulatorCostModel, Workload
from search_spaces import (
    Architecture,
    BlockSpec,
    OneOf,
    SearchSpace,
    SpecError,
    StageSpec,
    get_space,
)
from search_spaces.decisions import FILTERS
from search_spaces.definitions.autoseg import head_decisions
from search_spaces.presets import get_preset
from tasks import Segmentation, describe
from tasks.deeplab import resize_bilinear
from tunas_jax import resolve_architecture, summarize

jax.config.update("jax_disable_most_optimizations", True)


def tiny_autoseg() -> SearchSpace:
    """autoseg's kind of space at 16 px: two stages to stride 8, BiFPN head decisions."""
    def block(stride):
        return BlockSpec(op="dw_ibn", kernel_size=OneOf((3, 5)),
                         expansion_ratio=OneOf((1, 2), FILTERS), stride=stride)
    return SearchSpace(
        name="tiny_autoseg", stem_filters=4, stem_kernel_size=3, stem_stride=2,
        stages=(StageSpec(OneOf((4, 8), FILTERS), (block(2),)), StageSpec(8, (block(2),))),
        head_filters=8, default_image_size=16, default_num_classes=5,
        head_task=head_decisions((1, 2), (2, 3)))


def _with_head(space, indices, repeats_index, level_index):
    out = np.array(indices)
    out[space.units[-1].task_positions[0]] = repeats_index
    out[space.units[-1].task_positions[1]] = level_index
    return out


def test_bifpn_supernet_equals_standalone_with_one_trace():
    space = tiny_autoseg()  # head: repeats {1, 2}, minimum level {3, 2}
    # Levels 2 (stride 4), 3 (stride 8) from the backbone, 4 by the input downsampling.
    task = Segmentation(5, head="bifpn", bifpn_max_level=4, bifpn_num_filters=4)
    plan = supernet.make_plan(space)
    params = supernet.init_params(plan, task, jax.random.key(0))
    images = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
    traces = []

    def forward(p, i, x):
        traces.append(1)
        return supernet.apply(plan, task, p, i, x)[0]

    apply = jax.jit(forward)
    rng = np.random.default_rng(0)
    seen = set()
    for head in ((0, 0), (1, 1), (1, 0)):
        indices = _with_head(space, space.sample(rng), *head)
        spec = space.decode(indices)
        values = dict(spec.task_head)
        seen.add((values["bifpn_num_repeats"], values["bifpn_min_level"]))
        model = supernet.build_model(spec, task, rngs=nnx.Rngs(1))
        supernet.inherit(model, space, plan, params, indices)
        want, _ = model(images)
        level = values["bifpn_min_level"]
        assert want.shape == (2, 16 >> level, 16 >> level, 5)  # logits at the min level
        got = apply(params, jnp.asarray(indices), images)
        # Several minimum levels: the supernet's logits come resized to the input size.
        np.testing.assert_allclose(got, resize_bilinear(want, 16, 16), rtol=1e-4, atol=1e-5)
        assert supernet.count_params(model) == describe(spec, 16, task).params
    assert seen == {(1, 3), (2, 2), (2, 3)}
    assert len(traces) == 1  # one trace for every head choice


def test_head_decisions_are_carried_and_costed(tmp_path):
    space = get_space("autoseg_micro")  # the shipped one: repeats {1, 2}, levels {3, 2}
    task = Segmentation(11, head="bifpn", bifpn_max_level=4, bifpn_num_filters=8)
    base = space.sample(np.random.default_rng(3))
    small, large = _with_head(space, base, 0, 0), _with_head(space, base, 1, 1)
    arch = Architecture.from_indices(space, large)
    arch.save(tmp_path / "arch.json")
    data = json.loads((tmp_path / "arch.json").read_text())
    assert data["network"]["head"]["task"] == {"bifpn_min_level": 2, "bifpn_num_repeats": 2}
    assert space.encode(space.decode(large)) == tuple(int(i) for i in large)
    # The per-unit coster keys the head on its decisions: same numbers as describing
    # each network whole, and the larger head costs more.
    costs = SimulatorCostModel(space, Workload(32, task)).cost(
        np.stack([small, large]), ["pixel6_edgetpu"])["pixel6_edgetpu"]
    params = [describe(space.decode(i), 32, task).params for i in (small, large)]
    assert list(costs.params) == params and params[0] < params[1]
    assert costs.latency_ms[0] < costs.latency_ms[1]
    with pytest.raises(SpecError, match="only"):  # a DeepLab task cannot take them
        Segmentation(11).with_head({"bifpn_num_repeats": 2})


# ---- the released models, counted independently from the reference's layer code -------
def _round4(f: int) -> int:  # mobilenet_edgetpu_v2_model_blocks.round_filters, divisor 4
    r = max(4, int(f + 2) // 4 * 4)
    return r + 4 if r < 0.9 * f else r


def _ref_block(cin, cout, k, e, fused, conv, group_base=64):
    """_MbConvBlock's parameters (convs without bias; BN: gamma and beta)."""
    f, n = cin * e, 0
    if fused and e != 1:  # the expansion fused into the kxk conv
        groups = f // group_base if conv == "group" else 1
        n += k * k * (cin // groups) * f + 2 * f
    else:
        if e != 1:
            n += cin * f + 2 * f
        if conv == "depthwise":
            n += k * k * f + 2 * f
    return n + f * cout + 2 * cout


def _ref_backbone(stem, stem_k, blocks):
    """Stem + blocks of `backbone_only` (no top conv); blocks: (cin, cout, k, repeats, e,
    fused, conv) as BlockConfig.from_args."""
    n = stem_k * stem_k * 3 * stem + 2 * stem
    for cin, cout, k, repeats, e, fused, conv in blocks:
        for r in range(repeats):
            n += _ref_block(cin if r == 0 else cout, cout, k, e, fused, conv)
    return n


# autoseg_edgetpu_backbone_{xs,s,m}: (cin, cout, kernel, repeats, expand, fused, conv_type)
F, D = (True, "full"), (False, "depthwise")
AUTOSEG = {
    "xs": ([(32, 12, 3, 1, 1, *F), (12, 24, 3, 1, 6, *F), (24, 24, 3, 1, 3, *D),
            (24, 60, 3, 1, 3, *F), (60, 40, 3, 1, 6, *D), (40, 40, 5, 1, 3, *D),
            (40, 40, 3, 1, 6, *D), (40, 120, 3, 1, 6, *F), (120, 168, 3, 1, 6, *D),
            (168, 84, 5, 1, 6, *D), (84, 84, 5, 1, 3, *D), (84, 84, 5, 1, 1, *D),
            (84, 288, 1, 1, 6, True, "depthwise"), (288, 288, 5, 1, 1, *D),
            (288, 96, 1, 1, 3, True, "depthwise"), (96, 96, 5, 1, 1, *D),
            (96, 96, 1, 1, 6, True, "depthwise"), (96, 96, 5, 1, 1, *D),
            (96, 96, 1, 1, 6, True, "depthwise"), (96, 480, 5, 1, 3, *D)],
           {3: 40, 4: 84, 5: 480}),
    "s": ([(32, 12, 3, 1, 1, *F), (12, 36, 3, 1, 6, *F), (36, 18, 5, 1, 3, *D),
           (18, 60, 5, 1, 6, *F), (60, 60, 3, 1, 3, *D), (60, 120, 5, 1, 6, *D),
           (120, 120, 3, 1, 3, *D), (120, 120, 5, 1, 6, *D), (120, 112, 3, 1, 6, *D),
           (112, 112, 5, 2, 6, *D), (112, 112, 5, 1, 1, *D),
           (112, 192, 1, 1, 6, True, "depthwise"), (192, 192, 5, 1, 1, *D),
           (192, 96, 1, 1, 6, True, "depthwise"), (96, 96, 5, 1, 3, *D),
           (96, 96, 5, 1, 1, *D), (96, 192, 1, 1, 6, True, "depthwise"),
           (192, 192, 5, 1, 1, *D), (192, 160, 1, 1, 3, True, "depthwise")],
          {3: 60, 4: 112, 5: 160}),
    "m": ([(32, 16, 5, 1, 1, *D), (16, 36, 3, 1, 6, *F), (36, 36, 3, 1, 3, *D),
           (36, 60, 3, 1, 6, *F), (60, 60, 3, 1, 6, *D), (60, 120, 5, 1, 6, *F),
           (120, 120, 5, 1, 6, *D), (120, 80, 3, 1, 6, *F), (80, 168, 3, 1, 6, *D),
           (168, 168, 5, 1, 6, *D), (168, 168, 5, 1, 1, *D),
           (168, 168, 1, 1, 6, True, "depthwise"), (168, 168, 3, 1, 1, *D),
           (168, 192, 1, 1, 3, True, "depthwise"), (192, 192, 5, 1, 1, *D),
           (192, 288, 1, 1, 6, True, "depthwise"), (288, 288, 5, 1, 1, *D),
           (288, 96, 1, 1, 6, True, "depthwise"), (96, 96, 5, 1, 1, *D),
           (96, 192, 1, 1, 3, True, "depthwise"), (192, 192, 5, 1, 1, *D),
           (192, 320, 1, 1, 3, True, "depthwise")],
          {3: 60, 4: 168, 5: 320}),
}


def _ref_autoseg_head(level_widths, classes=32, f=96, lo=3, hi=8, repeats=4):
    """AutosegEdgeTPU's head (semantic_segmentation.py, bifpn_head.py)."""
    sep = 9 * f + f * f  # SeparableConv2D without bias
    top = max(level_widths)
    n = level_widths[top] * f + f  # downsample_p3: 1x1 conv with bias, no BN; the rest pool
    for w in level_widths.values():  # resample_p{L}: conv with bias + BN where C != F
        n += w * f + f + 2 * f if w != f else 0
    n += repeats * 2 * (hi - lo) * (sep + 2 * f)  # FPNCells: 10 fusion nodes a cell
    n += sep + 2 * f  # seg_class_fusion
    return n + 9 * f + f * classes + classes  # seg-class-predict: separable, with bias


# mobilenet_edgetpu_v2_{xs,s,m}: the v2 topology with per-group widths.
V2 = {"xs": (32, (16, 32, 48, 96, 144, 160, 192)), "s": (64, (24, 48, 64, 128, 160, 192, 256)),
      "m": (64, (32, 64, 80, 160, 192, 240, 320))}
G = (True, "group")
V2_GROUPS = [[(3, 1, *F)], [(3, 8, *F), (3, 4, *G)],
             [(3, 8, *F), (3, 4, *G), (3, 4, *F), (3, 4, *G)],
             [(3, 8, *F)] + [(3, 4, *D)] * 3, [(3, 8, *D)] + [(3, 4, *D)] * 3,
             [(3, 8, *D)] + [(3, 4, *D)] * 3, [(3, 8, *D)]]


def _ref_deeplab(stem, widths, classes=32, a=128, low=48, filters=256, rates=3):
    blocks, cin = [], stem
    for width, group in zip(widths, V2_GROUPS, strict=True):
        for k, e, fused, conv in group:
            blocks.append((cin, width, k, 1, e, fused, conv))
            cin = width
    n = _ref_backbone(stem, 5, blocks)
    c, cl = widths[6], widths[4]  # level 4 (stride 32), low level 3 (stride 16)
    n += c * a + 2 * a + rates * (9 * c + c * a + 2 * a) + c * a + 2 * a  # ASPP branches
    n += 5 * a * a + 2 * a  # projection
    n += cl * low + 2 * low  # deeplabv3+ fusion conv
    w0 = a + low
    n += 9 * w0 + 2 * w0 + w0 * filters + 2 * filters  # depthwise-separable conv 0
    n += 9 * filters + 2 * filters + filters * filters + 2 * filters  # conv 1
    return n + filters * classes + classes  # classifier


@pytest.mark.parametrize("size", ["xs", "s", "m"])
def test_released_presets_match_the_reference_parameter_counts(size):
    blocks, levels = AUTOSEG[size]
    blocks = [(_round4(ci), _round4(co), *rest) for ci, co, *rest in blocks]
    want = _ref_backbone(32, 3, blocks) + _ref_autoseg_head(levels)
    got = summarize(resolve_architecture(preset=f"autoseg_edgetpu_{size}"))
    assert (got["image_size"], got["task"]["num_classes"]) == (512, 32)
    assert got["params"] == want
    task = Segmentation(**{k: v for k, v in got["task"].items() if k != "name"})
    model = supernet.abstract_model(get_preset(f"autoseg_edgetpu_{size}"), task)
    assert supernet.count_params(model) == want
    stem, widths = V2[size]
    got = summarize(resolve_architecture(preset=f"deeplabv3plus_mobilenet_edgetpu_v2_{size}"))
    assert got["params"] == _ref_deeplab(stem, widths)
    # The standalone model builds what the description counts.
    task = Segmentation(**{k: v for k, v in got["task"].items() if k != "name"})
    model = supernet.abstract_model(get_preset(f"deeplabv3plus_mobilenet_edgetpu_v2_{size}"),
                                    task)
    assert supernet.count_params(model) == got["params"]


def test_training_a_released_preset_uses_its_own_head():
    """`preset:autoseg_edgetpu_xs` trains the released BiFPN (96 filters, levels 3..8, 4
    repeats) on the data's classes, not the config's CPU-sized head; a classification
    config is refused with the fix."""
    from experiments.train import seg_digits
    from tunas_jax import train
    from tunas_jax.errors import UsageError

    config = seg_digits.get_config()
    config.segmentation.output_stage = "approximate"
    config.architecture = "preset:autoseg_edgetpu_xs"
    task = train.make_task(config, 11)
    assert (task.head_name, task.num_classes, task.output_stage) == ("bifpn", 11, "approximate")
    assert (task.bifpn.min_level, task.bifpn.max_level, task.bifpn.num_filters,
            task.bifpn.num_repeats) == (3, 8, 96, 4)
    config.architecture = "preset:deeplabv3plus_mobilenet_edgetpu_v2_xs"
    task = train.make_task(config, 11)
    assert (task.head_name, task.deeplab.aspp_endpoint, task.deeplab.low_level_endpoint) == (
        "deeplab", "stride_32", "stride_16")
    config.architecture = "/some/search/architecture.json"  # the config's head, as before
    assert train.make_task(config, 11).bifpn.num_filters == 16
    config.architecture = "preset:autoseg_edgetpu_xs"
    config.task = "classification"
    with pytest.raises(UsageError, match=r"config\.task: 'classification'.*segmentation"):
        train.make_task(config, 11)
