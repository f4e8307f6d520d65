"""What `processor query` and `processor status` share: the APP_OR_URL they read from, the
options that reach it, and the client made from them."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from processor.errors import ProcessorError

if TYPE_CHECKING:
    from processor.query.client import QueryClient

__all__ = ["TargetError", "add_target", "add_target_options", "connect"]

TARGET_HELP = (
    "APP_OR_URL is a worker's URL (http://HOST:PORT) or an application id, whose workers are "
    "found on the <application_id>-metadata topic."
)


class TargetError(ProcessorError):
    """APP_OR_URL cannot be reached as given."""


def add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target", metavar="APP_OR_URL", help="a worker's URL, or the application id"
    )


def add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-servers",
        dest="bootstrap_servers",
        default=os.environ.get("PROCESSOR_BOOTSTRAP_SERVERS"),
        help="to find a worker of an application id (default: $PROCESSOR_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("PROCESSOR_HTTP_TOKEN"),
        help="the workers' --http-token (default: $PROCESSOR_HTTP_TOKEN)",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per request (default: 10)"
    )


def connect(args: argparse.Namespace) -> QueryClient:
    """A client of the worker `args.target` names, or of a worker of the application it names;
    raises `TargetError` (or the client's `ProcessorError`) saying what to give instead."""
    from processor.query.client import QueryClient

    if args.timeout <= 0:
        raise TargetError(f"--timeout must be positive, got {args.timeout:g}")
    token = args.token or None
    if args.target.startswith(("http://", "https://")):
        return QueryClient(args.target, token=token, timeout=args.timeout)
    if not args.bootstrap_servers:
        raise TargetError(
            f"{args.target!r} is not a worker URL (http://HOST:PORT); to find a worker of "
            f"application {args.target!r} give --bootstrap-servers or set "
            "PROCESSOR_BOOTSTRAP_SERVERS"
        )
    return QueryClient.for_application(
        args.bootstrap_servers, args.target, token=token, timeout=args.timeout
    )
