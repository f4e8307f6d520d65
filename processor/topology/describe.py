"""A topology described as text, in the shape Kafka Streams' `Topology.describe()` prints.

Besides Kafka Streams' fields, an operator's line shows what acts on time: a store with a TTL as
`name [ttl_ms=N ttl_clock=stream|wall]`, a `process()` operator's timer store (`timers: ...`),
`on_expire`, and its tick (`on_tick: every_ms=N clock=stream|wall`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from processor.topology.async_ops import AsyncSpec
from processor.topology.global_tables import GlobalTableSpec
from processor.topology.graph import OperatorNode, SinkNode, SourceNode, StoreSpec, parents_of
from processor.topology.stream_table_join import JOIN_KINDS, describe_join
from processor.topology.subtopology import SubTopology


def describe(
    name: str, subtopologies: list[SubTopology], global_tables: Sequence[GlobalTableSpec] = ()
) -> str:
    lines = [f"Topology: {name}"]
    for sub in subtopologies:
        lines.append(f"  Sub-topology {sub.id}")
        if sub.source is not None:  # a source outside Kafka, alone in its sub-topology
            lines.append(f"    {sub.source.describe()}")
        specs = {spec.name: spec for spec in sub.stores}
        children: dict[str, list[str]] = {n.name: [] for n in sub.nodes}
        for node in sub.nodes:
            for parent in parents_of(node):
                children[parent].append(node.name)
        for node in sub.nodes:
            if isinstance(node, SourceNode):
                event_time = ", timestamp: extracted" if node.timestamp is not None else ""
                head = (
                    f"Source: {node.name} (topic: {node.topic}, "
                    f"key: {node.key_serde.name}, value: {node.value_serde.name}{event_time})"
                )
            elif isinstance(node, SinkNode):
                head = (
                    f"Sink: {node.name} (topic: {node.topic}, "
                    f"key: {node.key_serde.name}, value: {node.value_serde.name})"
                )
            elif isinstance(node, OperatorNode) and node.kind in JOIN_KINDS:
                head = describe_join(node)
            else:
                assert isinstance(node, OperatorNode)
                head = _operator(node, specs)
            arrows = ""
            if children[node.name]:
                arrows += f" --> {', '.join(children[node.name])}"
            if parents_of(node):
                arrows += f" <-- {', '.join(parents_of(node))}"
            lines.append(f"    {head}{arrows}")
    for table in global_tables:  # Kafka Streams: "for global store (will not generate tasks)"
        store = table.store
        lines.append(
            f"  Global store {store.name} (topic: {table.topic}, key: {store.key_serde.name}, "
            f"value: {store.value_serde.name}; read whole by every worker, no tasks)"
        )
    return "\n".join(lines)


def _operator(node: OperatorNode, specs: Mapping[str, StoreSpec]) -> str:
    parts = [node.kind.value]
    if node.windows is not None:
        parts.append(repr(node.windows))
        parts.append(f"emit {'final' if node.emit_final else 'update'}")
    if node.global_join is not None:
        parts.append(node.global_join.describe())
    if isinstance(node.external, AsyncSpec):
        parts.append(node.external.describe())
    elif node.external is not None:
        guarantee = "exactly once" if node.external.exactly_once else "at least once"
        parts.append(f"{node.external.describe()}, {guarantee}")
    stores = [_store(store, specs.get(store)) for store in node.stores if store != node.timer_store]
    if stores:
        parts.append(f"stores: {', '.join(stores)}")
    if node.timer_store is not None:
        parts.append(f"timers: {node.timer_store}")
    if node.on_expire is not None:
        parts.append("on_expire")
    if node.on_tick is not None:
        parts.append(f"on_tick: every_ms={node.every_ms} clock={node.tick_clock}")
    return f"Processor: {node.name} ({', '.join(parts)})"


def _store(name: str, spec: StoreSpec | None) -> str:
    if spec is None or spec.ttl_ms <= 0:
        return name
    return f"{name} [ttl_ms={spec.ttl_ms} ttl_clock={spec.ttl_clock}]"
