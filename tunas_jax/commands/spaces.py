"""`tunas-jax spaces`: the shipped search spaces with decision counts and sizes."""

from __future__ import annotations

import argparse
import json

from tunas_jax.summary import list_spaces


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("spaces", help="list the shipped search spaces")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = list_spaces()
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'space':<22} {'decisions':>9} {'size':>10} {'input':>6}  {'fingerprint':<16}  presets")
    for r in rows:
        print(f"{r['name']:<22} {r['decisions']:>9} {r['size']:>10.2e} {r['image_size']:>6}  "
              f"{r['fingerprint']:<16}  {', '.join(r['member_presets']) or '-'}")
    return 0
