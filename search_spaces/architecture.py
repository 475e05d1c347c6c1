"""The versioned architecture JSON document: indices <-> JSON <-> network, loss-free.

    {"format": "tunas-jax/architecture", "format_version": 1,
     "name": "...",                       # optional label
     "space": "micro" | null,             # null: a free-standing network (a preset)
     "space_fingerprint": "464d...",      # must match the installed space definition
     "indices": [1, 0, 3, ...],           # one per decision, in the space's order
     "decisions": [{"name": "stages.0.filters", "index": 1, "value": 24}, ...],
     "network": {"stem": {...}, "blocks": [{...}, ...], "head": {...}},
     ...}                                 # other top-level keys (search results) are kept

Loading re-derives everything from the indices and refuses any disagreement
(unknown space, fingerprint mismatch, index out of range, a decision or block
that disagrees, a group count that does not divide the channels, malformed
JSON): nothing is silently repaired. Files are written atomically.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

from search_spaces.declared import declaration_of, register_declared
from search_spaces.errors import SpecError
from search_spaces.fileio import read_json, write_json_atomic
from search_spaces.model_spec import ModelSpec
from search_spaces.registry import get_space
from search_spaces.space import SearchSpace

FORMAT = "tunas-jax/architecture"
FORMAT_VERSION = 1
_OWN_KEYS = ("format", "format_version", "name", "space", "space_fingerprint", "indices",
             "decisions", "network", "space_declaration")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A concrete network, with the space and indices it came from when it has them."""

    spec: ModelSpec
    space: SearchSpace | None = None
    indices: tuple[int, ...] | None = None
    name: str | None = None

    @classmethod
    def from_indices(cls, space: SearchSpace, indices: Sequence[int],
                     name: str | None = None) -> Architecture:
        indices = space.check_indices(indices)
        return cls(space.decode(indices), space, indices, name)

    @property
    def indices_string(self) -> str | None:
        """TuNAS's "a:b:c" form."""
        return None if self.indices is None else ":".join(map(str, self.indices))

    def to_json(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION,
                               "name": self.name}
        if self.space is None:
            doc.update(space=None, space_fingerprint=None, indices=None, decisions=None)
        else:
            doc.update(
                space=self.space.name,
                space_fingerprint=self.space.fingerprint,
                indices=list(self.indices),
                decisions=[{"name": d.name, "index": i, "value": d.choices[i]}
                           for d, i in zip(self.space.decisions, self.indices, strict=True)],
            )
            declaration = declaration_of(self.space)
            if declaration is not None:  # a declared space travels with its architectures
                doc["space_declaration"] = declaration
        doc["network"] = self.spec.to_json()
        for key, value in (extra or {}).items():
            if key in _OWN_KEYS:
                raise SpecError(f"extra key {key!r} would overwrite the architecture's own field")
            doc[key] = value
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> Architecture:
        if not isinstance(doc, dict):
            raise SpecError("architecture: expected a JSON object at the top level")
        if doc.get("format") != FORMAT:
            raise SpecError(f"architecture.format: {doc.get('format')!r}; expected {FORMAT!r}")
        if doc.get("format_version") != FORMAT_VERSION:
            raise SpecError(f"architecture.format_version: {doc.get('format_version')!r}; this "
                            f"tunas-jax reads version {FORMAT_VERSION}")
        name = doc.get("name")
        if doc.get("space") is None:
            if "network" not in doc:
                raise SpecError("architecture.network: missing; a space-less architecture "
                                "must list its network")
            return cls(ModelSpec.from_json(doc["network"], "architecture.network"), name=name)
        if "space_declaration" in doc:
            register_declared(doc["space_declaration"], "architecture.space_declaration")
        space = get_space(doc["space"])
        if doc.get("space_fingerprint") != space.fingerprint:
            raise SpecError(
                f"architecture.space_fingerprint: {doc.get('space_fingerprint')!r} does not match "
                f"space {space.name!r} ({space.fingerprint}); it was made for another version "
                "of the space: re-run the search or re-extract the architecture"
            )
        indices = doc.get("indices")
        if not isinstance(indices, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in indices):
            raise SpecError("architecture.indices: must be a list of integers, one per decision")
        arch = cls.from_indices(space, indices, name)
        decisions = doc.get("decisions")
        if decisions is not None:
            expected = arch.to_json()["decisions"]
            if decisions != expected:
                bad = next((e for e, d in zip(expected, decisions, strict=False) if d != e),
                           expected[len(decisions)] if len(decisions) < len(expected) else None)
                raise SpecError(f"architecture.decisions: disagree with the indices (first at "
                                f"{bad and bad['name']!r}); drop `decisions` or fix the indices")
        if "network" in doc:
            written = ModelSpec.from_json(doc["network"], "architecture.network")
            if written != arch.spec:
                raise SpecError(_first_difference(written, arch.spec))
        return arch

    def save(self, path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> None:
        write_json_atomic(path, self.to_json(extra))


def _first_difference(written: ModelSpec, decoded: ModelSpec) -> str:
    prefix = "architecture.network"
    for i, (a, b) in enumerate(zip(written.blocks, decoded.blocks, strict=False)):
        for f in dataclasses.fields(a):
            if getattr(a, f.name) != getattr(b, f.name):
                return (f"{prefix}.blocks[{i}].{f.name}: {getattr(a, f.name)!r} but the indices "
                        f"give {getattr(b, f.name)!r}; drop `network` or fix the indices")
    return f"{prefix}: disagrees with the indices (stem, head or block count); drop or fix it"


def load(path: str | os.PathLike) -> Architecture:
    """Load an architecture JSON file; SpecError with one clear line on bad input."""
    return Architecture.from_json(read_json(path, "architecture"))
