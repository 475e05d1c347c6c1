"""The `tunas-jax` console script: a thin argparse front over public functions.

Each subcommand lives in `tunas_jax/commands/<name>.py` and exposes
`add_parser(subparsers)` (which registers the parser and sets `func`) and a
plain Python function that does the work, so the same work runs from a
notebook. Bad input surfaces as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from search_spaces.errors import SpecError
from tunas_jax.errors import PrimaryFailedError, UsageError

# Subcommand modules under tunas_jax.commands, in the order `--help` lists them.
COMMANDS = (
    "spaces",
    "show",
    "simulate",
    "calibrate",
    "targets",
    "measure",
    "import-model",  # registers `tunas-jax import`
    "analyze-blocks",
    "train-cost-model",
    "search",
    "train",
    "evaluate",
    "export",
    "random-baseline",
    "multi-trial",
    "report",
    "serve-costs",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunas-jax",
        description="Hardware-aware one-shot architecture search for Edge TPUs and mobile "
                    "CPUs, GPUs and DSPs.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"tunas_jax.commands.{name.replace('-', '_')}")
        module.add_parser(subparsers)
    return parser


def parse_command_line(parser: argparse.ArgumentParser,
                       argv: Sequence[str] | None = None) -> argparse.Namespace:
    """`parser.parse_args`, except that a command with a config file gets the arguments
    argparse leaves over as `args.config_args`: its `--config.FIELD=VALUE` overrides,
    parsed by ml_collections.config_flags (`tunas_jax.config_files`). Elsewhere an
    unknown argument is argparse's usage error."""
    args, extra = parser.parse_known_args(argv)
    if extra and not hasattr(args, "config_args"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.config_args = extra
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_command_line(parser, argv)
    try:
        result = args.func(args)
    except (SpecError, UsageError, FileNotFoundError) as err:
        print(f"tunas-jax {args.command}: error: {err}", file=sys.stderr)
        return 2
    except PrimaryFailedError as err:  # process 0 printed the whole story
        print(f"tunas-jax {args.command}: error: {err}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
