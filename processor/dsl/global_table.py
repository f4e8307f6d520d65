"""Global tables (`Topology.global_table`) and the stream-global table join (`Stream.join` with a
`GlobalTable`), as Kafka Streams' GlobalKTable and `KStream.join(GlobalKTable, ...)`.

Every worker reads a global table's topic whole, every partition, into a local store before its
tasks process, and follows it while they run (`processor.runtime.global_tables`). A stream looks
rows up by any key it computes, so neither side needs co-partitioning: orders keyed by order id
join countries keyed by country code. The join's rules are in
`processor.topology.global_tables`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from processor.dsl.builder import GraphBuilder, _handler, check_name
from processor.errors import TopologyError
from processor.serdes import Serde
from processor.topology.global_tables import GlobalJoinSpec, GlobalTableSpec
from processor.topology.graph import OperatorKind, OperatorNode, StoreSpec
from processor.topology.handling import ErrorHandler

__all__ = ["GlobalTable", "declare_global_table", "stream_global_join"]

K = TypeVar("K")  # the type of the table's keys
V = TypeVar("V")  # the type of its rows


class GlobalTable(Generic[K, V]):
    """A topic every worker holds whole, the latest value per key; create one with
    `Topology.global_table` and join streams with it (`Stream.join(table, joiner, key=...)`)."""

    def __init__(
        self,
        builder: GraphBuilder,
        topic: str,
        store: str,
        key_serde: Serde[Any],
        value_serde: Serde[Any],
    ) -> None:
        self._builder = builder
        self.topic = topic
        self.store_name = store
        self.key_serde = key_serde
        self.value_serde = value_serde

    def __repr__(self) -> str:
        return f"GlobalTable({self.topic!r}, store={self.store_name!r})"


def declare_global_table(
    builder: GraphBuilder,
    topic: str,
    key_serde: Serde[K],
    value_serde: Serde[V],
    *,
    name: str | None,
    on_deserialization_error: ErrorHandler | str | None,
) -> GlobalTable[K, V]:
    """`Topology.global_table`: the table's store is named `name`, default the topic's."""
    store = name or topic
    check_name("store", store)
    for what, serde in (("key_serde", key_serde), ("value_serde", value_serde)):
        if not callable(getattr(serde, "serialize", None)):
            raise TopologyError(
                f"global_table({topic!r}): {what} must be a serde (processor.serdes), not "
                f"{serde!r}: a lookup serializes its key with the table's key serde"
            )
    handler = _handler(topic, on_deserialization_error)
    builder.graph.add_global_table(
        GlobalTableSpec(topic, StoreSpec(store, key_serde, value_serde), handler)
    )
    return GlobalTable(builder, topic, store, key_serde, value_serde)


def stream_global_join(
    stream: Any,
    table: GlobalTable[Any, Any],
    joiner: Callable[[Any, Any], Any],
    *,
    how: str,
    key: Callable[[Any, Any], Any] | None,
    name: str | None,
) -> Any:
    """`stream.join(table, joiner, key=..., how=...)`: each record of `stream` with the row of
    `table` whose key is `key(key, value)` (default: the record's key); see the module
    `processor.topology.global_tables` for what inner and left do with a missing row."""
    from processor.dsl.stream import Stream

    builder = table._builder
    # A stream of another topology would have its node name resolved in this one's graph.
    if stream._builder is not builder:
        raise TopologyError(
            f"join(): global table {table.topic!r} belongs to another Topology; declare it with "
            "global_table() on the topology of the stream that joins it"
        )
    if not callable(joiner):
        raise TopologyError("join(): joiner must be a function (stream value, table row) -> value")
    if key is not None and not callable(key):
        raise TopologyError("join(key=...) must be a function (key, value) -> the table's key")
    node = builder.name(OperatorKind.GLOBAL_JOIN.value, name)
    spec = GlobalJoinSpec(table.store_name, how, key)
    builder.graph.add(
        OperatorNode(
            node, OperatorKind.GLOBAL_JOIN, (stream.node_name,), function=joiner, global_join=spec
        )
    )
    return Stream(
        builder, node, stream.key_serde, stream.value_serde, key_changed=stream.key_changed
    )
