"""The `processor` command: `run` a topology as a worker, `describe` it, `query` its stores."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from processor import config as config_module
from processor.errors import ConfigError, ProcessorError, TopologyError
from processor.runtime.loader import load_topology

if TYPE_CHECKING:
    from processor.query.client import QueryClient

log = logging.getLogger("processor")


def _parser() -> argparse.ArgumentParser:
    # No abbreviations: --workers is stripped from the arguments handed to child workers by its
    # exact spelling, and an abbreviated --worker would make every child start its own children.
    parser = argparse.ArgumentParser(prog="processor", description=__doc__, allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True)

    _add_run(commands)
    describe = commands.add_parser(
        "describe", help="print a topology's sources, operators and sinks"
    )
    describe.add_argument("topology", metavar="MODULE[:ATTR]")

    _add_query(commands)
    return parser


def _add_run(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        allow_abbrev=False,
        help="run a topology as a worker of its application",
        description="Run MODULE[:ATTR] as a worker. Every setting can also come from a "
        "PROCESSOR_<SETTING> environment variable; librdkafka settings from --kafka KEY=VALUE or "
        "PROCESSOR_KAFKA_<KEY> (dots as underscores).",
    )
    _add_worker_settings(run)
    _add_service_settings(run)


def _add_worker_settings(run: argparse.ArgumentParser) -> None:
    """Where and how the worker runs: its application, state, guarantee, group and cache."""
    run.add_argument("topology", metavar="MODULE[:ATTR]")
    run.add_argument("--bootstrap-servers", dest="bootstrap_servers")
    run.add_argument("--application-id", dest="application_id", help="default: the topology's name")
    run.add_argument(
        "--instance-id", dest="instance_id", help="default: generated once, kept in the state dir"
    )
    run.add_argument("--state-dir", dest="state_dir")
    run.add_argument(
        "--processing-guarantee",
        dest="processing_guarantee",
        choices=["at_least_once", "exactly_once"],
    )
    run.add_argument("--commit-interval-ms", dest="commit_interval_ms")
    run.add_argument(
        "--static-membership", dest="static_membership", action="store_const", const="true"
    )
    run.add_argument("--assignment-balance-factor", dest="assignment_balance_factor")
    run.add_argument("--consume-batch-size", dest="consume_batch_size")
    run.add_argument("--async-max-in-flight", dest="async_max_in_flight")
    run.add_argument(
        "--store-cache-bytes",
        dest="store_cache_bytes",
        help="memory for the stores' write-back caches of this worker, all tasks together: "
        "bytes, or with a unit, e.g. 64MiB (the default), 512KiB, 1GB; uncommitted changes may "
        "fill it, then the worker commits early",
    )
    # Replaced by --store-cache-bytes: still parsed, so that config.load refuses it by name.
    run.add_argument("--store-cache-size", dest="store_cache_size", help=argparse.SUPPRESS)
    run.add_argument(
        "--num-standby-replicas",
        dest="num_standby_replicas",
        help="warm copies of each stateful task on other workers (default 0)",
    )
    run.add_argument("--acceptable-recovery-lag", dest="acceptable_recovery_lag")
    run.add_argument("--max-warmup-time-ms", dest="max_warmup_time_ms")
    run.add_argument("--state-cleanup-delay-ms", dest="state_cleanup_delay_ms")


def _add_service_settings(run: argparse.ArgumentParser) -> None:
    """Its HTTP server, error handlers, retries, startup and librdkafka settings, process count."""
    run.add_argument("--http-host", dest="http_host")
    run.add_argument(
        "--http-port",
        dest="http_port",
        help="serve the query API and /metrics here (default 0: any free port; off: none)",
    )
    run.add_argument(
        "--http-token", dest="http_token", help="require 'Authorization: Bearer TOKEN'"
    )
    run.add_argument(
        "--query-timeout-ms",
        dest="query_timeout_ms",
        help="time one query may take, its forwards included (default 5000)",
    )
    run.add_argument(
        "--query-max-requests",
        dest="query_max_requests",
        help="reads of store contents served at once; more get 503 (default 8)",
    )
    run.add_argument(
        "--query-max-forwards",
        dest="query_max_forwards",
        help="queries forwarded to other workers at once; more get 503 (default 4)",
    )
    for stage in ("deserialization", "processing", "production"):
        run.add_argument(
            f"--{stage}-error-handler",
            dest=f"{stage}_error_handler",
            help="fail (default), skip or dead_letter",
        )
    run.add_argument(
        "--late-record-handler",
        dest="late_record_handler",
        help="records whose windows have closed: skip (default: counted as late), dead_letter "
        "or fail",
    )
    run.add_argument(
        "--idle-advance-ms",
        dest="idle_advance_ms",
        help="a task with no input for this long has its stream time follow the wall clock, so "
        "its windows close (default 0: off; the same on every worker)",
    )
    run.add_argument(
        "--max-task-idle-ms",
        dest="max_task_idle_ms",
        help="a task reading several topics (a join, a merge) waits this long for an input with "
        "no buffered record before processing the others (default 0: only while records are "
        "known to be on the broker; -1: never)",
    )
    run.add_argument(
        "--dead-letter-topic",
        dest="dead_letter_topic",
        help="default: <application_id>-dead-letters",
    )
    run.add_argument(
        "--processing-retry-attempts",
        dest="processing_retry_attempts",
        help="retries of a user function raising TransientError (default 3)",
    )
    run.add_argument("--processing-retry-backoff-ms", dest="processing_retry_backoff_ms")
    run.add_argument("--processing-retry-max-backoff-ms", dest="processing_retry_max_backoff_ms")
    run.add_argument(
        "--startup-timeout-ms",
        dest="startup_timeout_ms",
        help="how long startup checks wait for the broker before failing (default 30000)",
    )
    run.add_argument(
        "--kafka", action="append", default=[], metavar="KEY=VALUE", help="a librdkafka setting"
    )
    run.add_argument("--workers", type=int, default=1, help="start N worker processes on this host")
    run.add_argument("--log-level", default=os.environ.get("PROCESSOR_LOG_LEVEL", "INFO"))


def _add_query(commands: Any) -> None:
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
        "APP_OR_URL is a worker's URL (http://HOST:PORT) or an application id, whose workers "
        "are found on the <application_id>-metadata topic. Errors exit with 2.",
    )
    query.add_argument("target", metavar="APP_OR_URL")
    query.add_argument("store", metavar="STORE")
    query.add_argument("key", metavar="KEY", nargs="?")
    query.add_argument(
        "--bootstrap-servers",
        dest="bootstrap_servers",
        default=os.environ.get("PROCESSOR_BOOTSTRAP_SERVERS"),
        help="to find a worker of an application id (default: $PROCESSOR_BOOTSTRAP_SERVERS)",
    )
    query.add_argument(
        "--token",
        default=os.environ.get("PROCESSOR_HTTP_TOKEN"),
        help="the workers' --http-token (default: $PROCESSOR_HTTP_TOKEN)",
    )
    query.add_argument(
        "--stale", action="store_true", help="answer from a standby copy when the active is down"
    )
    query.add_argument("--prefix", help="only keys starting with PREFIX (without KEY)")
    query.add_argument(
        "--from-ms",
        dest="from_ms",
        type=int,
        metavar="MS",
        help="windows from this time, inclusive (window and session stores; default 0)",
    )
    query.add_argument(
        "--to-ms",
        dest="to_ms",
        type=int,
        metavar="MS",
        help="windows to this time, inclusive (window and session stores; default: no bound)",
    )
    query.add_argument(
        "--limit", type=int, metavar="N", help="print at most N entries (without KEY)"
    )
    query.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    query.add_argument("--log-level", default=os.environ.get("PROCESSOR_LOG_LEVEL", "WARNING"))


def _run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from processor.runtime import preflight
    from processor.runtime.worker import Worker

    topology = load_topology(args.topology)
    config_module.check_environment(os.environ)
    names = (*config_module.SETTINGS, *config_module.REPLACED_SETTINGS)
    flags = {name: getattr(args, name) for name in names}
    cfg = config_module.load(
        flags=flags, kafka_pairs=args.kafka, default_application_id=topology.name
    )
    if args.workers < 1:
        raise ConfigError("workers", f"must be at least 1, got {args.workers}")
    # librdkafka's objections before anything starts (no network; the worker checks again).
    preflight.check_settings(cfg)
    if args.workers > 1:
        preflight.check_cluster(cfg)  # one line here, not one per child and a supervisor's
        from processor.runtime.supervisor import child_arguments, supervise

        base = _without_options(
            list(argv), {"--workers", "--state-dir", "--instance-id", "--http-port"}
        )
        return supervise(
            [
                child_arguments(base, i, cfg.state_dir, cfg.instance_id, cfg.http_port)
                for i in range(args.workers)
            ]
        )
    worker = Worker(topology, cfg)
    worker.install_signal_handlers()
    worker.run()
    return 0


def _query(args: argparse.Namespace) -> int:
    """`processor query`: 0 with the answer on stdout; 1 when KEY is absent (has no windows);
    2 on any error, with one line on stderr."""
    from processor.query.client import QueryClient

    def fail(message: str) -> int:
        print(f"processor query: {message}", file=sys.stderr)
        return 2

    if args.key is not None and (args.prefix is not None or args.limit is not None):
        return fail("--prefix and --limit list entries: give them without KEY")
    if args.limit is not None and args.limit < 1:
        return fail(f"--limit must be at least 1, got {args.limit}")
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


def _without_options(argv: list[str], options: set[str]) -> list[str]:
    """Drop `--opt value` and `--opt=value` for each of `options`."""
    result: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in options:
            skip = "=" not in arg
            continue
        result.append(arg)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s [pid %(process)d] %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "describe":
            print(load_topology(args.topology).describe())
            return 0
        if args.command == "query":
            return _query(args)
        return _run(args, argv)
    except ConfigError as e:
        print(f"processor: configuration error: {e}", file=sys.stderr)
        return 2
    except TopologyError as e:
        print(f"processor: topology error: {e}", file=sys.stderr)
        return 2
    except ProcessorError as e:
        print(f"processor: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
