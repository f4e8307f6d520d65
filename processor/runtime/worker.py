"""The worker: one process, one group member, running the tasks assigned to it.

Lifecycle (illegal transitions raise):

```
CREATED --> STARTING --> WAITING_FOR_MEMBERS <--> RUNNING
                |              |                    |
                +--------------+--------------------+--> PENDING_SHUTDOWN --> STOPPED
                                                    +--> FAILED
```

Main loop: consume a batch, route each record to its task, run it through the operators, and
every commit interval commit (see `processor.runtime.commit`). Rebalances arrive as callbacks
inside `consume()`: on revoke the worker commits and drops its active tasks (standbys go on); on
assign it waits for a Stable group snapshot that contains itself, computes the assignment from
it (actives and standbys), promotes the standbys that became active, and `assign()`s the source
partitions of its active tasks.

Before it first joins, a worker joining a running application warms up: it restores, as
standbys, the tasks it will hold once it is in, announces itself on the metadata topic (the
other workers pre-warm what they will gain and report how far behind their copies are), and
joins once every task that will move is within `acceptable_recovery_lag` on its new owner, or
after `max_warmup_time_ms` (`processor.runtime.warmup`).

Between batches the worker follows the metadata topic, publishes its own status there,
refreshes its metrics, and deletes task directories unused for `state_cleanup_delay_ms`.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from enum import Enum
from types import FrameType
from typing import Any

from processor.config import WorkerConfig
from processor.dsl.topology import Topology
from processor.errors import BrokerError, DuplicateInstanceError, ProcessorError
from processor.kafka.admin import Admin
from processor.kafka.changelog_reader import ChangelogReader
from processor.kafka.consumer import GroupConsumer, Message, is_fatal, is_partition_eof
from processor.kafka.producer import Headers, OutputProducer, fence_transactional_id
from processor.kafka.settings import settings_for
from processor.kafka.topic_tail import TopicTail
from processor.metrics import RestoreSample, WorkerMetrics, WorkerSnapshot
from processor.query.server import QueryServer, build_app
from processor.query.source import StoreInfo
from processor.runtime import warmup
from processor.runtime.assignment import Assignment, assign_with_standbys
from processor.runtime.commit import Committer
from processor.runtime.instance import StateDirLock, resolve_instance_id
from processor.runtime.internal_topics import prepare_topics
from processor.runtime.membership import DuplicateWatch, stable_membership
from processor.runtime.preflight import preflight
from processor.runtime.query_source import WorkerQuerySource
from processor.runtime.status import InstancePhase, InstanceStatus, StatusBoard
from processor.runtime.task import RecordPosition, StreamTask, TaskOptions
from processor.runtime.task_id import TaskId
from processor.runtime.task_manager import TaskManager
from processor.state.backend import TaskStateBackend
from processor.state.budget import MemoryBudget
from processor.state.cleanup import StateCleaner
from processor.state.restore import Restorer, RestoreState
from processor.topology.handling import (
    Accounting,
    ErrorHandler,
    ErrorHandling,
    RecordBytes,
    RecordFailure,
)
from processor.topology.retry import Retry
from processor.topology.subtopology import SubTopology, deserialization_overrides

log = logging.getLogger("processor.worker")


class WorkerState(Enum):
    CREATED = "created"
    STARTING = "starting"
    WAITING_FOR_MEMBERS = "waiting_for_members"
    RUNNING = "running"
    PENDING_SHUTDOWN = "pending_shutdown"
    STOPPED = "stopped"
    FAILED = "failed"


_TRANSITIONS: dict[WorkerState, frozenset[WorkerState]] = {
    WorkerState.CREATED: frozenset({WorkerState.STARTING, WorkerState.FAILED}),
    WorkerState.STARTING: frozenset(
        {WorkerState.WAITING_FOR_MEMBERS, WorkerState.PENDING_SHUTDOWN, WorkerState.FAILED}
    ),
    WorkerState.WAITING_FOR_MEMBERS: frozenset(
        {
            WorkerState.WAITING_FOR_MEMBERS,
            WorkerState.RUNNING,
            WorkerState.PENDING_SHUTDOWN,
            WorkerState.FAILED,
        }
    ),
    WorkerState.RUNNING: frozenset(
        {WorkerState.WAITING_FOR_MEMBERS, WorkerState.PENDING_SHUTDOWN, WorkerState.FAILED}
    ),
    WorkerState.PENDING_SHUTDOWN: frozenset({WorkerState.STOPPED, WorkerState.FAILED}),
    WorkerState.STOPPED: frozenset(),
    WorkerState.FAILED: frozenset(),
}

# How long one consume() call may wait for records. librdkafka's batch consume waits the whole
# timeout when fewer records than the batch size arrive, so this bounds end-to-end latency too.
_CONSUME_TIMEOUT_S = 0.1
_SNAPSHOT_RETRY_S = 0.1
_DUPLICATE_LINGER_S = 3.0
_HOUSEKEEPING_INTERVAL_S = 1.0
# Status is republished this often while warming up or pre-warming for a joiner, else this often.
_STATUS_BUSY_INTERVAL_S = 1.0
_STATUS_IDLE_INTERVAL_S = 10.0
_CLEANUP_INTERVAL_S = 5.0
# A joiner that has not republished its status for this long is no longer pre-warmed for.
_JOINER_MAX_SILENCE_MS = 30_000
_WARMUP_POLL_S = 0.5
_WARMUP_LOG_INTERVAL_S = 5.0


class Worker:
    def __init__(self, topology: Topology, config: WorkerConfig) -> None:
        self.topology = topology
        self.config = config
        self.state = WorkerState.CREATED
        self.instance_id = ""
        self.assignment: Assignment | None = None
        self._subtopologies: dict[int, SubTopology] = {
            s.id: s for s in topology.subtopologies(config.application_id)
        }
        self._all_tasks: list[TaskId] = []
        self._tasks: TaskManager | None = None
        self._duplicates: DuplicateWatch | None = None
        self._stop_requested = False
        self._snapshot_pending = False
        self._next_snapshot_at = 0.0
        self._lock: StateDirLock | None = None
        self._admin: Admin | None = None
        self._consumer: GroupConsumer | None = None
        self._producer: OutputProducer | None = None
        self._committer: Committer | None = None
        self.metrics = WorkerMetrics()
        self.http_port: int | None = None
        self.endpoint: str | None = None
        self._http: QueryServer | None = None
        self._status_producer: OutputProducer | None = None
        self._metadata: TopicTail | None = None
        self.board = StatusBoard()
        self._cleaner: StateCleaner | None = None
        self._members: list[str] = []
        self._joiners: list[str] = []
        self._prewarm: frozenset[TaskId] = frozenset()
        self._rebalances = 0
        self._next_housekeeping = 0.0
        self._next_status = 0.0
        self._next_cleanup = 0.0
        # Where every input record ended (output, filtered, skipped, dead-lettered), committed.
        self.accounting = Accounting()
        self._unproducible: dict[RecordPosition, tuple[RecordFailure, RecordBytes]] = {}
        self.handling = self._error_handling()
        # The record being processed, named as the origin of what it outputs when the
        # production error handler needs to know (a refused output is handled as its input).
        self._track_origins = config.production_error_handler is not ErrorHandler.FAIL
        self._current: Message | None = None

    def _error_handling(self) -> ErrorHandling:
        cfg = self.config
        return ErrorHandling(
            deserialization=cfg.deserialization_error_handler,
            processing=cfg.processing_error_handler,
            production=cfg.production_error_handler,
            dead_letter_topic=cfg.dead_letters,
            source_overrides=deserialization_overrides(self._subtopologies.values()),
        )

    # -- lifecycle -------------------------------------------------------------------------

    def _transition(self, target: WorkerState) -> None:
        if target not in _TRANSITIONS[self.state]:
            raise ProcessorError(
                f"worker {self.instance_id or '?'}: illegal transition "
                f"{self.state.value} -> {target.value}"
            )
        if target is not self.state:
            log.info("worker %s: %s -> %s", self.instance_id, self.state.value, target.value)
        self.state = target

    def request_stop(self) -> None:
        """Finish the current batch, commit, leave the group, return from `run()`."""
        self._stop_requested = True

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.info(
                "worker %s: received %s, stopping", self.instance_id, signal.Signals(signum).name
            )
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> None:
        """Start, process until asked to stop, shut down cleanly. Raises on a fatal error."""
        try:
            self._start()
            while not self._stop_requested:
                self._run_once()
            self._transition(WorkerState.PENDING_SHUTDOWN)
            self._shutdown()
            self._transition(WorkerState.STOPPED)
        except DuplicateInstanceError:
            # Stay in the group a moment so the twin sees the same snapshot and stops too;
            # leaving at once would let it carry on alone and hide the mistake.
            time.sleep(_DUPLICATE_LINGER_S)
            self.state = WorkerState.FAILED
            self._close_quietly()
            raise
        except BaseException:
            if self.state is not WorkerState.FAILED:
                self.state = WorkerState.FAILED
            self._close_quietly()
            raise

    def _start(self) -> None:
        self._transition(WorkerState.STARTING)
        cfg = self.config
        preflight(cfg)  # configuration mistakes fail here, one line each
        self._lock = StateDirLock(cfg.app_state_dir)
        self.instance_id = resolve_instance_id(cfg.instance_id, cfg.app_state_dir)
        common = {"bootstrap.servers": cfg.bootstrap_servers}
        self._admin = Admin({**common, **settings_for("admin", cfg.kafka)})
        partition_counts = prepare_topics(
            self._admin,
            cfg,
            list(self._subtopologies.values()),
            dead_letter_topic=cfg.dead_letters if self.handling.uses_dead_letters else None,
        )
        self._all_tasks = sorted(
            TaskId(sub_id, p) for sub_id, count in partition_counts.items() for p in range(count)
        )
        log.info(
            "worker %s: application %s, %d sub-topologies, %d tasks, %s",
            self.instance_id,
            cfg.application_id,
            len(self._subtopologies),
            len(self._all_tasks),
            cfg.processing_guarantee.value,
        )
        self._producer = OutputProducer(self._producer_settings(common))
        self._producer.topic_limits.update(self._record_size_limits(self._output_topics()))
        consumer_settings = self._consumer_settings(common)
        self._consumer = GroupConsumer(consumer_settings)
        session_timeout_s = int(consumer_settings.get("session.timeout.ms", 45000)) / 1000
        self._duplicates = DuplicateWatch(self.instance_id, session_timeout_s + 5.0)
        options = TaskOptions(
            handling=self.handling,
            accounting=self.accounting,
            retry=Retry(
                cfg.processing_retry_attempts,
                cfg.processing_retry_backoff_ms,
                cfg.processing_retry_max_backoff_ms,
            ),
            unproducible=self._unproducible,
        )
        self._committer = Committer(
            self._producer,
            self._consumer,
            exactly_once=cfg.exactly_once,
            options=options,
            emitter=self,
        )
        self._committer.start()
        self._tasks = TaskManager(
            self._subtopologies,
            self,
            cfg.app_state_dir,
            self._make_restorer,
            memory=MemoryBudget(cfg.store_cache_bytes),
            task_options=options,
        )
        self._cleaner = StateCleaner(cfg.app_state_dir, cfg.state_cleanup_delay_ms / 1000)
        if cfg.http_port is not None:
            self._start_http(cfg)
        self._status_producer = OutputProducer(
            {
                **common,
                **settings_for("producer", cfg.kafka),
                "client.id": f"{self.instance_id}-status",
                "linger.ms": 0,
            }
        )
        self._metadata = TopicTail(
            {
                **common,
                **settings_for("consumer", cfg.kafka),
                "group.id": f"{cfg.application_id}-metadata-{self.instance_id}",
                "client.id": f"{self.instance_id}-metadata",
            },
            cfg.metadata_topic,
            partitions=1,
        )
        self._warm_up()
        if self._stop_requested:
            return
        self._consumer.subscribe(
            cfg.coordination_topic,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._transition(WorkerState.WAITING_FOR_MEMBERS)

    def _reread_record_size_limits(self) -> None:
        """The broker refused records for their size: a topic's limit was lowered since it was
        read. With the new limit, the rest of the too-large records are refused at once (under
        exactly-once: without dooming another transaction each)."""
        assert self._committer is not None and self._producer is not None
        topics, self._committer.stale_limits = self._committer.stale_limits, set()
        limits = self._record_size_limits(sorted(topics))
        log.warning(
            "worker %s: the broker refused records for their size; max.message.bytes is now %s",
            self.instance_id,
            ", ".join(f"{limit} for {topic!r}" for topic, limit in limits.items()) or "unknown",
        )
        self._producer.topic_limits.update(limits)

    def _output_topics(self) -> list[str]:
        """The topics sinks and the dead-letter handler write."""
        return sorted(
            {t for sub in self._subtopologies.values() for t in sub.external_sink_topics}
            | ({self.config.dead_letters} if self.handling.uses_dead_letters else set())
        )

    def _record_size_limits(self, topics: list[str]) -> dict[str, int]:
        """max.message.bytes of `topics`, where the broker can tell."""
        assert self._admin is not None
        limits: dict[str, int] = {}
        for topic in topics:
            try:
                config = self._admin.topic_configs([topic])[topic]
            except BrokerError as e:
                # A topic created a moment ago may not be describable yet: the broker checks.
                log.info("worker %s: %s; the broker checks its record sizes", self.instance_id, e)
                continue
            value = config.get("max.message.bytes", "")
            if value.isdigit():
                limits[topic] = int(value)
        return limits

    def _start_http(self, cfg: WorkerConfig) -> None:
        stores: dict[str, StoreInfo] = {}
        for sub in self._subtopologies.values():
            partitions = sum(1 for t in self._all_tasks if t.subtopology == sub.id)
            for spec in sub.stores:
                stores[spec.name] = StoreInfo(spec, sub.id, partitions)
        app = build_app(
            WorkerQuerySource(self, stores), token=cfg.http_token, registry=self.metrics.registry
        )
        self._http = QueryServer(app, cfg.http_host, cfg.http_port or 0)
        self.http_port = self._http.port
        host = cfg.http_host if cfg.http_host not in ("0.0.0.0", "::", "") else socket.getfqdn()
        self.endpoint = f"http://{host}:{self.http_port}"
        log.info(
            "worker %s: serving the query API and /metrics on http://%s:%d (endpoint %s)",
            self.instance_id,
            cfg.http_host,
            self.http_port,
            self.endpoint,
        )

    @property
    def task_manager(self) -> TaskManager | None:
        return self._tasks

    def _warm_up(self) -> None:
        """Restore the tasks this worker will hold before joining a running group; see the
        module docstring. Returns at once for the first worker of an application."""
        assert self._admin is not None and self._tasks is not None
        cfg = self.config
        started = time.monotonic()
        deadline = started + cfg.max_warmup_time_ms / 1000
        next_log = started
        while not self._stop_requested:
            try:
                snapshot = self._admin.describe_group(cfg.application_id)
            except BrokerError as e:
                log.warning("worker %s: %s; joining without warm-up", self.instance_id, e)
                return
            in_group = {m.client_id for m in snapshot.members}
            if self.instance_id in in_group:
                return  # a static member restarted within the session timeout: it keeps its tasks
            members = sorted(in_group)
            if not members:
                return
            current = self._assign(members)
            future = self._assign([*members, self.instance_id])
            moving = warmup.moving_tasks(current, future, self._tasks.is_stateful)
            if not moving:
                return
            # Only what it will own: its standbys restore after it has joined, without
            # holding up the tasks that wait for it.
            self._tasks.set_standbys(
                {t for t, owner in moving.items() if owner == self.instance_id}
            )
            self._poll_metadata()
            self._publish_status(InstancePhase.WARMING_UP, members)
            waiting = warmup.not_caught_up(moving, self._lag_of, cfg.acceptable_recovery_lag)
            now = time.monotonic()
            if not waiting:
                log.info(
                    "worker %s: warmed up in %.1fs: the %d tasks moving in the next rebalance "
                    "are within %d records of their changelogs on their new owners; joining",
                    self.instance_id,
                    now - started,
                    len(moving),
                    cfg.acceptable_recovery_lag,
                )
                return
            if now >= deadline:
                log.warning(
                    "worker %s: max_warmup_time_ms (%d) is up; joining although tasks [%s] are "
                    "not yet within %d records on their new owners (they restore the rest)",
                    self.instance_id,
                    cfg.max_warmup_time_ms,
                    ", ".join(map(str, waiting)),
                    cfg.acceptable_recovery_lag,
                )
                return
            if now >= next_log:
                next_log = now + _WARMUP_LOG_INTERVAL_S
                log.info(
                    "worker %s: warming up before joining members [%s]: waiting on tasks [%s]",
                    self.instance_id,
                    ", ".join(members),
                    ", ".join(f"{t}@{moving[t]}" for t in waiting),
                )
            self._tasks.raise_if_restore_failed()
            self._refresh_metrics()
            time.sleep(_WARMUP_POLL_S)

    def _lag_of(self, instance: str, task: TaskId) -> int | None:
        """How far `instance`'s copy of `task` is behind its changelogs, as far as known here."""
        if instance == self.instance_id:
            assert self._tasks is not None
            progress = self._tasks.standby_progress().get(task)
            if progress is None or progress.state is not RestoreState.STANDBY:
                return None
            return progress.remaining
        status = self.board.statuses.get(instance)
        if status is None or self.instance_id not in status.warming_for:
            return None  # it has not heard of this joiner yet
        return status.lag_of(task)

    def _assign(self, members: list[str]) -> Assignment:
        return assign_with_standbys(
            members,
            self._all_tasks,
            num_standby_replicas=self.config.num_standby_replicas,
            balance_factor=self.config.assignment_balance_factor,
        )

    def _make_restorer(self, wipe: Callable[[TaskId, str], TaskStateBackend]) -> Restorer:
        cfg = self.config
        settings = {
            "bootstrap.servers": cfg.bootstrap_servers,
            **settings_for("consumer", cfg.kafka),
            "client.id": f"{self.instance_id}-restore",
        }
        reader = ChangelogReader(
            settings,
            group_id=f"{cfg.application_id}-restore-{self.instance_id}",
            read_committed=cfg.exactly_once,
        )
        return Restorer(reader, wipe_callback=wipe, listener=self.topology.restore_listener)

    def _consumer_settings(self, common: dict[str, str]) -> dict[str, Any]:
        cfg = self.config
        settings: dict[str, Any] = {
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            **common,
            **settings_for("consumer", cfg.kafka),
            "group.id": cfg.application_id,
            "client.id": self.instance_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "partition.assignment.strategy": "range",
            "isolation.level": "read_committed" if cfg.exactly_once else "read_uncommitted",
        }
        if cfg.static_membership:
            settings["group.instance.id"] = self.instance_id
        return settings

    def _producer_settings(self, common: dict[str, str]) -> dict[str, Any]:
        cfg = self.config
        settings: dict[str, Any] = {
            # murmur2 like Kafka's Java producer, so keys land where other clients put them.
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "enable.idempotence": True,
            # Bounded local queue: when it is full, produce() waits (backpressure) instead of
            # letting memory grow.
            "queue.buffering.max.kbytes": 65536,
            **common,
            **settings_for("producer", self.config.kafka),
            "client.id": self.instance_id,
        }
        if cfg.exactly_once:
            settings["transactional.id"] = self._transactional_id(self.instance_id)
            # A killed worker's open transaction blocks read_committed readers of the partitions
            # it wrote until the broker aborts it; Kafka Streams shortens this to 10 s as well.
            settings.setdefault("transaction.timeout.ms", 10000)
        return settings

    # -- main loop -------------------------------------------------------------------------

    def _run_once(self) -> None:
        assert self._consumer is not None and self._committer is not None
        assert self._tasks is not None and self._duplicates is not None
        now = time.monotonic()
        self._duplicates.check(now)
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + _HOUSEKEEPING_INTERVAL_S
            self._housekeeping(now)
        if self._snapshot_pending and time.monotonic() >= self._next_snapshot_at:
            self._try_accept_snapshot()
        restored = self._tasks.poll_restored()
        if restored:
            joining = set(restored)
            consuming = [p for p in self._tasks.running_partitions() if p not in joining]
            try:
                self._consumer.add(restored, consuming)
            except BrokerError as e:  # their committed offsets could not be read
                self._after_failed_processing(e)
                return
        messages = self._consumer.consume(self.config.consume_batch_size, _CONSUME_TIMEOUT_S)
        if messages:
            self._committer.before_output()
        tasks = self._tasks.by_partition
        for message in messages:
            error = message.error()
            if error is not None:
                self._handle_consume_error(error)
                continue
            task = tasks.get((message.topic(), message.partition()))
            if task is None:
                # Fetched before a rebalance took the partition away; its new owner reads it
                # from the committed offset.
                continue
            self._current = message
            try:
                task.process(message)
            except BrokerError as e:
                self._current = None
                self._after_failed_processing(e)
                return
        self._current = None
        try:
            if self._tasks.needs_commit():
                self._committer.commit(self._tasks.running())
            else:
                self._committer.maybe_commit(self._tasks.running(), self.config.commit_interval_ms)
        except BrokerError as e:
            self._after_failed_commit(e)
        if self._committer.stale_limits:
            self._reread_record_size_limits()

    def _housekeeping(self, now: float) -> None:
        """Once a second: follow the metadata topic, pre-warm for joiners, publish status and
        metrics, delete long-unused task directories."""
        assert self._tasks is not None
        self._poll_metadata()
        if self.state is WorkerState.RUNNING and self.assignment is not None:
            self._update_prewarm()
        busy = bool(self._joiners) or any(
            not p.caught_up for p in self._tasks.standby_progress().values()
        )
        if self.state is WorkerState.RUNNING and now >= self._next_status:
            self._publish_status(InstancePhase.RUNNING, self._members)
            self._next_status = now + (_STATUS_BUSY_INTERVAL_S if busy else _STATUS_IDLE_INTERVAL_S)
        if self._cleaner is not None and self.assignment is not None and now >= self._next_cleanup:
            self._next_cleanup = now + _CLEANUP_INTERVAL_S
            self._cleaner.sweep({str(t) for t in self._tasks.held()})
        self._refresh_metrics()

    def _poll_metadata(self) -> None:
        assert self._metadata is not None
        try:
            for key, value in self._metadata.poll():
                self.board.apply(key, value)
        except BrokerError as e:
            log.warning("worker %s: %s (retrying)", self.instance_id, e)

    def _update_prewarm(self) -> None:
        """Pre-warm, as standbys, the tasks this worker will gain when the announced joiners
        join; drop pre-warmed copies nobody needs any more."""
        assert self._tasks is not None and self.assignment is not None
        joiners = self.board.joiners(
            set(self._members), int(time.time() * 1000), _JOINER_MAX_SILENCE_MS
        )
        if joiners == self._joiners:
            return
        self._joiners = joiners
        prewarm: frozenset[TaskId] = frozenset()
        if joiners:
            future = self._assign([*self._members, *joiners])
            prewarm = warmup.to_prewarm(self.instance_id, self.assignment, future)
            log.info(
                "worker %s: instances [%s] are warming up to join; pre-warming tasks [%s]",
                self.instance_id,
                ", ".join(joiners),
                ", ".join(str(t) for t in sorted(prewarm)),
            )
        self._prewarm = prewarm
        self._tasks.set_standbys(self._standbys_wanted())
        self._next_status = 0.0

    def _standbys_wanted(self) -> set[TaskId]:
        assigned = (
            self.assignment.standby.get(self.instance_id, frozenset())
            if self.assignment is not None
            else frozenset()
        )
        return set(assigned | self._prewarm)

    def _refresh_metrics(self) -> None:
        assert self._tasks is not None
        tasks = self._tasks
        progress = tasks.restore_progress()
        self.metrics.publish(
            WorkerSnapshot(
                instance=self.instance_id,
                state=self.state.value,
                processed={str(t): task.processed for t, task in tasks.tasks.items()},
                active=len(tasks.tasks),
                restoring=len(tasks.restoring),
                standby=len(tasks.standbys),
                restores=tuple(
                    RestoreSample(str(t), p.standby, p.restored, p.remaining, p.rate)
                    for t, p in sorted(progress.items())
                ),
                restore_totals={str(t): n for t, n in tasks.records_restored().items()},
                restored_before_start={str(t): n for t, n in tasks.restored_before_start.items()},
                rebalances=self._rebalances,
                commits=self._committer.commits if self._committer is not None else 0,
                state_dirs_deleted=self._cleaner.deleted if self._cleaner is not None else 0,
                outcomes={
                    (outcome.value, reason): n
                    for (outcome, reason), n in self.accounting.committed.items()
                },
                **self._broker_metrics(),
            )
        )

    def _broker_metrics(self) -> dict[str, Any]:
        committer = self._committer
        if committer is None:
            return {}
        return {
            "broker_reachable": committer.broker.reachable,
            "broker_unreachable_seconds": committer.broker.unreachable_for(),
            "broker_errors": committer.broker.errors,
            "producer_replacements": committer.producer_replacements,
        }

    def _after_failed_processing(self, error: BrokerError) -> None:
        """Producing an output failed for a reason that is not the record's (under exactly-once:
        the transaction must be aborted): drop what was done since the last commit and rewind.
        Under exactly-once a producer in a fatal state (fenced) is replaced, not fatal."""
        if error.fatal and not self.config.exactly_once:
            raise error
        assert self._committer is not None and self._tasks is not None
        log.warning("worker %s: %s; processing again from the last commit", self.instance_id, error)
        self._committer.fail(self._tasks.running(), error)
        self._rewind()

    def _rewind(self) -> None:
        """Drop the active tasks and take them again from the last committed offsets."""
        assert self._consumer is not None
        if self._tasks is None or not self._tasks.tasks:
            return
        log.warning("worker %s: rewinding tasks to the last committed offsets", self.instance_id)
        self._drop_tasks()
        self._consumer.unassign()
        self._snapshot_pending = True
        self._transition(WorkerState.WAITING_FOR_MEMBERS)

    def _after_failed_commit(self, error: BrokerError) -> None:
        """A commit that did not happen: stop when the client cannot go on; otherwise at-least-once
        keeps the offsets for the next commit, and exactly-once (whose transaction was aborted)
        rewinds its tasks to the last committed offsets."""
        if error.fatal:
            raise error
        log.warning("worker %s: commit failed, will retry: %s", self.instance_id, error)
        if self.config.exactly_once:
            self._rewind()

    def _handle_consume_error(self, error: Any) -> None:
        if is_partition_eof(error):
            return
        if is_fatal(error):
            raise BrokerError(f"consumer failed fatally: {error}")
        log.warning("worker %s: consumer error (retrying): %s", self.instance_id, error)

    # -- emitter (sinks call this) ---------------------------------------------------------

    def emit(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp: int,
        headers: Headers | None,
    ) -> None:
        assert self._producer is not None
        current = self._current
        if self._track_origins and current is not None:
            origin = (current.topic(), current.partition(), current.offset())
            self._producer.produce(topic, key, value, timestamp, headers, origin=origin)
        else:
            self._producer.produce(topic, key, value, timestamp, headers)

    @property
    def tasks(self) -> dict[TaskId, StreamTask]:
        return self._tasks.tasks if self._tasks is not None else {}

    # -- rebalancing -----------------------------------------------------------------------

    def _on_assign(self) -> None:
        self._snapshot_pending = True
        self._next_snapshot_at = 0.0
        if self.state is WorkerState.RUNNING:
            self._transition(WorkerState.WAITING_FOR_MEMBERS)

    def _on_revoke(self) -> None:
        self._snapshot_pending = False
        if self._tasks is not None and self._tasks.tasks:
            assert self._committer is not None
            try:
                self._committer.commit(self._tasks.running())
            except BrokerError as e:
                if e.fatal:
                    raise
                # The next owner reprocesses from the last committed offsets.
                log.warning("worker %s: commit on revoke failed: %s", self.instance_id, e)
                self._committer.abandon()
        self._drop_tasks()
        if self.state is WorkerState.RUNNING:
            self._transition(WorkerState.WAITING_FOR_MEMBERS)

    def _on_lost(self) -> None:
        log.warning(
            "worker %s: lost its group membership; dropping tasks uncommitted", self.instance_id
        )
        self._snapshot_pending = False
        if self._committer is not None:
            self._committer.abandon()
        self._drop_tasks()
        if self.state is WorkerState.RUNNING:
            self._transition(WorkerState.WAITING_FOR_MEMBERS)

    def _drop_tasks(self) -> None:
        if self._tasks is not None:
            self._tasks.close_active()

    def _try_accept_snapshot(self) -> None:
        assert self._admin is not None and self._consumer is not None
        try:
            snapshot = self._admin.describe_group(self.config.application_id)
        except BrokerError as e:
            log.warning("worker %s: %s (retrying)", self.instance_id, e)
            self._next_snapshot_at = time.monotonic() + 1.0
            return
        membership = stable_membership(snapshot, self._consumer.member_id)
        if membership is None:
            self._next_snapshot_at = time.monotonic() + _SNAPSHOT_RETRY_S
            return
        self._snapshot_pending = False
        members = membership.instances
        self._members = list(members)
        self._rebalances += 1
        previous = self.assignment
        self.assignment = self._assign(members)
        self._joiners = []
        self._prewarm = frozenset()
        mine = sorted(self.assignment.tasks_of(self.instance_id))
        standbys = self._standbys_wanted()
        assert self._duplicates is not None
        if self._duplicates.observe(membership, time.monotonic()):
            log.warning(
                "worker %s: group members %s both carry this instance id; taking no tasks until "
                "the older one expires (a worker restarted within the session timeout) or, if "
                "both stay for %.0fs, stopping: two live workers must not share an instance id",
                self.instance_id,
                ", ".join(membership.duplicated[self.instance_id]),
                self._duplicates.grace_s,
            )
            mine = []
            standbys = set()
        assert self._tasks is not None
        if previous is not None and self.config.exactly_once:
            self._fence_departed(previous, members, mine)
        self._tasks.create(mine)
        self._tasks.set_standbys(standbys)
        # Tasks that restore first join the assignment when they are ready (`_run_once`).
        self._consumer.assign(self._tasks.running_partitions())
        log.info(
            "worker %s: members [%s]; active tasks [%s]; standby tasks [%s]",
            self.instance_id,
            ", ".join(members),
            ", ".join(str(t) for t in mine),
            ", ".join(str(t) for t in sorted(self._tasks.standbys)),
        )
        self._transition(WorkerState.RUNNING)
        self._publish_status(InstancePhase.RUNNING, members)

    def _fence_departed(self, previous: Assignment, members: list[str], mine: list[TaskId]) -> None:
        """Abort the open transactions of instances that left while owning tasks this worker
        takes over. Otherwise the promoted tasks' changelogs (and their outputs, for
        read_committed readers) stay blocked until the broker times those transactions out."""
        departed = sorted(previous.instances - set(members))
        for instance in departed:
            if not any(previous.active.get(t) == instance for t in mine):
                continue
            started = time.monotonic()
            transactional_id = self._transactional_id(instance)
            try:
                fence_transactional_id(
                    {
                        "bootstrap.servers": self.config.bootstrap_servers,
                        **settings_for("producer", self.config.kafka),
                        "client.id": f"{self.instance_id}-fencing",
                    },
                    transactional_id,
                    timeout=10.0,
                )
            except BrokerError as e:
                log.warning("worker %s: %s; its transaction times out instead", self.instance_id, e)
                continue
            log.info(
                "worker %s: fenced departed instance %s (transactional id %s) in %.2fs",
                self.instance_id,
                instance,
                transactional_id,
                time.monotonic() - started,
            )

    def _transactional_id(self, instance: str) -> str:
        return f"{self.config.application_id}-{instance}"

    def _publish_status(self, phase: InstancePhase, members: list[str]) -> None:
        """Tell the application (and people) what this instance runs and how far behind its
        copies are, on the metadata topic."""
        assert self._status_producer is not None and self._tasks is not None
        tasks = self._tasks
        lags = {str(t): 0 for t, task in tasks.tasks.items() if t not in tasks.restoring}
        for task_id, progress in tasks.restore_progress().items():
            if progress.state is not RestoreState.PENDING:
                lags[str(task_id)] = progress.remaining
        now_ms = int(time.time() * 1000)
        status = InstanceStatus(
            instance_id=self.instance_id,
            phase=phase,
            host=socket.gethostname(),
            pid=os.getpid(),
            endpoint=self.endpoint,
            members=tuple(members),
            active_tasks=tuple(str(t) for t in sorted(tasks.tasks)),
            standby_tasks=tuple(str(t) for t in sorted(tasks.standbys)),
            restoring_tasks=tuple(str(t) for t in tasks.restoring),
            lags=lags,
            warming_for=tuple(self._joiners),
            updated_ms=now_ms,
        )
        self._status_producer.produce(
            self.config.metadata_topic, self.instance_id.encode(), status.to_json(), now_ms, None
        )
        self._status_producer.poll()

    # -- shutdown --------------------------------------------------------------------------

    def _shutdown(self) -> None:
        assert self._consumer is not None and self._committer is not None
        assert self._tasks is not None
        self._committer.commit(self._tasks.running())
        self._tasks.close_active()
        self._publish_status(InstancePhase.STOPPED, [])
        self._tasks.shutdown()
        # close() leaves the group; the revoke callback it triggers finds nothing left to commit.
        self._consumer.close()
        self._consumer = None
        self._committer.close()
        self._release()

    def _close_quietly(self) -> None:
        """After a failure: leave the group without committing anything more."""
        if self._committer is not None:
            self._committer.abandon()
        if self._consumer is not None:
            try:
                self._snapshot_pending = False
                if self._tasks is not None:
                    self._tasks.shutdown()
                    self._tasks = None
                self._consumer.close()
            except Exception as e:  # closing after a failure must not hide the failure
                log.warning("worker %s: closing the consumer failed: %s", self.instance_id, e)
            self._consumer = None
        self._release()

    def _release(self) -> None:
        if self._status_producer is not None:
            self._status_producer.flush(5.0)
            self._status_producer = None
        if self._metadata is not None:
            self._metadata.close()
            self._metadata = None
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
