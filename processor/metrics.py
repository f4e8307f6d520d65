"""Prometheus metrics of one worker, served at `/metrics` by the worker's HTTP server
(`processor.query.server` mounts `WorkerMetrics.registry`).

The main loop publishes a `WorkerSnapshot` about once a second (`WorkerMetrics.publish`); a
scrape renders the latest snapshot. Nothing on the per-record path touches Prometheus: the
counters are the task's own and are read when the snapshot is taken.

| metric | labels | meaning |
| --- | --- | --- |
| processor_worker_info | instance, state | 1, with the worker's lifecycle state |
| processor_records_processed_total | task | input records processed by the active task here |
| processor_records_total | outcome, reason | input records by committed outcome (see below) |
| processor_timer_firings_total | outcome | timers, ticks and expiries fired (committed) |
| processor_tasks | kind (active, restoring, standby) | tasks of each kind here |
| processor_restore_records_total | task, kind (active, standby) | changelog records applied |
| processor_restore_remaining_records | task, kind | records left to read (standby: its lag) |
| processor_restore_rate_records_per_second | task, kind | since the restore began |
| processor_standby_lag_records | task | how far a standby is behind its changelogs |
| processor_task_restored_before_start_records | task | records read before the task last started |
| processor_stream_time_ms | task | stream time of a task with windows, timers or a TTL (ms) |
| processor_rebalances_total | | group generations accepted |
| processor_commits_total | | commits |
| processor_state_dirs_deleted_total | | task directories the state cleaner deleted |
| processor_broker_reachable | | 1, or 0 while the broker does not take this worker's commits |
| processor_broker_unreachable_seconds | | how long it has not (0 when reachable) |
| processor_broker_errors_total | | commits and producer initialisations the broker did not take |
| processor_producer_replacements_total | | producers replaced (failed transaction or fatal state) |
| processor_group_foreign_members | | group members that are no worker of this application |
| processor_group_outvoted_members | | workers whose fingerprint differs from the majority's |
| processor_worker_outvoted | | 1 while this worker differs from the majority and waits |
| processor_metadata_records_ignored_total | reason | records of `<app>-metadata` ignored (below) |

Sinks (`processor.runtime.sink_metrics`) and async operators (`processor.runtime.async_metrics`:
calls by outcome, call time, calls in flight) add their own, where the topology has them.

`processor_records_total` counts every input record once its outcome is committed: `output`
(it wrote to a sink or a store), `filtered` (the topology dropped it), `late` (its windows had
closed; `late_record_handler` skip), `skipped` or `dead_lettered` (by an error handler; `reason`
names the stage that failed: deserialization, processing, production or late).

`processor_metadata_records_ignored_total` counts the records of the metadata topic that are not
a status this worker believes, by `reason` (`processor.status.fields.IgnoredReason`):
too_large, not_json, invalid, key_mismatch, clock_ahead, unsigned, bad_signature. A record read
again after a restart counts again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from processor.topology.handling import FailureNote

__all__ = ["FailureNote", "RestoreSample", "WorkerMetrics", "WorkerSnapshot"]


@dataclass(frozen=True)
class RestoreSample:
    task: str
    standby: bool
    records: int  # applied by this restorer so far, over all its restores of the task
    remaining: int
    rate: float


@dataclass(frozen=True)
class WorkerSnapshot:
    instance: str = ""
    state: str = "created"
    processed: dict[str, int] = field(default_factory=dict)
    active: int = 0
    restoring: int = 0
    standby: int = 0
    restores: tuple[RestoreSample, ...] = ()
    restore_totals: dict[str, int] = field(default_factory=dict)  # task -> records ever applied
    restored_before_start: dict[str, int] = field(default_factory=dict)
    # task -> stream time, for the active tasks that keep one (windows)
    stream_times: dict[str, int] = field(default_factory=dict)
    rebalances: int = 0
    commits: int = 0
    state_dirs_deleted: int = 0
    broker_reachable: bool = True
    broker_unreachable_seconds: float = 0.0
    broker_errors: int = 0
    producer_replacements: int = 0
    # (outcome, reason) -> input records whose outcome is committed
    outcomes: dict[tuple[str, str], int] = field(default_factory=dict)
    # outcome -> committed firings of timers, ticks and expiries
    timer_firings: dict[str, int] = field(default_factory=dict)
    # The last group generation seen: members that are no worker of this application, workers
    # outvoted for computing a different assignment, and whether this worker is one of them.
    foreign_members: int = 0
    outvoted_members: int = 0
    outvoted: bool = False
    # reason -> records of the metadata topic ignored
    metadata_ignored: dict[str, int] = field(default_factory=dict)
    # task -> records behind the end of its input partitions (no entry: not known)
    consumer_lag: dict[str, int] = field(default_factory=dict)
    # The last records skipped or dead-lettered here, oldest first (the status page's).
    recent_failures: tuple[FailureNote, ...] = ()
    # When the main loop took it (time.monotonic()): rates are counted between two snapshots.
    taken_at: float = 0.0


class _SnapshotCollector(Collector):
    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        s = self._metrics.snapshot
        yield from self._records(s)
        yield from self._tasks(s)
        yield from self._worker(s)
        yield from self._group(s)

    def _records(self, s: WorkerSnapshot) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """The worker and its input records."""
        info = GaugeMetricFamily(
            "processor_worker_info",
            "The worker, with its lifecycle state",
            labels=["instance", "state"],
        )
        info.add_metric([s.instance, s.state], 1)
        yield info
        processed = CounterMetricFamily(
            "processor_records_processed",
            "Input records processed by an active task",
            labels=["task"],
        )
        for task, count in sorted(s.processed.items()):
            processed.add_metric([task], count)
        yield processed
        outcomes = CounterMetricFamily(
            "processor_records",
            "Input records by committed outcome (output, filtered, late, skipped, dead_lettered) "
            "and reason (the stage that failed: deserialization, processing, production, late)",
            labels=["outcome", "reason"],
        )
        for (outcome, reason), count in sorted(s.outcomes.items()):
            outcomes.add_metric([outcome, reason], count)
        yield outcomes
        firings = CounterMetricFamily(
            "processor_timer_firings",
            "Committed firings of timers, ticks and expiries, apart from input records, by "
            "outcome (fired; skipped or dead_lettered when the function raised)",
            labels=["outcome"],
        )
        for outcome, count in sorted(s.timer_firings.items()):
            firings.add_metric([outcome], count)
        yield firings

    def _tasks(self, s: WorkerSnapshot) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """Tasks, restores and standbys."""
        tasks = GaugeMetricFamily("processor_tasks", "Tasks here by kind", labels=["kind"])
        tasks.add_metric(["active"], s.active)
        tasks.add_metric(["restoring"], s.restoring)
        tasks.add_metric(["standby"], s.standby)
        yield tasks
        restored = CounterMetricFamily(
            "processor_restore_records",
            "Changelog records applied to a task's stores, restoring or as a standby",
            labels=["task"],
        )
        for task, count in sorted(s.restore_totals.items()):
            restored.add_metric([task], count)
        yield restored
        remaining = GaugeMetricFamily(
            "processor_restore_remaining_records",
            "Changelog records left to read (a standby: its lag)",
            labels=["task", "kind"],
        )
        rate = GaugeMetricFamily(
            "processor_restore_rate_records_per_second",
            "Changelog records applied per second since the restore began",
            labels=["task", "kind"],
        )
        lag = GaugeMetricFamily(
            "processor_standby_lag_records",
            "Changelog records a standby is behind",
            labels=["task"],
        )
        for sample in s.restores:
            kind = "standby" if sample.standby else "active"
            remaining.add_metric([sample.task, kind], sample.remaining)
            rate.add_metric([sample.task, kind], sample.rate)
            if sample.standby:
                lag.add_metric([sample.task], sample.remaining)
        yield remaining
        yield rate
        yield lag
        before = GaugeMetricFamily(
            "processor_task_restored_before_start_records",
            "Changelog records the last restore read before the task started processing here",
            labels=["task"],
        )
        for task, count in sorted(s.restored_before_start.items()):
            before.add_metric([task], count)
        yield before
        stream_time = GaugeMetricFamily(
            "processor_stream_time_ms",
            "Stream time of an active task with windows, timers or a TTL: the largest record "
            "timestamp it has seen, or later by idle advance (ms since the epoch; -1 before its "
            "first record)",
            labels=["task"],
        )
        for task, ms in sorted(s.stream_times.items()):
            stream_time.add_metric([task], ms)
        yield stream_time

    def _worker(self, s: WorkerSnapshot) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """Rebalances, commits, state cleanup and the broker."""
        yield CounterMetricFamily(
            "processor_rebalances", "Group generations this worker accepted", value=s.rebalances
        )
        yield CounterMetricFamily("processor_commits", "Commits", value=s.commits)
        yield CounterMetricFamily(
            "processor_state_dirs_deleted",
            "Task state directories deleted after state_cleanup_delay_ms unused",
            value=s.state_dirs_deleted,
        )
        yield GaugeMetricFamily(
            "processor_broker_reachable",
            "1, or 0 while the broker does not take this worker's commits",
            value=1 if s.broker_reachable else 0,
        )
        yield GaugeMetricFamily(
            "processor_broker_unreachable_seconds",
            "How long the broker has not taken this worker's commits (0 when it does)",
            value=s.broker_unreachable_seconds,
        )
        yield CounterMetricFamily(
            "processor_broker_errors",
            "Commits and producer initialisations the broker did not take",
            value=s.broker_errors,
        )
        yield CounterMetricFamily(
            "processor_producer_replacements",
            "Producers replaced: after a failed transaction, or in a fatal state (fenced)",
            value=s.producer_replacements,
        )

    def _group(self, s: WorkerSnapshot) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """The group's members, and the metadata topic."""
        yield GaugeMetricFamily(
            "processor_group_foreign_members",
            "Members of the application's group that are no worker of it (they own nothing)",
            value=s.foreign_members,
        )
        yield GaugeMetricFamily(
            "processor_group_outvoted_members",
            "Workers in the group whose topology, partition counts or assignment settings differ "
            "from the majority's (they own nothing)",
            value=s.outvoted_members,
        )
        yield GaugeMetricFamily(
            "processor_worker_outvoted",
            "1 while this worker differs from the majority of the group and waits, owning nothing",
            value=1 if s.outvoted else 0,
        )
        ignored = CounterMetricFamily(
            "processor_metadata_records_ignored",
            "Records of the metadata topic ignored: not a valid status, or not signed with the "
            "HTTP token (reason)",
            labels=["reason"],
        )
        for reason, count in sorted(s.metadata_ignored.items()):
            ignored.add_metric([reason], count)
        yield ignored


class WorkerMetrics:
    """A registry of its own (several workers may share a process in tests).

    Besides the latest snapshot it keeps the one before (`previous`), so that the status page
    can tell rates, and `published_at`, when the main loop last published (from creation on:
    a worker that has not published yet is starting), which `/health/live` judges by."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.snapshot = WorkerSnapshot()
        self.previous: WorkerSnapshot | None = None
        self._clock = clock
        self.published_at = clock()
        self.registry.register(_SnapshotCollector(self))

    def publish(self, snapshot: WorkerSnapshot) -> None:
        # One attribute swap each: a reader sees whole snapshots (at worst `previous` and
        # `snapshot` one publication apart, which a rate over their own `taken_at` allows).
        self.previous = self.snapshot
        self.snapshot = snapshot
        self.published_at = self._clock()

    def seconds_since_publish(self) -> float:
        return self._clock() - self.published_at
