"""The supernet's static plan: every layer configuration a space can ask for.

For each block position the plan enumerates all combinations of the
decisions that shape it (input and output widths, op, kernel, expansion,
e1, group size), decodes each with the space's own rules, and collects the
distinct configurations of its three layers (1x1 expand, kxk conv, 1x1
project). A lookup table maps a combination (mixed-radix over the decision
indices, computed inside `jit`) to one branch per layer. The supernet then
runs one `lax.switch` per layer: compiled once, executing only the sampled
child's shapes (TuNAS's masks always pay for the largest).

A layer with more configurations than `max_branches_per_layer` is masked
instead: its configurations merge into one branch per op family and kernel
size, run at the merged configurations' largest widths, and the child's
widths (and group count) come in traced, as TuNAS's masks. That keeps the
number of branches, and so trace and compile time, bounded:
`mobilenet_edgetpu_v2` asks for 6,165 exact configurations (its kxk layers
229-313 each), which do not compile in reasonable time.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import jax.numpy as jnp
import numpy as np

from search_spaces import Block, BlockType, SearchSpace
from search_spaces.decisions import OP, OneOf
from search_spaces.space import BLOCK_DECISION_FIELDS
from supernet.kernel_layout import SharedKernel, make_shared_kernel

# Columns of a block's lookup row: branch per layer, then the child's own widths
# (read by masked layers; zeros in a skipped block's row).
EXPAND, KXK, PROJECT, RESIDUAL, SKIP = range(5)
EXPAND_WIDTH, KXK_IN, KXK_OUT, KXK_GROUPS, OUT_WIDTH = range(5, 10)
# The default: every layer of `micro` (at most 49) and `proxylessnas` runs exact.
DEFAULT_MAX_BRANCHES_PER_LAYER = 64


@dataclasses.dataclass(frozen=True)
class ExpandConfig:
    """1x1 conv cin -> width (+BN, ReLU). `masked`: the widest of several configurations,
    run with the child's width traced (its output channels past it zeroed)."""

    cin: int
    width: int
    masked: bool = False


@dataclasses.dataclass(frozen=True)
class KxkConfig:
    """kxk conv. family: 'dw' (depthwise), 'fused' (reads the block input: fused_ibn and
    gc_ibn share these weights), 'grouped' (reads the 1x1 expansion of grouped_ibn).
    `masked`: the widest of several configurations; `groups` 0 then means the child's
    group count is traced (a block-diagonal mask over the full kernel)."""

    family: str
    kernel_size: int
    cin: int
    cout: int
    groups: int
    stride: int
    masked: bool = False


@dataclasses.dataclass(frozen=True)
class ProjectConfig:
    """1x1 conv cin -> cout (+BN, no activation). `masked` as `ExpandConfig`'s."""

    cin: int
    cout: int
    masked: bool = False


@dataclasses.dataclass(frozen=True)
class Lookup:
    """Mixed-radix index over some decisions -> a row of branch indices."""

    positions: tuple[int, ...]
    radices: tuple[int, ...]
    table: np.ndarray  # [prod(num choices), columns] int32

    def row(self, indices: Any) -> Any:
        """The branch row of an architecture: numpy in, numpy out (static); traced in,
        traced out."""
        if isinstance(indices, np.ndarray):
            combo = sum(int(indices[p]) * r for p, r in zip(self.positions, self.radices,
                                                            strict=True))
            return self.table[combo]
        combo = jnp.int32(0)
        for pos, radix in zip(self.positions, self.radices, strict=True):
            combo = combo + indices[pos] * radix
        return jnp.asarray(self.table)[combo]


@dataclasses.dataclass(frozen=True)
class BlockPlan:
    name: str                      # "stages.{s}.blocks.{b}"
    stride: int
    in_width: int                  # carried (max) widths
    exp_width: int
    mid_width: int
    out_width: int
    expand: tuple[ExpandConfig | None, ...]   # index 0: no expansion (pass-through)
    kxk: tuple[KxkConfig | None, ...]         # index 0: no kxk conv (subsample by stride)
    project: tuple[ProjectConfig, ...]
    lookup: Lookup   # columns: EXPAND .. OUT_WIDTH above
    skippable: bool
    can_residual: bool
    # Op warmup: positions of the block's OP decisions and every combination of
    # their choice indices ([M, len(positions)]), to average over when warm.
    warm_positions: tuple[int, ...] = ()
    warm_combos: np.ndarray | None = None
    # The storage of each shared full kxk kernel ("fused_5", "grouped_3", ...).
    kernels: dict[str, SharedKernel] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SupernetPlan:
    space_name: str
    stem_kernel_size: int
    stem_stride: int
    stem_widths: tuple[int, ...]
    stem_lookup: Lookup            # columns: stem branch, stem width
    blocks: tuple[BlockPlan, ...]
    head_configs: tuple[ProjectConfig, ...]
    head_lookup: Lookup            # columns: head branch
    head_width: int


def _choices(field: Any) -> tuple[Any, ...]:
    return field.choices if isinstance(field, OneOf) else (field,)


def _lookup(space: SearchSpace, names: list[str], fn) -> Lookup:
    """Enumerate combinations of the named decisions (None = fixed) into a table."""
    pos = {d.name: d.position for d in space.decisions}
    present = [n for n in names if n in pos]
    counts = [space.decisions[pos[n]].num_choices for n in present]
    radices, r = [], 1
    for c in reversed(counts):
        radices.append(r)
        r *= c
    radices.reverse()
    rows = []
    for combo in itertools.product(*(range(c) for c in counts)):
        chosen = {n: space.decisions[pos[n]].choices[i] for n, i in zip(present, combo,
                                                                      strict=True)}
        rows.append(fn(chosen))
    return Lookup(tuple(pos[n] for n in present), tuple(radices),
                  np.asarray(rows, dtype=np.int32).reshape(len(rows), -1))


def index(cfgs: list, cfg: Any) -> int:
    """Position of `cfg` in `cfgs`, appending it if new."""
    if cfg not in cfgs:
        cfgs.append(cfg)
    return cfgs.index(cfg)


def layer_configs(block: Block) -> tuple[ExpandConfig | None, KxkConfig | None, ProjectConfig]:
    expand = None
    if block.block_type in (BlockType.DW_IBN, BlockType.GROUPED_IBN) \
            and block.pointwise_expansion > 1:
        expand = ExpandConfig(block.input_filters, block.kxk_in_channels)
    kxk = None
    if block.has_kxk_conv:
        family = {BlockType.DW_IBN: "dw", BlockType.GROUPED_IBN: "grouped"}.get(
            block.block_type, "fused")
        if family == "grouped" and block.pointwise_expansion == 1:
            family = "fused"  # e1 = 1: the group conv reads the block input, as gc_ibn
        kxk = KxkConfig(family, block.kernel_size, block.kxk_in_channels,
                        block.expanded_filters, block.groups, block.stride)
    return expand, kxk, ProjectConfig(block.expanded_filters, block.output_filters)


def _merge(cfgs: list, key, merged, max_branches: int | None, table: np.ndarray,
           column: int) -> list:
    """Masked configurations for a layer of more than `max_branches`: one per `key`
    (None stays None), `merged(list)` of its members; rewrites `table[:, column]`."""
    if max_branches is None or len(cfgs) <= max_branches:
        return cfgs
    keys = list(dict.fromkeys(key(c) for c in cfgs))  # first-seen order: None stays index 0
    remap = np.asarray([keys.index(key(c)) for c in cfgs], dtype=np.int32)
    table[:, column] = remap[table[:, column]]
    return [None if k is None else merged([c for c in cfgs if key(c) == k]) for k in keys]


def _merged_expand(cfgs: list[ExpandConfig]) -> ExpandConfig:
    return ExpandConfig(max(c.cin for c in cfgs), max(c.width for c in cfgs), masked=True)


def _merged_kxk(cfgs: list[KxkConfig]) -> KxkConfig:
    # Depthwise ignores `groups`: a zero input channel gives a zero output channel.
    groups = 1 if all(c.groups == 1 for c in cfgs) else 0
    return KxkConfig(cfgs[0].family, cfgs[0].kernel_size, max(c.cin for c in cfgs),
                     max(c.cout for c in cfgs), groups, cfgs[0].stride, masked=True)


def _merged_project(cfgs: list[ProjectConfig]) -> ProjectConfig:
    return ProjectConfig(max(c.cin for c in cfgs), max(c.cout for c in cfgs), masked=True)


def _shared_kernels(kxk_cfgs: list[KxkConfig]) -> dict[str, SharedKernel]:
    """One shared full kernel per family and size, as large as its largest reader (grouped
    ibn's group conv, for one, reads only its 1x1 expansion's width)."""
    reads: dict[str, list[KxkConfig]] = {}
    for c in kxk_cfgs:
        if c.family != "dw":
            reads.setdefault(f"{c.family}_{c.kernel_size}", []).append(c)
    return {name: make_shared_kernel(cfgs[0].kernel_size,
                                     [(c.cin, c.cout, c.groups) for c in cfgs])
            for name, cfgs in sorted(reads.items())}


def make_plan(space: SearchSpace,
              max_branches_per_layer: int | None = DEFAULT_MAX_BRANCHES_PER_LAYER
              ) -> SupernetPlan:
    """The plan of `space`. Layers of more configurations than `max_branches_per_layer`
    are masked (module docstring); None: every layer exact."""
    if max_branches_per_layer is not None and max_branches_per_layer < 1:
        raise ValueError(f"max_branches_per_layer: {max_branches_per_layer}; use at least 1, "
                         "or None for exact branches everywhere")
    stem_choices = _choices(space.stem_filters)
    def stem_row(chosen: dict) -> list[int]:
        width = chosen.get("stem.filters", stem_choices[0])
        return [stem_choices.index(width), width]

    stem_lookup = _lookup(space, ["stem.filters"], stem_row)
    blocks = []
    prev_name, prev_field = "stem.filters", space.stem_filters
    for s, stage in enumerate(space.stages):
        out_name = f"stages.{s}.filters"
        for b, spec in enumerate(stage.blocks):
            name = f"stages.{s}.blocks.{b}"
            field_names = [f"{name}.{f}" for f, _ in BLOCK_DECISION_FIELDS]
            expand_cfgs: list = [None]
            kxk_cfgs: list = [None]
            project_cfgs: list = []

            def row(chosen: dict, spec=spec, s=s, name=name, prev_name=prev_name,
                    prev_field=prev_field, stage=stage, out_name=out_name,
                    expand_cfgs=expand_cfgs, kxk_cfgs=kxk_cfgs,
                    project_cfgs=project_cfgs) -> list[int]:
                cin = chosen.get(prev_name, _choices(prev_field)[0])
                cout = chosen.get(out_name, _choices(stage.filters)[0])
                fields = {f: chosen.get(f"{name}.{f}", _choices(getattr(spec, f))[0])
                          for f, _ in BLOCK_DECISION_FIELDS}
                block = space.decode_block(spec, fields, cin, cout, s)
                if block.skipped:
                    return [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
                e, k, p = layer_configs(block)
                expand_width = e.width if e else block.input_filters
                return [index(expand_cfgs, e), index(kxk_cfgs, k), index(project_cfgs, p),
                        int(block.residual), 0, expand_width, k.cin if k else expand_width,
                        k.cout if k else expand_width, k.groups if k else 1, p.cout]

            lookup = _lookup(space, [prev_name, out_name, *field_names], row)
            if not project_cfgs:  # every combination skipped: give the switch a branch
                project_cfgs.append(ProjectConfig(1, 1))
            kernels = _shared_kernels(kxk_cfgs[1:])  # from the exact reads
            table, limit = lookup.table, max_branches_per_layer
            expand_cfgs = _merge(expand_cfgs, lambda c: c and "expand", _merged_expand, limit,
                                 table, EXPAND)
            kxk_cfgs = _merge(kxk_cfgs, lambda c: c and (c.family, c.kernel_size, c.stride),
                              _merged_kxk, limit, table, KXK)
            project_cfgs = _merge(project_cfgs, lambda c: "project", _merged_project, limit,
                                  table, PROJECT)
            in_width = max(_choices(prev_field))
            out_width = max(_choices(stage.filters))
            exp_width = max([in_width] + [c.width for c in expand_cfgs if c])
            mid_width = max([exp_width] + [c.cout for c in kxk_cfgs if c])
            warm = [d for d in space.decisions
                    if d.name.startswith(name + ".") and d.tag == OP]
            combos = np.array(list(itertools.product(*(range(d.num_choices) for d in warm))),
                              dtype=np.int32).reshape(-1, len(warm))
            blocks.append(BlockPlan(
                name, spec.stride, in_width, exp_width, mid_width, out_width,
                tuple(expand_cfgs), tuple(kxk_cfgs), tuple(project_cfgs), lookup,
                skippable=bool(lookup.table[:, SKIP].any()),
                can_residual=bool(lookup.table[:, RESIDUAL].any()),
                warm_positions=tuple(d.position for d in warm),
                warm_combos=combos,
                kernels=kernels,
            ))
            prev_name, prev_field = out_name, stage.filters
    head_choices = _choices(space.head_filters)
    head_cfgs: list[ProjectConfig] = []

    def head_row(chosen: dict) -> list[int]:
        cfg = ProjectConfig(chosen.get(prev_name, _choices(prev_field)[0]),
                            chosen.get("head.filters", head_choices[0]))
        return [index(head_cfgs, cfg)]

    head_lookup = _lookup(space, [prev_name, "head.filters"], head_row)
    return SupernetPlan(space.name, space.stem_kernel_size, space.stem_stride,
                        tuple(stem_choices), stem_lookup, tuple(blocks), tuple(head_cfgs),
                        head_lookup, max(head_choices))
