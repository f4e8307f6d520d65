"""`GroupedStream` (records grouped by key, ready to aggregate) and `Table` (the latest value
per key, kept in a store backed by a changelog topic)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from processor.dsl.stream import Stream
from processor.serdes import IntSerde, Serde
from processor.topology.graph import OperatorKind, OperatorNode

if TYPE_CHECKING:
    from processor.dsl.topology import Topology


class GroupedStream:
    """Records grouped by key; every aggregation keeps one value per key in a store."""

    def __init__(
        self, topology: Topology, node: str, key_serde: Serde[Any], value_serde: Serde[Any]
    ) -> None:
        self._topology = topology
        self._node = node
        self.key_serde = key_serde
        self.value_serde = value_serde

    def count(self, *, name: str | None = None) -> Table:
        """The number of records per key (records with a null key or value are not counted)."""
        return self._aggregate(lambda: 0, lambda _k, _v, n: n + 1, IntSerde(), name, "count")

    def reduce(self, reducer: Callable[[Any, Any], Any], *, name: str | None = None) -> Table:
        """Per key, the first value, then `reducer(aggregate, value)` for each later value."""
        return self._aggregate(
            None, lambda _k, value, agg: reducer(agg, value), self.value_serde, name, "reduce"
        )

    def aggregate(
        self,
        initializer: Callable[[], Any],
        aggregator: Callable[[Any, Any, Any], Any],
        *,
        value_serde: Serde[Any],
        name: str | None = None,
    ) -> Table:
        """Per key, `aggregator(key, value, aggregate)` starting from `initializer()`; the
        aggregate is stored with `value_serde`."""
        return self._aggregate(initializer, aggregator, value_serde, name, "aggregate")

    def _aggregate(
        self,
        initializer: Callable[[], Any] | None,
        aggregator: Callable[[Any, Any, Any], Any],
        value_serde: Serde[Any],
        name: str | None,
        kind: str,
    ) -> Table:
        node_name = self._topology._name_node(kind, name)
        store = name or f"{node_name}-store"
        self._topology.add_store(store, key_serde=self.key_serde, value_serde=value_serde)
        self._topology._graph.add(
            OperatorNode(
                node_name,
                OperatorKind.AGGREGATE,
                (self._node,),
                function=aggregator,
                stores=(store,),
                initializer=initializer,
            )
        )
        return Table(self._topology, node_name, self.key_serde, value_serde, store)


class Table:
    """The latest value per key. Every update flows on to `to_stream()` as (key, new value)."""

    def __init__(
        self,
        topology: Topology,
        node: str,
        key_serde: Serde[Any],
        value_serde: Serde[Any],
        store: str,
    ) -> None:
        self._topology = topology
        self._node = node
        self.key_serde = key_serde
        self.value_serde = value_serde
        self.store_name = store

    def to_stream(self, *, name: str | None = None) -> Stream:
        """The table's updates as a stream of (key, new value) records."""
        node_name = self._topology._name_node(OperatorKind.TO_STREAM.value, name)
        self._topology._graph.add(OperatorNode(node_name, OperatorKind.TO_STREAM, (self._node,)))
        return Stream(self._topology, node_name, self.key_serde, self.value_serde)
