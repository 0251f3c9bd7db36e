"""The ``oml`` command: a thin argparse layer over the modules that do the work."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from oml.registry import load_registry, parameters


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    return int(args.handler(args) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oml", description=__doc__)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    algorithms = commands.add_parser("algorithms", help="registered learners")
    algorithms_commands = algorithms.add_subparsers(metavar="ACTION")
    listing = algorithms_commands.add_parser("list", help="every learner, its parameters")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=list_algorithms)

    from oml.bench.cli import add_parser as add_bench

    add_bench(commands)
    return parser


def list_algorithms(args: argparse.Namespace) -> int:
    registry = load_registry()
    rows = {
        name: {
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "parameters": parameters(cls),
        }
        for name, cls in sorted(registry.classes.items())
    }
    if args.json:
        print(json.dumps({"algorithms": rows, "broken": registry.broken}, default=repr, indent=2))
        return 0
    for name, row in rows.items():
        params = ", ".join(f"{k}={v!r}" for k, v in row["parameters"].items())
        print(f"{name:<16} {row['class']}\n{'':<16} {params or '(no parameters)'}")
    for name, error in sorted(registry.broken.items()):
        print(f"{name:<16} BROKEN: {error}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
