"""Operators that keep state per key in a task's stores, and the `process` operator, which
gives user code the stores it declared."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from processor.errors import BrokerError, ChangelogRecordTooLargeError, StoredValueError
from processor.topology.change import Change
from processor.topology.clock import StreamClock
from processor.topology.context import ProcessorContext, Store, Timers
from processor.topology.operator import Operator, Processor
from processor.topology.record import NullKeyError, OperatorError, RecordContext, SinkRejectedError
from processor.topology.retry import Retry


class AggregateProcessor(Operator):
    """Folds each record into its key's aggregate and forwards (key, new aggregate). Records
    with a null key or value are skipped, as in Kafka Streams. The aggregator is retried per
    `retry`; the initializer is not. Read by table operators, it forwards (key, Change(new
    aggregate, old aggregate)) instead (`processor.topology.tables`)."""

    __slots__ = ("aggregator", "emits_changes", "initializer", "sends_old", "store")

    # The store refusing an update too large for its changelog: the production error
    # handler's, like an output the broker refuses.
    not_mine = (ChangelogRecordTooLargeError,)

    def __init__(
        self,
        name: str,
        store: Store,
        initializer: Callable[[], Any] | None,
        aggregator: Callable[[Any, Any, Any], Any],
        context: RecordContext,
        retry: Retry | None,
    ) -> None:
        super().__init__(name, context, retry)
        self.store = store
        self.initializer = initializer
        self.aggregator = aggregator
        self.emits_changes = False  # set by processor.topology.tables.TablePlan.connect
        self.sends_old = False  # the old aggregate is read anyway: always sent with changes

    def process(self, key: Any, value: Any) -> bool:
        if key is None:
            raise NullKeyError(self.name)
        if value is None:
            return False
        try:
            current = self.store.get(key)
        except StoredValueError as e:
            # An aggregate its serde cannot read (the serde changed): the processing error
            # handler's; under skip the stored value stays, and so does the error.
            self.failed(e)
        if current is not None:
            try:
                new = self.aggregator(key, value, current)
            except Exception as e:
                new = self.recover(e, self.aggregator, key, value, current)
        elif self.initializer is None:
            new = value
        else:
            new = self._first_aggregate(key, value, self.initializer)
        try:
            # An aggregate the store's value serde cannot write is this operator's error too,
            # and must reach the task as one (with the record's position).
            self.store.put(key, new)
        except Exception as e:
            self.failed(e)
        self.forward(key, Change(new, current) if self.emits_changes else new)
        return True

    def forward_expired(self, key: Any, last: Any) -> None:
        """Forward the tombstone of `key`, whose aggregate `last` expired."""
        self.forward(key, Change(None, last) if self.emits_changes else None)

    def _first_aggregate(self, key: Any, value: Any, initializer: Callable[[], Any]) -> Any:
        try:
            initial = initializer()
        except Exception as e:
            self.failed(e)
        try:
            return self.aggregator(key, value, initial)
        except Exception as e:
            return self.recover(e, self.aggregator, key, value, initial)


class MaterializeProcessor(Processor):
    """Keeps the latest value per key (a null value deletes the key) and passes records on. A
    value too large for the store's changelog is not kept and not passed on. Read by table
    operators, it passes on (key, Change(value, old value)) instead, reading the old value
    only when one of them needs it (`processor.topology.tables`)."""

    __slots__ = ("emits_changes", "sends_old", "store")

    def __init__(self, name: str, store: Store) -> None:
        super().__init__(name)
        self.store = store
        self.emits_changes = False  # both set by processor.topology.tables.TablePlan.connect
        self.sends_old = False

    def process(self, key: Any, value: Any) -> bool:
        if key is None:
            raise NullKeyError(self.name)
        if self.emits_changes:
            old = self.store.get(key) if self.sends_old else None
            self.store.put(key, value)
            self.forward(key, Change(value, old))
            return True
        self.store.put(key, value)
        self.forward(key, value)
        return True


class ProcessProcessor(Operator):
    """Calls a user function with a context that forwards to this node's children. The record
    reached a sink or a store when the function wrote to one of its stores or forwarded
    something that did."""

    __slots__ = ("function", "processor_context", "reached")

    # From operators downstream, through context.forward(); or a store update too large for
    # its changelog (its own, or downstream): production's.
    not_mine = (
        OperatorError,
        NullKeyError,
        SinkRejectedError,
        BrokerError,
        ChangelogRecordTooLargeError,
    )

    def __init__(
        self,
        name: str,
        function: Callable[[ProcessorContext, Any, Any], None],
        record: RecordContext,
        stores: dict[str, Store],
        task_id: str,
        retry: Retry | None,
        *,
        timers: Timers | None = None,
        clock: StreamClock | None = None,
    ) -> None:
        super().__init__(name, record, retry)
        self.function = function
        # Set when the function's record has reached a sink or a store (`_ReachingStore`).
        self.reached = False
        given = {name: _ReachingStore(store, self) for name, store in stores.items()}
        self.processor_context = ProcessorContext(
            record, given, self._forward_noting, task_id, timers=timers, clock=clock
        )

    def use_timers(self, timers: Timers) -> None:
        """Let the function's context set and cancel timers through `timers`."""
        self.processor_context._timers = timers

    def process(self, key: Any, value: Any) -> bool:
        self.reached = False
        self.processor_context._key = key
        try:
            self.function(self.processor_context, key, value)
        except Exception as e:
            self.recover(e, self.function, self.processor_context, key, value)
        return self.reached

    def _forward_noting(self, key: Any, value: Any) -> None:
        if self._forward_to_children(key, value):
            self.reached = True


class _ReachingStore:
    """A store given to a `process` function: a write means its record reached a store."""

    __slots__ = ("_processor", "_store", "name")

    def __init__(self, store: Store, processor: ProcessProcessor) -> None:
        self._store = store
        self._processor = processor
        self.name = store.name

    def get(self, key: Any, default: Any = None) -> Any:
        return self._store.get(key, default)

    def put(self, key: Any, value: Any) -> None:
        self._store.put(key, value)
        self._processor.reached = True

    def delete(self, key: Any) -> None:
        self._store.delete(key)
        self._processor.reached = True

    def range(self, start: Any = None, end: Any = None) -> Iterator[tuple[Any, Any]]:
        return self._store.range(start, end)

    def all(self) -> Iterator[tuple[Any, Any]]:
        return self._store.all()
