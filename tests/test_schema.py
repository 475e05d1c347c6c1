"""The generic search-space tree: decision order and names, nesting, pruning, fingerprints."""

import dataclasses

import numpy as np
import pytest

from search_spaces import FILTERS, OP, OneOf, SpecError, schema


@dataclasses.dataclass(frozen=True)
class Conv:
    kernel: object
    width: object = 8


@dataclasses.dataclass(frozen=True)
class Net:
    layers: tuple
    head: dict


def _net():
    # Layer 0 chooses between a conv with its own kernel decision and a fixed conv;
    # layer 1 is a conv whose width is a filters decision; the head a dict.
    return Net(layers=(OneOf((Conv(OneOf((3, 5))), Conv(7))),
                       Conv(3, OneOf((8, 16), FILTERS))),
               head={"filters": OneOf((32, 64), FILTERS)})


def test_walk_names_orders_and_nests():
    decisions = schema.walk(_net())
    assert [d.name for d in decisions] == [
        "layers.0", "layers.0.0.kernel", "layers.1.width", "head.filters"]
    assert [d.tag for d in decisions] == [OP, OP, FILTERS, FILTERS]
    assert decisions[1].parent == (0, 0)  # the kernel exists only in choice 0
    assert all(d.parent is None for d in decisions if d.position != 1)


def test_nested_decision_is_active_only_under_its_choice():
    decisions = schema.walk(_net())
    indices = np.array([[0, 1, 0, 0], [1, 1, 0, 0]])
    ones = [np.ones(2, bool) for _ in decisions]
    active = np.stack(schema.nested_active(decisions, indices, ones), axis=-1)
    np.testing.assert_array_equal(active, [[1, 1, 1, 1], [1, 0, 1, 1]])


def test_prune_replaces_decisions_and_drops_untaken_choices():
    net = _net()
    assert schema.prune(net, [0, 1, 1, 0]) == Net((Conv(5), Conv(3, 16)), {"filters": 32})
    # Choice 1 of layer 0 has no decision; the kernel index is ignored but keeps its place.
    assert schema.prune(net, [1, 0, 0, 1]) == Net((Conv(7), Conv(3, 8)), {"filters": 64})


def test_fingerprint_follows_the_definition_not_the_object():
    assert schema.fingerprint(_net()) == schema.fingerprint(_net())
    changed = dataclasses.replace(_net(), head={"filters": OneOf((32, 48), FILTERS)})
    assert schema.fingerprint(changed) != schema.fingerprint(_net())


@pytest.mark.parametrize("choices, words", [((), "empty"), ((3, 3), "duplicates"),
                                            ((object(),), "JSON scalar")])
def test_bad_one_of_is_refused(choices, words):
    with pytest.raises(SpecError, match=words):
        OneOf(choices)


def test_mixed_radix_codes_are_a_bijection():
    radices = schema.mixed_radix([2, 3, 4])
    codes = {sum(i * r for i, r in zip((a, b, c), radices, strict=True))
             for a in range(2) for b in range(3) for c in range(4)}
    assert codes == set(range(24))
