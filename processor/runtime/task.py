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

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from processor.errors import ProcessorError
from processor.ids import Partition, TaskId
from processor.kafka.consumer import Message
from processor.runtime.async_channel import AsyncChannel, Slot
from processor.runtime.async_runner import AsyncRunner
from processor.runtime.sink_channel import SinkChannel
from processor.runtime.source_task import SourceTask
from processor.state.task_stores import TaskStores
from processor.state.typed import NO_LIMIT
from processor.topology.async_ops import async_input_key
from processor.topology.clock import StreamClock, decode
from processor.topology.external_sink import sink_input_key
from processor.topology.graph import SourceNode
from processor.topology.handling import (
    RECORD_ERRORS,
    Accounting,
    ErrorHandling,
    RecordBytes,
    RecordFailure,
    failure_of,
    handle_failure,
)
from processor.topology.partition_group import PartitionGroup
from processor.topology.processors import Emitter, RecordContext, SourceProcessor, instantiate
from processor.topology.record import LateRecordError, TimerError
from processor.topology.retry import Retry
from processor.topology.subtopology import SubTopology
from processor.topology.timers import fire_events

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
    # With windows: once a task has had no input this long (wall-clock ms), its stream time
    # follows the wall clock (`processor.topology.clock`); 0: never.
    idle_advance_ms: int = 0
    # A task with several input partitions: how long an input with no buffered record is waited
    # for (`processor.topology.partition_group`).
    max_task_idle_ms: int = 0
    # The global tables' stores by name (`processor.runtime.global_tables`), for joins.
    global_stores: Mapping[str, Any] = field(default_factory=dict)
    # Async operators release results only in offset order under exactly-once.
    exactly_once: bool = False


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
        self._exactly_once = options.exactly_once
        self._unproducible = options.unproducible
        self._changelog_limits = options.changelog_limits
        self._global_stores = options.global_stores
        # Stream time, kept (and checkpointed in the committed offsets' metadata) only when an
        # operator works with event time.
        self.timed = subtopology.timed
        # Whether the task's stores record which results were emitted (emit="final"): under
        # at-least-once, outputs must then reach the broker before those records do.
        # Likewise when timers fire or keys expire: their removal must not reach the changelog
        # before what the firing wrote.
        self.outputs_before_changelog = subtopology.emits_final or subtopology.fires
        self.clock = StreamClock(
            idle_advance_ms=options.idle_advance_ms, wall_ms=int(time.time() * 1000)
        )
        # The next offset per partition as of the last `take_offsets`: committed again, with the
        # new stream time, when only stream time moved.
        self._known_offsets: dict[Partition, int] = {}
        # With several input partitions, records wait in these buffers (`buffer`) to be
        # processed lowest timestamp first (`process_buffered`); dropped with the task.
        self.inputs: PartitionGroup[Message] | None = None
        if len(self.partitions) > 1:
            self.inputs = PartitionGroup(self.partitions, options.max_task_idle_ms)
        # A sink task's channel to its writer (`processor.runtime.sink_channel`; set before
        # `start`): its offsets are what the destination holds durably, not what was read.
        self.sink_channel: SinkChannel | None = None
        self._sink_reported: int | None = None
        # A source task's poller (`processor.runtime.source_task`; set before `start`): it reads
        # no partition and commits no offset; its position is recorded as it says.
        self.source_task: SourceTask | None = None
        # Async operators' calls run here (set before `start` when the topology has any); a
        # channel per partition read by one (`processor.runtime.async_channel`), whose offsets
        # are the completed prefix, and what was last reported of them.
        self.async_runner: AsyncRunner | None = None
        self.async_channels: dict[Partition, AsyncChannel] = {}
        self._async_reported: dict[Partition, int] = {}
        self._message: Message | None = None

    def start(self, stores: TaskStores | None) -> None:
        """Build the processors over `stores` (restored, for a stateful task) and run."""
        self.transition(TaskState.RUNNING)
        self.stores = stores
        if stores is not None:
            for name, store in stores.stores.items():
                changelog = stores.changelogs[name]
                store.limit_changelog(changelog, self._changelog_limits.get(changelog, NO_LIMIT))
        built_over: dict[str, Any] = {**self._global_stores}
        if stores is not None:
            built_over.update(stores.stores)
        if self.sink_channel is not None:
            built_over[sink_input_key(self.sink_channel.sink.name)] = self.sink_channel
        if self.async_runner is not None:
            built_over.update(self._open_async_channels(self.async_runner))
        self._sources = instantiate(
            self.subtopology,
            self._context,
            self._emitter,
            built_over,
            str(self.id),
            self._retry,
            self.clock,
            self._accounting.count_firing,
        )

    def transition(self, target: TaskState) -> None:
        if target not in _TRANSITIONS[self.state]:
            raise ProcessorError(
                f"task {self.id}: illegal transition {self.state.value} -> {target.value}"
            )
        self.state = target

    def process(self, message: Message) -> None:
        self._message = message
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
            elif self._sources[topic].receive(message.key(), message.value()):
                if not self.async_channels or self._partition_of[topic] not in self.async_channels:
                    # Reached a sink or a store (an async call's record: once its result does).
                    self._accounting.pending_output += 1
                context.late = None
            elif context.late is None:
                self._accounting.pending_filtered += 1
            else:
                self._late(_bytes_of(message))
        except RECORD_ERRORS as e:
            context.late = None
            failure = failure_of(e, topic, self.id.partition, offset, str(self.id))
            self._fail(failure, _bytes_of(message))
        self._next_offsets[self._partition_of[topic]] = offset + 1
        self.processed += 1
        clock = self.clock
        if clock.stream_time >= clock.due_at:
            self._fire(topic, offset)

    def process_run(self, messages: Sequence[Message], start: int) -> int:
        """`process` each of `messages` from index `start` on while they are records of this
        task's partition (a task with one input partition); returns the index of the first that
        is not (an error, or another partition's), or `len(messages)`. What `process` does per
        record, with the bookkeeping (next offset, counts) once per run."""
        topic, partition = self.partitions[0]
        end, count = start, len(messages)
        if self._unproducible or self.async_channels:
            while end < count and _of(messages[end], topic, partition):
                self.process(messages[end])
                end += 1
            return end
        receive = self._sources[topic].receive
        context, clock = self._context, self.clock
        context.topic = topic
        outputs = filtered = 0
        try:
            while end < count:
                message = messages[end]
                if (
                    message.error() is not None
                    or message.partition() != partition
                    or message.topic() != topic
                ):
                    break
                context.offset = offset = message.offset()
                context.timestamp = message.timestamp()[1]
                context.headers = message.headers()
                try:
                    if receive(message.key(), message.value()):
                        outputs += 1
                        context.late = None
                    elif context.late is None:
                        filtered += 1
                    else:
                        self._late(_bytes_of(message))
                except RECORD_ERRORS as e:
                    context.late = None
                    failure = failure_of(e, topic, partition, offset, str(self.id))
                    self._fail(failure, _bytes_of(message))
                end += 1
                if clock.stream_time >= clock.due_at:
                    self._fire(topic, offset)
        finally:
            if end > start:
                self._next_offsets[self.partitions[0]] = messages[end - 1].offset() + 1
                self.processed += end - start
                self._accounting.pending_output += outputs
                self._accounting.pending_filtered += filtered
        return end

    def buffer(self, message: Message) -> None:
        """Keep `message` for `process_buffered` (a task with several input partitions)."""
        assert self.inputs is not None
        self.inputs.add((message.topic(), message.partition()), message.timestamp()[1], message)

    def next_buffered(self, now_ms: int, lag: Callable[[Partition], int | None]) -> Message | None:
        """The buffered record to process next, or None while the task waits for an input
        (`processor.topology.partition_group`)."""
        return None if self.inputs is None else self.inputs.next_ready(now_ms, lag)

    def tick(self, wall_ms: int) -> bool:
        """Once per pass of the worker's loop: stream time may advance by idleness; True when
        something waits for the stream time it reached or for the wall clock (call
        `fire_idle`)."""
        clock = self.clock
        clock.tick(wall_ms)
        return clock.stream_time >= clock.due_at or wall_ms >= clock.wall_due_at

    def due(self) -> bool:
        """Whether something waits for the stream time the task has reached."""
        clock = self.clock
        return self.timed and clock.stream_time >= clock.due_at

    def fire_idle(self) -> None:
        """What waits for stream time or the wall clock acts, with no record being processed."""
        self._fire("", -1, wall=True)

    def _late(self, record: RecordBytes) -> None:
        """The record being processed (`record`, as read) reached only closed windows."""
        context = self._context
        error = LateRecordError(context.late or "", context.timestamp, self.clock.stream_time)
        context.late = None
        failure = failure_of(error, context.topic, self.id.partition, context.offset, str(self.id))
        self._fail(failure, record)

    def _fire(self, topic: str, offset: int, *, wall: bool = False) -> None:
        """Windows closing, timers firing, keys expiring (what waits for stream time) after the
        record at `offset` of `topic` moved stream time (or idleness did: no record, offset -1);
        with `wall`, also what waits for the wall clock. A firing that fails goes to the
        processing error handler, and the others go on."""
        fire_events(
            self.clock,
            self._context,
            topic,
            offset,
            wall=wall,
            failed=self._fire_failed,
        )

    def _fire_failed(self, error: Exception, topic: str, offset: int) -> None:
        failure = failure_of(error, topic, self.id.partition, offset, str(self.id))
        record: RecordBytes = (None, None, 0, None)
        if isinstance(error, TimerError):
            record = (error.key, None, error.at_ms, None)
        handle_failure(self._handling, failure, record, self._emitter, self._accounting)

    def _fail(self, failure: RecordFailure, record: RecordBytes) -> None:
        """Hand `record` (as read) to its stage's handler; raises (stopping the worker) under
        `fail`."""
        handle_failure(self._handling, failure, record, self._emitter, self._accounting)

    # -- async operators ------------------------------------------------------------------

    def _open_async_channels(self, runner: AsyncRunner) -> dict[str, AsyncChannel]:
        """A channel for each async operator, by where its processor finds it."""
        sources = {n.name: n.topic for n in self.subtopology.nodes if isinstance(n, SourceNode)}
        inputs: dict[str, AsyncChannel] = {}
        for node in self.subtopology.async_operators:
            channel = AsyncChannel(
                runner,
                node.external,
                sources[node.parents[0]],
                self.id.partition,
                exactly_once=self._exactly_once,
                current=self._current_record,
                release=self._release_async,
            )
            self.async_channels[channel.partition] = channel
            inputs[async_input_key(node.name)] = channel
        return inputs

    def _current_record(self) -> RecordBytes:
        message = self._message
        assert message is not None
        return _bytes_of(message)

    def _release_async(self, channel: AsyncChannel, slot: Slot) -> None:
        """Forward what `slot`'s call gave, as its record; its error goes to the handler."""
        context = self._context
        topic, partition = channel.partition
        context.topic, context.offset = topic, slot.offset
        context.timestamp, context.headers = slot.timestamp, slot.headers
        assert channel.processor is not None
        try:
            if channel.processor.emit(slot.key, slot.value, slot.outcome, slot.error):
                self._accounting.pending_output += 1
                context.late = None
            elif context.late is None:
                self._accounting.pending_filtered += 1
            else:
                self._late(slot.raw)
        except RECORD_ERRORS as e:
            context.late = None
            self._fail(failure_of(e, topic, partition, slot.offset, str(self.id)), slot.raw)
        clock = self.clock
        if clock.stream_time >= clock.due_at:
            self._fire(topic, slot.offset)

    def _take_async_offsets(self, offsets: dict[Partition, int]) -> None:
        """A partition read by an async operator commits the completed prefix, not what was
        read."""
        for partition, channel in self.async_channels.items():
            offsets.pop(partition, None)
            committable = channel.committable()
            if committable is not None and committable != self._async_reported.get(partition):
                offsets[partition] = committable
                self._async_reported[partition] = committable

    def take_offsets(self) -> dict[Partition, int]:
        """The next offset to read per partition advanced since the last call; with a stream
        time that moved since, every partition's (the metadata of each carries it)."""
        offsets, self._next_offsets = self._next_offsets, {}
        if self.source_task is not None:
            self.source_task.begin_commit()
        if self.sink_channel is not None:
            return self._take_sink_offsets()
        if self.async_channels:
            self._take_async_offsets(offsets)
        if not self.timed:
            return offsets
        self._known_offsets.update(offsets)
        if self.clock.changed:
            self.clock.checkpointed()
            return dict(self._known_offsets)
        return offsets

    def _take_sink_offsets(self) -> dict[Partition, int]:
        """A sink task commits how far its destination holds the records durably (never what
        was only read), when that moved since the last call."""
        assert self.sink_channel is not None
        durable = self.sink_channel.durable
        if durable is None or durable == self._sink_reported:
            return {}
        self._sink_reported = durable
        return {self.partitions[0]: durable}

    def committed(self) -> None:
        """The commit that last took this task's offsets succeeded."""
        if self.source_task is not None:
            self.source_task.committed()

    @property
    def offset_metadata(self) -> str | None:
        """What this task's committed offsets carry: its stream time, when it keeps one."""
        return self.clock.encode() if self.timed else None

    def resume(self, committed: Mapping[Partition, tuple[int, str | None]]) -> None:
        """Start from what the task's last owner committed: (next offset, metadata) of each
        of its partitions that has a committed offset."""
        for partition, (offset, metadata) in committed.items():
            if partition in self._partition_of.values() and offset >= 0:
                self._known_offsets[partition] = offset
                self.clock.resume(decode(metadata))

    def restore_offsets(self, offsets: dict[Partition, int]) -> None:
        """Put back offsets whose commit did not happen, so the next commit includes them."""
        for partition, offset in offsets.items():
            self._next_offsets.setdefault(partition, offset)
        if offsets and self.sink_channel is not None:
            self._sink_reported = None  # report the durable offset again
        self._async_reported = {}

    def close(self, *, close_backend: bool = True) -> None:
        """`close_backend` False: the caller closes the state's backend (`stores.backend`)."""
        if self.source_task is not None:
            self.source_task.close()
        if self.sink_channel is not None:
            self.sink_channel.close()
        for channel in self.async_channels.values():
            channel.close()
        if self.stores is not None:
            self.stores.close(close_backend=close_backend)
            self.stores = None
        self.transition(TaskState.CLOSED)


def _of(message: Message, topic: str, partition: int) -> bool:
    """Whether `message` is a record (not an error) of `partition` of `topic`."""
    return message.error() is None and message.partition() == partition and message.topic() == topic


def _bytes_of(message: Message) -> RecordBytes:
    """A consumed record as the error handlers take it."""
    return (message.key(), message.value(), message.timestamp()[1], message.headers())
