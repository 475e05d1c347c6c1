"""Python config files (`get_config()` -> ConfigDict) and their `--config.a.b=value` overrides.

One loader for every command (search, train, train-cost-model): the file's
`get_config()`, then overrides parsed as the type of the field they replace.
Nested fields are dotted; a section named `overrides` accepts new keys (it is
a free-form mapping handed on to another config). On the command line each
field of a base config becomes a `--config.<field>` option, so overrides
parse with plain argparse and appear in `--help`.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
from collections.abc import Iterator, Mapping
from typing import Any

import ml_collections

from tunas_jax.errors import UsageError

OVERRIDE_PREFIX = "config."
FREE_FORM_SECTION = "overrides"


def load_config(path: str | os.PathLike,
                overrides: Mapping[str, str] | None = None) -> ml_collections.ConfigDict:
    """`get_config()` of a Python config file, with `field=value` / `a.b=value` overrides."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UsageError(f"--config {path}: no such file; pass a config file from experiments/")
    spec = importlib.util.spec_from_file_location("_tunas_jax_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise UsageError(f"--config {path}: defines no get_config()")
    config = module.get_config()
    for dotted, text in (overrides or {}).items():
        *parents, leaf = dotted.split(".")
        node = config
        for name in parents:
            if not isinstance(node, ml_collections.ConfigDict) or name not in node:
                raise UsageError(f"--config.{dotted}: unknown field {name!r}")
            node = node[name]
        if not isinstance(node, ml_collections.ConfigDict):
            raise UsageError(f"--config.{dotted}: {'.'.join(parents)} is not a section")
        if leaf not in node and (not parents or parents[-1] != FREE_FORM_SECTION):
            raise UsageError(f"--config.{dotted}: unknown field; known: {sorted(node)}")
        node[leaf] = parse_value(node.get(leaf, ""), text, dotted)
    return config


def parse_value(current: Any, text: str, field: str) -> Any:
    """Parse `text` as the type of the field's current value."""
    try:
        if isinstance(current, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, (tuple, list)):
            value = ast.literal_eval(text if text.strip().startswith(("(", "[")) else
                                     f"({text},)")
            return tuple(value)
        if isinstance(current, str):
            return text
        if text.lower() == "none":
            return None
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    except (ValueError, SyntaxError):
        raise UsageError(f"--config.{field}={text}: expected a value like "
                         f"{current!r}") from None


def flat_fields(config: ml_collections.ConfigDict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, value) of every leaf field; free-form sections count as one field."""
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict) and key != FREE_FORM_SECTION:
            yield from flat_fields(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


def add_override_options(parser: argparse.ArgumentParser,
                         base_config: ml_collections.ConfigDict) -> None:
    """One `--config.<field>` option per field of `base_config`."""
    group = parser.add_argument_group("config overrides (nested fields with dots)")
    for field, value in flat_fields(base_config):
        group.add_argument(f"--{OVERRIDE_PREFIX}{field}", dest=OVERRIDE_PREFIX + field,
                           default=argparse.SUPPRESS, metavar="VALUE",
                           # argparse %-formats help: escape split specs' '%'.
                           help=f"(default in base: {value!r})".replace("%", "%%"))


def overrides_from_args(args: argparse.Namespace) -> dict[str, str]:
    """The `--config.<field>` values given on the command line."""
    return {key[len(OVERRIDE_PREFIX):]: value for key, value in vars(args).items()
            if key.startswith(OVERRIDE_PREFIX)}
