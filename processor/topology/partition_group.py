"""Timestamp-synchronised input: which buffered record a task with several input partitions (a
stream-table join's stream and table, a merge) processes next. Kafka Streams' `PartitionGroup`
rule (with KIP-695's use of the fetched lag), so that a stream catching up on a backlog does not
see table values from its future:

- each input partition has a buffer, in offset order; the next record is the head with the
  lowest timestamp (ties: the one buffered first);
- the task processes only while every input has a buffered record, or an input with an empty
  buffer may be passed by:
  - its lag (records on the broker past what was fetched) is known and 0, and it has been empty
    for `max_task_idle_ms` of wall-clock time (0: at once);
  - its lag is greater than 0 or not known yet: the task waits, as records are on their way
    (unknown lags are waited for at most `UNKNOWN_LAG_WAIT_MS`, see below);
- `max_task_idle_ms = -1` turns the waiting off: whatever is buffered is processed, still lowest
  timestamp first.

Kafka Streams knows every partition's fetch position; our consumer knows a partition's only once
a record of it was consumed or it was assigned at an explicit offset (tasks with state always
are). A partition whose lag stays unknown is waited for at most `UNKNOWN_LAG_WAIT_MS`.

Only the main thread uses a group. Single-input tasks never have one (their records are
processed as they are consumed).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

Partition = tuple[str, int]
T = TypeVar("T")  # what is buffered: a consumed message, in a worker

# The records of a partition buffered before its fetching is paused (Kafka Streams'
# buffered.records.per.partition default): the memory a task waiting on another input takes.
BUFFERED_RECORDS_PER_PARTITION = 1000
# How long an input whose lag is not known is waited for: a fetch answers within librdkafka's
# fetch.wait.max.ms (500 ms by default), so twice that is enough to learn it.
UNKNOWN_LAG_WAIT_MS = 1000
MAX_TASK_IDLE_DISABLED = -1


class PartitionGroup(Generic[T]):
    """The input buffers of one task, and the rule choosing the next record (module docstring).

    `add` buffers a record; `next_ready(now_ms, lag)` returns the next record to process, or
    None when the task must wait (for records, or for an empty input's idle time to pass).
    `lag(partition)` is the partition's fetched lag: records on the broker not yet consumed,
    None when not known.
    """

    __slots__ = ("_buffers", "_idle_since", "_max_idle_ms", "_sequence", "buffered")

    def __init__(self, partitions: Iterable[Partition], max_task_idle_ms: int) -> None:
        self._buffers: dict[Partition, deque[tuple[int, int, T]]] = {p: deque() for p in partitions}
        self._max_idle_ms = max_task_idle_ms
        self._sequence = 0
        # Per empty input the wall-clock ms since which the task waits for it.
        self._idle_since: dict[Partition, int] = {}
        self.buffered = 0

    @property
    def partitions(self) -> tuple[Partition, ...]:
        return tuple(self._buffers)

    def add(self, partition: Partition, timestamp: int, record: T) -> None:
        self._buffers[partition].append((timestamp, self._sequence, record))
        self._sequence += 1
        self.buffered += 1

    def size(self, partition: Partition) -> int:
        return len(self._buffers[partition])

    def over_limit(self) -> list[Partition]:
        """Inputs holding so many records that their fetching should pause."""
        return [p for p, b in self._buffers.items() if len(b) >= BUFFERED_RECORDS_PER_PARTITION]

    def next_ready(self, now_ms: int, lag: Callable[[Partition], int | None]) -> T | None:
        """The buffered record with the lowest timestamp, when the task may process now."""
        if not self.buffered or not self._ready(now_ms, lag):
            return None
        chosen: deque[tuple[int, int, T]] | None = None
        for buffer in self._buffers.values():
            if buffer and (chosen is None or buffer[0][:2] < chosen[0][:2]):
                chosen = buffer
        assert chosen is not None
        self.buffered -= 1
        return chosen.popleft()[2]

    def _ready(self, now_ms: int, lag: Callable[[Partition], int | None]) -> bool:
        if self._max_idle_ms == MAX_TASK_IDLE_DISABLED:
            return True
        ready = True
        for partition, buffer in self._buffers.items():
            if buffer:
                self._idle_since.pop(partition, None)
                continue
            since = self._idle_since.setdefault(partition, now_ms)
            behind = lag(partition)
            if behind is None:
                wait = max(self._max_idle_ms, UNKNOWN_LAG_WAIT_MS)
            elif behind > 0:
                self._idle_since[partition] = now_ms  # records are on their way
                return False
            else:
                wait = self._max_idle_ms
            if now_ms < since + wait:
                ready = False
        return ready

    def clear(self) -> None:
        """Drop every buffered record (they are read again from the committed offsets)."""
        for buffer in self._buffers.values():
            buffer.clear()
        self._idle_since.clear()
        self.buffered = 0
