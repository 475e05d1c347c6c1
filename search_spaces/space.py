"""Search spaces of the IBN backbone family: a tree of stage and block specs with `OneOf`s.

A `SearchSpace` is written once as data (see `search_spaces/definitions/`):
stem conv -> stages of blocks -> 1x1 head conv, any field of which may be a
`OneOf`. The generic tree machinery (`search_spaces.schema`) gives the
decision order, names and fingerprint; this module adds what the backbone
family means:

- `units`: the stem, every block position and the head, each with the
  decision positions that shape it (input width, output width, its own
  fields). Every consumer that needs the structure (the supernet plan, the
  fast coster, the regressor's features) reads units, never decision names.
- `decode(indices)`: the concrete `ModelSpec`; `unit_nodes(unit, indices)`:
  one unit's lowered layers (`search_spaces.graph`), without decoding the rest.
- `active_mask`: which decisions are on the chosen path. Derived, not
  written: a decision nested in a choice not taken is inactive
  (`schema.Decision.parent`), and a block field the chosen block type does not
  read (`BlockKind.reads`) is inactive.

Decision names are the tree paths: `stem.filters`, `stages.2.filters`,
`stages.2.blocks.1.op`, `...kernel_size`, `...expansion_ratio`,
`...pointwise_expansion`, `...group_size`, `head.filters`, and the task head's
searched settings `head.task.<setting>` (e.g. the BiFPN's repeats and minimum
level: `SearchSpace.head_task`). Those are the head unit's `task_fields`, not
its `fields`: they shape the task's head (`Task.with_head`), not the backbone's
layers, so the supernet plan ignores them and the coster keys the head segment
on them.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from search_spaces import schema
from search_spaces.block_types import DECISION_FIELDS, get_block_type
from search_spaces.blocks import Block
from search_spaces.errors import SpecError
from search_spaces.graph import Node, block_nodes, head_node, stem_node
from search_spaces.model_spec import ModelSpec
from search_spaces.schema import FILTERS, OP, Decision, OneOf

Choice = Any  # a fixed value or a OneOf of values

# Block fields that may be decisions, in traversal order, with their tag. As in
# TuNAS, expansion is a filter decision (filter warmup forces the largest);
# the op, kernel and group size are op decisions (op warmup averages them).
BLOCK_DECISION_FIELDS = (
    ("op", OP),
    ("kernel_size", OP),
    ("expansion_ratio", FILTERS),
    ("pointwise_expansion", FILTERS),
    ("group_size", OP),
)
# The tag of a decision by its field's name (a declared space tags its lists by it).
TAG_OF = {"filters": FILTERS, **dict(BLOCK_DECISION_FIELDS)}


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One block position. Any field but `stride` and `residual` may be a OneOf.

    `op` names a registered block type (`search_spaces.block_types`).
    `group_size` is the requested output channels per group of the kxk group
    conv (used by gc_ibn and grouped_ibn); `pointwise_expansion` is e1 of
    grouped_ibn and must divide every expansion ratio choice.
    """

    op: Choice
    kernel_size: Choice = 3
    expansion_ratio: Choice = 4
    pointwise_expansion: Choice = 2
    group_size: Choice = 64
    stride: int = 1
    residual: bool = True


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """A block group sharing one output width (`filters`: int or OneOf of ints)."""

    filters: Choice
    blocks: tuple[BlockSpec, ...]


@dataclasses.dataclass(frozen=True)
class StemSpec:
    filters: Choice
    kernel_size: int
    stride: int


class Settings(Mapping):
    """A hashable, ordered mapping of setting name -> value or OneOf (the task head's
    searched settings inside the frozen spec tree)."""

    def __init__(self, pairs: Sequence[tuple[str, Any]] = ()) -> None:
        self._pairs = tuple((str(k), v) for k, v in pairs)

    def __getitem__(self, key: str) -> Any:
        return dict(self._pairs)[key]

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __hash__(self) -> int:
        return hash(self._pairs)


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    filters: Choice
    task: Settings = dataclasses.field(default_factory=Settings)


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """The model-family spec the decisions live in (what `schema.walk` traverses)."""

    stem: StemSpec
    stages: tuple[StageSpec, ...]
    head: HeadSpec
    min_group_size: int = 1


@dataclasses.dataclass(frozen=True)
class Slot:
    """One input of a unit: a decision position (None: fixed) and its possible values."""

    position: int | None
    choices: tuple[Any, ...]

    def value(self, indices: Any) -> Any:
        if self.position is None:
            return self.choices[0]
        return self.choices[int(indices[self.position])]


@dataclasses.dataclass(frozen=True)
class Unit:
    """The stem, one block position, or the head, and the decisions that shape it."""

    name: str                      # "stem", "stages.{s}.blocks.{b}", "head"
    kind: str                      # "stem" | "block" | "head"
    index: int                     # block index in network order (-1 for stem/head)
    stage: int
    stride: int
    input_width: Slot              # the stem's input width is the image's channels (None)
    output_width: Slot
    fields: tuple[tuple[str, Slot], ...] = ()  # a block's BlockSpec fields, op first
    spec: BlockSpec | None = None
    # The head's: the task head's searched settings (module docstring).
    task_fields: tuple[tuple[str, Slot], ...] = ()

    @property
    def task_positions(self) -> tuple[int, ...]:
        return tuple(s.position for _, s in self.task_fields if s.position is not None)

    @property
    def field_slots(self) -> dict[str, Slot]:
        return dict(self.fields)

    @property
    def own_positions(self) -> tuple[int, ...]:
        """Decision positions of the unit's own fields (not its widths)."""
        return tuple(s.position for _, s in self.fields if s.position is not None)

    @property
    def positions(self) -> tuple[int, ...]:
        """Every decision position the unit's layers depend on, without repeats."""
        slots = [self.input_width, self.output_width, *(s for _, s in self.fields)]
        return tuple(dict.fromkeys(s.position for s in slots if s.position is not None))


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    name: str
    stem_filters: Choice
    stem_kernel_size: int
    stem_stride: int
    stages: tuple[StageSpec, ...]
    head_filters: Choice
    default_image_size: int
    # The class count a network of the space is costed at when no task says otherwise
    # (e.g. 1001 for the ImageNet spaces); the search and training take the dataset's.
    default_num_classes: int
    min_group_size: int = 1
    description: str = ""
    # The task head's searched settings: (setting name, value or OneOf) pairs, passed to
    # `Task.with_head` (e.g. (("bifpn_num_repeats", OneOf((1, 2), FILTERS)), ...)).
    head_task: tuple[tuple[str, Choice], ...] = ()

    def __post_init__(self) -> None:
        self._check()

    # ---- structure ----------------------------------------------------------
    @functools.cached_property
    def spec(self) -> BackboneSpec:
        return BackboneSpec(StemSpec(self.stem_filters, self.stem_kernel_size, self.stem_stride),
                            tuple(self.stages),
                            HeadSpec(self.head_filters, Settings(self.head_task)),
                            self.min_group_size)

    def _check(self) -> None:
        for s, stage in enumerate(self.stages):
            for b, spec in enumerate(stage.blocks):
                where = f"space {self.name!r} stages.{s}.blocks.{b}"
                ops = [str(get_block_type(o).name) for o in schema.choices(spec.op)]
                if "skip" in ops and (b == 0 or spec.stride != 1):
                    raise SpecError(
                        f"{where}.op: skip is only allowed on non-first stride-1 blocks"
                    )
                if "grouped_ibn" in ops:
                    for e1 in schema.choices(spec.pointwise_expansion):
                        for e in schema.choices(spec.expansion_ratio):
                            if e % e1:
                                raise SpecError(
                                    f"{where}.pointwise_expansion: {e1} does not divide "
                                    f"expansion {e}; make every e1 choice divide every e choice"
                                )
        for d in self.decisions:
            tag = TAG_OF.get(d.name.rsplit(".", 1)[-1])
            if d.parent is None and tag is not None and d.tag != tag:
                raise SpecError(f"space {self.name!r} {d.name}: tag must be {tag!r}, "
                                f"got {d.tag!r}")

    @functools.cached_property
    def decisions(self) -> tuple[Decision, ...]:
        return schema.walk(self.spec)

    @functools.cached_property
    def _position(self) -> dict[str, int]:
        return {d.name: d.position for d in self.decisions}

    def _slot(self, name: str, field: Choice) -> Slot:
        return Slot(self._position.get(name), schema.choices(field))

    @functools.cached_property
    def units(self) -> tuple[Unit, ...]:
        """Stem, block positions in network order, head."""
        stem = self._slot("stem.filters", self.stem_filters)
        units = [Unit("stem", "stem", -1, -1, self.stem_stride, Slot(None, (0,)), stem)]
        previous, index = stem, 0
        for s, stage in enumerate(self.stages):
            width = self._slot(f"stages.{s}.filters", stage.filters)
            for b, spec in enumerate(stage.blocks):
                name = f"stages.{s}.blocks.{b}"
                fields = tuple((f, self._slot(f"{name}.{f}", getattr(spec, f)))
                               for f, _ in BLOCK_DECISION_FIELDS)
                units.append(Unit(name, "block", index, s, spec.stride, previous, width,
                                  fields, spec))
                previous, index = width, index + 1
        task = tuple((k, self._slot(f"head.task.{k}", v)) for k, v in self.head_task)
        units.append(Unit("head", "head", -1, -1, 1, previous,
                          self._slot("head.filters", self.head_filters), task_fields=task))
        return tuple(units)

    def head_values(self, indices: Any) -> tuple[tuple[str, Any], ...]:
        """The task head's settings an index vector picks (sorted (name, value) pairs)."""
        return tuple(sorted((k, s.value(indices)) for k, s in self.units[-1].task_fields))

    @functools.cached_property
    def endpoint_units(self) -> dict[str, int]:
        """Endpoint name -> index of the unit whose output it is: `stride_S`, the last unit
        at cumulative stride S, and `features`, the head (as `graph.lower` names them)."""
        out, stride = {}, 1
        for i, unit in enumerate(self.units[:-1]):
            stride *= unit.stride
            out[f"stride_{stride}"] = i
        out["features"] = len(self.units) - 1
        return out

    @property
    def block_units(self) -> tuple[Unit, ...]:
        return tuple(u for u in self.units if u.kind == "block")

    @property
    def num_decisions(self) -> int:
        return len(self.decisions)

    @property
    def num_choices(self) -> tuple[int, ...]:
        return tuple(d.num_choices for d in self.decisions)

    @property
    def size(self) -> int:
        """Number of index vectors (TuNAS's count; inactive decisions included)."""
        return math.prod(self.num_choices)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, **_legacy_json(self.spec)}

    @functools.cached_property
    def fingerprint(self) -> str:
        """Hash of the space definition (not of its name or defaults)."""
        return schema.fingerprint(_legacy_json(self.spec))

    # ---- indices ------------------------------------------------------------
    def check_indices(self, indices: Sequence[int]) -> tuple[int, ...]:
        indices = tuple(int(i) for i in indices)
        if len(indices) != self.num_decisions:
            raise SpecError(
                f"indices: {len(indices)} given but space {self.name!r} has "
                f"{self.num_decisions} decisions"
            )
        for d, i in zip(self.decisions, indices, strict=True):
            if not 0 <= i < d.num_choices:
                raise SpecError(
                    f"indices: decision {d.name!r} index {i} is out of range "
                    f"[0, {d.num_choices - 1}]"
                )
        return indices

    def indices_for(self, values: dict[str, Any]) -> tuple[int, ...]:
        """Indices from a {decision name: value} mapping naming every decision."""
        missing = [d.name for d in self.decisions if d.name not in values]
        unknown = sorted(set(values) - set(self._position))
        if missing or unknown:
            raise SpecError(f"values: missing decisions {missing}, unknown names {unknown}")
        return tuple(d.index_of(values[d.name]) for d in self.decisions)

    def values(self, indices: Sequence[int]) -> dict[str, Any]:
        indices = self.check_indices(indices)
        return {d.name: d.choices[i] for d, i in zip(self.decisions, indices, strict=True)}

    def sample(self, rng: np.random.Generator, num: int | None = None) -> np.ndarray:
        """Uniform index vectors, shape [num, D] (or [D] when num is None)."""
        n = 1 if num is None else num
        out = np.stack([rng.integers(0, k, size=n) for k in self.num_choices], axis=-1)
        return out[0] if num is None else out

    # ---- decoding -----------------------------------------------------------
    def decode(self, indices: Sequence[int]) -> ModelSpec:
        """The concrete network of an index vector (every index vector is valid)."""
        indices = self.check_indices(indices)
        blocks = tuple(self.unit_block(u, indices) for u in self.block_units)
        return ModelSpec(self.units[0].output_width.value(indices), self.stem_kernel_size,
                         self.stem_stride, blocks, self.units[-1].output_width.value(indices),
                         self.head_values(indices))

    def unit_block(self, unit: Unit, indices: Any) -> Block:
        """The decoded block of a block unit (reads only the unit's decisions)."""
        values = {f: slot.value(indices) for f, slot in unit.fields}
        kind = get_block_type(values["op"])
        return kind.decode(unit.spec, values, unit.input_width.value(indices),
                           unit.output_width.value(indices), unit.stage, self.min_group_size)

    def unit_nodes(self, unit: Unit, indices: Any, input_channels: int = 3) -> tuple[Node, ...]:
        """The lowered layers of one unit (names as in the whole network's graph)."""
        if unit.kind == "stem":
            return (stem_node(input_channels, unit.output_width.value(indices),
                              self.stem_kernel_size, self.stem_stride),)
        if unit.kind == "head":
            return (head_node(unit.input_width.value(indices), unit.output_width.value(indices),
                              "features_in"),)
        return block_nodes(self.unit_block(unit, indices), unit.index, "block_input")

    # ---- which decisions are on the chosen path -----------------------------
    @functools.cached_property
    def _activity_tables(self) -> tuple[tuple[tuple[int, ...], tuple[int, ...], np.ndarray],
                                        ...]:
        """Per block unit with decisions: (own positions, radices, table [codes, own])
        where table[code, j] says whether own decision j is active for that choice."""
        out = []
        for unit in self.block_units:
            positions = unit.own_positions
            if not positions:
                continue
            slots = [s for _, s in unit.fields if s.position is not None]
            names = [f for f, s in unit.fields if s.position is not None]
            fixed = {f: s.choices[0] for f, s in unit.fields if s.position is None}
            rows = []
            for combo in itertools.product(*(range(len(s.choices)) for s in slots)):
                values = {**fixed, **{f: s.choices[i] for f, s, i in zip(names, slots, combo,
                                                                        strict=True)}}
                reads = get_block_type(values["op"]).reads(values) | {"op"}
                rows.append([f in reads for f in names])
            radices = schema.mixed_radix([len(s.choices) for s in slots])
            out.append((positions, radices, np.asarray(rows, dtype=bool)))
        return tuple(out)

    def active_mask(self, indices: Any, xp: Any = np) -> Any:
        """Boolean [..., D]: which decisions are on the chosen path.

        Works on numpy or jax.numpy arrays (pass `xp=jnp`) of any batch shape,
        so the controller can count only active decisions inside `jax.jit`.
        """
        indices = xp.asarray(indices)
        batch = indices.shape[:-1]
        columns: list[Any] = [xp.ones(batch, dtype=bool) for _ in range(self.num_decisions)]
        for positions, radices, table in self._activity_tables:
            if table.all():
                continue
            code = sum(indices[..., p] * r for p, r in zip(positions, radices, strict=True))
            active = xp.asarray(table)[code]
            for j, p in enumerate(positions):
                if not table[:, j].all():
                    columns[p] = active[..., j]
        columns = schema.nested_active(self.decisions, indices, columns, xp)
        return xp.stack(columns, axis=-1)

    @functools.cached_property
    def conditional_positions(self) -> frozenset[int]:
        """Decision positions that some index vector leaves inactive."""
        out = {d.position for d in self.decisions if d.parent is not None}
        for positions, _, table in self._activity_tables:
            out.update(p for j, p in enumerate(positions) if not table[:, j].all())
        return frozenset(out)

    @functools.cached_property
    def decision_groups(self) -> tuple[tuple[int, ...], ...]:
        """Positions partitioned into groups whose activity depends only on their own
        group (a block's op and the kernel/expansion/group size it may switch off;
        every unconditional decision alone), in position order. Distributions that
        factor over decisions factor over these groups, active paths included."""
        parent = list(range(self.num_decisions))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        def join(a: int, b: int) -> None:
            parent[root(a)] = root(b)

        for positions, _, table in self._activity_tables:
            grid = table.reshape(*(self.num_choices[p] for p in positions), len(positions))
            for j, p in enumerate(positions):
                for axis, q in enumerate(positions):
                    # p's activity depends on q if varying q alone can change it.
                    if q != p and grid.shape[axis] > 1 and np.any(
                            np.diff(grid[..., j], axis=axis) != 0):
                        join(p, q)
        for d in self.decisions:
            if d.parent is not None:
                join(d.position, d.parent[0])
        groups: dict[int, list[int]] = {}
        for pos in range(self.num_decisions):
            groups.setdefault(root(pos), []).append(pos)
        return tuple(sorted(tuple(g) for g in groups.values()))

    # ---- membership ---------------------------------------------------------
    def encode(self, spec: ModelSpec) -> tuple[int, ...] | None:
        """Indices that decode to `spec`, or None if the network is not in the space.

        Inactive decisions get the lowest index that decodes to the network
        (index 0 where any does).
        """
        units = self.units
        if len(spec.blocks) != len(units) - 2:
            return None
        indices = [0] * self.num_decisions

        def want(slot: Slot, value: Any) -> bool:
            if value not in slot.choices:
                return False
            if slot.position is not None:
                indices[slot.position] = slot.choices.index(value)
            return True

        task = dict(spec.task_head)
        if set(task) != {k for k, _ in units[-1].task_fields} or not all(
                want(slot, task[k]) for k, slot in units[-1].task_fields):
            return None
        if not (want(units[0].output_width, spec.stem_filters)
                and want(units[-1].output_width, spec.head_filters)
                and (spec.stem_kernel_size, spec.stem_stride) == (self.stem_kernel_size,
                                                                  self.stem_stride)):
            return None
        for unit, block in zip(units[1:-1], spec.blocks, strict=True):
            if not want(unit.output_width, block.output_filters):
                return None
            slots = [s for _, s in unit.fields if s.position is not None]
            target = dataclasses.replace(block, stage=0)
            for combo in itertools.product(*(range(len(s.choices)) for s in slots)):
                for s, i in zip(slots, combo, strict=True):
                    indices[s.position] = i
                try:
                    found = self.unit_block(unit, indices)
                except SpecError:
                    continue
                if dataclasses.replace(found, stage=0) == target:
                    break
            else:
                return None
        return tuple(indices)


def _legacy_json(spec: BackboneSpec) -> dict[str, Any]:
    """The space's JSON as format 1 wrote it (and hashed for fingerprints): block fields
    as {"choices", "tag"}, stem/stage/head widths as {"one_of", "tag"}. Kept so that
    every existing fingerprint, architecture file and cost model stays valid."""

    def enc(field: Choice) -> Any:
        return schema.to_json(field)

    def block(b: BlockSpec) -> dict[str, Any]:
        return {k: ({"choices": list(v.choices), "tag": v.tag} if isinstance(v, OneOf) else v)
                for k, v in ((f.name, getattr(b, f.name)) for f in dataclasses.fields(b))}

    return {
        "stem": {"filters": enc(spec.stem.filters), "kernel_size": spec.stem.kernel_size,
                 "stride": spec.stem.stride},
        "stages": [{"filters": enc(st.filters), "blocks": [block(b) for b in st.blocks]}
                   for st in spec.stages],
        "head": {"filters": enc(spec.head.filters),
                 **({"task": enc(spec.head.task)} if spec.head.task else {})},
        "min_group_size": spec.min_group_size,
    }


__all__ = ["BLOCK_DECISION_FIELDS", "DECISION_FIELDS", "BackboneSpec", "BlockSpec", "HeadSpec",
           "SearchSpace", "Slot", "StageSpec", "StemSpec", "Unit"]
