"""`processor run`: run a topology as a worker of its application (or N of them)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from processor import config as config_module
from processor.errors import ConfigError
from processor.runtime.loader import load_topology

__all__ = ["add", "execute"]


def add(commands: Any) -> None:
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


def execute(args: argparse.Namespace, argv: Sequence[str]) -> int:
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
