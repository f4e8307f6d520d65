"""`processor status`: the status page of a running application, in a terminal."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from processor.cli import logs
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
        "progress with records/s and the time left, and recent failures. APP_OR_URL is a "
        "worker's URL (http://HOST:PORT) or an application id, whose workers are found on the "
        "<application_id>-metadata topic. Errors exit with 2.",
    )
    status.add_argument("target", metavar="APP_OR_URL")
    status.add_argument(
        "--bootstrap-servers",
        dest="bootstrap_servers",
        default=os.environ.get("PROCESSOR_BOOTSTRAP_SERVERS"),
        help="to find a worker of an application id (default: $PROCESSOR_BOOTSTRAP_SERVERS)",
    )
    status.add_argument(
        "--token",
        default=os.environ.get("PROCESSOR_HTTP_TOKEN"),
        help="the workers' --http-token (default: $PROCESSOR_HTTP_TOKEN)",
    )
    status.add_argument(
        "--watch",
        action="store_true",
        help=f"redraw every {WATCH_INTERVAL_S:g} s until interrupted (Ctrl-C)",
    )
    status.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    logs.add_options(status, default_level="WARNING")


def execute(args: argparse.Namespace) -> int:
    """0 after printing the status (with --watch: once interrupted); 2 on an error, with one
    line on stderr."""
    from processor.query.client import QueryClient
    from processor.status.text import render_text
    from processor.status.view import StatusView

    def fail(message: str) -> int:
        print(f"processor status: {message}", file=sys.stderr)
        return 2

    if args.timeout <= 0:
        return fail(f"--timeout must be positive, got {args.timeout:g}")
    token = args.token or None
    try:
        if args.target.startswith(("http://", "https://")):
            client = QueryClient(args.target, token=token, timeout=args.timeout)
        elif not args.bootstrap_servers:
            return fail(
                f"{args.target!r} is not a worker URL (http://HOST:PORT); to find a worker of "
                f"application {args.target!r} give --bootstrap-servers or set "
                "PROCESSOR_BOOTSTRAP_SERVERS"
            )
        else:
            client = QueryClient.for_application(
                args.bootstrap_servers, args.target, token=token, timeout=args.timeout
            )
        with client:
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
