"""Search spaces as trees of `OneOf` decisions, block types, the one lowering of a
network to a layer graph, the architecture format, and the flat network
description the cost models read. Imports none of the other tunas-jax packages."""

from search_spaces import schema
from search_spaces.architecture import Architecture, load
from search_spaces.block_types import BlockKind, get_block_type, register_block_type
from search_spaces.blocks import Block, realize_groups, round_filters
from search_spaces.decisions import FILTERS, OP, Decision, OneOf
from search_spaces.errors import SpecError
from search_spaces.fileio import atomic_write, read_json, write_json_atomic
from search_spaces.graph import LayerGraph, Node, lower
from search_spaces.ibn import GROUPED_TYPES, BlockType
from search_spaces.model_spec import ModelSpec
from search_spaces.network import Layer, NetworkDescription
from search_spaces.presets import PRESETS, get_preset
from search_spaces.registry import DEFAULT_SPACE, SPACES, get_space, register_space
from search_spaces.space import BlockSpec, SearchSpace, StageSpec, Unit

__all__ = [
    "DEFAULT_SPACE",
    "FILTERS",
    "GROUPED_TYPES",
    "OP",
    "PRESETS",
    "SPACES",
    "Architecture",
    "Block",
    "BlockKind",
    "BlockSpec",
    "BlockType",
    "Decision",
    "Layer",
    "LayerGraph",
    "ModelSpec",
    "NetworkDescription",
    "Node",
    "OneOf",
    "SearchSpace",
    "SpecError",
    "StageSpec",
    "Unit",
    "atomic_write",
    "get_block_type",
    "get_preset",
    "get_space",
    "load",
    "lower",
    "read_json",
    "realize_groups",
    "register_block_type",
    "register_space",
    "round_filters",
    "schema",
    "write_json_atomic",
]
