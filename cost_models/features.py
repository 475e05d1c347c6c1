"""One-hot features of an architecture's decision indices, for the learned cost model.

The features are the concatenated one-hot encoding of the decisions, with the
inactive decisions zeroed (`SearchSpace.active_mask`): the kernel of a skipped
block cannot change latency, so two index vectors that decode to the same
network get the same features. With `kronecker=True` they also hold
Kronecker features after TuNAS (Bender et al. 2020): one-hots of joint choices, per
block (input filters x op choices) and (input filters x output filters x op
x expansion), and for the head (last stage filters x head filters). Each
layer's cost is a function of one of those tuples, so a linear model over
these features is TuNAS's additive cost model, and an MLP over them only has
to learn what is not additive (the on-chip weight cache, say).

Every feature group is a categorical *field* (one decision, or one block's
joint choice). Its one-hot is never materialized: `field_ids` returns, per
field, the row of the single 1 in the concatenated one-hot vector (a "slot"),
and a dense layer over the one-hot is an embedding-table sum over those slots.
That keeps prediction at a gather and a few small matmuls (4,096 architectures
in a few milliseconds on CPU) however many Kronecker slots there are.
An inactive decision maps to its field's slot 0, whose embedding plays the
role of the zeroed one-hot. Works on numpy and jax.numpy (`xp=`), inside
`jax.jit`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from search_spaces import SearchSpace
from search_spaces.schema import mixed_radix


@dataclasses.dataclass(frozen=True)
class Field:
    """One categorical feature: the joint value of some decisions.

    `positions` are decision positions; `masked[i]` says whether position i
    reads as 0 when inactive (its code is then `index + 1`, else `index`).
    """

    name: str
    positions: tuple[int, ...]
    masked: tuple[bool, ...]
    num_slots: int


class FeatureEncoder:
    """Maps decision indices [..., D] to feature slots [..., F] (ints into one vocabulary)."""

    def __init__(self, space: SearchSpace, kronecker: bool = True) -> None:
        self.space = space
        self.kronecker = kronecker
        fields: list[Field] = []
        tables: list[np.ndarray] = []
        n = space.num_choices
        # One field per decision: slot 0 = inactive, slot i + 1 = choice i (a decision
        # that is never inactive, like a stage width: slot i = choice i).
        maskable = maskable_positions(space)
        for d in space.decisions:
            masked = d.position in maskable
            fields.append(Field(d.name, (d.position,), (masked,), d.num_choices + masked))
            tables.append(np.arange(d.num_choices + masked, dtype=np.int32))
        stem_width = space.units[0].output_width.position
        segments = [1 if d.position == stem_width else -1 for d in space.decisions]
        if kronecker:
            for name, positions, segment in _kronecker_groups(space):
                field, table = _joint_field(space, name, positions, n)
                if field.num_slots > 1:
                    fields.append(field)
                    tables.append(table)
                    segments.append(segment)
        self.fields = tuple(fields)
        # The per-decision fields come first: slots [0, decision_vocab_size).
        self.num_decision_fields = space.num_decisions
        self.decision_vocab_size = sum(f.num_slots for f in fields[:space.num_decisions])
        # Half-segment of each field, in network order (the comment above
        # `half_segment_weight_bytes`); a cache-aware model sums costs and weight bytes
        # per half-segment.
        self.num_segments = 2 * len(space.units)
        self.field_segment = np.array(segments, np.int32)
        # Concatenate the per-field code -> slot tables, with global slot offsets.
        slot_offsets = np.cumsum([0] + [f.num_slots for f in fields])
        table_offsets = np.cumsum([0] + [len(t) for t in tables])
        self.vocab_size = int(slot_offsets[-1])
        self._table = np.concatenate(
            [np.where(t >= 0, t + o, -1) for t, o in zip(tables, slot_offsets, strict=False)]
        ).astype(np.int32)
        self._table_offset = table_offsets[:-1].astype(np.int32)
        # code of field f = sum over its decisions of value(decision) * radix, where
        # value = index (+ 1 if it can be inactive, 0 if inactive): one small matmul.
        self._masked = np.array([d.position in maskable for d in space.decisions])
        radix = np.zeros((space.num_decisions, len(fields)), np.float32)
        for i, f in enumerate(fields):
            sizes = [n[p] + 1 if m else n[p] for p, m in zip(f.positions, f.masked, strict=True)]
            for p, r in zip(f.positions, mixed_radix(sizes), strict=True):
                radix[p, i] = float(r)
        # Codes stay below 2**24, so float32 (fast on every backend) is exact.
        assert max(len(t) for t in tables) < 2**24
        self._radix = radix

    @property
    def num_fields(self) -> int:
        return len(self.fields)

    def field_ids(self, indices: Any, xp: Any = np) -> Any:
        """Global one-hot slots, int32 [..., num_fields], for indices [..., D]."""
        indices = xp.asarray(indices).astype(xp.int32)
        active = self.space.active_mask(indices, xp=xp)
        values = xp.where(xp.asarray(self._masked), xp.where(active, indices + 1, 0), indices)
        codes = (values.astype(xp.float32) @ xp.asarray(self._radix)).astype(xp.int32)
        return xp.asarray(self._table)[xp.asarray(self._table_offset) + codes]

    def one_hot(self, indices: Any, xp: Any = np) -> Any:
        """The dense features, float32 [..., vocab_size] (for inspection and tests)."""
        ids = self.field_ids(indices, xp=xp)
        eye = xp.arange(self.vocab_size, dtype=xp.int32)
        return xp.any(ids[..., :, None] == eye, axis=-2).astype(xp.float32)


def maskable_positions(space: SearchSpace) -> frozenset[int]:
    """Decision positions that some index vector leaves inactive.

    The rules `active_mask` applies (`SearchSpace.conditional_positions`).
    """
    return space.conditional_positions


# Which half-segment a field's cost and weight bytes belong to (`field_segment`):
# the network's units (stem, each block, head) are split in two halves, in
# network order: the layers before the unit's last layer with weights, then
# that layer and the rest. Stem: (-, stem conv) = 0, 1; block b: (expansion +
# kxk convs = its `in_x_ops` field, projection + add = its `in_x_out...` field)
# = 2 + 2b, 3 + 2b; head: (head conv = the `kron:head` field, pool + classifier)
# = the last two. -1: a field that spans halves (a stage width, a block decision
# the Kronecker fields repeat, the head width, which sizes both the head conv
# and the classifier).


def half_segment_weight_bytes(layer_weights: tuple[int, ...]) -> tuple[int, int]:
    """(bytes before the last layer with weights, bytes of it and after): a segment's
    two halves as `field_segment` splits them."""
    weighted = [i for i, w in enumerate(layer_weights) if w]
    split = weighted[-1] if weighted else len(layer_weights)
    return sum(layer_weights[:split]), sum(layer_weights[split:])


def _kronecker_groups(space: SearchSpace) -> list[tuple[str, tuple[int, ...], int]]:
    """Per block, two joint groups; then the head: (name, positions, half-segment).

    A block's layers split by what their cost depends on: the expansion and
    kxk convs see the input width and the op choices (op, kernel, expansion,
    e1, group size) but not the output width; the 1x1 projection and the
    residual add see the input and output widths, the op and the expansion
    but not the kernel or groups. One group per such set keeps each slot
    common enough to be learned from a few thousand samples, where the joint
    of everything (TuNAS's in x out x op) would be seen a handful of times.
    """
    groups = []
    for unit in space.block_units:
        slots = unit.field_slots
        in_width, out_width = unit.input_width.position, unit.output_width.position
        op_and_expansion = [slots[f].position for f in ("op", "expansion_ratio")
                            if slots[f].position is not None]
        widths = [p for p in dict.fromkeys((in_width, out_width)) if p is not None]
        groups.append((f"kron:{unit.name}.in_x_ops",
                       (*[p for p in (in_width,) if p is not None], *unit.own_positions),
                       2 + 2 * unit.index))
        groups.append((f"kron:{unit.name}.in_x_out_x_op_x_expansion",
                       (*widths, *op_and_expansion), 3 + 2 * unit.index))
    head = space.units[-1]
    positions = [p for p in (head.input_width.position, head.output_width.position)
                 if p is not None] + list(head.task_positions)
    groups.append(("kron:head", tuple(positions), 2 * len(space.units) - 2))
    return groups


def _joint_field(space: SearchSpace, name: str, positions: Sequence[int],
                 num_choices: Sequence[int]) -> tuple[Field, np.ndarray]:
    """A joint field over `positions`, its reachable codes numbered compactly.

    Decisions that can be inactive are masked (an inactive kernel must not
    split slots). Activity of a block's op decisions depends
    only on that block's op and expansion, both in `positions`, so enumerating
    the joint choices with every other decision at 0 finds every reachable code.
    """
    positions = tuple(positions)
    if not positions:
        return Field(name, (), (), 1), np.zeros(1, np.int32)
    maskable = maskable_positions(space)
    masked = tuple(p in maskable for p in positions)
    combos = np.array(list(itertools.product(*(range(num_choices[p]) for p in positions))),
                      dtype=np.int32)
    full = np.zeros((len(combos), space.num_decisions), np.int32)
    full[:, positions] = combos
    active = space.active_mask(full)[:, positions]
    values = np.where(np.array(masked), np.where(active, combos + 1, 0), combos)
    sizes = [num_choices[p] + 1 if m else num_choices[p] for p, m in zip(positions, masked,
                                                                          strict=True)]
    codes = values @ np.asarray(mixed_radix(sizes), np.int64)
    reachable = np.unique(codes)
    table = np.full(int(np.prod(sizes, dtype=np.int64)), -1, np.int32)
    table[reachable] = np.arange(len(reachable), dtype=np.int32)
    return Field(name, positions, masked, len(reachable)), table


@functools.cache
def encoder_for(space: SearchSpace, kronecker: bool) -> FeatureEncoder:
    """A cached encoder (building the Kronecker tables takes a few ms per space)."""
    return FeatureEncoder(space, kronecker)
