"""`Stream`, `GroupedStream` and `Table`: what a topology's declarations chain on.

They refer to each other (a stream groups, a group aggregates into a table, a table's updates
are a stream), so they share this module; each declares through its topology's `GraphBuilder`.

They are generic in their keys' and values' types, `Stream[K, V]`, so that a type checker follows
the records: `Topology.stream` takes the types from its serdes, `map_values(fn)` gives
`Stream[K, <what fn returns>]`, `count()` a `Table[K, int]`. A key or a value can be None (a null
key, a tombstone). The serdes a stream carries are those `to()` and a repartition topic use
unless given others; operators that change types keep them (hence `Serde[Any]`).

Functions receive `(key, value)` as in Kafka Streams (`map_values`, `flat_map_values`: the value
alone). One that raises `processor.TransientError` is called again with backoff
(`processing_retry_*`, or the operator's `retry=Retry(...)`, which may name other exceptions);
other exceptions, and transient ones past their retries, go to the processing_error_handler.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from processor.dsl.async_stream import AsyncOperations
from processor.dsl.builder import GraphBuilder, ProcessTiming
from processor.errors import TopologyError
from processor.serdes import IntSerde, Serde
from processor.sinks.base import Sink
from processor.topology.context import ProcessorContext
from processor.topology.graph import OperatorKind
from processor.topology.retry import Retry
from processor.windows.spec import Windows

if TYPE_CHECKING:
    from processor.dsl.tables import GroupedTable
    from processor.dsl.windowed import WindowedStream

K = TypeVar("K")  # the type of a stream's, group's or table's keys
V = TypeVar("V")  # the type of its values
K2 = TypeVar("K2")  # the type of the keys an operator makes
V2 = TypeVar("V2")  # the type of the values an operator makes
A = TypeVar("A")  # the type of an aggregate


class Stream(AsyncOperations, Generic[K, V]):
    """A stream of records inside a `Topology`; create one with `Topology.stream`."""

    def __init__(
        self,
        builder: GraphBuilder,
        node: str,
        key_serde: Serde[Any],
        value_serde: Serde[Any],
        *,
        key_changed: bool = False,
    ) -> None:
        self._builder = builder
        self._node = node
        self.key_serde = key_serde
        self.value_serde = value_serde
        # An operator since the source may have changed keys: grouping then repartitions.
        self.key_changed = key_changed

    @property
    def node_name(self) -> str:
        return self._node

    def _then(
        self,
        kind: OperatorKind,
        function: Callable[..., Any],
        name: str | None,
        retry: Retry | None,
        *,
        changes_keys: bool = False,
    ) -> Stream[Any, Any]:
        node = self._builder.add_operator(
            kind, (self._node,), name=name, function=function, retry=retry
        )
        return self._at(node, key_changed=self.key_changed or changes_keys)

    def _at(self, node: str, *, key_changed: bool) -> Stream[Any, Any]:
        """A stream of this topology at `node`, with this stream's serdes."""
        key, value = self.key_serde, self.value_serde
        return Stream(self._builder, node, key, value, key_changed=key_changed)

    def filter(
        self,
        predicate: Callable[[K, V], bool],
        *,
        name: str | None = None,
        retry: Retry | None = None,
    ) -> Stream[K, V]:
        """Keep the records for which `predicate(key, value)` is true."""
        return self._then(OperatorKind.FILTER, predicate, name, retry)

    def filter_not(
        self,
        predicate: Callable[[K, V], bool],
        *,
        name: str | None = None,
        retry: Retry | None = None,
    ) -> Stream[K, V]:
        """Drop the records for which `predicate(key, value)` is true."""
        return self._then(OperatorKind.FILTER_NOT, predicate, name, retry)

    def map(
        self,
        mapper: Callable[[K, V], tuple[K2, V2]],
        *,
        name: str | None = None,
        retry: Retry | None = None,
    ) -> Stream[K2, V2]:
        """Replace each record by `mapper(key, value) -> (new_key, new_value)`."""
        return self._then(OperatorKind.MAP, mapper, name, retry, changes_keys=True)

    def map_values(
        self, mapper: Callable[[V], V2], *, name: str | None = None, retry: Retry | None = None
    ) -> Stream[K, V2]:
        """Replace each value by `mapper(value)`; the key stays."""
        return self._then(OperatorKind.MAP_VALUES, mapper, name, retry)

    def flat_map(
        self,
        mapper: Callable[[K, V], Iterable[tuple[K2, V2]]],
        *,
        name: str | None = None,
        retry: Retry | None = None,
    ) -> Stream[K2, V2]:
        """Replace each record by the `(key, value)` pairs that `mapper(key, value)` yields."""
        return self._then(OperatorKind.FLAT_MAP, mapper, name, retry, changes_keys=True)

    def flat_map_values(
        self,
        mapper: Callable[[V], Iterable[V2]],
        *,
        name: str | None = None,
        retry: Retry | None = None,
    ) -> Stream[K, V2]:
        """Replace each record by one record per value `mapper(value)` yields, with the same key."""
        return self._then(OperatorKind.FLAT_MAP_VALUES, mapper, name, retry)

    def peek(
        self,
        action: Callable[[K, V], None],
        *,
        name: str | None = None,
        retry: Retry | None = None,
    ) -> Stream[K, V]:
        """Call `action(key, value)` for each record and pass the record on unchanged."""
        return self._then(OperatorKind.PEEK, action, name, retry)

    def merge(self, other: Stream[K, V], *, name: str | None = None) -> Stream[K, V]:
        """One stream holding the records of both; their sources become one sub-topology."""
        if other._builder is not self._builder:
            raise TopologyError("merge() needs two streams of the same Topology")
        node = self._builder.add_operator(OperatorKind.MERGE, (self._node, other._node), name=name)
        return self._at(node, key_changed=self.key_changed or other.key_changed)

    def split(
        self,
        branches: Mapping[str, Callable[[K, V], bool]],
        *,
        default: str | None = None,
        name: str | None = None,
    ) -> dict[str, Stream[K, V]]:
        """Route each record to the first branch whose predicate `(key, value)` is true.

        Returns one stream per branch name; with `default`, records no predicate accepts go to a
        stream of that name, otherwise they are dropped.
        """
        nodes = self._builder.add_split(self._node, branches, default, name=name)
        return {
            branch: self._at(node, key_changed=self.key_changed) for branch, node in nodes.items()
        }

    def branch(self, *predicates: Callable[[K, V], bool]) -> list[Stream[K, V]]:
        """Kafka Streams' classic form of `split`: one stream per predicate, first match wins,
        records no predicate accepts are dropped."""
        named = {str(i): p for i, p in enumerate(predicates)}
        return list(self.split(named).values())

    def join(
        self,
        other: Any,
        joiner: Callable[[V, Any], Any],
        *,
        how: str = "inner",
        key: Callable[[K, V], Any] | None = None,
        window: Any = None,
        name: str | None = None,
    ) -> Stream[K, Any]:
        """Join with a `Table` (by this stream's key, when each record is processed; `how`:
        "inner" or "left"), a `GlobalTable` (by `key(key, value)`, default the record's key), or
        another `Stream` within `window=JoinWindows(...)` ("inner", "left" or "outer").
        `joiner(left_value, right_value)` makes each result's value (the right value is None
        where a left join has no match). See `processor.dsl.joins`."""
        from processor.dsl.joins import join_stream

        return join_stream(self, other, joiner, how=how, key=key, window=window, name=name)  # type: ignore[no-any-return]

    def group_by(
        self,
        key_fn: Callable[[K, V], K2],
        *,
        key_serde: Serde[K2] | None = None,
        value_serde: Serde[V] | None = None,
        name: str | None = None,
    ) -> GroupedStream[K2, V]:
        """Group records by `key_fn(key, value)`. Records go through the repartition topic
        `<application_id>-<name>-repartition`, so that each new key lands in one task."""
        base = self._builder.name("group_by", name)
        keyed = self._builder.add_operator(
            OperatorKind.MAP,
            (self._node,),
            name=f"{base}-key",
            function=lambda k, v: (key_fn(k, v), v),
        )
        key = key_serde or self.key_serde
        value = value_serde or self.value_serde
        source = self._builder.add_repartition(keyed, base, key, value, grouping="group_by")
        return GroupedStream(self._builder, source, key, value)

    def group_by_key(
        self,
        *,
        key_serde: Serde[K] | None = None,
        value_serde: Serde[V] | None = None,
        name: str | None = None,
    ) -> GroupedStream[K, V]:
        """Group records by their key; repartitions only when an operator may have changed keys
        (`map`, `flat_map`, `process`) since the source."""
        key = key_serde or self.key_serde
        value = value_serde or self.value_serde
        if not self.key_changed:
            return GroupedStream(self._builder, self._node, key, value)
        base = self._builder.name("group_by_key", name)
        source = self._builder.add_repartition(
            self._node, base, key, value, grouping="group_by_key"
        )
        return GroupedStream(self._builder, source, key, value)

    def process(
        self,
        function: Callable[[ProcessorContext, K, V], None],
        *,
        stores: Sequence[str] = (),
        key_serde: Serde[Any] | None = None,
        value_serde: Serde[Any] | None = None,
        name: str | None = None,
        retry: Retry | None = None,
        on_timer: Callable[[ProcessorContext, K, int, str], None] | None = None,
        on_expire: Callable[[ProcessorContext, str, Any, Any], None] | None = None,
        on_tick: Callable[[ProcessorContext], None] | None = None,
        every_ms: int | None = None,
        clock: str = "wall",
    ) -> Stream[Any, Any]:
        """Call `function(context, key, value)` for each record: `context.store(name)` gives the
        declared `stores`, `context.forward(key, value)` emits downstream (zero or more times),
        and `context.topic`, `.partition`, `.offset`, `.timestamp`, `.headers` describe the
        record. The stream it returns carries what was forwarded, of types no checker knows.

        Timers (README "Timers and expiry"): `context.set_timer(at_ms, clock="stream"|"wall",
        name="default")`, then `on_timer(context, key, at_ms, name)` when due (store
        `<name>-timers`: give `name=`); `on_expire(context, store, key, last_value)` for each key
        of a store with a TTL that expires; `on_tick(context)` every `every_ms` on `clock`."""
        node = self._builder.add_process(
            self._node,
            function,
            name=name,
            stores=stores,
            retry=retry,
            key_serde=self.key_serde,
            timing=ProcessTiming(on_timer, on_expire, on_tick, every_ms, clock),
        )
        key, value = key_serde or self.key_serde, value_serde or self.value_serde
        return Stream(self._builder, node, key, value, key_changed=True)

    def sink(self, sink: Sink, *, name: str | None = None) -> None:
        """Write every record to `sink` (`processor.sinks`: PostgreSQL, files, your own), in
        batches, with the sink's guarantee. `name` (default: the sink's kind and a number) keeps
        its internal topic and progress when the topology changes: give one."""
        if not isinstance(sink, Sink):
            raise TopologyError(
                f"sink() takes a processor.sinks.Sink (PostgresSink, FileSink, or a subclass of "
                f"Sink), not {type(sink).__name__}; to write to a Kafka topic use to()"
            )
        node = self._builder.name(f"{type(sink).__name__.lower()}", name)
        named = copy.copy(sink)  # one Sink object may serve several streams, under their names
        named.name = node
        self._builder.add_external_sink(self._node, named, self.key_serde, self.value_serde, node)

    def to(
        self,
        topic: str | Callable[[K, V], str],
        *,
        key_serde: Serde[K] | None = None,
        value_serde: Serde[V] | None = None,
        name: str | None = None,
    ) -> None:
        """Write every record to `topic`, or to the topic `topic(key, value)` names (which must
        exist), with this stream's serdes unless others are given."""
        key, value = key_serde or self.key_serde, value_serde or self.value_serde
        self._builder.add_sink(topic, self._node, key, value, name=name)

    def to_table(
        self,
        *,
        name: str | None = None,
        key_serde: Serde[K] | None = None,
        value_serde: Serde[V] | None = None,
    ) -> Table[K, V]:
        """The latest value per key (Kafka Streams' `toTable()`) in the store `name` (default
        `<node>-store`), with `key_serde`/`value_serde` (default: the stream's); a null value
        deletes its key. Repartitions when keys may have changed."""
        from processor.dsl.tables import stream_to_table

        return stream_to_table(self, name, key_serde, value_serde)

    def repartition(
        self,
        *,
        key_serde: Serde[K] | None = None,
        value_serde: Serde[V] | None = None,
        name: str | None = None,
    ) -> Stream[K, V]:
        """Through the topic `<application_id>-<name>-repartition`, written with `key_serde` and
        `value_serde` (default: this stream's), which it carries on (e.g. to a join after a map)."""
        key, value = key_serde or self.key_serde, value_serde or self.value_serde
        base = self._builder.name("repartition", name)
        source = self._builder.add_repartition(self._node, base, key, value)
        return Stream(self._builder, source, key, value)


class GroupedStream(Generic[K, V]):
    """Records grouped by key; every aggregation keeps one value per key in a store."""

    def __init__(
        self, builder: GraphBuilder, node: str, key_serde: Serde[Any], value_serde: Serde[Any]
    ) -> None:
        self._builder = builder
        self._node = node
        self.key_serde = key_serde
        self.value_serde = value_serde

    def windowed_by(
        self, windows: Windows, *, emit: Literal["update", "final"] = "update"
    ) -> WindowedStream[K, V]:
        """Aggregate per key and window (`processor.windows`): `emit="update"` forwards every
        change of a window's aggregate, `emit="final"` each window once, when it closes."""
        from processor.dsl.windowed import WindowedStream

        return WindowedStream(
            self._builder, self._node, self.key_serde, self.value_serde, windows, emit
        )

    def count(self, *, name: str | None = None, ttl_ms: int = 0) -> Table[K, int]:
        """The number of records per key (records with a null key or value are not counted).
        With `ttl_ms`, a key not counted for that long (stream time) is dropped and forwarded as
        a tombstone, (key, None); its count starts again from 0."""
        return self._aggregate(
            "count", name, lambda: 0, lambda _k, _v, n: n + 1, IntSerde(), ttl_ms
        )

    def reduce(
        self, reducer: Callable[[V, V], V], *, name: str | None = None, ttl_ms: int = 0
    ) -> Table[K, V]:
        """Per key, the first value, then `reducer(aggregate, value)` for each later value
        (`ttl_ms` as for `count`)."""
        return self._aggregate(
            "reduce", name, None, lambda _k, v, agg: reducer(agg, v), self.value_serde, ttl_ms
        )

    def aggregate(
        self,
        initializer: Callable[[], A],
        aggregator: Callable[[K, V, A], A],
        *,
        value_serde: Serde[A],
        name: str | None = None,
        ttl_ms: int = 0,
    ) -> Table[K, A]:
        """Per key, `aggregator(key, value, aggregate)` starting from `initializer()`; the
        aggregate is stored with `value_serde` (`ttl_ms` as for `count`)."""
        return self._aggregate("aggregate", name, initializer, aggregator, value_serde, ttl_ms)

    def _aggregate(
        self,
        label: str,
        name: str | None,
        initializer: Callable[[], Any] | None,
        aggregator: Callable[[Any, Any, Any], Any],
        value_serde: Serde[Any],
        ttl_ms: int,
    ) -> Table[Any, Any]:
        node, store = self._builder.add_aggregate(
            self._node,
            label=label,
            name=name,
            initializer=initializer,
            aggregator=aggregator,
            key_serde=self.key_serde,
            value_serde=value_serde,
            ttl_ms=ttl_ms,
        )
        return Table(self._builder, node, self.key_serde, value_serde, store)


class Table(Generic[K, V]):
    """The latest value per key. Every update flows on to `to_stream()` as (key, new value),
    and to table operators as its new and old value (`processor.dsl.tables`)."""

    windowed = False  # a windowed aggregation's, or made from one (`tables.refuse_windowed`)

    def __init__(
        self,
        builder: GraphBuilder,
        node: str,
        key_serde: Serde[Any],
        value_serde: Serde[Any],
        store: str | None,
    ) -> None:
        self._builder = builder
        self._node = node
        self.key_serde = key_serde
        self.value_serde = value_serde
        # None: no store (an unnamed filter or map_values); rows come from its parent's.
        self.store_name = store

    @property
    def node_name(self) -> str:
        return self._node

    def filter(self, predicate: Callable[[K, V], bool], *, name: str | None = None) -> Table[K, V]:
        """The rows for which `predicate(key, value)` is true; a row it stops accepting is
        deleted (a tombstone). With `name`, kept (and queryable) in the store `name`."""
        from processor.dsl.tables import filter_table

        return filter_table(self, predicate, True, name)

    def filter_not(
        self, predicate: Callable[[K, V], bool], *, name: str | None = None
    ) -> Table[K, V]:
        """The rows for which `predicate(key, value)` is false (as `filter`)."""
        from processor.dsl.tables import filter_table

        return filter_table(self, predicate, False, name)

    def map_values(
        self,
        mapper: Callable[[V], V2],
        *,
        name: str | None = None,
        value_serde: Serde[V2] | None = None,
    ) -> Table[K, V2]:
        """Each row's value replaced by `mapper(value)`. With `name`, kept (and queryable) in
        the store `name`, with `value_serde` (default: this table's)."""
        from processor.dsl.tables import map_values_table

        return map_values_table(self, mapper, name, value_serde)

    def group_by(
        self,
        key_fn: Callable[[K, V], K2],
        *,
        key_serde: Serde[K2] | None = None,
        value_serde: Serde[Any] | None = None,
        value_fn: Callable[[K, V], Any] | None = None,
        name: str | None = None,
    ) -> GroupedTable[K2, Any]:
        """Group rows by `key_fn(key, value)` (values: `value_fn(key, value)`, default the
        value), through the repartition topic `<application_id>-<name>-repartition`. Its
        aggregations add each new row to its group and subtract each old row from its."""
        from processor.dsl.tables import group_table

        return group_table(
            self, key_fn, key_serde=key_serde, value_serde=value_serde, value_fn=value_fn, name=name
        )

    def join(
        self,
        other: Table[Any, Any],
        joiner: Callable[[V, Any], Any],
        *,
        how: str = "inner",
        foreign_key: Callable[[K, V], Any] | None = None,
        name: str | None = None,
    ) -> Table[Any, Any]:
        """Join with another table: by key ("inner", "left" or "outer"), or, with
        `foreign_key(key, value)`, each row of this table with the row of `other` its foreign
        key names ("inner" or "left"). The result is a table: it changes when either side does,
        and a row whose join result disappears is deleted (a tombstone)."""
        from processor.dsl.joins import join_table

        return join_table(self, other, joiner, how=how, foreign_key=foreign_key, name=name)  # type: ignore[no-any-return]

    def to_stream(self, *, name: str | None = None) -> Stream[K, V]:
        """The table's updates as a stream of (key, new value) records."""
        node = self._builder.add_operator(OperatorKind.TO_STREAM, (self._node,), name=name)
        return Stream(self._builder, node, self.key_serde, self.value_serde)
