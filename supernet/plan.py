"""The supernet's static plan: every layer configuration a space can ask for.

Derived from the one lowering (`search_spaces.graph`): for each unit of the
space (stem, every block position, head) the plan enumerates all
combinations of the decisions that shape it (`SearchSpace.units`), lowers
each with `SearchSpace.unit_nodes`, and groups the nodes by `role` (for the
IBN types: 1x1 expand, kxk conv, 1x1 project). Each role becomes one
`lax.switch` over the distinct configurations seen at that role; a
configuration without a node at a role passes its tensor through. Nodes with
the same `weights` key share one tensor, as large as its largest reader. A
lookup table maps a combination (mixed-radix over the decision indices,
computed inside `jit`) to one branch per role, so the supernet is compiled
once and executes only the sampled child's shapes.

Strides: a role's output must have one spatial size whatever the branch. When
a configuration reaches the block's stride at a later role than another (a
fused IBN with expansion 1 strides in its 1x1 projection, not in a kxk conv),
its earlier branch subsamples and the later strided node runs at stride 1:
exact for a 1x1 conv with 'same' padding, and refused for anything else.

A role with more configurations than `max_branches_per_layer` is masked
instead: its configurations merge into one branch per weights key, kernel and
stride, run at the merged configurations' largest widths, and the child's
widths (and group count) come in traced, as TuNAS's masks. That keeps the
number of branches, and so trace and compile time, bounded.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import jax.numpy as jnp
import numpy as np

from search_spaces import Node, SearchSpace, Unit
from search_spaces.decisions import OP
from search_spaces.errors import SpecError
from search_spaces.schema import mixed_radix
from supernet.kernel_layout import SharedKernel, make_shared_kernel
from tasks import initializers

# The default: every layer of `micro` (at most 49) and `proxylessnas` runs exact.
DEFAULT_MAX_BRANCHES_PER_LAYER = 64


@dataclasses.dataclass(frozen=True)
class LayerConfig:
    """One branch of a role: conv `cin -> cout` (+BN, activation) reading shared weights
    `weights`, then a subsample of its output by `subsample` (for a later 1x1 strided
    node). `masked`: the widest of several configurations, run with the child's widths
    traced (`groups` 0: the child's group count is traced too)."""

    weights: str
    cin: int
    cout: int
    kernel_size: int
    stride: int
    groups: int
    activation: str | None
    depthwise: bool
    subsample: int = 1
    masked: bool = False


@dataclasses.dataclass(frozen=True)
class PassConfig:
    """No node at this role: the tensor passes on (subsampled by `subsample`)."""

    subsample: int = 1


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """How one shared weight tensor is stored: a 1x1 `matrix` [cin, cout], a
    `depthwise` kernel [k, k, 1, cout], or a kxk `shared` kernel (`layout`)."""

    kind: str
    kernel_size: int
    cin: int
    cout: int
    layout: SharedKernel | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        if self.kind == "matrix":
            return (self.cin, self.cout)
        if self.kind == "depthwise":
            return (self.kernel_size, self.kernel_size, 1, self.cout)
        return self.layout.shape

    @property
    def fan_in(self) -> int:
        """The He-normal fan_in (`tasks.initializers`): k*k for a depthwise kernel,
        k*k*cin otherwise. A shared kxk kernel gets its full kernel's (TuNAS's masked
        convs take their fans from the largest choice); a g-group conv that reads it
        alone would get k*k*cin/g standalone."""
        return initializers.conv_fan_in(self.kernel_size, self.cin,
                                        depthwise=self.kind == "depthwise")


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
class UnitPlan:
    """The switches of one unit. Lookup row columns: the branch of each role, then
    residual and skip flags, then (cin, cout, groups) of the child at each role."""

    name: str
    kind: str
    roles: tuple[str, ...]
    branches: tuple[tuple[LayerConfig | PassConfig, ...], ...]  # per role
    in_width: int                  # carried (largest) widths
    widths: tuple[int, ...]        # after each role
    lookup: Lookup
    skippable: bool
    can_residual: bool
    weights: dict[str, WeightSpec]  # in initialization order
    # Op warmup: positions of the unit's OP decisions and every combination of their
    # choice indices ([M, len(positions)]).
    warm_positions: tuple[int, ...] = ()
    warm_combos: np.ndarray | None = None
    # Where each OP decision is mixed when warm (`_warm_sites`): `warm_local[r]` are the
    # decisions that change only role r's switch (a kernel size, a group size), mixed at
    # that switch; `warm_structural` change several roles, the residual or the skip (the
    # block type), mixed over the whole unit. `*_combos`: every combination of their
    # choice indices.
    warm_structural: tuple[int, ...] = ()
    warm_structural_combos: np.ndarray | None = None
    warm_local: tuple[tuple[int, ...], ...] = ()
    warm_local_combos: tuple[np.ndarray | None, ...] = ()

    @property
    def out_width(self) -> int:
        return self.widths[-1] if self.widths else self.in_width

    @property
    def residual_column(self) -> int:
        return len(self.roles)

    @property
    def skip_column(self) -> int:
        return len(self.roles) + 1

    def config_columns(self, role: int) -> tuple[int, int, int]:
        """Columns of the child's (cin, cout, groups) at role `role`."""
        base = len(self.roles) + 2 + 3 * role
        return base, base + 1, base + 2


@dataclasses.dataclass(frozen=True)
class SupernetPlan:
    space_name: str
    input_channels: int
    units: tuple[UnitPlan, ...]    # stem, blocks, head
    # Endpoint name -> index of the unit whose output it is (the last at each stride).
    endpoints: dict[str, int]
    # The task head's searched settings: their decision positions and {name: choices}.
    head_positions: tuple[int, ...] = ()
    head_choices: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    @property
    def blocks(self) -> tuple[UnitPlan, ...]:
        return tuple(u for u in self.units if u.kind == "block")

    @property
    def endpoint_widths(self) -> dict[str, int]:
        return {name: self.units[i].out_width for name, i in self.endpoints.items()}


def _config(node: Node, stride: int, subsample: int) -> LayerConfig:
    return LayerConfig(node.weights, node.cin, node.cout, node.kernel_size, stride,
                       node.groups, node.activation, node.depthwise, subsample)


def _merge_roles(orders: list[tuple[str, ...]], where: str) -> tuple[str, ...]:
    """One role order consistent with every configuration's own order."""
    merged: list[str] = []
    for order in orders:
        at = 0
        for role in order:
            if role in merged:
                at = merged.index(role) + 1
            else:
                merged.insert(at, role)
                at += 1
    for order in orders:
        ranks = [merged.index(r) for r in order]
        if ranks != sorted(ranks):
            raise SpecError(f"{where}: block types order their roles differently ({orders}); "
                            "give shared roles one order")
    return tuple(merged)


def _merge(cfgs: list, limit: int | None, table: np.ndarray, column: int) -> list:
    """Masked configurations for a role of more than `limit` branches: one per weights key,
    kernel, stride and subsample (pass-throughs stay); rewrites `table[:, column]`."""
    if limit is None or len(cfgs) <= limit:
        return cfgs

    def key(c):
        return c if isinstance(c, PassConfig) else (c.weights, c.kernel_size, c.stride,
                                                    c.subsample, c.activation, c.depthwise)

    keys = list(dict.fromkeys(key(c) for c in cfgs))
    remap = np.asarray([keys.index(key(c)) for c in cfgs], dtype=np.int32)
    table[:, column] = remap[table[:, column]]
    merged = []
    for k in keys:
        members = [c for c in cfgs if key(c) == k]
        if isinstance(k, PassConfig):
            merged.append(k)
            continue
        first = members[0]
        # Depthwise ignores `groups`: a zero input channel gives a zero output channel.
        groups = 1 if all(c.groups == 1 for c in members) else 0
        merged.append(dataclasses.replace(
            first, cin=max(c.cin for c in members), cout=max(c.cout for c in members),
            groups=first.groups if first.depthwise else groups, masked=True))
    return merged


def _weight_specs(readers: dict[str, list[LayerConfig]], where: str) -> dict[str, WeightSpec]:
    """One stored tensor per weights key, as large as its largest reader."""
    out = {}
    for key, cfgs in readers.items():
        k = cfgs[0].kernel_size
        if any(c.kernel_size != k for c in cfgs):
            raise SpecError(f"{where}: weights {key!r} are read with kernel sizes "
                            f"{sorted({c.kernel_size for c in cfgs})}; one key, one kernel size")
        depthwise = {c.depthwise for c in cfgs}
        if len(depthwise) > 1:
            raise SpecError(f"{where}: weights {key!r} are read by depthwise and full convs; "
                            "give them different keys")
        cin, cout = max(c.cin for c in cfgs), max(c.cout for c in cfgs)
        if depthwise == {True}:
            out[key] = WeightSpec("depthwise", k, cout, cout)
        elif k == 1 and all(c.groups == 1 for c in cfgs):
            out[key] = WeightSpec("matrix", 1, cin, cout)
        else:
            out[key] = WeightSpec("shared", k, cin, cout, make_shared_kernel(
                k, [(c.cin, c.cout, c.groups) for c in cfgs]))
    return out


def _unit_plan(space: SearchSpace, unit: Unit, limit: int | None, input_channels: int,
               in_width: int) -> UnitPlan:
    where = f"space {space.name!r} {unit.name}"
    positions = unit.positions
    counts = [space.num_choices[p] for p in positions]
    combos = []
    for combo in itertools.product(*(range(c) for c in counts)):
        row = np.zeros(space.num_decisions, np.int64)
        row[list(positions)] = combo
        nodes = space.unit_nodes(unit, row, input_channels)
        adds = [n for n in nodes if n.op == "add"]
        convs = [n for n in nodes if n.op != "add"]
        if adds and (len(adds) > 1 or nodes[-1] is not adds[0]
                     or set(adds[0].inputs) != {convs[-1].name, "block_input"}):
            raise SpecError(f"{where}: the supernet runs a residual only as the block's last "
                            "node, adding the block input to the previous node")
        if len({n.role for n in convs}) != len(convs):
            raise SpecError(f"{where}: two nodes of one configuration share a role "
                            f"({[n.role for n in convs]}); give each its own role")
        combos.append((convs, bool(adds)))
    roles = _merge_roles([tuple(n.role for n in convs) for convs, _ in combos], where)
    # The carried tensor's stride after each role: the most any configuration reached.
    target = [1] * len(roles)
    for convs, _ in combos:
        by_role, stride = {n.role: n for n in convs}, 1
        for r, role in enumerate(roles):
            stride *= by_role[role].stride if role in by_role else 1
            target[r] = max(target[r], stride)
    branches: list[list] = [[] for _ in roles]
    readers: dict[str, list[LayerConfig]] = {}
    key_role: dict[str, int] = {}  # weights key -> its role (initialization order)
    rows = []
    for convs, residual in combos:
        if not convs:  # the identity: a skipped block
            rows.append([0] * len(roles) + [0, 1] + [0] * 3 * len(roles))
            continue
        by_role = {n.role: n for n in convs}
        applied = natural = 1
        picks, child = [], []
        width = convs[0].cin
        for r, role in enumerate(roles):
            node = by_role.get(role)
            deficit = applied // natural
            if node is None:
                out_stride = applied
            else:
                if deficit > 1 and (node.kernel_size != 1 or node.stride % deficit):
                    raise SpecError(f"{where}: {node.name} reads a tensor another "
                                    "configuration already strided, and only a 1x1 conv can "
                                    "take its stride early; move the stride to the same role")
                natural *= node.stride
                out_stride = applied * (node.stride // deficit if deficit > 1 else node.stride)
            subsample = target[r] // out_stride
            if node is None:
                cfg: Any = PassConfig(subsample)
                child.append((width, width, 1))
            else:
                cfg = _config(node, node.stride // deficit if deficit > 1 else node.stride,
                              subsample)
                readers.setdefault(node.weights, []).append(cfg)
                key_role.setdefault(node.weights, r)
                child.append((node.cin, node.cout, node.groups))
                width = node.cout
            applied = target[r]
            if cfg not in branches[r]:
                branches[r].append(cfg)
            picks.append(branches[r].index(cfg))
        if applied != natural:
            raise SpecError(f"{where}: configurations end at different strides "
                            f"({applied} vs {natural})")
        rows.append(picks + [int(residual), 0] + [v for c in child for v in c])
    table = np.asarray(rows, dtype=np.int32).reshape(len(rows), -1)
    for r in range(len(roles)):
        if not branches[r]:
            branches[r].append(PassConfig())
        branches[r] = _merge(branches[r], limit, table, r)
    # Carried widths: the widest output of each role (a pass-through keeps its input's).
    widths, width = [], in_width
    for r in range(len(roles)):
        width = max([width if any(isinstance(c, PassConfig) for c in branches[r]) else 0]
                    + [c.cout for c in branches[r] if isinstance(c, LayerConfig)])
        widths.append(width)
    weights = _weight_specs({k: readers[k] for k in sorted(readers, key=lambda k: (
        key_role[k], k))}, where)
    lookup = Lookup(positions, mixed_radix(counts), table)
    warm = [p for p in unit.own_positions if space.decisions[p].tag == OP]
    sites = _warm_sites(lookup, counts, len(roles), warm)
    structural = [p for p in warm if p in sites and sites[p] is None]
    local = tuple(tuple(p for p in warm if sites.get(p) == r) for r in range(len(roles)))
    return UnitPlan(unit.name, unit.kind, roles, tuple(tuple(b) for b in branches), in_width,
                    tuple(widths), lookup,
                    skippable=bool(table[:, len(roles) + 1].any()),
                    can_residual=bool(table[:, len(roles)].any()), weights=weights,
                    warm_positions=tuple(warm), warm_combos=_combos(space, warm),
                    warm_structural=tuple(structural),
                    warm_structural_combos=_combos(space, structural), warm_local=local,
                    warm_local_combos=tuple(_combos(space, list(ps)) for ps in local))


def _combos(space: SearchSpace, positions: list[int]) -> np.ndarray | None:
    """Every combination of the choice indices at `positions` ([M, len(positions)])."""
    if not positions:
        return None
    return np.array(list(itertools.product(*(range(space.num_choices[p]) for p in positions))),
                    dtype=np.int32).reshape(-1, len(positions))


def _warm_sites(lookup: Lookup, num_choices: list[int], num_roles: int, warm: list[int]
                ) -> dict[int, int | None]:
    """For each warm position, the one role whose switch it alone changes (TuNAS mixes a
    OneOf where it sits: a kernel size at its conv), or None when it changes more (the
    residual, the skip, several roles: the block type, mixed over the whole unit).
    `num_choices`: per lookup position. A decision that changes nothing here is left out."""
    table = lookup.table
    role_of_column = np.full(table.shape[1], -1)  # residual and skip flags: -1
    role_of_column[:num_roles] = np.arange(num_roles)
    for r in range(num_roles):
        base = num_roles + 2 + 3 * r
        role_of_column[base:base + 3] = r
    combo = np.arange(len(table))
    sites: dict[int, int | None] = {}
    for pos in warm:
        if pos not in lookup.positions:
            continue
        j = lookup.positions.index(pos)
        radix, n = lookup.radices[j], num_choices[j]
        current = (combo // radix) % n
        changed = np.zeros(table.shape[1], bool)
        for c in range(n):  # every row against the same row with choice c at pos
            changed |= (table[combo] != table[combo + (c - current) * radix]).any(axis=0)
        roles = set(role_of_column[changed].tolist())
        if roles:
            sites[pos] = roles.pop() if len(roles) == 1 and -1 not in roles else None
    return sites


def make_plan(space: SearchSpace,
              max_branches_per_layer: int | None = DEFAULT_MAX_BRANCHES_PER_LAYER,
              input_channels: int = 3) -> SupernetPlan:
    """The plan of `space`. Roles of more configurations than `max_branches_per_layer`
    are masked (module docstring); None: every layer exact."""
    if max_branches_per_layer is not None and max_branches_per_layer < 1:
        raise ValueError(f"max_branches_per_layer: {max_branches_per_layer}; use at least 1, "
                         "or None for exact branches everywhere")
    units, width = [], input_channels
    for unit in space.units:
        plan = _unit_plan(space, unit, max_branches_per_layer, input_channels, width)
        units.append(plan)
        width = plan.out_width
    head = space.units[-1]
    return SupernetPlan(space.name, input_channels, tuple(units), dict(space.endpoint_units),
                        tuple(s.position for _, s in head.task_fields),
                        tuple((k, s.choices) for k, s in head.task_fields))
