"""`processor query`: read a store of a running application through a worker's query API."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from processor.cli import logs, target
from processor.errors import ProcessorError

if TYPE_CHECKING:
    from processor.query.client import QueryClient

__all__ = ["add", "execute"]


def add(commands: Any) -> None:
    query = commands.add_parser(
        "query",
        allow_abbrev=False,
        help="read a store of a running application through a worker's query API",
        description="Print KEY's value in STORE as JSON (exit 1 when absent), or without KEY "
        'every entry of STORE in key order, one {"key": ..., "value": ...} JSON line each. '
        "For a window or session store, print KEY's windows (exit 1 when it has none in the "
        "range), or without KEY every key's, one "
        '{"key", "start_ms", "end_ms", "value", "timestamp_ms"} JSON line each, those that '
        "--from-ms and --to-ms select: windows starting in the range, sessions overlapping it. "
        f"{target.TARGET_HELP} Errors exit with 2.",
    )
    target.add_target(query)
    query.add_argument("store", metavar="STORE", help="the store's name")
    query.add_argument("key", metavar="KEY", nargs="?", help="one key (default: every entry)")
    target.add_target_options(query)
    query.add_argument(
        "--stale",
        action="store_true",
        help="answer from a standby copy when the active is down (default: off)",
    )
    query.add_argument(
        "--prefix", help="only keys starting with PREFIX, without KEY (default: every key)"
    )
    query.add_argument(
        "--from-ms",
        dest="from_ms",
        type=int,
        metavar="MS",
        help="windows from this time, inclusive (window and session stores; default: 0)",
    )
    query.add_argument(
        "--to-ms",
        dest="to_ms",
        type=int,
        metavar="MS",
        help="windows to this time, inclusive (window and session stores; default: no bound)",
    )
    query.add_argument(
        "--limit", type=int, metavar="N", help="print at most N entries, without KEY (default: all)"
    )
    logs.add_options(query, default_level="WARNING")


def execute(args: argparse.Namespace) -> int:
    """`processor query`: 0 with the answer on stdout; 1 when KEY is absent (has no windows);
    2 on any error, with one line on stderr."""

    def fail(message: str) -> int:
        print(f"processor query: {message}", file=sys.stderr)
        return 2

    if args.key is not None and (args.prefix is not None or args.limit is not None):
        return fail("--prefix and --limit list entries: give them without KEY")
    if args.limit is not None and args.limit < 1:
        return fail(f"--limit must be at least 1, got {args.limit}")
    try:
        with target.connect(args) as client:
            kinds = {s["name"]: s.get("kind", "key_value") for s in client.stores()}
            if kinds.get(args.store, "key_value") != "key_value":
                if args.prefix is not None:
                    return fail(f"--prefix lists a key-value store; {args.store!r} holds windows")
                return _print_windows(client, args)
            if args.from_ms is not None or args.to_ms is not None:
                return fail(
                    f"--from-ms and --to-ms select windows; {args.store!r} is a key-value store"
                )
            return _print_entries(client, args)
    except ProcessorError as e:
        return fail(str(e))
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from complaining
        # when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _print_entries(client: QueryClient, args: argparse.Namespace) -> int:
    """KEY's value as JSON (1 when absent), or every entry of the store as JSON lines."""
    import json

    from processor.query.client import QueryNotFoundError

    if args.key is not None:
        try:
            value = client.get(args.store, args.key, stale=args.stale)
        except QueryNotFoundError as e:
            print(f"processor query: {e.detail or e}", file=sys.stderr)
            return 1 if args.store in {s["name"] for s in client.stores()} else 2
        print(json.dumps(value, ensure_ascii=False))
        return 0
    page_size = min(args.limit or 1000, 1000)
    entries = client.entries(args.store, prefix=args.prefix, stale=args.stale, page_size=page_size)
    for printed, (key, value) in enumerate(entries, start=1):
        print(json.dumps({"key": key, "value": value}, ensure_ascii=False))
        if printed == args.limit:
            break
    return 0


def _print_windows(client: QueryClient, args: argparse.Namespace) -> int:
    """KEY's windows in the time range as JSON lines (1 when it has none), or every key's."""
    import json

    selected = {"from_ms": args.from_ms, "to_ms": args.to_ms, "stale": args.stale}
    if args.key is not None:
        found = client.windows(args.store, args.key, **selected)
        for window in found:
            print(json.dumps(window, ensure_ascii=False))
        if not found:
            print(
                f"processor query: key {args.key!r} has no windows in store {args.store!r} "
                "in that time range",
                file=sys.stderr,
            )
        return 0 if found else 1
    page_size = min(args.limit or 1000, 1000)
    windows = client.all_windows(args.store, page_size=page_size, **selected)
    for printed, window in enumerate(windows, start=1):
        print(json.dumps(window, ensure_ascii=False))
        if printed == args.limit:
            break
    return 0
