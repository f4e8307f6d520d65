"""`processor reset`: start an application over, as Kafka Streams' application reset tool does
(`processor.runtime.reset_plan` says what changes; `processor.runtime.reset` does it)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from processor import config as config_module
from processor.errors import ConfigError
from processor.runtime.loader import load_topology

__all__ = ["add", "execute"]

# Exit status of a reset refused: workers running, or a question that nobody can answer.
REFUSED = 2


def add(commands: Any) -> None:
    reset = commands.add_parser(
        "reset",
        allow_abbrev=False,
        help="start an application over: input offsets back, internal topics and state deleted",
        description="Reset the application MODULE[:ATTR] runs as, so that its next run computes "
        "everything again from its inputs: the consumer group's offsets on every source topic "
        "back to the earliest (or --to-datetime), every internal topic deleted (changelogs, "
        "repartition, metadata, ...; found by exact name from the topology), the application's "
        "local state wiped in each --state-dir, and the progress exactly-once sinks keep "
        "outside Kafka cleared (asking first). Every worker of the application must be stopped. "
        "Settings also come from PROCESSOR_<SETTING> environment variables, as for run.",
    )
    reset.add_argument("topology", metavar="MODULE[:ATTR]", help="the application's topology")
    reset.add_argument(
        "--bootstrap-servers",
        dest="bootstrap_servers",
        metavar="HOST:PORT[,...]",
        help="the Kafka cluster (default: PROCESSOR_BOOTSTRAP_SERVERS)",
    )
    reset.add_argument(
        "--application-id",
        dest="application_id",
        help="the application to reset (default: the topology's name)",
    )
    reset.add_argument(
        "--to-datetime",
        dest="to_datetime",
        metavar="ISO-8601",
        help="move the input offsets to the first record at or after this time, e.g. "
        "2026-12-01T10:00:00Z (default: to the earliest offset)",
    )
    reset.add_argument(
        "--state-dir",
        dest="state_dirs",
        metavar="DIR",
        action="append",
        default=[],
        type=Path,
        help="a worker's state directory: the application's directory in it (and in its "
        "worker-<i> directories, from run --workers) is wiped, the instance id kept; "
        "repeatable (default: none, local state is not touched)",
    )
    reset.add_argument(
        "--dead-letters",
        action="store_true",
        help="delete the dead-letter topic too; it holds user data (default: kept)",
    )
    reset.add_argument(
        "--dead-letter-topic",
        dest="dead_letter_topic",
        metavar="TOPIC",
        help="the dead-letter topic, with --dead-letters (default: <application_id>-dead-letters)",
    )
    reset.add_argument(
        "--dry-run", action="store_true", help="print the plan and change nothing (default: off)"
    )
    reset.add_argument(
        "--yes",
        action="store_true",
        help="clear the sinks' progress without asking, for scripts (default: ask on a terminal, "
        "refuse without one)",
    )
    reset.add_argument(
        "--kafka",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a librdkafka setting (repeatable; default: none)",
    )


def execute(
    args: argparse.Namespace,
    *,
    ask: Callable[[str], str] = input,
    interactive: Callable[[], bool] = sys.stdin.isatty,
) -> int:
    from processor.runtime import reset

    topology = load_topology(args.topology)
    config_module.check_environment(os.environ)
    names = (*config_module.SETTINGS, *config_module.REPLACED_SETTINGS)
    flags = {name: getattr(args, name, None) for name in names}
    cfg = config_module.load(
        flags=flags, kafka_pairs=args.kafka, default_application_id=topology.name
    )
    request = reset.ResetRequest(
        topology=topology,
        config=cfg,
        to_time_ms=_time_ms(args.to_datetime),
        state_dirs=tuple(args.state_dirs),
        dead_letters=args.dead_letters,
    )
    admin = reset.make_admin(request)
    try:
        reset.refuse_if_running(admin, request)
    except reset.WorkersRunningError as e:
        print(f"processor: reset refused: {e}", file=sys.stderr)
        return REFUSED
    plan = reset.read_plan(admin, request)
    if args.dry_run:
        for step in plan.steps():
            print(f"would {step}")
        print(plan.summary(done=False) + " (dry run: nothing was changed)")
        return 0
    if plan.sinks and not args.yes:
        cleared = "; ".join(sink.describe() for sink in plan.sinks)
        if not interactive():
            print(
                f"processor: reset refused: it would clear {cleared}, and there is no terminal "
                "to ask whether to; pass --yes to clear it; nothing was changed",
                file=sys.stderr,
            )
            return REFUSED
        answer = ask(f"This clears {cleared}. Reset application {cfg.application_id!r}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("processor: reset cancelled; nothing was changed", file=sys.stderr)
            return REFUSED
    reset.execute(admin, plan, report=print)
    print(plan.summary(done=True))
    return 0


def _time_ms(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            "to_datetime", f"{text!r} is not an ISO 8601 time, e.g. 2026-12-01T10:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise ConfigError(
            "to_datetime",
            f"{text!r} has no time zone; add one, e.g. {text}Z for UTC",
        )
    return int(moment.timestamp() * 1000)
