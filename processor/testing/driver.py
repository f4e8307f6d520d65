"""An in-memory driver that runs a topology without Kafka, through the same processors and store
code a worker uses: pipe records into input topics, read what the sinks wrote, read the stores.

Each topic behaves as one partition, so each sub-topology runs as one task. Records written to
a repartition topic are fed to the sub-topology reading it before `pipe` returns, and every
`pipe` ends with a commit: the stores' caches are flushed to their changelogs (readable with
`read` like any topic) and checkpointed.

>>> from processor import Topology, serdes
>>> topology = Topology("shout")
>>> topology.stream("lines", value_serde=serdes.StringSerde()).map_values(str.upper).to("out")
>>> driver = TopologyTestDriver(topology)
>>> driver.pipe("lines", None, "hello")
>>> driver.read("out")
[(None, 'HELLO')]

Records that fail go to the error handlers a worker would use (`fail` unless given), and
`driver.accounting` counts every input's outcome:

>>> from processor.topology.handling import ErrorHandler, Outcome
>>> topology = Topology("parse")
>>> topology.stream("lines", value_serde=serdes.JsonSerde()).to("out")
>>> driver = TopologyTestDriver(topology, deserialization_error_handler=ErrorHandler.DEAD_LETTER)
>>> driver.pipe_bytes("lines", None, b"{not json")
>>> [r.value for r in driver.read_records("parse-dead-letters")]
[b'{not json']
>>> driver.accounting.totals()[Outcome.DEAD_LETTERED]
1

Like Kafka Streams' TopologyTestDriver, `pipe` processes each record at once, so records piped
to several topics are processed in the order they are piped. To see what a worker does with a
backlog on several topics of one task (a stream-table join, a merge), pipe inside
`with driver.backlog():` — the records are processed when the block ends, each task taking the
one with the lowest timestamp first (timestamp synchronisation, README "Stream-table joins").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from processor.dsl.topology import Topology
from processor.errors import TopologyError
from processor.kafka.record_size import DEFAULT_MESSAGE_MAX_BYTES, max_record_bytes
from processor.serdes import Serde
from processor.state.budget import DEFAULT_STORE_CACHE_BYTES, MemoryBudget
from processor.state.global_store import (
    GlobalRecords,
    GlobalStore,
    GlobalStores,
    undecodable_handler,
)
from processor.state.indexing import backend_stores
from processor.state.memory import InMemoryBackend
from processor.state.task_stores import AnyStore, TaskStores
from processor.state.timer_store import TimerStore
from processor.state.typed import KeyValueStore
from processor.state.window_store import WindowStore
from processor.testing.driver_output import OutputRecord, _Collector
from processor.testing.driver_sinks import DriverSinkInput, flush_sinks, sink_inputs
from processor.testing.driver_sources import DriverSources
from processor.topology.clock import StreamClock
from processor.topology.graph import SinkNode, timer_store_name
from processor.topology.handling import (
    RECORD_ERRORS,
    Accounting,
    ErrorHandler,
    ErrorHandling,
    Outcome,
    RecordBytes,
    failure_of,
    handle_failure,
)
from processor.topology.partition_group import PartitionGroup
from processor.topology.processors import Headers, RecordContext, SourceProcessor, instantiate
from processor.topology.record import LateRecordError, TimerError
from processor.topology.retry import Retry
from processor.topology.subtopology import SubTopology, deserialization_overrides
from processor.topology.timers import fire_events

DEFAULT_MAX_CHANGELOG_RECORD_BYTES = max_record_bytes(None, DEFAULT_MESSAGE_MAX_BYTES)
"""The most key + value bytes a store update may have in the driver by default: as much as a
worker with librdkafka's default message.max.bytes lets a changelog record hold."""


def _global_stores(topology: Topology, handler: ErrorHandler) -> GlobalStores:
    """The global tables, in memory: applied as soon as their topics are piped to, read by
    every task."""
    tables = topology.global_tables()
    backend = InMemoryBackend([t.name for t in tables])
    return GlobalStores(backend, tables, undecodable_handler(handler))


class TopologyTestDriver(DriverSources):
    """Runs `topology` in memory, as application `application_id` (default: its name)."""

    # Inside `backlog()`: the records piped, held until it ends.
    _held: list[tuple[str, bytes | None, bytes | None, int, Headers | None]] | None = None

    def __init__(
        self,
        topology: Topology,
        *,
        start_time_ms: int = 0,
        application_id: str | None = None,
        deserialization_error_handler: ErrorHandler = ErrorHandler.FAIL,
        processing_error_handler: ErrorHandler = ErrorHandler.FAIL,
        production_error_handler: ErrorHandler = ErrorHandler.FAIL,
        dead_letter_topic: str | None = None,
        retry: Retry | None = None,
        max_changelog_record_bytes: int = DEFAULT_MAX_CHANGELOG_RECORD_BYTES,
        late_record_handler: ErrorHandler = ErrorHandler.SKIP,
        idle_advance_ms: int = 0,
    ) -> None:
        """`retry` applies to user functions raising transient errors, as a worker's
        `processing_retry_*` settings do; by default the driver does not retry (nor wait).
        A store update whose key and value are together larger than
        `max_changelog_record_bytes` goes to the production error handler, as in a worker
        whose changelogs take that much (by default: what librdkafka's default
        message.max.bytes allows). Records for windows that have closed go to
        `late_record_handler` (skip: counted as `Outcome.LATE`). With `idle_advance_ms`, a task's
        stream time follows the driver's wall clock (`advance_wall_clock`) once it has had no
        input for that long, as a worker's does with `--idle-advance-ms`."""
        self._topology = topology
        self._now_ms = start_time_ms
        subtopologies = topology.subtopologies(application_id)
        self.accounting = Accounting()
        self._handling = ErrorHandling(
            deserialization=deserialization_error_handler,
            processing=processing_error_handler,
            production=production_error_handler,
            dead_letter_topic=dead_letter_topic
            or f"{application_id or topology.name}-dead-letters",
            source_overrides=deserialization_overrides(subtopologies),
            late=late_record_handler,
        )
        self._task_of_topic = {t: f"{sub.id}_0" for sub in subtopologies for t in sub.source_topics}
        external = {t for sub in subtopologies for t in sub.external_source_topics}
        internal = set(self._task_of_topic) - external
        read_back = external | {table.topic for table in topology.global_tables()}
        self._collector = _Collector(internal, read_back)
        self._context = RecordContext(partition=0)
        self._sources: dict[str, SourceProcessor] = {}
        self._offsets: dict[str, int] = defaultdict(int)
        self._serdes: dict[str, tuple[Serde[Any], Serde[Any]]] = {}
        self._routed_serdes: list[tuple[Serde[Any], Serde[Any]]] = []  # of to(function) sinks
        self._task_stores: list[TaskStores] = []
        self._sinks: list[DriverSinkInput] = []
        memory = MemoryBudget(DEFAULT_STORE_CACHE_BYTES)  # the driver commits: it never fills
        self._stores: dict[str, AnyStore] = {}
        self._global = _global_stores(topology, deserialization_error_handler)
        # One clock per task (per sub-topology), and the task of each source topic.
        self._clocks: list[StreamClock] = []
        self._clock_of: dict[str, StreamClock] = {}
        for sub in subtopologies:
            clock = StreamClock(
                idle_advance_ms=idle_advance_ms, wall_ms=start_time_ms, wall_clock=self._wall_clock
            )
            self._clocks.append(clock)
            self._clock_of.update(dict.fromkeys(sub.source_topics, clock))
            stores = self._stores_of(sub, memory, max_changelog_record_bytes)
            stores.update(self._async_inputs(sub))
            self._sources.update(
                instantiate(
                    sub,
                    self._context,
                    self._collector,
                    stores,
                    f"{sub.id}_0",
                    retry,
                    clock,
                    self.accounting.count_firing,
                )
            )
            for node in sub.nodes:
                if isinstance(node, SinkNode) and node.topic_of is not None:
                    self._routed_serdes.append((node.key_serde, node.value_serde))
                elif isinstance(node, SinkNode):
                    self._serdes.setdefault(node.topic, (node.key_serde, node.value_serde))

    def _stores_of(
        self, sub: SubTopology, memory: MemoryBudget, max_changelog_record_bytes: int
    ) -> dict[str, Any]:
        """The stores of the task of `sub`, in memory (their changelogs become readable
        topics), and the global stores."""
        if sub.external_sink is not None:
            return {**self._global.stores, **sink_inputs(sub, self._sinks)}
        if not sub.stateful:
            return dict(self._global.stores)
        task_stores = TaskStores(
            InMemoryBackend(backend_stores(sub.stores)),
            sub.stores,
            sub.changelog_topics,
            memory=memory,
        )
        self._task_stores.append(task_stores)
        for name, store in task_stores.stores.items():
            store.limit_changelog(task_stores.changelogs[name], max_changelog_record_bytes)
        self._stores.update(task_stores.stores)
        for spec in sub.stores:
            changelog = sub.changelog_topics[spec.name]
            self._serdes[changelog] = (spec.key_serde, spec.value_serde)
        return {**self._global.stores, **task_stores.stores}

    @property
    def now_ms(self) -> int:
        return self._now_ms

    def _wall_clock(self) -> int:
        return self._now_ms

    def advance_time(self, milliseconds: int) -> None:
        """Move the wall clock on (`advance_wall_clock`)."""
        self.advance_wall_clock(milliseconds)

    def advance_wall_clock(self, milliseconds: int) -> None:
        """Move the wall clock on by `milliseconds`: with `idle_advance_ms`, the stream time of a
        task idle that long advances with it, and windows that close meanwhile are emitted."""
        if milliseconds < 0:
            raise ValueError("the wall clock does not go back")
        self._now_ms += milliseconds
        for clock in self._clocks:
            clock.tick(self._now_ms)
        self._fire_idle()
        self._commit()

    def advance_stream_time(self, topic: str, to_ms: int) -> None:
        """Move the stream time of the task reading `topic` on to `to_ms` (never back), as
        records with that timestamp would, and let what waits for it act (windows close,
        timers fire, keys expire)."""
        self._source(topic)
        clock = self._clock_of[topic]
        clock.stream_time = max(clock.stream_time, to_ms)
        self._fire_idle()
        self._commit()

    def _fire_idle(self) -> None:
        for clock in self._clocks:
            if clock.stream_time >= clock.due_at or self._now_ms >= clock.wall_due_at:
                self._fire(clock, "", -1, wall=True)
        self._drain_internal()

    def pipe(
        self,
        topic: str,
        key: Any,
        value: Any,
        *,
        timestamp: int | None = None,
        headers: Headers | None = None,
    ) -> None:
        """Feed one record to `topic`, serialized with that source's (or global table's)
        serdes."""
        if topic in self._global.tables:
            serdes = self._global.tables[topic].store
            key_serde, value_serde = serdes.key_serde, serdes.value_serde
        else:
            source = self._source(topic)
            key_serde, value_serde = source.key_serde, source.value_serde
        self.pipe_bytes(
            topic,
            key_serde.serialize(key),
            value_serde.serialize(value),
            timestamp=timestamp,
            headers=headers,
        )

    def pipe_bytes(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        timestamp: int | None = None,
        headers: Headers | None = None,
    ) -> None:
        """Feed one record as raw bytes, as a producer would have written it. A global table's
        topic updates its store at once."""
        if topic in self._global.tables:
            self._apply_global(topic, key, value)
            return
        at = self._now_ms if timestamp is None else timestamp
        if self._held is not None:
            self._source(topic)
            self._held.append((topic, key, value, at, headers))
            return
        self._process(topic, key, value, at, headers)
        self._after_input()

    def _apply_global(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        offset = self._offsets[topic]
        self._offsets[topic] = offset + 1
        self._global.apply(GlobalRecords(topic, 0, offset, [key], [value], [offset]))

    @contextmanager
    def backlog(self) -> Iterator[None]:
        """Hold the records piped inside the block, as a backlog a worker would find on the
        broker, and process them when it ends as a worker's tasks would: each task (the topics
        of one sub-topology) the record with the lowest timestamp first, ties in pipe order;
        each topic's records in the order piped."""
        if self._held is not None:
            raise TopologyError("driver.backlog() blocks do not nest")
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
        groups: dict[str, PartitionGroup[tuple[str, bytes | None, bytes | None, int, Any]]] = {}
        for record in held:
            task = self._task_of_topic[record[0]]
            if task not in groups:
                topics = [t for t, of in self._task_of_topic.items() if of == task]
                groups[task] = PartitionGroup([(t, 0) for t in topics], max_task_idle_ms=-1)
            group = groups[task]
            group.add((record[0], 0), record[3], record)
        for group in groups.values():
            while (taken := group.next_ready(self._now_ms, lambda _: 0)) is not None:
                self._process(*taken)
                self._after_input()

    def _after_input(self) -> None:
        self._drain_internal()
        for clock in self._clocks:
            clock.tick(self._now_ms)
        self._fire_idle()  # wall-clock timers set at or before the driver's time
        self._commit()

    def _drain_internal(self) -> None:
        """Feed the records written to topics the topology reads back to it."""
        while self._collector.internal:
            record = self._collector.internal.popleft()
            if record.topic in self._global.tables:
                self._apply_global(record.topic, record.key, record.value)
            else:
                self._process(
                    record.topic, record.key, record.value, record.timestamp, record.headers
                )

    def _process(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp: int,
        headers: Headers | None,
    ) -> None:
        source = self._source(topic)
        offset = self._offsets[topic]
        self._offsets[topic] = offset + 1
        c = self._context
        c.topic, c.offset, c.timestamp, c.headers = topic, offset, timestamp, headers
        task = self._task_of_topic[topic]
        record = (key, value, timestamp, headers)
        try:
            reached = source.receive(key, value)
        except RECORD_ERRORS as e:
            c.late = None
            failure = failure_of(e, topic, 0, offset, task)
            handle_failure(self._handling, failure, record, self._collector, self.accounting)
        else:
            late, c.late = c.late, None
            if late is not None and not reached:
                clock = self._clock_of[topic]
                error = LateRecordError(late, c.timestamp, clock.stream_time)
                failure = failure_of(error, topic, 0, offset, task)
                handle_failure(self._handling, failure, record, self._collector, self.accounting)
            else:
                self.accounting.count(Outcome.OUTPUT if reached else Outcome.FILTERED)
        clock = self._clock_of[topic]
        if clock.stream_time >= clock.due_at:
            self._fire(clock, topic, offset)

    def _fire(self, clock: StreamClock, topic: str, offset: int, *, wall: bool = False) -> None:
        """Let the operators waiting for stream time (with `wall`, for the wall clock too) act
        (windows closing, timers firing, keys expiring), as the task of `topic` does after the
        record at `offset` (none: -1)."""
        task = self._task_of_topic.get(topic) or self._task_of_clock(clock)

        def failed(error: Exception, topic: str, offset: int) -> None:
            failure = failure_of(error, topic, 0, offset, task)
            record: RecordBytes = (None, None, 0, None)
            if isinstance(error, TimerError):
                record = (error.key, None, error.at_ms, None)
            handle_failure(self._handling, failure, record, self._collector, self.accounting)

        fire_events(clock, self._context, topic, offset, wall=wall, failed=failed)

    def _task_of_clock(self, clock: StreamClock) -> str:
        return next((self._task_of_topic[t] for t, c in self._clock_of.items() if c is clock), "")

    def _commit(self) -> None:
        for task_stores in self._task_stores:

            def write_changelog(topic: str, key: bytes, value: bytes | None) -> None:
                self._collector.emit(topic, key, value, self._now_ms, None)

            task_stores.flush(write_changelog)
            task_stores.checkpoint({})
        flush_sinks(self._sinks)
        self.accounting.commit()

    def _source(self, topic: str) -> SourceProcessor:
        source = self._sources.get(topic)
        if source is None:
            raise TopologyError(
                f"topic {topic!r} is not a source of topology {self._topology.name!r}; "
                f"its sources are {sorted(self._sources)}"
            )
        return source

    def read_records(self, topic: str) -> list[OutputRecord]:
        """Everything written to `topic` since the last read, as bytes; the read consumes it."""
        return self._collector.records.pop(topic, [])

    def read(self, topic: str) -> list[tuple[Any, Any]]:
        """Everything written to `topic` since the last read, deserialized with its sink's (or
        store's, for a changelog) serdes."""
        key_serde, value_serde = self._serdes.get(topic, (None, None))
        if (key_serde is None or value_serde is None) and len(self._routed_serdes) == 1:
            key_serde, value_serde = self._routed_serdes[0]  # the one sink picking topics
        if key_serde is None or value_serde is None:
            routed = " by a sink whose serdes the driver knows (read_records() reads bytes)"
            raise TopologyError(
                f"topic {topic!r} is not written by topology {self._topology.name!r}"
                + (routed if self._routed_serdes else "")
            )
        return [
            (key_serde.deserialize(r.key), value_serde.deserialize(r.value))
            for r in self.read_records(topic)
        ]

    def store(self, name: str) -> KeyValueStore[Any, Any]:
        """The key-value store `name`, as operators see it (a store with a TTL hides the keys
        that expired)."""
        store = self._store(name)
        if not isinstance(store, KeyValueStore):
            raise TopologyError(f"store {name!r} is not a key-value store")
        return store

    def global_store(self, name: str) -> GlobalStore[Any, Any]:
        """The global table whose store is `name` (`Topology.global_table(name=...)`, default
        its topic), as joins read it: `get(key)`, `all()`."""
        try:
            return self._global.stores[name]
        except KeyError:
            raise TopologyError(
                f"topology {self._topology.name!r} has no global table {name!r}; its global "
                f"tables are {sorted(self._global.stores)}"
            ) from None

    def timers(self, operator: str) -> list[tuple[Any, str, str, int]]:
        """The timers set by `process()` operator `operator` (its `name=`), as (key, name,
        "stream"|"wall", at_ms), by key bytes then name."""
        store = self._stores.get(timer_store_name(operator))
        if not isinstance(store, TimerStore):
            raise TopologyError(
                f"topology {self._topology.name!r} has no process() operator {operator!r} with "
                "on_timer"
            )
        return list(store.all())

    def window_store(self, name: str) -> WindowStore[Any, Any]:
        """The windowed store `name`: `fetch(key, from_ms, to_ms)`, `all()`."""
        store = self._store(name)
        if not isinstance(store, WindowStore):
            raise TopologyError(f"store {name!r} is not windowed; read it with store()")
        return store

    def stream_time(self, topic: str) -> int:
        """The stream time of the task reading `topic` (-1 before its first record)."""
        self._source(topic)
        return self._clock_of[topic].stream_time

    def _store(self, name: str) -> AnyStore:
        try:
            return self._stores[name]
        except KeyError:
            raise TopologyError(
                f"topology {self._topology.name!r} has no store {name!r}; "
                f"its stores are {sorted(self._stores)}"
            ) from None
