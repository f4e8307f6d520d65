"""What a sink is: the contract between the runtime and a destination outside Kafka.

A user gives a `Sink` (configuration: where to write, how) to `stream.sink(...)`. The sink runs
in a sub-topology of its own that reads one topic (an internal one is inserted when the sink
follows other operators), so each of that topic's partitions is a sink task, assigned, moved
and failed over like any task. For each sink task the runtime asks the sink for a
`SinkWriter` and drives it:

1. `open()` once, on the writer's own thread, before the task reads anything: connect, take the
   task over (fence a previous owner), and say where to resume. An exactly-once writer returns
   the next offset to read as its destination recorded it (None: it has recorded nothing yet,
   start from the group's committed offset); an at-least-once writer returns None.
2. `prepare(record)` on the worker's main thread, once per record: turn the record into what
   the destination stores (a row, a line), checking it. A record that cannot be written raises
   `SinkRecordError`, which goes to the processing error handler (fail / skip / dead letter)
   with the record's topic, partition and offset, like an error of any operator.
3. `write(batch)` on the writer's thread, with the prepared items of consecutive records
   `[first_offset, next_offset)` of the task's partition, in order. It returns the next offset
   up to which everything is now durable in the destination (None: nothing new is durable
   yet, e.g. a file not yet published). An exactly-once writer stores that offset in the
   destination atomically with the data, so its progress has one source of truth. A writer
   that has been fenced (another worker took the task over) raises `SinkFencedError`; any
   other exception is retried with backoff, the batch unchanged.
4. `roll(now_ms)` on the writer's thread when no batch came for a while: make durable what a
   time limit says is due (a file open longer than `roll_ms`); returns like `write`.
5. `close()` when the task goes away (revoked, worker stopping): release the connection;
   nothing more is published. What was written but not durable is written again by the task's
   next owner, from the durable offset.

The Kafka offsets the runtime commits for a sink task are the durable offsets `write`/`roll`
returned, never beyond: nothing is acknowledged to Kafka before the destination has it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from processor.errors import ProcessorError

__all__ = [
    "Sink",
    "SinkBatch",
    "SinkError",
    "SinkFencedError",
    "SinkProgress",
    "SinkRecord",
    "SinkRecordError",
    "SinkTask",
    "SinkWriter",
]


class SinkError(ProcessorError):
    """A sink cannot write (names the sink and what to do)."""

    def __init__(self, sink: str, problem: str) -> None:
        self.sink = sink
        self.problem = problem
        super().__init__(f"sink {sink!r}: {problem}")


class SinkFencedError(SinkError):
    """Another worker has taken this sink task over: this writer must stop writing."""


class SinkRecordError(ProcessorError):
    """One record cannot be written by a sink (a missing or mistyped column, a value that is not
    a dict); the processing error handler decides (fail, skip, dead letter)."""

    def __init__(self, sink: str, problem: str) -> None:
        self.sink = sink
        self.problem = problem
        super().__init__(f"sink {sink!r}: {problem}")


@dataclass(frozen=True)
class SinkTask:
    """Which task a writer serves: the sink's name, the application, the topic it reads and
    the partition (one task per partition)."""

    sink: str
    application_id: str
    topic: str
    partition: int

    @property
    def task_name(self) -> str:
        return f"{self.topic}-{self.partition}"


@dataclass(frozen=True)
class SinkRecord:
    """One record as the sink receives it: deserialized key and value, with where it came
    from."""

    key: Any
    value: Any
    timestamp: int
    headers: Sequence[tuple[str, bytes | None]] | None
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class SinkBatch:
    """Prepared items of the consecutive records `[first_offset, next_offset)` of one partition
    (records a handler skipped are not among them, so there may be fewer items than offsets)."""

    items: Sequence[Any]
    first_offset: int
    next_offset: int
    size_bytes: int = 0


class SinkWriter(ABC):
    """Writes one sink task's records; see the module docstring for who calls what, where."""

    @abstractmethod
    def open(self) -> int | None:
        """Connect and take the task over; the next offset to read as the destination recorded
        it (exactly-once), or None."""

    @abstractmethod
    def prepare(self, record: SinkRecord) -> Any:
        """What the destination stores for `record`; raises `SinkRecordError` when it cannot."""

    @abstractmethod
    def write(self, batch: SinkBatch) -> int | None:
        """Write `batch`; the next offset up to which everything is now durable, or None."""

    def roll(self, now_ms: int) -> int | None:
        """Make durable what is due by time; the durable next offset, or None (nothing new)."""
        return None

    def size_of(self, item: Any) -> int:
        """About how many bytes `item` (from `prepare`) holds in memory, for the buffer bound."""
        return 64

    @abstractmethod
    def close(self) -> None:
        """Release what the writer holds; publish nothing more."""


class Sink(ABC):
    """A destination outside Kafka, given to `stream.sink(...)`."""

    exactly_once: bool = False
    """Whether the destination records its own progress (`open` returns where to resume)."""

    max_batch_records: int = 10_000
    """A batch is handed to the writer when it has this many records..."""

    max_batch_ms: int = 500
    """...or its first record has waited this long."""

    max_buffer_bytes: int = 32 << 20
    """Prepared items waiting for the writer (and being written) per task: above this the task's
    input is paused until the writer catches up, so memory stays bounded."""

    name: str = ""
    """Set by `stream.sink(..., name=)`: names the sink task's sub-topology, internal topic,
    metrics and errors."""

    @abstractmethod
    def writer(self, task: SinkTask) -> SinkWriter:
        """A new writer for `task` (one per task; called again when the task moves back)."""

    def describe(self) -> str:
        """One line for `describe()` and the status page: what and where (no secrets)."""
        return type(self).__name__

    def progress(self, application_id: str, topic: str) -> SinkProgress | None:
        """What this sink keeps outside Kafka of how far `application_id` has written the
        records of `topic`, for `processor reset` to clear; None: nothing (the default)."""
        return None


class SinkProgress(Protocol):
    """An exactly-once sink's progress for one application, kept outside Kafka."""

    def describe(self) -> str:
        """What `clear()` removes, and where (no secrets)."""
        ...

    def clear(self) -> str:
        """Remove it; returns one line saying what was removed."""
        ...
