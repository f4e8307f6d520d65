"""`processor status`: the status page of a running application, in a terminal."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from processor.cli import logs, target
from processor.errors import ProcessorError

__all__ = ["add", "execute"]

# How often --watch redraws, like the page reloads itself.
WATCH_INTERVAL_S = 3.0
_CLEAR = "\x1b[H\x1b[2J"


def add(commands: Any) -> None:
    status = commands.add_parser(
        "status",
        allow_abbrev=False,
        help="show a running application's instances and tasks",
        description="Print every instance of an application with its tasks: state (restoring, "
        "running, standby), consumer lag, records processed per second, restore or standby "
        "progress with records/s and the time left, and recent failures. "
        f"{target.TARGET_HELP} Errors exit with 2.",
    )
    target.add_target(status)
    target.add_target_options(status)
    status.add_argument(
        "--watch",
        action="store_true",
        help=f"redraw every {WATCH_INTERVAL_S:g} s until interrupted (Ctrl-C)",
    )
    logs.add_options(status, default_level="WARNING")


def execute(args: argparse.Namespace) -> int:
    """0 after printing the status (with --watch: once interrupted); 2 on an error, with one
    line on stderr."""
    from processor.status.text import render_text
    from processor.status.view import StatusView

    def fail(message: str) -> int:
        print(f"processor status: {message}", file=sys.stderr)
        return 2

    try:
        with target.connect(args) as client:
            while True:
                try:
                    view = StatusView.from_json(client.status())
                except (KeyError, TypeError, ValueError, AttributeError) as e:
                    return fail(f"{client.url} answered a status this version cannot read: {e!r}")
                text = render_text(view)
                print(_CLEAR + text if args.watch else text, flush=True)
                if not args.watch:
                    return 0
                time.sleep(WATCH_INTERVAL_S)
    except ProcessorError as e:
        return fail(str(e))
    except KeyboardInterrupt:
        return 0
