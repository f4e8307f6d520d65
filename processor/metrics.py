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
| processor_restore_records_total | task | changelog records applied, restoring or as a standby |
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
| processor_consumer_lag_records | task, topic, partition | records behind a partition's end |
| processor_end_to_end_latency_seconds | | histogram: record timestamp to output (sampled) |
| processor_batch_processing_seconds | | histogram: processing one consumed batch |
| processor_commit_seconds | | histogram: a commit that carried offsets |
| processor_rebalance_seconds | | histogram: first rebalance callback to assignment applied |
| processor_assignment_generation | | group generations accepted since the worker started |
| processor_store_cache_hits_total | store | store reads the cache answered |
| processor_store_cache_misses_total | store | store reads that went to RocksDB |
| processor_store_size_bytes | task | bytes on disk of a task's state directory |

Consumer lag is computed about once a second from what the consumer knows, with no request: its
position and the end offset the last fetch response carried (idle, it reads 0 under either
guarantee: the position moves past transaction markers). Only running tasks have it;
`WorkerSnapshot.consumer_lag` is its sum per task. End-to-end latency is sampled once per
consumed batch: the batch's last record, from its timestamp to the end of the batch's
processing (a record replayed from long ago is as old as its timestamp says). The cache
counters keep the reads of tasks this worker no longer runs (monotonic across rebalances);
store sizes are measured every 5 seconds, for active and standby tasks.

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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from processor.histogram import (
    BATCH_BOUNDS_S,
    LATENCY_BOUNDS_S,
    REBALANCE_BOUNDS_S,
    HistogramSample,
    empty,
)
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
    # task -> records behind the end of its input partitions (no entry: not known), and per
    # (task, topic, partition); running tasks whose positions the consumer knows
    consumer_lag: dict[str, int] = field(default_factory=dict)
    partition_lags: dict[tuple[str, str, int], int] = field(default_factory=dict)
    # The last records skipped or dead-lettered here, oldest first (the status page's).
    recent_failures: tuple[FailureNote, ...] = ()
    # When the main loop took it (time.monotonic()): rates are counted between two snapshots.
    taken_at: float = 0.0
    end_to_end_seconds: HistogramSample = field(default_factory=lambda: empty(LATENCY_BOUNDS_S))
    batch_seconds: HistogramSample = field(default_factory=lambda: empty(BATCH_BOUNDS_S))
    commit_seconds: HistogramSample = field(default_factory=lambda: empty(BATCH_BOUNDS_S))
    rebalance_seconds: HistogramSample = field(default_factory=lambda: empty(REBALANCE_BOUNDS_S))
    # store -> reads its caches answered / sent to the backend, over every task this worker ran
    cache_hits: dict[str, int] = field(default_factory=dict)
    cache_misses: dict[str, int] = field(default_factory=dict)
    store_bytes: dict[str, int] = field(default_factory=dict)  # task -> bytes on disk


_Family = GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily


class _SnapshotCollector(Collector):
    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[_Family]:
        s = self._metrics.snapshot
        yield from self._records(s)
        yield from self._tasks(s)
        yield from self._worker(s)
        yield from self._group(s)
        yield from self._timings(s)
        yield from self._stores(s)

    def _records(self, s: WorkerSnapshot) -> Iterator[_Family]:
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

    def _tasks(self, s: WorkerSnapshot) -> Iterator[_Family]:
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

    def _worker(self, s: WorkerSnapshot) -> Iterator[_Family]:
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

    def _group(self, s: WorkerSnapshot) -> Iterator[_Family]:
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

    def _timings(self, s: WorkerSnapshot) -> Iterator[_Family]:
        """Consumer lag and how long things take."""
        lag = GaugeMetricFamily(
            "processor_consumer_lag_records",
            "Records behind the end of an input partition of a running task (from the "
            "consumer's position and the end offset its last fetch saw)",
            labels=["task", "topic", "partition"],
        )
        for (task, topic, partition), records in sorted(s.partition_lags.items()):
            lag.add_metric([task, topic, str(partition)], records)
        yield lag
        for name, help_text, sample in (
            (
                "processor_end_to_end_latency_seconds",
                "From an input record's timestamp to the end of processing of its batch, "
                "when its outputs go to the producer (the last record of each batch)",
                s.end_to_end_seconds,
            ),
            (
                "processor_batch_processing_seconds",
                "Processing one batch of consumed records",
                s.batch_seconds,
            ),
            (
                "processor_commit_seconds",
                "A commit that carried offsets, from its start to the broker's answer",
                s.commit_seconds,
            ),
            (
                "processor_rebalance_seconds",
                "From the first rebalance callback to the new assignment applied here",
                s.rebalance_seconds,
            ),
        ):
            yield HistogramMetricFamily(
                name, help_text, buckets=sample.cumulative(), sum_value=sample.sum
            )
        yield GaugeMetricFamily(
            "processor_assignment_generation",
            "Group generations this worker accepted since it started (changes at every "
            "rebalance; the broker's generation id is not exposed by the client)",
            value=s.rebalances,
        )

    def _stores(self, s: WorkerSnapshot) -> Iterator[_Family]:
        """Store caches and state on disk."""
        hits = CounterMetricFamily(
            "processor_store_cache_hits",
            "Store reads the cache answered, over the tasks this worker ran",
            labels=["store"],
        )
        misses = CounterMetricFamily(
            "processor_store_cache_misses",
            "Store reads that went to the backend (RocksDB)",
            labels=["store"],
        )
        for store in sorted(s.cache_hits.keys() | s.cache_misses.keys()):
            hits.add_metric([store], s.cache_hits.get(store, 0))
            misses.add_metric([store], s.cache_misses.get(store, 0))
        yield hits
        yield misses
        size = GaugeMetricFamily(
            "processor_store_size_bytes",
            "Bytes on disk of a task's state directory (active or standby; every few seconds)",
            labels=["task"],
        )
        for task, nbytes in sorted(s.store_bytes.items()):
            size.add_metric([task], nbytes)
        yield size


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
