"""The `processor` command: `run` a topology as a worker, `describe` it."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from processor import config as config_module
from processor.errors import ConfigError, ProcessorError, TopologyError
from processor.runtime.loader import load_topology

log = logging.getLogger("processor")


def _parser() -> argparse.ArgumentParser:
    # No abbreviations: --workers is stripped from the arguments handed to child workers by its
    # exact spelling, and an abbreviated --worker would make every child start its own children.
    parser = argparse.ArgumentParser(prog="processor", description=__doc__, allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run",
        allow_abbrev=False,
        help="run a topology as a worker of its application",
        description="Run MODULE[:ATTR] as a worker. Every setting can also come from a "
        "PROCESSOR_<SETTING> environment variable; librdkafka settings from --kafka KEY=VALUE or "
        "PROCESSOR_KAFKA_<KEY> (dots as underscores).",
    )
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
    run.add_argument("--store-cache-size", dest="store_cache_size")
    run.add_argument(
        "--num-standby-replicas",
        dest="num_standby_replicas",
        help="warm copies of each stateful task on other workers (default 0)",
    )
    run.add_argument("--acceptable-recovery-lag", dest="acceptable_recovery_lag")
    run.add_argument("--max-warmup-time-ms", dest="max_warmup_time_ms")
    run.add_argument("--state-cleanup-delay-ms", dest="state_cleanup_delay_ms")
    run.add_argument("--http-host", dest="http_host")
    run.add_argument("--http-port", dest="http_port", help="serve /metrics here (0: any free port)")
    run.add_argument(
        "--kafka", action="append", default=[], metavar="KEY=VALUE", help="a librdkafka setting"
    )
    run.add_argument("--workers", type=int, default=1, help="start N worker processes on this host")
    run.add_argument("--log-level", default=os.environ.get("PROCESSOR_LOG_LEVEL", "INFO"))

    describe = commands.add_parser(
        "describe", help="print a topology's sources, operators and sinks"
    )
    describe.add_argument("topology", metavar="MODULE[:ATTR]")
    return parser


def _run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from processor.runtime.worker import Worker

    topology = load_topology(args.topology)
    config_module.check_environment(os.environ)
    flags = {name: getattr(args, name) for name in config_module.SETTINGS}
    cfg = config_module.load(
        flags=flags, kafka_pairs=args.kafka, default_application_id=topology.name
    )
    if args.workers < 1:
        raise ConfigError("workers", f"must be at least 1, got {args.workers}")
    if args.workers > 1:
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
