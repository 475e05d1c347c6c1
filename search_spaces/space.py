"""Declarative search spaces: a tree of stage and block specs with `OneOf` fields.

A `SearchSpace` is written once as data (see `search_spaces/definitions/`);
from it this module derives the fixed decision order, the decoding of an
index vector into a `ModelSpec`, which decisions are active on the chosen
path, uniform sampling, and a fingerprint that anything trained for one
space (a cost model, a checkpoint) stores so that another space is refused.

Decision names are dotted paths: `stem.filters`, `stages.2.filters`,
`stages.2.blocks.1.op`, `...kernel_size`, `...expansion_ratio`,
`...pointwise_expansion`, `...group_size`, `head.filters`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from search_spaces.blocks import GROUPED_TYPES, Block, BlockType, realize_groups
from search_spaces.decisions import FILTERS, OP, Decision, OneOf
from search_spaces.errors import SpecError
from search_spaces.model_spec import ModelSpec

Choice = Any  # a fixed value or a OneOf of values
Clause = tuple[tuple[int, tuple[int, ...]], ...]

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


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One block position. Any field but `stride` and `residual` may be a OneOf.

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
class SearchSpace:
    name: str
    stem_filters: Choice
    stem_kernel_size: int
    stem_stride: int
    stages: tuple[StageSpec, ...]
    head_filters: Choice
    default_image_size: int
    default_num_classes: int
    min_group_size: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        self._check()

    # ---- structure ----------------------------------------------------------
    def _check(self) -> None:
        for s, stage in enumerate(self.stages):
            for b, spec in enumerate(stage.blocks):
                where = f"space {self.name!r} stages.{s}.blocks.{b}"
                ops = [BlockType(o) for o in _choices(spec.op)]
                if BlockType.SKIP in ops and (b == 0 or spec.stride != 1):
                    raise SpecError(
                        f"{where}.op: skip is only allowed on non-first stride-1 blocks"
                    )
                if BlockType.GROUPED_IBN in ops:
                    for e1 in _choices(spec.pointwise_expansion):
                        for e in _choices(spec.expansion_ratio):
                            if e % e1:
                                raise SpecError(
                                    f"{where}.pointwise_expansion: {e1} does not divide "
                                    f"expansion {e}; make every e1 choice divide every e choice"
                                )

    @functools.cached_property
    def decisions(self) -> tuple[Decision, ...]:
        out: list[Decision] = []

        def visit(name: str, field: Choice, tag: str) -> None:
            if isinstance(field, OneOf):
                if field.tag != tag:
                    raise SpecError(f"space {self.name!r} {name}: tag must be {tag!r}, "
                                    f"got {field.tag!r}")
                out.append(Decision(name, len(out), field.choices, tag))

        visit("stem.filters", self.stem_filters, FILTERS)
        for s, stage in enumerate(self.stages):
            visit(f"stages.{s}.filters", stage.filters, FILTERS)
            for b, spec in enumerate(stage.blocks):
                for field, tag in BLOCK_DECISION_FIELDS:
                    visit(f"stages.{s}.blocks.{b}.{field}", getattr(spec, field), tag)
        visit("head.filters", self.head_filters, FILTERS)
        return tuple(out)

    @functools.cached_property
    def _position(self) -> dict[str, int]:
        return {d.name: d.position for d in self.decisions}

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
        def enc(field: Choice) -> Any:
            if isinstance(field, OneOf):
                return {"one_of": list(field.choices), "tag": field.tag}
            return field

        return {
            "name": self.name,
            "stem": {"filters": enc(self.stem_filters), "kernel_size": self.stem_kernel_size,
                     "stride": self.stem_stride},
            "stages": [
                {"filters": enc(st.filters),
                 "blocks": [{k: enc(v) for k, v in dataclasses.asdict(b).items()}
                            for b in st.blocks]}
                for st in self.stages
            ],
            "head": {"filters": enc(self.head_filters)},
            "min_group_size": self.min_group_size,
        }

    @functools.cached_property
    def fingerprint(self) -> str:
        """Hash of the space definition (not of its name or defaults)."""
        body = self.to_json()
        body.pop("name")
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

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
        vals = self.values(indices)

        def pick(name: str, field: Choice) -> Any:
            return vals[name] if isinstance(field, OneOf) else field

        stem = pick("stem.filters", self.stem_filters)
        blocks: list[Block] = []
        in_filters = stem
        for s, stage in enumerate(self.stages):
            out_filters = pick(f"stages.{s}.filters", stage.filters)
            for b, spec in enumerate(stage.blocks):
                p = f"stages.{s}.blocks.{b}."
                f = {k: pick(p + k, getattr(spec, k)) for k, _ in BLOCK_DECISION_FIELDS}
                blocks.append(self.decode_block(spec, f, in_filters, out_filters, s))
                in_filters = out_filters
        head = pick("head.filters", self.head_filters)
        return ModelSpec(stem, self.stem_kernel_size, self.stem_stride, tuple(blocks), head)

    def decode_block(self, spec: BlockSpec, f: dict[str, Any], cin: int, cout: int,
                     stage: int) -> Block:
        """One block from its spec, the chosen field values `f` (op, kernel_size,
        expansion_ratio, pointwise_expansion, group_size) and its widths."""
        block_type = BlockType(f["op"])
        if block_type == BlockType.SKIP:
            return Block(BlockType.SKIP, cin, cout, stride=1, stage=stage)
        e = f["expansion_ratio"]
        e1 = {BlockType.DW_IBN: e, BlockType.GROUPED_IBN: f["pointwise_expansion"]}.get(
            block_type, 1)
        residual = spec.residual and spec.stride == 1 and cin == cout
        if block_type == BlockType.FUSED_IBN and e == 1:
            return Block(block_type, cin, cout, spec.stride, None, 1, 1, None, residual, stage)
        if block_type == BlockType.DW_IBN:
            groups = cin * e
        elif block_type in GROUPED_TYPES:
            groups = realize_groups(cin * e1, cin * e, f["group_size"], self.min_group_size)
        else:
            groups = 1
        return Block(block_type, cin, cout, spec.stride, f["kernel_size"], e, e1, groups,
                     residual, stage)

    # ---- which decisions are on the chosen path -----------------------------
    @functools.cached_property
    def _inactive_rules(self) -> tuple[tuple[int, tuple[Clause, ...]], ...]:
        """Per decision position: the clauses that make it inactive (any one suffices).

        A clause is a conjunction of `indices[pos] in choice-set` terms; the
        empty clause always holds.
        """
        rules = []
        everything_but_grouped = [t for t in BlockType if t != BlockType.GROUPED_IBN]
        not_grouped = [t for t in BlockType if t not in GROUPED_TYPES]
        for s, stage in enumerate(self.stages):
            for b, spec in enumerate(stage.blocks):
                p = f"stages.{s}.blocks.{b}."
                ops = _op_clause(spec, self._position.get(p + "op"))
                skipped = ops([BlockType.SKIP])
                # No kxk conv in fused_ibn with expansion 1: its kernel is moot.
                fused_e1 = ops([BlockType.FUSED_IBN])
                e_choices = _choices(spec.expansion_ratio)
                e_pos = self._position.get(p + "expansion_ratio")
                if fused_e1 is not None and 1 in e_choices:
                    if e_pos is not None:
                        fused_e1 = (*fused_e1, (e_pos, (e_choices.index(1),)))
                else:
                    fused_e1 = None
                clauses = {
                    "kernel_size": [skipped, fused_e1],
                    "expansion_ratio": [skipped],
                    "pointwise_expansion": [ops(everything_but_grouped)],
                    "group_size": [ops(not_grouped)],
                }
                for field, field_clauses in clauses.items():
                    pos = self._position.get(p + field)
                    if pos is not None:
                        rules.append((pos, tuple(c for c in field_clauses if c is not None)))
        return tuple(sorted(rules))

    @functools.cached_property
    def conditional_positions(self) -> frozenset[int]:
        """Decision positions that some index vector leaves inactive."""
        return frozenset(pos for pos, clauses in self._inactive_rules if clauses)

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

        for pos, clauses in self._inactive_rules:
            for clause in clauses:
                for cpos, _ in clause:
                    parent[root(pos)] = root(cpos)
        groups: dict[int, list[int]] = {}
        for pos in range(self.num_decisions):
            groups.setdefault(root(pos), []).append(pos)
        return tuple(sorted(tuple(g) for g in groups.values()))

    def active_mask(self, indices: Any, xp: Any = np) -> Any:
        """Boolean [..., D]: which decisions are on the chosen path.

        Works on numpy or jax.numpy arrays (pass `xp=jnp`) of any batch shape,
        so the controller can count only active decisions inside `jax.jit`.
        """
        indices = xp.asarray(indices)
        columns = [xp.ones(indices.shape[:-1], dtype=bool) for _ in range(self.num_decisions)]
        for pos, clauses in self._inactive_rules:
            inactive = xp.zeros(indices.shape[:-1], dtype=bool)
            for clause in clauses:
                holds = xp.ones(indices.shape[:-1], dtype=bool)
                for cpos, allowed in clause:
                    holds = holds & xp.isin(indices[..., cpos], xp.asarray(allowed))
                inactive = inactive | holds
            columns[pos] = ~inactive
        return xp.stack(columns, axis=-1)

    # ---- membership ---------------------------------------------------------
    def encode(self, spec: ModelSpec) -> tuple[int, ...] | None:
        """Indices that decode to `spec`, or None if the network is not in the space.

        Decisions that `spec` leaves inactive get index 0.
        """
        if len(spec.blocks) != sum(len(st.blocks) for st in self.stages):
            return None
        values: dict[str, Any] = {}

        def want(name: str, field: Choice, value: Any) -> bool:
            if isinstance(field, OneOf):
                if value not in field.choices:
                    return False
                values[name] = value
                return True
            return field == value

        if not (want("stem.filters", self.stem_filters, spec.stem_filters)
                and want("head.filters", self.head_filters, spec.head_filters)):
            return None
        blocks = iter(spec.blocks)
        for s, stage in enumerate(self.stages):
            for b, bspec in enumerate(stage.blocks):
                block = next(blocks)
                p = f"stages.{s}.blocks.{b}."
                if b == 0 and not want(f"stages.{s}.filters", stage.filters, block.output_filters):
                    return None
                fields = {"op": str(block.block_type)}
                if not block.skipped:
                    fields["expansion_ratio"] = block.expansion_ratio
                if block.has_kxk_conv:
                    fields["kernel_size"] = block.kernel_size
                if block.block_type == BlockType.GROUPED_IBN:
                    fields["pointwise_expansion"] = block.pointwise_expansion
                for field, value in fields.items():
                    if not want(p + field, getattr(bspec, field), value):
                        return None
                if block.block_type in GROUPED_TYPES and isinstance(bspec.group_size, OneOf):
                    # The group size whose realized group count matches.
                    for size in bspec.group_size.choices:
                        if realize_groups(block.kxk_in_channels, block.expanded_filters, size,
                                          self.min_group_size) == block.groups:
                            values[p + "group_size"] = size
                            break
        for d in self.decisions:
            values.setdefault(d.name, d.choices[0])
        indices = self.indices_for(values)
        decoded = self.decode(indices)
        # `stage` is display-only; compare the networks themselves.
        strip = [dataclasses.replace(b, stage=0) for b in decoded.blocks]
        if strip != [dataclasses.replace(b, stage=0) for b in spec.blocks] or (
                decoded.stem_filters, decoded.stem_kernel_size, decoded.stem_stride,
                decoded.head_filters) != (spec.stem_filters, spec.stem_kernel_size,
                                          spec.stem_stride, spec.head_filters):
            return None
        return indices


def _choices(field: Choice) -> tuple[Any, ...]:
    return field.choices if isinstance(field, OneOf) else (field,)


def _op_clause(spec: BlockSpec, op_pos: int | None):
    """A function: block types -> the clause `op in types` (None: never holds)."""
    op_choices = tuple(BlockType(o) for o in _choices(spec.op))

    def clause(types: Sequence[BlockType]) -> Clause | None:
        if op_pos is None:  # fixed op: the clause is constant
            return () if op_choices[0] in types else None
        idx = tuple(i for i, t in enumerate(op_choices) if t in types)
        return ((op_pos, idx),) if idx else None

    return clause
