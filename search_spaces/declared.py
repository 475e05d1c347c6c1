"""Search spaces declared as data: a topology with searchable parameters, no space class.

A declaration is a JSON-able mapping, written in a config file's `topology`
field (any command that takes a config) or carried by an architecture file:

    {"name": "tiny_ibn", "image_size": 32, "num_classes": 10,
     "stem": {"filters": 16, "kernel_size": 3, "stride": 2},
     "stages": [{"filters": [16, 24],
                 "blocks": [{"op": ["dw_ibn", "fused_ibn"], "kernel_size": [3, 5],
                             "expansion_ratio": [2, 4], "stride": 2},
                            {"op": ["dw_ibn", "skip"]}]}],
     "head": {"filters": 128}}

A list is a searchable parameter (a `OneOf` over its values, tagged as the
shipped spaces tag that field: widths and expansions `filters`, the rest
`op`); a scalar is fixed. The result is the same `SearchSpace` a Python module
would define, so the supernet, the costers, the multi-trial generator and the
architecture files need nothing new. `register_declared` makes
`get_space(name)` find it in this process; an architecture of a declared space
carries the declaration (`space_declaration`), so a later `train`, `report` or
`evaluate` of that file rebuilds the space without the config.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from search_spaces.errors import SpecError
from search_spaces.registry import SPACES, register_space
from search_spaces.schema import OneOf
from search_spaces.space import TAG_OF, BlockSpec, SearchSpace, StageSpec

# The declarations registered in this process, canonical JSON by space name.
_DECLARED: dict[str, str] = {}
# Block fields that shape the network but are not decisions (strides must chain).
_FIXED_BLOCK_FIELDS = ("stride", "residual")
_BLOCK_FIELDS = tuple(f.name for f in dataclasses.fields(BlockSpec))


def _keys(doc: Any, field: str, required: tuple[str, ...], optional: tuple[str, ...]) -> dict:
    if not isinstance(doc, Mapping):
        raise SpecError(f"{field}: expected a mapping with keys {list(required + optional)}, "
                        f"got {type(doc).__name__}")
    unknown = sorted(set(doc) - set(required) - set(optional))
    if unknown:
        raise SpecError(f"{field}.{unknown[0]}: unknown key; use "
                        f"{sorted(required + optional)}")
    missing = [k for k in required if k not in doc]
    if missing:
        raise SpecError(f"{field}.{missing[0]}: missing; a declaration needs {list(required)}")
    return dict(doc)


def _int(value: Any, field: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SpecError(f"{field}: {value!r}; expected an integer >= {low}")
    return value


def _choice(value: Any, field: str, name: str) -> Any:
    """A scalar stays fixed; a list (or tuple) becomes a OneOf over its values."""
    tag = TAG_OF[name]
    check = (lambda v, f: v) if name == "op" else _int
    if isinstance(value, (list, tuple)):
        if not value:
            raise SpecError(f"{field}: an empty list; give the choices, or one value to fix it")
        values = [check(v, f"{field}[{i}]") for i, v in enumerate(value)]
        if name == "op" and not all(isinstance(v, str) for v in values):
            raise SpecError(f"{field}: {value!r}; ops are block type names (strings)")
        return OneOf(tuple(values), tag) if len(values) > 1 else values[0]
    if name == "op" and not isinstance(value, str):
        raise SpecError(f"{field}: {value!r}; an op is a block type name, e.g. 'dw_ibn'")
    return check(value, field)


def _block(doc: Any, field: str) -> BlockSpec:
    doc = _keys(doc, field, ("op",), tuple(f for f in _BLOCK_FIELDS if f != "op"))
    for name in _FIXED_BLOCK_FIELDS:
        if isinstance(doc.get(name), (list, tuple)):
            raise SpecError(f"{field}.{name}: {doc[name]!r}; {name} is fixed per block "
                            "position (strides must chain): give one value")
    if "residual" in doc and not isinstance(doc["residual"], bool):
        raise SpecError(f"{field}.residual: {doc['residual']!r}; use true or false")
    values = {name: (_choice(value, f"{field}.{name}", name)
                     if name not in _FIXED_BLOCK_FIELDS else value)
              for name, value in doc.items()}
    if "stride" in values:
        values["stride"] = _int(values["stride"], f"{field}.stride")
    return BlockSpec(**values)


def space_from_declaration(doc: Any, field: str = "topology") -> SearchSpace:
    """The `SearchSpace` a declaration describes; SpecError naming the field at fault."""
    doc = _keys(doc, field, ("name", "stem", "stages", "head", "image_size", "num_classes"),
                ("min_group_size", "description"))
    name = doc["name"]
    if not isinstance(name, str) or not name.isidentifier():
        raise SpecError(f"{field}.name: {name!r}; use an identifier such as 'my_space'")
    stem = _keys(doc["stem"], f"{field}.stem", ("filters", "kernel_size", "stride"), ())
    stages = doc["stages"]
    if not isinstance(stages, (list, tuple)) or not stages:
        raise SpecError(f"{field}.stages: expected a non-empty list of stages")
    stage_specs = []
    for s, stage in enumerate(stages):
        where = f"{field}.stages[{s}]"
        stage = _keys(stage, where, ("filters", "blocks"), ())
        blocks = stage["blocks"]
        if not isinstance(blocks, (list, tuple)) or not blocks:
            raise SpecError(f"{where}.blocks: expected a non-empty list of blocks")
        stage_specs.append(StageSpec(
            _choice(stage["filters"], f"{where}.filters", "filters"),
            tuple(_block(b, f"{where}.blocks[{i}]") for i, b in enumerate(blocks))))
    head = _keys(doc["head"], f"{field}.head", ("filters",), ())
    description = doc.get("description", f"declared topology {name!r}")
    if not isinstance(description, str):
        raise SpecError(f"{field}.description: expected a string")
    try:
        return SearchSpace(
            name=name,
            stem_filters=_choice(stem["filters"], f"{field}.stem.filters", "filters"),
            stem_kernel_size=_int(stem["kernel_size"], f"{field}.stem.kernel_size"),
            stem_stride=_int(stem["stride"], f"{field}.stem.stride"),
            stages=tuple(stage_specs),
            head_filters=_choice(head["filters"], f"{field}.head.filters", "filters"),
            default_image_size=_int(doc["image_size"], f"{field}.image_size"),
            default_num_classes=_int(doc["num_classes"], f"{field}.num_classes"),
            min_group_size=_int(doc.get("min_group_size", 1), f"{field}.min_group_size"),
            description=description)
    except SpecError as err:
        raise SpecError(f"{field}: {err}") from None


def canonical(doc: Any) -> str:
    """The declaration as canonical JSON (what is registered and written to files)."""
    try:
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))
    except TypeError as err:
        raise SpecError(f"topology: not JSON-able ({err}); use numbers, strings, lists and "
                        "mappings") from None


def register_declared(doc: Any, field: str = "topology") -> SearchSpace:
    """Build the declared space and make `get_space(its name)` return it in this process.

    The same declaration may be registered again (a config, then the architecture
    file it wrote); another space under the same name is an error.
    """
    text = canonical(doc)
    space = space_from_declaration(json.loads(text), field)
    if space.name in SPACES and _DECLARED.get(space.name) != text:
        what = ("a shipped or registered space" if space.name not in _DECLARED
                else "declared differently earlier in this process")
        raise SpecError(f"{field}.name: {space.name!r} is {what}; give the declaration "
                        "its own name")
    _DECLARED[space.name] = text
    register_space(space.name, lambda: space_from_declaration(json.loads(text), field),
                   replace=True)
    return space


def declaration_of(space: SearchSpace) -> dict[str, Any] | None:
    """The declaration `space` was built from, if it was declared (else None)."""
    text = _DECLARED.get(space.name)
    if text is None:
        return None
    doc = json.loads(text)
    return doc if space_from_declaration(doc).fingerprint == space.fingerprint else None
