"""What `/metrics` measures beyond the tasks' own counters: consumer lag, batch processing and
end-to-end latency, store cache reads and store sizes on disk.

The main loop calls `batch_processed` once per consumed batch (a clock read, a bisect), and the
housekeeping calls `figures` about once a second; nothing here runs per record. Lag comes from
what the consumer already knows (its positions and the end offsets its fetches saw: no
request), store sizes from a walk of the state directories at most every few seconds. With
`exact_lags` (load-aware balancing weighs tasks by it) the end offsets are asked of the broker:
the fetcher stops fetching a partition it is far behind on (its queue is full), and the end it
last saw then stays where it was, hiding how fast the partition grows. Those answers also give
`input_ends`: each running task's input end offsets summed, whose growth is the records arriving
for it (`processor.runtime.task_rates`), whatever this worker gets through.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from processor.errors import BrokerError
from processor.histogram import BATCH_BOUNDS_S, LATENCY_BOUNDS_S, Histogram
from processor.ids import TaskId
from processor.kafka.consumer import GroupConsumer, Message
from processor.runtime.task_manager import TaskManager

__all__ = ["Measurements", "directory_bytes"]

# Walking the state directories costs a stat per file: not at every refresh.
_STORE_SIZE_INTERVAL_S = 5.0


class Measurements:
    def __init__(
        self, tasks: TaskManager, consumer: GroupConsumer, *, exact_lags: bool = False
    ) -> None:
        self._tasks = tasks
        self._consumer = consumer
        self._exact_lags = exact_lags
        self.batch_seconds = Histogram(BATCH_BOUNDS_S)
        self.end_to_end_seconds = Histogram(LATENCY_BOUNDS_S)
        # Cache reads of tasks that are gone (store -> hits, misses), and what each task's
        # caches said at the last look: the counters stay monotonic across rebalances.
        self._reads_gone: dict[str, list[int]] = {}
        self._reads_seen: dict[tuple[str, str], tuple[int, int]] = {}
        self._store_bytes: dict[str, int] = {}
        self._next_size_at = 0.0
        self.input_ends: dict[TaskId, int] = {}
        """At the last `figures()`: each running task's input partitions' end offsets, summed,
        as the broker answered (only with `exact_lags`; a task is left out unless every one of
        its partitions was answered)."""

    def batch_processed(self, messages: Sequence[Message], began: float) -> None:
        """After routing `messages` (consumed at `began`, `time.perf_counter()`): how long that
        took, and how old the last record was when its outputs went to the producer."""
        self.batch_seconds.observe(time.perf_counter() - began)
        kind, timestamp_ms = messages[-1].timestamp()
        if kind:  # 0: the record has no timestamp (or is an error)
            self.end_to_end_seconds.observe(max(0.0, time.time() - timestamp_ms / 1000))

    def figures(self) -> dict[str, Any]:
        """The snapshot's fields this module measures (`processor.metrics.WorkerSnapshot`)."""
        running = self._tasks.running()
        partitions = [p for task in running for p in task.partitions]
        ends = None
        if self._exact_lags and partitions:
            # Unanswered: the ends the fetches saw, this time.
            with contextlib.suppress(BrokerError):
                ends = self._consumer.end_offsets(partitions, timeout=1.0)
        self.input_ends = {
            task.id: sum(ends[p] for p in task.partitions)
            for task in running
            if ends is not None and task.partitions and all(p in ends for p in task.partitions)
        }
        known = self._consumer.fetched_lags(partitions, ends=ends)
        lags = {
            (str(task.id), topic, partition): known[(topic, partition)]
            for task in running
            for topic, partition in task.partitions
            if (topic, partition) in known
        }
        # A task's sum only when every input partition's lag is known (else: not known).
        per_task = {
            str(task.id): sum(known[p] for p in task.partitions)
            for task in running
            if task.partitions and all(p in known for p in task.partitions)
        }
        hits, misses = self._cache_reads()
        return {
            "partition_lags": lags,
            "consumer_lag": per_task,
            "batch_seconds": self.batch_seconds.sample(),
            "end_to_end_seconds": self.end_to_end_seconds.sample(),
            "cache_hits": hits,
            "cache_misses": misses,
            "store_bytes": self._store_sizes(),
        }

    def _cache_reads(self) -> tuple[dict[str, int], dict[str, int]]:
        now: dict[tuple[str, str], tuple[int, int]] = {}
        for task_id, task in self._tasks.tasks.items():
            if task.stores is not None:
                for store, reads in task.stores.cache_reads().items():
                    now[(str(task_id), store)] = reads
        for key, (hits, misses) in self._reads_seen.items():
            current = now.get(key)
            if current is None or current[0] < hits or current[1] < misses:
                gone = self._reads_gone.setdefault(key[1], [0, 0])  # closed, or opened anew
                gone[0] += hits
                gone[1] += misses
        self._reads_seen = now
        total_hits = {store: gone[0] for store, gone in self._reads_gone.items()}
        total_misses = {store: gone[1] for store, gone in self._reads_gone.items()}
        for (_task, store), (hits, misses) in now.items():
            total_hits[store] = total_hits.get(store, 0) + hits
            total_misses[store] = total_misses.get(store, 0) + misses
        return total_hits, total_misses

    def _store_sizes(self) -> dict[str, int]:
        now = time.monotonic()
        if now >= self._next_size_at:
            self._next_size_at = now + _STORE_SIZE_INTERVAL_S
            tasks = self._tasks
            self._store_bytes = {
                str(task_id): directory_bytes(tasks.task_dir(task_id))
                for task_id in sorted(tasks.held())
                if tasks.is_stateful(task_id)
            }
        return self._store_bytes


def directory_bytes(path: Path) -> int:
    """Bytes of the files under `path` (0 when it does not exist); files that vanish meanwhile
    (RocksDB compacts as it likes) are left out."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total
