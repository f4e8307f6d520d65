"""A stream task: one partition of one sub-topology, processing its records in offset order,
with its own copy of the sub-topology's stores.

Lifecycle (a stateless task goes straight from CREATED to RUNNING):

```
CREATED --> RESTORING --> RUNNING --> CLOSED
   |            |                       ^
   +------------+-----------------------+
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from processor.errors import ProcessorError
from processor.ids import Partition, TaskId
from processor.kafka.consumer import Message
from processor.state.task_stores import TaskStores
from processor.state.typed import NO_LIMIT
from processor.topology.handling import (
    RECORD_ERRORS,
    Accounting,
    ErrorHandling,
    RecordBytes,
    RecordFailure,
    failure_of,
    handle_failure,
)
from processor.topology.processors import Emitter, RecordContext, SourceProcessor, instantiate
from processor.topology.retry import Retry
from processor.topology.subtopology import SubTopology

# (topic, partition, offset) of an input record
RecordPosition = tuple[str, int, int]


@dataclass(frozen=True)
class TaskOptions:
    """What every task of a worker shares: how failed records are handled and counted, the
    retry of transient user errors, the records whose outputs could not be produced, and how
    large a store update may be."""

    handling: ErrorHandling = field(default_factory=ErrorHandling)
    accounting: Accounting = field(default_factory=Accounting)
    retry: Retry | None = None
    # Per changelog topic, the most key + value bytes one of its records may hold
    # (`processor.kafka.producer.max_record_bytes`): a store refuses a larger update when it is
    # written. A changelog not named here has no limit.
    changelog_limits: Mapping[str, int] = field(default_factory=dict)
    # Records whose outputs the broker refused in a transaction that was then aborted: they go
    # straight to the production error handler when read again.
    unproducible: dict[RecordPosition, tuple[RecordFailure, RecordBytes]] = field(
        default_factory=dict
    )


class TaskState(Enum):
    CREATED = "created"
    RESTORING = "restoring"
    RUNNING = "running"
    CLOSED = "closed"


_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.CREATED: frozenset({TaskState.RESTORING, TaskState.RUNNING, TaskState.CLOSED}),
    TaskState.RESTORING: frozenset({TaskState.RUNNING, TaskState.CLOSED}),
    TaskState.RUNNING: frozenset({TaskState.CLOSED}),
    TaskState.CLOSED: frozenset(),
}


class StreamTask:
    def __init__(
        self,
        task_id: TaskId,
        subtopology: SubTopology,
        emitter: Emitter,
        options: TaskOptions | None = None,
    ) -> None:
        self.id = task_id
        self.state = TaskState.CREATED
        self.subtopology = subtopology
        self.stores: TaskStores | None = None
        self.partitions: tuple[Partition, ...] = tuple(
            (topic, task_id.partition) for topic in subtopology.source_topics
        )
        self._emitter = emitter
        self._context = RecordContext(partition=task_id.partition)
        self._sources: dict[str, SourceProcessor] = {}
        self._next_offsets: dict[Partition, int] = {}
        # The (topic, partition) of each source topic, built once rather than per record.
        self._partition_of: dict[str, Partition] = {p[0]: p for p in self.partitions}
        self.processed = 0
        options = options or TaskOptions()
        self._handling = options.handling
        self._accounting = options.accounting
        self._retry = options.retry
        self._unproducible = options.unproducible
        self._changelog_limits = options.changelog_limits

    def start(self, stores: TaskStores | None) -> None:
        """Build the processors over `stores` (restored, for a stateful task) and run."""
        self.transition(TaskState.RUNNING)
        self.stores = stores
        if stores is not None:
            for name, store in stores.stores.items():
                changelog = stores.changelogs[name]
                store.limit_changelog(changelog, self._changelog_limits.get(changelog, NO_LIMIT))
        self._sources = instantiate(
            self.subtopology,
            self._context,
            self._emitter,
            stores.stores if stores is not None else None,
            str(self.id),
            self._retry,
        )

    def transition(self, target: TaskState) -> None:
        if target not in _TRANSITIONS[self.state]:
            raise ProcessorError(
                f"task {self.id}: illegal transition {self.state.value} -> {target.value}"
            )
        self.state = target

    def process(self, message: Message) -> None:
        topic = message.topic()
        offset = message.offset()
        context = self._context
        context.topic = topic
        context.offset = offset
        context.timestamp = message.timestamp()[1]
        context.headers = message.headers()
        try:
            if self._unproducible and (topic, self.id.partition, offset) in self._unproducible:
                # Kept until the commit that covers it: the transaction may abort again.
                failure, output = self._unproducible[(topic, self.id.partition, offset)]
                handle_failure(self._handling, failure, output, self._emitter, self._accounting)
            elif self._sources[topic].process_bytes(message.key(), message.value()):
                self._accounting.pending_output += 1  # reached a sink or a store
            else:
                self._accounting.pending_filtered += 1
        except RECORD_ERRORS as e:
            self._fail(failure_of(e, topic, self.id.partition, offset, str(self.id)), message)
        self._next_offsets[self._partition_of[topic]] = offset + 1
        self.processed += 1

    def _fail(self, failure: RecordFailure, message: Message) -> None:
        """Hand `message` to its stage's handler; raises (stopping the worker) under `fail`."""
        handle_failure(
            self._handling,
            failure,
            (message.key(), message.value(), message.timestamp()[1], message.headers()),
            self._emitter,
            self._accounting,
        )

    def take_offsets(self) -> dict[Partition, int]:
        """The next offset to read per partition advanced since the last call."""
        offsets, self._next_offsets = self._next_offsets, {}
        return offsets

    def restore_offsets(self, offsets: dict[Partition, int]) -> None:
        """Put back offsets whose commit did not happen, so the next commit includes them."""
        for partition, offset in offsets.items():
            self._next_offsets.setdefault(partition, offset)

    def close(self) -> None:
        if self.stores is not None:
            self.stores.close()
            self.stores = None
        self.transition(TaskState.CLOSED)
