"""Building a worker's collaborators, once, at startup.

`assemble()` checks and creates the topics, makes the Kafka clients, the tasks, the status
publisher, the rebalancer and (when configured) the HTTP server, and returns them as one frozen
`Collaborators`: nothing is built later, so nothing is missing while the worker runs. Each
collaborator registers how it is closed on one of two stacks: `resources` (closed whenever the
worker ends) and `on_failure` (closed first, and only after a failure: leave the group without
committing anything more).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any

from processor.config import WorkerConfig
from processor.dsl.topology import Topology
from processor.ids import TaskId
from processor.kafka.admin import Admin
from processor.kafka.changelog_reader import ChangelogReader, keys_between
from processor.kafka.consumer import GroupConsumer
from processor.kafka.global_reader import GlobalTopicReader
from processor.kafka.positions import read_latest
from processor.kafka.producer import OutputProducer, producer_max_bytes
from processor.metrics import WorkerMetrics
from processor.runtime.async_metrics import AsyncMetrics
from processor.runtime.async_runner import AsyncRunner
from processor.runtime.changelog_check import ChangelogCheck
from processor.runtime.clients import (
    admin_settings,
    consumer_settings,
    producer_settings,
    restore_consumer_settings,
)
from processor.runtime.commit import AtLeastOnceCommitter, Committer, make_committer
from processor.runtime.global_tables import GlobalTables
from processor.runtime.measurements import Measurements
from processor.runtime.output import Output
from processor.runtime.query_source import RuntimeView
from processor.runtime.rebalance import Rebalancer
from processor.runtime.serving import QueryService
from processor.runtime.sink_metrics import SinkMetrics
from processor.runtime.source_metrics import SourceMetrics
from processor.runtime.source_task import SourceRuntime
from processor.runtime.stall import StallWatch
from processor.runtime.status_publisher import StatusPublisher
from processor.runtime.task import RecordPosition, TaskOptions
from processor.runtime.task_manager import TaskManager
from processor.runtime.task_plan import TaskPlan
from processor.state.backend import TaskStateBackend
from processor.state.budget import MemoryBudget
from processor.state.cleanup import StateCleaner
from processor.state.restore import Restorer
from processor.topology.external_source import source_positions_topic
from processor.topology.graph import SinkNode
from processor.topology.handling import (
    Accounting,
    ErrorHandler,
    ErrorHandling,
    RecordBytes,
    RecordFailure,
)
from processor.topology.retry import Retry
from processor.topology.subtopology import SubTopology
from processor.windows.serde import WindowedSerde

__all__ = ["Collaborators", "assemble"]

# Reading where a source stopped: its previous owner's last transaction may have to be timed out
# by the broker first (when it could not be fenced); the worker goes on meanwhile.
_POSITION_READ_TIMEOUT_S = 120.0
# Reading the keys other workers wrote to a changelog, to write this worker's values again.
_KEY_READ_TIMEOUT_S = 30.0

log = logging.getLogger("processor.worker")


@dataclass(frozen=True)
class Collaborators:
    """Everything a started worker runs with."""

    plan: TaskPlan
    admin: Admin
    output: Output
    consumer: GroupConsumer
    committer: Committer
    tasks: TaskManager
    status: StatusPublisher
    rebalancer: Rebalancer
    cleaner: StateCleaner
    stalls: StallWatch
    global_tables: GlobalTables
    measurements: Measurements
    http: QueryService | None
    """The query API and /metrics (None: no HTTP server), starting beside the worker."""


@dataclass(frozen=True)
class WorkerParts:
    """What the worker makes before its collaborators and shares with them."""

    topology: Topology
    config: WorkerConfig
    instance_id: str
    subtopologies: dict[int, SubTopology]
    handling: ErrorHandling
    accounting: Accounting
    metrics: WorkerMetrics


def assemble(parts: WorkerParts, resources: ExitStack, on_failure: ExitStack) -> Collaborators:
    # First: a port in use stops the worker here; the HTTP stack is imported meanwhile.
    http = None if parts.config.http_port is None else QueryService(parts)
    try:
        made = _assemble(parts, resources, on_failure, http)
    except BaseException:
        if http is not None:
            http.close()
        raise
    if http is not None:
        # Registered last, so closed first: no request reaches the tasks while they close.
        resources.callback(http.close)
    return made


def _assemble(
    parts: WorkerParts, resources: ExitStack, on_failure: ExitStack, http: QueryService | None
) -> Collaborators:
    cfg, instance_id = parts.config, parts.instance_id
    admin = Admin(admin_settings(cfg))
    resources.callback(admin.close)
    admin.prepare_group_requests()
    plan = TaskPlan(
        admin,
        cfg,
        parts.subtopologies,
        instance_id=instance_id,
        dead_letter_topic=cfg.dead_letters if parts.handling.uses_dead_letters else None,
    )
    _log_start(parts, plan)
    output_settings = producer_settings(cfg, instance_id)
    output = _output(parts, admin, output_settings)
    group_settings = consumer_settings(cfg, instance_id, plan.identity.client_id())
    consumer = GroupConsumer(group_settings)
    on_failure.callback(_close_quietly, consumer, instance_id)
    changelogs = {t for sub in parts.subtopologies.values() for t in sub.changelog_topics.values()}
    global_tables = _global_tables(parts, admin, resources)
    limits = output.changelog_limits(changelogs, producer_max_bytes(output_settings))
    options = _task_options(parts, limits, global_tables)
    committer = make_committer(
        output.producer, consumer, exactly_once=cfg.exactly_once, options=options, emitter=output
    )
    on_failure.callback(committer.abandon)
    committer.start()
    tasks = _task_manager(parts, output, options, resources)
    resources.callback(tasks.shutdown)
    # After a failure the active tasks go uncommitted, before the consumer's revoke callback
    # could commit them.
    on_failure.callback(tasks.close_active)
    status = StatusPublisher(cfg, instance_id, tasks, parts.accounting, parts.metrics)
    resources.callback(status.close)
    session_timeout_s, stalls = _stall_watch(group_settings)
    rebalancer = Rebalancer(
        cfg,
        plan,
        admin,
        consumer,
        committer,
        tasks,
        status,
        stalls,
        session_timeout_s=session_timeout_s,
    )
    if isinstance(committer, AtLeastOnceCommitter):
        _check_changelogs(committer.changelog_check, parts, rebalancer, stalls)
    if http is not None:
        http.serve(plan, RuntimeView(instance_id, rebalancer, status, tasks))
        status.endpoint = http.endpoint
    return Collaborators(
        plan=plan,
        admin=admin,
        output=output,
        consumer=consumer,
        committer=committer,
        tasks=tasks,
        status=status,
        rebalancer=rebalancer,
        cleaner=StateCleaner(cfg.app_state_dir, cfg.state_cleanup_delay_ms / 1000),
        stalls=stalls,
        global_tables=global_tables,
        measurements=Measurements(tasks, consumer, exact_lags=cfg.assignment_load_aware),
        http=http,
    )


def _check_changelogs(
    check: ChangelogCheck, parts: WorkerParts, rebalancer: Rebalancer, stalls: StallWatch
) -> None:
    """At-least-once: how commits read other workers' changelog records, and ask the group
    whether this worker still owns its tasks before writing over them."""
    cfg = parts.config
    check.read_keys = partial(
        keys_between,
        restore_consumer_settings(cfg, parts.instance_id),
        group_id=f"{cfg.application_id}-check-{parts.instance_id}",
        timeout_s=_KEY_READ_TIMEOUT_S,
    )

    def confirm_owner() -> bool | None:
        stalls.tick()  # a stall inside the commit is what such records usually follow
        return rebalancer.still_a_member(stalls.stalled_s)

    check.confirm_owner = confirm_owner


def _global_tables(parts: WorkerParts, admin: Admin, resources: ExitStack) -> GlobalTables:
    """Every global table of the topology on this worker (`processor.runtime.global_tables`),
    started: their thread restores them, and the worker waits for it before joining."""
    cfg = parts.config

    def reader() -> GlobalTopicReader:
        return GlobalTopicReader(
            {
                **restore_consumer_settings(cfg, parts.instance_id),
                "client.id": f"{parts.instance_id}-global",
            },
            group_id=f"{cfg.application_id}-global-{parts.instance_id}",
            read_committed=cfg.exactly_once,  # follows committed data only
        )

    tables = GlobalTables(
        parts.topology.global_tables(),
        cfg.app_state_dir,
        reader,
        admin.partition_counts,
        deserialization=cfg.deserialization_error_handler,
    )
    resources.callback(tables.close)
    tables.start()
    return tables


def _output(parts: WorkerParts, admin: Admin, settings: dict[str, Any]) -> Output:
    """The emitter sinks write through, knowing the limits of the topics it writes."""
    output = Output(
        OutputProducer(settings),
        admin,
        instance_id=parts.instance_id,
        # A refused output is handled as its input: name the input of every output then.
        track_origins=parts.config.production_error_handler is not ErrorHandler.FAIL,
    )
    output.limit_records(_output_topics(parts))
    output.partition_by_inner_key(_windowed_key_topics(parts))
    return output


def _source_runtime(parts: WorkerParts, output: Output) -> SourceRuntime | None:
    """What source tasks need, when the topology has sources outside Kafka."""
    if not any(sub.source is not None for sub in parts.subtopologies.values()):
        return None
    cfg = parts.config
    topic = source_positions_topic(cfg.application_id)

    def read_position(source: str) -> bytes | None:
        return read_latest(
            {
                **restore_consumer_settings(cfg, parts.instance_id),
                "client.id": f"{parts.instance_id}-source-positions",
            },
            topic,
            source.encode(),
            group_id=f"{cfg.application_id}-sources-{parts.instance_id}",
            read_committed=cfg.exactly_once,
            timeout_s=_POSITION_READ_TIMEOUT_S,
        )

    return SourceRuntime(
        output,
        parts.handling,
        parts.accounting,
        read_position,
        topic,
        exactly_once=cfg.exactly_once,
        count_produced=SourceMetrics(parts.metrics.registry).counter(),
    )


def _task_options(
    parts: WorkerParts, changelog_limits: dict[str, int], global_tables: GlobalTables
) -> TaskOptions:
    cfg = parts.config
    unproducible: dict[RecordPosition, tuple[RecordFailure, RecordBytes]] = {}
    return TaskOptions(
        handling=parts.handling,
        accounting=parts.accounting,
        retry=Retry(
            cfg.processing_retry_attempts,
            cfg.processing_retry_backoff_ms,
            cfg.processing_retry_max_backoff_ms,
        ),
        unproducible=unproducible,
        changelog_limits=changelog_limits,
        idle_advance_ms=cfg.idle_advance_ms,
        max_task_idle_ms=cfg.max_task_idle_ms,
        global_stores=global_tables.stores,
        exactly_once=cfg.exactly_once,
    )


def _output_topics(parts: WorkerParts) -> list[str]:
    """The topics sinks and the dead-letter handler write."""
    dead_letters = {parts.config.dead_letters} if parts.handling.uses_dead_letters else set()
    sinks = {t for sub in parts.subtopologies.values() for t in sub.external_sink_topics}
    return sorted(sinks | dead_letters)


def _windowed_key_topics(parts: WorkerParts) -> list[str]:
    """The topics sinks write windowed keys to."""
    return sorted(
        {
            node.topic
            for sub in parts.subtopologies.values()
            for node in sub.nodes
            if isinstance(node, SinkNode) and isinstance(node.key_serde, WindowedSerde)
        }
    )


def _restorer_factory(
    parts: WorkerParts,
) -> Callable[[Callable[[TaskId, str], TaskStateBackend]], Restorer]:
    cfg = parts.config

    def make(wipe: Callable[[TaskId, str], TaskStateBackend]) -> Restorer:
        reader = ChangelogReader(
            restore_consumer_settings(cfg, parts.instance_id),
            group_id=f"{cfg.application_id}-restore-{parts.instance_id}",
            read_committed=cfg.exactly_once,
        )
        return Restorer(reader, wipe_callback=wipe, listener=parts.topology.restore_listener)

    return make


def _close_quietly(consumer: GroupConsumer, instance_id: str) -> None:
    try:
        consumer.close()
    except Exception as e:  # closing after a failure must not hide the failure
        log.warning("worker %s: closing the consumer failed: %s", instance_id, e)


def _stall_watch(group_settings: Mapping[str, object]) -> tuple[float, StallWatch]:
    """The session timeout (s), and the watch for stalls that may outlast it."""
    session_timeout_s = int(str(group_settings.get("session.timeout.ms", 45000))) / 1000
    max_poll_interval_s = int(str(group_settings.get("max.poll.interval.ms", 300000))) / 1000
    return session_timeout_s, StallWatch(min(session_timeout_s, max_poll_interval_s))


def _log_start(parts: WorkerParts, plan: TaskPlan) -> None:
    log.info(
        "worker %s: application %s, %d sub-topologies, %d tasks, %s",
        parts.instance_id,
        parts.config.application_id,
        len(parts.subtopologies),
        len(plan.tasks),
        parts.config.processing_guarantee.value,
    )


def _task_manager(
    parts: WorkerParts, output: Output, options: TaskOptions, resources: ExitStack
) -> TaskManager:
    manager = TaskManager(
        parts.subtopologies,
        output,
        parts.config.app_state_dir,
        _restorer_factory(parts),
        memory=MemoryBudget(parts.config.store_cache_bytes),
        task_options=options,
        sink_metrics=SinkMetrics(parts.metrics.registry).observer,
        sources=_source_runtime(parts, output),
    )
    if any(sub.async_operators for sub in parts.subtopologies.values()):
        # Closed after the tasks (a callback registered later runs first): on_stop hooks last.
        runner = AsyncRunner(
            parts.topology.start_hooks,
            parts.topology.stop_hooks,
            parts.config.async_max_in_flight,
        )
        resources.callback(runner.close)
        runner.observe = AsyncMetrics(parts.metrics.registry, runner).observe
        manager.async_runner = runner
    return manager
