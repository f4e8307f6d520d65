"""Stream-table joins: `stream.join(table, joiner, how="inner"|"left", name=None)`.

Each stream record is joined, when it is processed, with the table's value for the record's key
in the same task (`processor.topology.stream_table_join` has the rules, Kafka Streams'). So the
join node lives in the table's sub-topology: it lists the table's store, and sub-topologies are
cut so that nodes sharing a store share a task. For that to find the right rows, a key must be
in the same partition number of the stream and of the table (co-partitioning): when an operator
may have changed the stream's keys since its source (`Stream.key_changed`), the stream goes
through the repartition topic `<application_id>-<name>-repartition` first, keyed with the
table's key serde (the keys are the table's keys) and the stream's value serde. A worker
refuses to start when the topics of one task have different partition counts.
"""

from __future__ import annotations

from typing import Any

from processor.errors import TopologyError
from processor.topology.graph import OperatorKind


def stream_table_join(stream: Any, table: Any, joiner: Any, *, how: str, name: str | None) -> Any:
    """The stream of `joiner(stream_value, table_value)` per stream record that joins."""
    from processor.dsl.stream import Stream

    builder = stream._builder
    if table._builder is not builder:
        raise TopologyError("join(): the stream and the table belong to different Topologies")
    if not callable(joiner):
        raise TopologyError("join(): joiner must be a function (stream_value, table_value)")
    kind = OperatorKind.STREAM_TABLE_LEFT_JOIN if how == "left" else OperatorKind.STREAM_TABLE_JOIN
    node = builder.name(OperatorKind.STREAM_TABLE_JOIN.value, name)
    parent = stream.node_name
    if stream.key_changed:
        parent = builder.add_repartition(parent, node, table.key_serde, stream.value_serde)
    # A table with a store (a source, an aggregation, a named operator) is read there; one
    # without (an unnamed filter or map_values) through its parent's.
    stores = (table.store_name,) if table.store_name is not None else ()
    builder.add_operator(
        kind, (parent,), name=node, function=joiner, stores=stores, reads=(table.node_name,)
    )
    return Stream(builder, node, stream.key_serde, stream.value_serde)
