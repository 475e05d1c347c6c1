"""Search spaces of inverted-bottleneck variants, the architecture format, and
the flat network description the cost models read. Imports none of the other
tunas-jax packages."""

from search_spaces.architecture import Architecture, load
from search_spaces.blocks import Block, BlockType, realize_groups, round_filters
from search_spaces.decisions import FILTERS, OP, Decision, OneOf
from search_spaces.errors import SpecError
from search_spaces.fileio import atomic_write, read_json, write_json_atomic
from search_spaces.model_spec import ModelSpec
from search_spaces.network import Layer, NetworkDescription, describe
from search_spaces.presets import PRESETS, get_preset
from search_spaces.registry import DEFAULT_SPACE, SPACES, get_space
from search_spaces.space import BlockSpec, SearchSpace, StageSpec

__all__ = [
    "DEFAULT_SPACE",
    "FILTERS",
    "OP",
    "PRESETS",
    "SPACES",
    "Architecture",
    "Block",
    "BlockSpec",
    "BlockType",
    "Decision",
    "Layer",
    "ModelSpec",
    "NetworkDescription",
    "OneOf",
    "SearchSpace",
    "SpecError",
    "StageSpec",
    "atomic_write",
    "describe",
    "get_preset",
    "get_space",
    "load",
    "read_json",
    "realize_groups",
    "round_filters",
    "write_json_atomic",
]
