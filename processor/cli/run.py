"""`processor run`: run a topology as a worker of its application (or N of them)."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

from processor import config as config_module
from processor.cli import logs
from processor.cli.settings_help import setting_help, setting_metavar
from processor.errors import ConfigError
from processor.runtime.loader import check_runnable, load_topology

__all__ = ["add", "execute"]


def add(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        allow_abbrev=False,
        help="run a topology as a worker of its application",
        description="Run MODULE[:ATTR] as a worker. Every setting can also come from a "
        "PROCESSOR_<SETTING> environment variable (a flag wins); librdkafka settings from "
        "--kafka KEY=VALUE or PROCESSOR_KAFKA_<KEY> (dots as underscores).",
    )
    run.add_argument(
        "topology",
        metavar="MODULE[:ATTR]",
        help="the topology: a module holding one Topology, or ATTR of it (e.g. topologies.words)",
    )
    settings = run.add_argument_group("worker settings")
    for setting in config_module.SETTINGS:
        settings.add_argument(
            "--" + setting.replace("_", "-"),
            dest=setting,
            help=setting_help(setting),
            **_FLAG_KINDS.get(setting, {"metavar": setting_metavar(setting)}),
        )
    # Replaced by --store-cache-bytes: still parsed, so that config.load refuses it by name.
    settings.add_argument("--store-cache-size", dest="store_cache_size", help=argparse.SUPPRESS)
    settings.add_argument(
        "--kafka",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a librdkafka setting, repeatable; prefix it with consumer., producer. or admin. "
        "for one client (default: none; PROCESSOR_KAFKA_<KEY>)",
    )
    process = run.add_argument_group("process")
    process.add_argument(
        "--workers",
        type=int,
        metavar="N",
        default=1,
        help="start N worker processes on this host, each a member of the application with "
        "its own state dir <state_dir>/worker-<i> (default: 1)",
    )
    process.add_argument(
        "--restore-progress",
        dest="restore_progress",
        choices=("auto", "off"),
        default="auto",
        help="a progress line per restoring task below the log when stderr is a terminal and "
        "the log format text (auto; not with --workers above 1), or never (off) (default: auto)",
    )
    logs.add_options(process, default_level="INFO")


# Flags that are not `--setting VALUE`.
_FLAG_KINDS: dict[str, dict[str, Any]] = {
    "processing_guarantee": {"choices": [g.value for g in config_module.ProcessingGuarantee]},
    "static_membership": {"action": "store_const", "const": "true"},
    "assignment_load_aware": {"action": "store_const", "const": "true"},
}


def execute(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from processor.runtime import preflight
    from processor.runtime.worker import Worker

    topology = load_topology(args.topology)
    check_runnable(topology)
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
            list(argv),
            {"--workers", "--state-dir", "--instance-id", "--http-port", "--restore-progress"},
        )
        # N processes redrawing lines in place on one terminal would overwrite each other.
        base += ["--restore-progress", "off"]
        return supervise(
            [
                child_arguments(base, i, cfg.state_dir, cfg.instance_id, cfg.http_port)
                for i in range(args.workers)
            ]
        )
    worker = Worker(topology, cfg)
    worker.install_signal_handlers()
    shipped = args.log_format.strip().lower() == "json"  # lines for a machine, not a person
    if args.restore_progress == "off" or shipped or not sys.stderr.isatty():
        worker.run()
        return 0
    from processor.cli.restore_progress import show_restores

    done = threading.Event()
    drawing = show_restores(sys.stderr, lambda: worker.metrics.snapshot, done)
    try:
        worker.run()
    finally:
        done.set()
        drawing.join(5)
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
