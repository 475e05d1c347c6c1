"""Python config files (`get_config()` -> ConfigDict) and their `--config.a.b=value` overrides.

One loader for every command that takes a config (search, train,
random-baseline, train-cost-model). Loading and overriding are
`ml_collections.config_flags`', as in the flax examples: `--config FILE.py`
then `--config.field=value` / `--config.section.field=value`, each value
parsed as the type of the field it replaces. What this module adds around it:
a private absl `FlagValues` per load (so the CLI stays argparse and library
callers never touch global flags), one-line `UsageError`s naming the field and
the fix instead of absl's multi-line errors, an element-type check of tuple
overrides (config_flags accepts `--config.hidden_sizes=abc` as `('abc',)`),
and the field list of `--help`.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import ml_collections
from absl import flags
from ml_collections import config_flags

from tunas_jax.errors import UsageError

FLAG = "config"
# absl's message for a value its parser refused: "flag --config.a.b=VALUE: reason".
_BAD_VALUE = re.compile(r"flag --config\.([^=]+)=(.*?): (.*)", re.DOTALL)
# A section whose fields are another config's overrides: `--help` lists it as one line.
OVERRIDES_SECTION = "overrides"


def load_config(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None
                ) -> ml_collections.ConfigDict:
    """`get_config()` of a config file with `{'field': value, 'a.b': value}` overrides.

    Values may be strings (parsed as on the command line) or values of the
    field's type. Raises UsageError naming the field for an unknown field or a
    value of the wrong type. The config comes back unlocked, as `get_config()`
    made it."""
    return parse_config_args(path, [f"--{FLAG}.{field}={_as_text(value)}"
                                     for field, value in (overrides or {}).items()])


def parse_config_args(path: str | os.PathLike, args: Sequence[str]
                      ) -> ml_collections.ConfigDict:
    """`get_config()` of a config file with command-line `--config.field=value` overrides."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UsageError(f"--config {path}: no such file; pass a config file from experiments/")
    argv = ["tunas-jax", f"--{FLAG}={path}", *args]
    flag_values = flags.FlagValues()
    # sys_argv: config_flags finds the override fields in it (default: sys.argv).
    config_flags.DEFINE_config_file(FLAG, flag_values=flag_values, sys_argv=argv,
                                    lock_config=False)
    try:
        leftover = flag_values(argv)
    except flags.IllegalFlagValueError as err:
        raise _bad_value_error(path, str(err)) from None
    except (AttributeError, KeyError, IndexError) as err:
        # config_flags' messages here are a bare repr of the missing key; without
        # overrides the file itself failed (e.g. it defines no get_config).
        if not any(arg.startswith(f"--{FLAG}.") for arg in args):
            raise UsageError(f"--config {path}: could not load it ({err}); a config file "
                             "defines get_config() returning an ml_collections.ConfigDict"
                             ) from None
        raise _unknown_field_error(path, args) or UsageError(str(err)) from None
    except flags.Error as err:
        raise UsageError(f"{str(err).splitlines()[0]}; write overrides as "
                         f"--{FLAG}.FIELD=VALUE") from None
    if leftover[1:]:
        raise UsageError(f"unrecognized arguments: {' '.join(leftover[1:])}; config "
                         f"overrides are written --{FLAG}.FIELD=VALUE")
    config = flag_values[FLAG].value
    try:
        # config_flags defers a failed load (the file raised, or has no get_config) to an
        # OSError at the config's first use, its message the file's whole traceback.
        config.get  # noqa: B018
    except OSError as err:
        last = [line for line in str(err).splitlines() if line.strip()][-1].strip()
        raise UsageError(f"--config {path}: could not load it: {last}") from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise UsageError(f"--config {path}: get_config() returned a "
                         f"{type(config).__name__}; return an ml_collections.ConfigDict")
    _check_tuple_elements(path, config, flag_values[FLAG].override_values)
    _register_topology(config)
    return config


def _register_topology(config: ml_collections.ConfigDict) -> None:
    """A config that declares its topology registers it as a space for this process."""
    topology = config.get("topology")
    if not topology:
        return
    from search_spaces import SpecError
    from search_spaces.declared import register_declared

    doc = topology.to_dict() if isinstance(topology, ml_collections.ConfigDict) else topology
    try:
        space = register_declared(doc, "config.topology")
    except SpecError as err:
        raise UsageError(str(err)) from None
    if config.get("space") != space.name:
        raise UsageError(f"config.space: {config.get('space')!r}, but config.topology declares "
                         f"{space.name!r}; set config.space = {space.name!r}")


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return repr(tuple(value)) if isinstance(value, (tuple, list)) else str(value)


def _field_type(config: ml_collections.ConfigDict, dotted: str) -> type | None:
    *parents, leaf = dotted.split(".")
    node = config
    for name in parents:
        node = node.get(name) if isinstance(node, ml_collections.ConfigDict) else None
    if isinstance(node, ml_collections.ConfigDict) and leaf in node:
        return node.get_type(leaf)
    return None


def _load_plain(path: str) -> ml_collections.ConfigDict:
    return parse_config_args(path, [])


def _bad_value_error(path: str, message: str) -> UsageError:
    match = _BAD_VALUE.match(message)
    if not match:  # the file's get_config raised: its first and last lines say what
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        return UsageError(" ".join(dict.fromkeys([lines[0], lines[-1]])))
    field, value, reason = match.groups()
    kind = _field_type(_load_plain(path), field)
    name = getattr(kind, "__name__", "value")
    reason = reason.splitlines()[0]
    article = "an" if name[0] in "aeiou" else "a"
    return UsageError(f"--{FLAG}.{field}={value}: expected {article} {name} ({reason}); "
                      f"e.g. --{FLAG}.{field}={_example(kind)}")


def _example(kind: type | None) -> str:
    return {int: "3", float: "0.5", bool: "true", tuple: "'(8, 4)'",
            ml_collections.ConfigDict: "\"{'key': 1}\""}.get(kind, "VALUE")


def _unknown_field_error(path: str, args: Sequence[str]) -> UsageError | None:
    """The first override naming no field of the config file, as one line."""
    config = _load_plain(path)
    for arg in args:
        if not arg.startswith(f"--{FLAG}."):
            continue
        dotted = arg[len(FLAG) + 3:].split("=", 1)[0]
        node: Any = config
        for depth, name in enumerate(dotted.split(".")):
            if not isinstance(node, ml_collections.ConfigDict):
                parent = ".".join(dotted.split(".")[:depth])
                return UsageError(f"--{FLAG}.{dotted}: {parent} is a value, not a section; "
                                  f"set it as --{FLAG}.{parent}=VALUE")
            if name not in node:
                near = difflib.get_close_matches(name, list(node), n=1)
                hint = f"did you mean {near[0]!r}? " if near else ""
                return UsageError(f"--{FLAG}.{dotted}: unknown field {name!r}; {hint}"
                                  f"known: {sorted(node)}")
            node = node[name]
    return None


def _check_tuple_elements(path: str, config: ml_collections.ConfigDict,
                          overridden: Mapping[str, Any]) -> None:
    defaults = None
    for field, value in overridden.items():
        if not isinstance(value, tuple) or not value:
            continue
        defaults = defaults or _load_plain(path)
        *parents, leaf = field.split(".")
        node = defaults
        for name in parents:
            node = node[name]
        default = node.get(leaf)
        kinds = {type(item) for item in default or ()}
        if len(kinds) != 1:
            continue
        kind = kinds.pop()
        if not all(isinstance(item, kind) and not (kind is int and isinstance(item, bool))
                   for item in value):
            raise UsageError(f"--{FLAG}.{field}={value!r}: expected a tuple of "
                             f"{kind.__name__} like {default!r}; e.g. "
                             f"--{FLAG}.{field}='{default!r}'")


# ---- the command line ------------------------------------------------------------------
def flat_fields(config: ml_collections.ConfigDict, prefix: str = ""
                ) -> Iterator[tuple[str, Any]]:
    """(dotted name, value) of every leaf field; an `overrides` section, and an empty
    section (e.g. `topology`, filled in by config files), count as one field."""
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict) and value and key != OVERRIDES_SECTION:
            yield from flat_fields(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


def add_config_option(parser: argparse.ArgumentParser,
                      defaults: Callable[[], ml_collections.ConfigDict], example: str) -> None:
    """`--config FILE.py` on `parser`, and the fields `--config.FIELD=VALUE` can set in its
    `--help`. The overrides themselves are parsed by config_flags (`config_from_args`):
    argparse leaves them over and `tunas_jax.cli.main` hands them on as `args.config_args`."""
    parser.add_argument(f"--{FLAG}", required=True, metavar="FILE.py",
                        help=f"config file, e.g. {example}; override its fields with "
                             f"--{FLAG}.FIELD=VALUE (listed below)")
    lines = [f"config fields: --{FLAG}.FIELD=VALUE, nested with dots, the value parsed as "
             "the field's type\n(shown with the defaults the config files start from):"]
    for field, value in flat_fields(defaults()):
        if field.endswith(f".{OVERRIDES_SECTION}"):
            lines.append(f"  --{FLAG}.{field}.FIELD=VALUE  (any field of that config file)")
        else:
            lines.append(f"  --{FLAG}.{field}={value!r}")
    parser.epilog = "\n".join(lines)
    parser.set_defaults(config_args=[])


def config_from_args(args: argparse.Namespace) -> ml_collections.ConfigDict:
    """The config of a parsed command line: `args.config` with `args.config_args` applied."""
    return parse_config_args(args.config, args.config_args)
