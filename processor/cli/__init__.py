"""The `processor` command: `run` a topology as a worker, `describe` it, `query` its stores,
show its `status`, `reset` it.

Each command is a module of this package with `add(commands)`, which adds its parser, and
`execute(args, ...)`; `main` dispatches on the command's name."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from processor.cli import logs, query, reset, run, status
from processor.errors import ConfigError, ProcessorError, TopologyError
from processor.runtime.loader import load_topology

log = logging.getLogger("processor")


def _parser() -> argparse.ArgumentParser:
    # No abbreviations: --workers is stripped from the arguments handed to child workers by its
    # exact spelling, and an abbreviated --worker would make every child start its own children.
    parser = argparse.ArgumentParser(
        prog="processor", description=(__doc__ or "").splitlines()[0], allow_abbrev=False
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version")
    commands = parser.add_subparsers(dest="command", required=True)

    run.add(commands)
    describe = commands.add_parser(
        "describe", help="print a topology's sources, operators and sinks"
    )
    describe.add_argument(
        "topology",
        metavar="MODULE[:ATTR]",
        help="the topology: a module holding one Topology, or ATTR of it (e.g. topologies.words)",
    )

    query.add(commands)
    reset.add(commands)
    status.add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        logs.configure(args)
        if args.command == "describe":
            print(load_topology(args.topology).describe())
            return 0
        if args.command == "query":
            return query.execute(args)
        if args.command == "reset":
            return reset.execute(args)
        if args.command == "status":
            return status.execute(args)
        return run.execute(args, argv)
    except ConfigError as e:
        print(f"processor: configuration error: {e}", file=sys.stderr)
        return 2
    except TopologyError as e:
        print(f"processor: topology error: {e}", file=sys.stderr)
        return 2
    except ProcessorError as e:
        print(f"processor: error: {e}", file=sys.stderr)
        return 1


class _Version(argparse.Action):
    """`--version`: the version is looked up only when asked for (importing importlib.metadata
    and reading the installed package's metadata took about 0.1 s of every worker's start)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(f"{parser.prog} {_version()}")
        parser.exit()


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("processor")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "(version unknown: not installed)"
