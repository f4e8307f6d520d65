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

from enum import Enum

from processor.errors import ProcessorError, RecordError
from processor.kafka.consumer import Message
from processor.runtime.task_id import TaskId
from processor.state.task_stores import TaskStores
from processor.topology.processors import (
    Emitter,
    OperatorError,
    RecordContext,
    SourceProcessor,
    instantiate,
)
from processor.topology.subtopology import SubTopology

Partition = tuple[str, int]


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
    def __init__(self, task_id: TaskId, subtopology: SubTopology, emitter: Emitter) -> None:
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
        self.processed = 0

    def start(self, stores: TaskStores | None) -> None:
        """Build the processors over `stores` (restored, for a stateful task) and run."""
        self.transition(TaskState.RUNNING)
        self.stores = stores
        self._sources = instantiate(
            self.subtopology,
            self._context,
            self._emitter,
            stores.stores if stores is not None else None,
            str(self.id),
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
            self._sources[topic].process_bytes(message.key(), message.value())
        except OperatorError as e:
            raise RecordError(topic, self.id.partition, offset, f"task {self.id}: {e}") from e
        self._next_offsets[(topic, self.id.partition)] = offset + 1
        self.processed += 1

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
