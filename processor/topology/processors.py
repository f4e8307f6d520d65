"""The objects that carry records through one task's copy of a sub-topology, and how they are
built and wired (`instantiate`).

The same code runs in a worker and in the in-memory test driver; only the `Emitter` differs.
A record enters at a `SourceProcessor` as bytes, flows through operators (`stateless`,
`stateful`) as Python values and leaves at a `SinkProcessor` as bytes handed to the emitter.
`process_bytes` returns whether the record reached a sink or a store (`operator.Processor`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from processor.errors import DeserializationError, TransientError
from processor.serdes import Serde
from processor.topology.async_ops import AsyncProcessor, async_input_key
from processor.topology.clock import StreamClock
from processor.topology.external_sink import ExternalSinkProcessor, sink_input_key
from processor.topology.foreign_join import FOREIGN_JOIN_KINDS, make_foreign_join
from processor.topology.fusion import fuse, fused_source
from processor.topology.global_tables import global_join_processor
from processor.topology.graph import (
    Node,
    OperatorKind,
    OperatorNode,
    SinkNode,
    SourceNode,
    parents_of,
)
from processor.topology.operator import Processor
from processor.topology.record import (
    Emitter,
    Headers,
    NullKeyError,
    OperatorError,
    RecordContext,
    SinkRejectedError,
)
from processor.topology.retry import Retry, call_again
from processor.topology.sink import RoutedSinkProcessor, SinkProcessor
from processor.topology.stateful import AggregateProcessor, MaterializeProcessor, ProcessProcessor
from processor.topology.stateless import (
    FilterProcessor,
    FlatMapProcessor,
    FlatMapValuesProcessor,
    FunctionOperator,
    MapProcessor,
    MapValuesProcessor,
    PassThroughProcessor,
    PeekProcessor,
    SplitProcessor,
)
from processor.topology.stream_table_join import JOIN_KINDS, make_stream_table_join
from processor.topology.subtopology import SubTopology
from processor.topology.tables import TABLE_OPERATORS, TablePlan, make_table_processor
from processor.topology.timers import (
    ExpiringStore,
    ExpiryPass,
    FiringCounter,
    ProcessTimers,
    _no_count,
    expiry_handler,
    process_expiry_action,
)
from processor.topology.windowed import SessionAggregate, TimeWindowAggregate, WindowedStore
from processor.windows.spec import HoppingWindows, SessionWindows, SlidingWindows, TumblingWindows

__all__ = [
    "Emitter",
    "Headers",
    "NullKeyError",
    "OperatorError",
    "RecordContext",
    "SinkRejectedError",
    "SourceProcessor",
    "instantiate",
]


class SourceProcessor(Processor):
    """Deserializes a record and sends it on. A serde that raises `TransientError` (a schema
    registry that cannot be reached) is retried per `retry`, then the error stops the worker:
    the record is not at fault, so no error handler may skip or dead-letter it."""

    __slots__ = (
        "clock",
        "context",
        "defer_time",
        "extract",
        "key_serde",
        "receive",
        "retry",
        "timed",
        "value_serde",
    )

    def __init__(
        self,
        node: SourceNode,
        context: RecordContext,
        retry: Retry | None,
        clock: StreamClock,
        *,
        timed: bool,
    ) -> None:
        super().__init__(node.name)
        self.key_serde = node.key_serde
        self.value_serde = node.value_serde
        self.context = context
        self.retry = retry
        self.clock = clock
        self.extract = node.timestamp
        # Its child is an async operator, which moves stream time as results come out.
        self.defer_time = False
        # Whether an operator of the task works with event time: a negative timestamp is then
        # the record's fault.
        self.timed = timed or node.timestamp is not None
        # What the task calls per record: `process_bytes` and the chain after it, fused once
        # the task's processors are wired (`processor.topology.fusion`).
        self.receive: Callable[[bytes | None, bytes | None], bool] = self.process_bytes

    def process_bytes(self, key: bytes | None, value: bytes | None) -> bool:
        """Deserialize and process one record; True when it reached a sink or a store."""
        try:
            k = self.key_serde.deserialize(key)
        except TransientError as e:
            k = self._deserialize_again("key", self.key_serde, key, e)
        except Exception as e:
            raise self._undecodable("key", self.key_serde, e) from e
        try:
            v = self.value_serde.deserialize(value)
        except TransientError as e:
            v = self._deserialize_again("value", self.value_serde, value, e)
        except Exception as e:
            raise self._undecodable("value", self.value_serde, e) from e
        if self.timed:
            self._observe_time(k, v)
        return self.forward(k, v)

    def _observe_time(self, key: Any, value: Any) -> None:
        """Take the record's event time (from the extractor, if the source has one) into
        stream time."""
        c = self.context
        if self.extract is not None:
            try:
                timestamp = self.extract(key, value, c.timestamp)
            except Exception as e:
                raise DeserializationError(
                    c.topic,
                    c.partition,
                    c.offset,
                    f"the timestamp extractor of source {self.name!r} raised "
                    f"{type(e).__name__}: {e}; fix the extractor or the record",
                ) from e
            if not isinstance(timestamp, int) or isinstance(timestamp, bool):
                raise DeserializationError(
                    c.topic,
                    c.partition,
                    c.offset,
                    f"the timestamp extractor of source {self.name!r} returned {timestamp!r}, "
                    "not an int of milliseconds",
                )
            c.timestamp = timestamp
        if c.timestamp < 0:
            raise DeserializationError(
                c.topic,
                c.partition,
                c.offset,
                f"the record's timestamp is {c.timestamp}, negative, so it belongs to no window"
                f"; give source {self.name!r} a timestamp= extractor, or fix the producer",
            )
        if not self.defer_time:
            self.clock.observe(c.timestamp)

    def _deserialize_again(
        self, part: str, serde: Serde[Any], data: bytes | None, error: TransientError
    ) -> Any:
        if self.retry is None or not isinstance(error, self.retry.on):
            raise error
        try:
            return call_again(
                serde.deserialize, (data,), error, self.retry, self.name, self.context
            )
        except TransientError:
            raise
        except Exception as e:
            raise self._undecodable(part, serde, e) from e

    def _undecodable(self, part: str, serde: Serde[Any], error: Exception) -> DeserializationError:
        c = self.context
        return DeserializationError(
            c.topic,
            c.partition,
            c.offset,
            f"cannot deserialize the {part} with the {serde.name} serde "
            f"({type(error).__name__}: {error}); fix the producer or the source's {part}_serde",
        )

    def process(self, key: Any, value: Any) -> bool:
        return self.forward(key, value)


def _make(
    node: Node,
    context: RecordContext,
    emitter: Emitter,
    stores: Mapping[str, Any],
    task_id: str,
    retry: Retry | None,
    clock: StreamClock,
    timed: bool,
    count_firing: FiringCounter,
    tables: TablePlan,
) -> Processor:
    if isinstance(node, SourceNode):
        return SourceProcessor(node, context, retry, clock, timed=timed)
    if isinstance(node, SinkNode):
        if node.topic_of is not None:
            return RoutedSinkProcessor(node, context, emitter)
        return SinkProcessor(node, context, emitter)
    assert isinstance(node, OperatorNode)
    kind, fn, name = node.kind, node.function, node.name
    if kind is OperatorKind.SPLIT:
        return SplitProcessor(name, node.predicates, context)
    if kind in (OperatorKind.MERGE, OperatorKind.BRANCH, OperatorKind.TO_STREAM):
        return PassThroughProcessor(name)
    if kind is OperatorKind.MATERIALIZE:
        return MaterializeProcessor(name, stores[node.stores[0]])
    if kind is OperatorKind.EXTERNAL_SINK:
        return ExternalSinkProcessor(name, context, stores[sink_input_key(name)])
    policy = node.retry or retry  # for the user function
    if kind is OperatorKind.ASYNC:
        assert fn is not None, f"async operator {name} has no function"
        calls = stores[async_input_key(name)]
        return AsyncProcessor(
            name, node.external, fn, context, calls, policy, clock if timed else None
        )
    if kind in TABLE_OPERATORS:
        return make_table_processor(node, context, stores, policy, tables)
    if kind in FOREIGN_JOIN_KINDS:
        return make_foreign_join(node, context, stores, policy, tables)
    if kind is OperatorKind.AGGREGATE:
        assert fn is not None, f"aggregate {name} has no aggregator"
        store = stores[node.stores[0]]
        aggregate = AggregateProcessor(name, store, node.initializer, fn, context, policy)
        if isinstance(store, ExpiringStore):

            def forward_tombstone(key_bytes: bytes, key: Any, value: Any, at: int) -> None:
                aggregate.forward_expired(key, value)

            store.on_expired = expiry_handler(store, context, clock, forward_tombstone)
        return aggregate
    if kind is OperatorKind.WINDOW_AGGREGATE:
        assert fn is not None, f"windowed aggregate {name} has no aggregator"
        return _windowed(node, stores[node.stores[0]], context, policy, clock)
    if kind in JOIN_KINDS:
        return make_stream_table_join(node, context, tables.lookup(node.reads[0]), policy)
    if kind is OperatorKind.STREAM_JOIN:
        from processor.topology.stream_stream_join import join_side

        return join_side(name, node.join, stores, context, policy, clock)
    if kind is OperatorKind.GLOBAL_JOIN:
        assert node.global_join is not None, f"global join {name} has no spec"
        return global_join_processor(name, node.global_join, fn, stores, context, policy)
    if kind is OperatorKind.PROCESS:
        assert fn is not None, f"process {name} has no function"
        return _process(node, fn, context, stores, task_id, policy, clock, count_firing)
    assert fn is not None, f"operator {name} has no function"
    if kind is OperatorKind.FILTER:
        return FilterProcessor(name, fn, context, policy, keep_when=True)
    if kind is OperatorKind.FILTER_NOT:
        return FilterProcessor(name, fn, context, policy, keep_when=False)
    classes: dict[OperatorKind, type[FunctionOperator]] = {
        OperatorKind.MAP: MapProcessor,
        OperatorKind.MAP_VALUES: MapValuesProcessor,
        OperatorKind.FLAT_MAP: FlatMapProcessor,
        OperatorKind.FLAT_MAP_VALUES: FlatMapValuesProcessor,
        OperatorKind.PEEK: PeekProcessor,
    }
    return classes[kind](name, fn, context, policy)


def _process(
    node: OperatorNode,
    function: Any,
    context: RecordContext,
    stores: Mapping[str, Any],
    task_id: str,
    retry: Retry | None,
    clock: StreamClock,
    count_firing: FiringCounter,
) -> ProcessProcessor:
    given = {store: stores[store] for store in node.stores if store != node.timer_store}
    processor = ProcessProcessor(node.name, function, context, given, task_id, retry, clock=clock)
    if node.on_timer is not None or node.on_tick is not None:
        timers = ProcessTimers(
            processor,
            clock,
            store=stores[node.timer_store] if node.timer_store is not None else None,
            on_timer=node.on_timer,
            on_tick=node.on_tick,
            every_ms=node.every_ms,
            tick_clock=node.tick_clock,
            count=count_firing,
        )
        processor.use_timers(timers)
    if node.on_expire is not None:
        for name, store in given.items():
            if isinstance(store, ExpiringStore):
                act = process_expiry_action(processor, name, node.on_expire, count_firing)
                store.on_expired = expiry_handler(store, context, clock, act)
    return processor


def _windowed(
    node: OperatorNode,
    store: WindowedStore,
    context: RecordContext,
    retry: Retry | None,
    clock: StreamClock,
) -> Processor:
    windows, aggregator = node.windows, node.function
    assert aggregator is not None
    options: dict[str, Any] = {
        "clock": clock,
        "emit_final": node.emit_final,
        "retention_ms": node.retention_ms,
    }
    if isinstance(windows, TumblingWindows | HoppingWindows):
        return TimeWindowAggregate(
            node.name, store, windows, node.initializer, aggregator, context, retry, **options
        )
    if isinstance(windows, SessionWindows):
        assert node.merger is not None, f"session aggregate {node.name} has no merger"
        return SessionAggregate(
            node.name,
            store,
            windows,
            node.initializer,
            aggregator,
            node.merger,
            context,
            retry,
            **options,
        )
    if isinstance(windows, SlidingWindows):
        from processor.topology.sliding import SlidingAggregate

        assert node.input_serde is not None, f"sliding aggregate {node.name} has no value serde"
        return SlidingAggregate(
            node.name,
            store,
            windows,
            node.initializer,
            aggregator,
            context,
            retry,
            input_serde=node.input_serde,
            **options,
        )
    raise AssertionError(f"unknown windows {windows!r}")


def instantiate(
    subtopology: SubTopology,
    context: RecordContext,
    emitter: Emitter,
    stores: Mapping[str, Any] | None = None,
    task_id: str = "",
    retry: Retry | None = None,
    clock: StreamClock | None = None,
    count_firing: FiringCounter = _no_count,
) -> dict[str, SourceProcessor]:
    """Build one task's processors over its `stores` (by name); returns the entry point for
    each source topic. `retry` applies to transient errors of user functions whose operator
    has no retry of its own; `clock` is the task's (a new one when not given);
    `count_firing` counts each timer firing."""
    available = stores or {}
    missing = [s.name for s in subtopology.stores if s.name not in available]
    if missing:
        raise ValueError(f"sub-topology {subtopology.id} needs stores {missing}")
    task_clock = clock if clock is not None else StreamClock()
    timed = subtopology.timed
    for spec in subtopology.stores:
        store = available[spec.name]
        if isinstance(store, ExpiringStore):
            ExpiryPass(store, task_clock)
    tables = TablePlan(subtopology, available)
    built = {
        node.name: _make(
            node,
            context,
            emitter,
            available,
            task_id,
            retry,
            task_clock,
            timed,
            count_firing,
            tables,
        )
        for node in subtopology.nodes
    }
    for node in subtopology.nodes:
        child = built[node.name]
        for parent_name in parents_of(node):
            parent = built[parent_name]
            if isinstance(parent, SplitProcessor):
                assert isinstance(node, OperatorNode)
                parent.branches[node.branch_index] = child
            else:
                parent.children.append(child)
    tables.connect(built)
    for processor in built.values():
        if isinstance(processor, SourceProcessor) and any(
            isinstance(child, AsyncProcessor) for child in processor.children
        ):
            processor.defer_time = True
    fuse(built.values())
    sources = {
        node.topic: processor
        for node in subtopology.nodes
        if isinstance(node, SourceNode)
        and isinstance(processor := built[node.name], SourceProcessor)
    }
    for source in sources.values():
        source.receive = fused_source(source)
    return sources
