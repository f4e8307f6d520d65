"""Table-table joins by foreign key: `left.join(right, joiner, foreign_key=fn, how=..., name=)`.

Each left row is joined with the right row whose key is `foreign_key(left_key, left_value)`,
by Kafka Streams' KIP-213 design (`processor.topology.foreign_join` has the processors and
the rules). The two tables need not be co-partitioned: the join routes through two internal
topics, created by the worker like repartition topics,

- `<application_id>-<name>-subscription-registration-topic`: subscriptions, keyed by the
  foreign key, with the right table's partition count;
- `<application_id>-<name>-subscription-response-topic`: answers, keyed by the left key, with
  the left table's partition count;

and two stores: `<name>-subscription-store` (the right side's subscriptions) and the result,
`<name>`. Without `name=`, the join's node is named `fk_join-<n>` and its result is kept in the
store `fk_join-<n>-store`; these names change when declarations before it do, so give a name
to a join whose state must survive topology changes.

The nodes, for a join named `j`:

    left table ──> j-subscription-registration-send ──> j-subscription-registration-sink
    j-subscription-registration-source ──> j-subscription-join ──┐
    right table ──> j-foreign-join ─────────────────────────────> j-subscription-response
                                       ──> j-subscription-response-sink
    j-subscription-response-source ──> j (the result table)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from processor.errors import TopologyError
from processor.serdes import BytesSerde
from processor.topology.foreign_join import ForeignJoinSpec
from processor.topology.foreign_wire import ResponseSerde, SubscriptionSerde
from processor.topology.graph import LogicalGraph, OperatorKind, OperatorNode, SinkNode, SourceNode

K = OperatorKind


def foreign_key_join(
    left: Any,
    right: Any,
    joiner: Callable[[Any, Any], Any],
    *,
    how: str,
    foreign_key: Callable[[Any, Any], Any],
    name: str | None,
) -> Any:
    """The table whose row for each left key is `joiner(left_value, right_value)`, the right
    row being the one `foreign_key(key, left_value)` names ("inner": only rows with one;
    "left": every left row, with None when there is none). Its values are stored and written
    with the left table's value serde."""
    from processor.dsl.stream import Table

    builder = left._builder
    if right._builder is not builder:
        raise TopologyError("Table.join(): both tables must belong to the same Topology")
    if not callable(joiner):
        raise TopologyError("Table.join(joiner) must be a function (left_value, right_value)")
    if not callable(foreign_key):
        raise TopologyError(
            "Table.join(foreign_key=) must be a function (key, value) -> the right table's key"
        )
    base = builder.name("fk_join", name)
    graph: LogicalGraph = builder.graph
    subscriptions = builder.add_store(f"{base}-subscription-store", BytesSerde(), BytesSerde())
    result = builder.add_store(name or f"{base}-store", left.key_serde, left.value_serde)
    spec = ForeignJoinSpec(
        how,  # type: ignore[arg-type]
        left.node_name,
        right.node_name,
        subscriptions,
        left.key_serde,
        left.value_serde,
        right.key_serde,
        result,
    )

    def add(node: str, kind: OperatorKind, parent: str, stores: tuple[str, ...]) -> str:
        function = foreign_key if kind is K.FK_SUBSCRIPTION_SEND else joiner
        graph.add(OperatorNode(node, kind, (parent,), function=function, stores=stores, table=spec))
        return node

    # Left side: subscriptions, by foreign key, to the right table's partitions.
    send = add(f"{base}-subscription-registration-send", K.FK_SUBSCRIPTION_SEND, left.node_name, ())
    registrations = _through(
        graph,
        send,
        f"{base}-subscription-registration",
        right.key_serde,
        SubscriptionSerde(left.key_serde),
    )
    # Right side: answers to subscriptions and to right-table updates, by left key.
    answers = add(
        f"{base}-subscription-join", K.FK_SUBSCRIPTION_JOIN, registrations, (subscriptions,)
    )
    updates = add(f"{base}-foreign-join", K.FK_FOREIGN_JOIN, right.node_name, (subscriptions,))
    merged = builder.add_operator(K.MERGE, (answers, updates), name=f"{base}-subscription-response")
    responses = _through(
        graph,
        merged,
        f"{base}-subscription-response",
        left.key_serde,
        ResponseSerde(right.value_serde),
    )
    # Left side again: the result, next to the left table it reads (its stores).
    add(base, K.FK_RESPONSE_JOIN, responses, (result, *lookup_stores(graph, left.node_name)))
    return Table(builder, base, left.key_serde, left.value_serde, result)


def _through(graph: LogicalGraph, parent: str, base: str, key_serde: Any, value_serde: Any) -> str:
    """`parent`'s records through the internal topic `<application_id>-<base>-topic` (sink
    `<base>-sink`); returns the node reading them back, `<base>-source`."""
    topic = f"{base}-topic"
    graph.add(SinkNode(f"{base}-sink", topic, parent, key_serde, value_serde, internal=True))
    graph.add(SourceNode(f"{base}-source", topic, key_serde, value_serde, internal=True))
    return f"{base}-source"


def lookup_stores(graph: LogicalGraph, table: str) -> tuple[str, ...]:
    """The stores from which table node `table`'s rows are read: its own, or those of the
    nearest tables above it it computes them from. A node listing them lands in their task."""
    node = graph.nodes[table]
    if not isinstance(node, OperatorNode):
        return ()
    if node.stores:
        return (node.stores[0],)
    found = (s for parent in node.parents for s in lookup_stores(graph, parent))
    return tuple(dict.fromkeys(found))
