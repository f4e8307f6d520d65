"""The objects that carry records through one task's copy of a sub-topology.

The same code runs in a worker and in the in-memory test driver; only the `Emitter` differs.
A record enters at a `SourceProcessor` as bytes, flows through operators as Python values and
leaves at a `SinkProcessor` as bytes handed to the emitter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from processor.errors import (
    BrokerError,
    ChangelogRecordTooLargeError,
    DeserializationError,
    RecordRejectedError,
    StoredValueError,
    TransientError,
)
from processor.serdes import Serde
from processor.topology.context import ProcessorContext, Store
from processor.topology.graph import (
    Node,
    OperatorKind,
    OperatorNode,
    SinkNode,
    SourceNode,
    parents_of,
)
from processor.topology.record import (
    Emitter,
    Headers,
    NullKeyError,
    OperatorError,
    RecordContext,
    SinkRejectedError,
)
from processor.topology.retry import Retry, call_again, retrying
from processor.topology.subtopology import SubTopology

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


class Processor:
    __slots__ = ("children", "forward", "name")

    # Sends (key, value) on to the children. Once a task's processors are wired, a processor
    # with one child calls that child directly, past any pass-through nodes (`_shortcut`): a
    # Python call per hop is a good part of what a record costs.
    forward: Callable[[Any, Any], None]

    def __init__(self, name: str) -> None:
        self.name = name
        self.children: list[Processor] = []
        self.forward = self._forward_to_children

    def process(self, key: Any, value: Any) -> None:
        raise NotImplementedError

    def _forward_to_children(self, key: Any, value: Any) -> None:
        for child in self.children:
            child.process(key, value)


class SourceProcessor(Processor):
    """Deserializes a record and sends it on. A serde that raises `TransientError` (a schema
    registry that cannot be reached) is retried per `retry`, then the error stops the worker:
    the record is not at fault, so no error handler may skip or dead-letter it."""

    __slots__ = ("context", "key_serde", "retry", "value_serde")

    def __init__(self, node: SourceNode, context: RecordContext, retry: Retry | None) -> None:
        super().__init__(node.name)
        self.key_serde = node.key_serde
        self.value_serde = node.value_serde
        self.context = context
        self.retry = retry

    def process_bytes(self, key: bytes | None, value: bytes | None) -> None:
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
        self.forward(k, v)

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

    def process(self, key: Any, value: Any) -> None:
        self.forward(key, value)


class _FunctionProcessor(Processor):
    __slots__ = ("function",)

    def __init__(self, name: str, function: Callable[..., Any]) -> None:
        super().__init__(name)
        self.function = function


class FilterProcessor(_FunctionProcessor):
    __slots__ = ("keep_when",)

    def __init__(self, name: str, function: Callable[..., Any], keep_when: bool) -> None:
        super().__init__(name, function)
        self.keep_when = keep_when

    def process(self, key: Any, value: Any) -> None:
        try:
            keep = bool(self.function(key, value))
        except Exception as e:
            raise OperatorError(self.name, e) from e
        if keep is self.keep_when:
            self.forward(key, value)


class MapProcessor(_FunctionProcessor):
    __slots__ = ()

    def process(self, key: Any, value: Any) -> None:
        try:
            new_key, new_value = self.function(key, value)
        except Exception as e:
            raise OperatorError(self.name, e) from e
        self.forward(new_key, new_value)


class MapValuesProcessor(_FunctionProcessor):
    __slots__ = ()

    def process(self, key: Any, value: Any) -> None:
        try:
            new_value = self.function(value)
        except Exception as e:
            raise OperatorError(self.name, e) from e
        self.forward(key, new_value)


class FlatMapProcessor(_FunctionProcessor):
    __slots__ = ()

    def process(self, key: Any, value: Any) -> None:
        try:
            pairs = list(self.function(key, value))
        except Exception as e:
            raise OperatorError(self.name, e) from e
        for pair in pairs:
            try:
                new_key, new_value = pair
            except (TypeError, ValueError) as e:
                raise OperatorError(
                    self.name, TypeError(f"yielded {pair!r}, not a (key, value) pair")
                ) from e
            self.forward(new_key, new_value)


class FlatMapValuesProcessor(_FunctionProcessor):
    __slots__ = ()

    def process(self, key: Any, value: Any) -> None:
        try:
            values = list(self.function(value))
        except Exception as e:
            raise OperatorError(self.name, e) from e
        for new_value in values:
            self.forward(key, new_value)


class PeekProcessor(_FunctionProcessor):
    __slots__ = ()

    def process(self, key: Any, value: Any) -> None:
        try:
            self.function(key, value)
        except Exception as e:
            raise OperatorError(self.name, e) from e
        self.forward(key, value)


class PassThroughProcessor(Processor):
    """Merge and branch outputs: the record goes on as it is."""

    __slots__ = ()

    def process(self, key: Any, value: Any) -> None:
        self.forward(key, value)


class SplitProcessor(Processor):
    """Sends each record to the branch of the first predicate that accepts it."""

    __slots__ = ("branches", "predicates")

    def __init__(self, name: str, predicates: Sequence[Callable[[Any, Any], bool] | None]) -> None:
        super().__init__(name)
        self.predicates = list(predicates)
        self.branches: list[Processor | None] = [None] * len(predicates)

    def process(self, key: Any, value: Any) -> None:
        for index, predicate in enumerate(self.predicates):
            try:
                matched = predicate is None or bool(predicate(key, value))
            except Exception as e:
                raise OperatorError(self.name, e) from e
            if matched:
                branch = self.branches[index]
                if branch is not None:
                    branch.process(key, value)
                return


class AggregateProcessor(Processor):
    """Folds each record into its key's aggregate and forwards (key, new aggregate). Records
    with a null key or value are skipped, as in Kafka Streams."""

    __slots__ = ("aggregator", "context", "initializer", "store")

    def __init__(
        self,
        name: str,
        store: Store,
        initializer: Callable[[], Any] | None,
        aggregator: Callable[[Any, Any, Any], Any],
        context: RecordContext,
    ) -> None:
        super().__init__(name)
        self.store = store
        self.initializer = initializer
        self.aggregator = aggregator
        self.context = context

    def process(self, key: Any, value: Any) -> None:
        if key is None:
            raise NullKeyError(self.name)
        if value is None:
            return
        try:
            current = self.store.get(key)
        except StoredValueError as e:
            # An aggregate its serde cannot read (the serde changed): the processing error
            # handler's; under skip the stored value stays, and so does the error.
            raise OperatorError(self.name, e) from e
        try:
            if current is None:
                initial = value if self.initializer is None else self.initializer()
                new = initial if self.initializer is None else self.aggregator(key, value, initial)
            else:
                new = self.aggregator(key, value, current)
            # Inside the try: an aggregate the store's value serde cannot write is this
            # operator's error too, and must reach the task as one (with the record's position).
            self.store.put(key, new)
        except ChangelogRecordTooLargeError:
            raise  # the production error handler's, like an output the broker refuses
        except Exception as e:
            raise OperatorError(self.name, e) from e
        self.context.effects += 1
        self.forward(key, new)


class MaterializeProcessor(Processor):
    """Keeps the latest value per key (a null value deletes the key) and passes records on. A
    value too large for the store's changelog is not kept and not passed on."""

    __slots__ = ("context", "store")

    def __init__(self, name: str, store: Store, context: RecordContext) -> None:
        super().__init__(name)
        self.store = store
        self.context = context

    def process(self, key: Any, value: Any) -> None:
        if key is None:
            raise NullKeyError(self.name)
        self.store.put(key, value)
        self.context.effects += 1
        self.forward(key, value)


class ProcessProcessor(Processor):
    """Calls a user function with a context that forwards to this node's children."""

    __slots__ = ("context", "function")

    def __init__(
        self,
        name: str,
        function: Callable[[ProcessorContext, Any, Any], None],
        record: RecordContext,
        stores: dict[str, Store],
        task_id: str,
    ) -> None:
        super().__init__(name)
        self.function = function
        counted = {name: _CountingStore(store, record) for name, store in stores.items()}
        self.context = ProcessorContext(record, counted, self.forward, task_id)

    def process(self, key: Any, value: Any) -> None:
        try:
            self.function(self.context, key, value)
        except (OperatorError, NullKeyError, SinkRejectedError, BrokerError):
            raise  # from operators downstream, through context.forward()
        except ChangelogRecordTooLargeError:
            raise  # a store update too large (its own, or downstream): production's
        except Exception as e:
            raise OperatorError(self.name, e) from e


class _CountingStore:
    """A store given to a `process` function: its writes count as the record's output."""

    __slots__ = ("_record", "_store", "name")

    def __init__(self, store: Store, record: RecordContext) -> None:
        self._store = store
        self._record = record
        self.name = store.name

    def get(self, key: Any, default: Any = None) -> Any:
        return self._store.get(key, default)

    def put(self, key: Any, value: Any) -> None:
        self._store.put(key, value)
        self._record.effects += 1

    def delete(self, key: Any) -> None:
        self._store.delete(key)
        self._record.effects += 1

    def range(self, start: Any = None, end: Any = None) -> Iterator[tuple[Any, Any]]:
        return self._store.range(start, end)

    def all(self) -> Iterator[tuple[Any, Any]]:
        return self._store.all()


class SinkProcessor(Processor):
    __slots__ = ("context", "emitter", "key_serde", "topic", "value_serde")

    def __init__(self, node: SinkNode, context: RecordContext, emitter: Emitter) -> None:
        super().__init__(node.name)
        self.topic = node.topic
        self.key_serde = node.key_serde
        self.value_serde = node.value_serde
        self.context = context
        self.emitter = emitter

    def process(self, key: Any, value: Any) -> None:
        try:
            key_bytes = self.key_serde.serialize(key)
        except Exception as e:
            raise OperatorError(
                self.name,
                TypeError(
                    f"cannot serialize key {key!r} with the {self.key_serde.name} serde "
                    f"({e}); give to({self.topic!r}) a matching key_serde"
                ),
            ) from e
        try:
            value_bytes = self.value_serde.serialize(value)
        except Exception as e:
            raise OperatorError(
                self.name,
                TypeError(
                    f"cannot serialize value {value!r} with the {self.value_serde.name} "
                    f"serde ({e}); give to({self.topic!r}) a matching value_serde"
                ),
            ) from e
        c = self.context
        try:
            self.emitter.emit(self.topic, key_bytes, value_bytes, c.timestamp, c.headers, c)
        except RecordRejectedError as e:
            raise SinkRejectedError(self.name, e) from e
        c.effects += 1


def _make(
    node: Node,
    context: RecordContext,
    emitter: Emitter,
    stores: Mapping[str, Store],
    task_id: str,
    retry: Retry | None,
) -> Processor:
    if isinstance(node, SourceNode):
        return SourceProcessor(node, context, retry)
    if isinstance(node, SinkNode):
        return SinkProcessor(node, context, emitter)
    assert isinstance(node, OperatorNode)
    kind, fn = node.kind, node.function
    policy = node.retry or retry
    if fn is not None and policy is not None:
        fn = retrying(fn, policy, node.name, context)
    if kind is OperatorKind.SPLIT:
        return SplitProcessor(node.name, node.predicates)
    if kind in (OperatorKind.MERGE, OperatorKind.BRANCH, OperatorKind.TO_STREAM):
        return PassThroughProcessor(node.name)
    if kind is OperatorKind.MATERIALIZE:
        return MaterializeProcessor(node.name, stores[node.stores[0]], context)
    if kind is OperatorKind.AGGREGATE:
        assert fn is not None, f"aggregate {node.name} has no aggregator"
        return AggregateProcessor(node.name, stores[node.stores[0]], node.initializer, fn, context)
    if kind is OperatorKind.PROCESS:
        assert fn is not None, f"process {node.name} has no function"
        given = {name: stores[name] for name in node.stores}
        return ProcessProcessor(node.name, fn, context, given, task_id)
    assert fn is not None, f"operator {node.name} has no function"
    if kind is OperatorKind.FILTER:
        return FilterProcessor(node.name, fn, keep_when=True)
    if kind is OperatorKind.FILTER_NOT:
        return FilterProcessor(node.name, fn, keep_when=False)
    classes: dict[OperatorKind, type[_FunctionProcessor]] = {
        OperatorKind.MAP: MapProcessor,
        OperatorKind.MAP_VALUES: MapValuesProcessor,
        OperatorKind.FLAT_MAP: FlatMapProcessor,
        OperatorKind.FLAT_MAP_VALUES: FlatMapValuesProcessor,
        OperatorKind.PEEK: PeekProcessor,
    }
    return classes[kind](node.name, fn)


def instantiate(
    subtopology: SubTopology,
    context: RecordContext,
    emitter: Emitter,
    stores: Mapping[str, Store] | None = None,
    task_id: str = "",
    retry: Retry | None = None,
) -> dict[str, SourceProcessor]:
    """Build one task's processors over its `stores` (by name); returns the entry point for
    each source topic. `retry` applies to transient errors of user functions whose operator
    has no retry of its own."""
    available = stores or {}
    missing = [s.name for s in subtopology.stores if s.name not in available]
    if missing:
        raise ValueError(f"sub-topology {subtopology.id} needs stores {missing}")
    built = {
        node.name: _make(node, context, emitter, available, task_id, retry)
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
    for node in reversed(subtopology.nodes):  # children before their parents
        _shortcut(built[node.name])
    return {
        node.topic: processor
        for node in subtopology.nodes
        if isinstance(node, SourceNode)
        and isinstance(processor := built[node.name], SourceProcessor)
    }


def _shortcut(processor: Processor) -> None:
    """Let a processor with one child call it directly; a pass-through child is skipped (its
    own `forward` is already resolved, children being wired before their parents)."""
    if len(processor.children) != 1:
        return
    [child] = processor.children
    processor.forward = child.forward if type(child) is PassThroughProcessor else child.process
