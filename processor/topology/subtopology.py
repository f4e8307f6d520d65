"""Cutting a logical graph into sub-topologies: its connected parts.

Nodes are connected by edges, by the stores they share, and by the tables they read.
Repartition topics cut the graph: the sink writing one and the source reading it land in
different sub-topologies. Sub-topologies are numbered in the order their first source was
declared, so the numbering, and therefore every task id, is stable as long as the declaration
order is. Sources outside Kafka (`topology.source(...)`) come after them, one sub-topology each
in declaration order: adding one never renumbers the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from processor.topology.external_source import ExternalSourceSpec
from processor.topology.graph import (
    LogicalGraph,
    Node,
    OperatorKind,
    OperatorNode,
    SinkNode,
    SourceNode,
    StoreKind,
    StoreSpec,
    parents_of,
)
from processor.topology.handling import ErrorHandler


def internal_topic_name(application_id: str, suffix: str) -> str:
    return f"{application_id}-{suffix}"


def changelog_topic_name(application_id: str, store: str) -> str:
    return f"{application_id}-{store}-changelog"


@dataclass(frozen=True)
class SubTopology:
    """One connected part of the graph: its id, nodes (in declaration order, with internal topic
    names resolved for `application_id`), and the stores its nodes use."""

    id: int
    nodes: tuple[Node, ...]
    stores: tuple[StoreSpec, ...] = ()
    application_id: str = ""
    # A source outside Kafka: then this sub-topology has no node and exactly one task, which
    # polls the source and produces to its topic (`processor.topology.external_source`).
    source: ExternalSourceSpec | None = None

    @property
    def source_topics(self) -> tuple[str, ...]:
        return tuple(n.topic for n in self.nodes if isinstance(n, SourceNode))

    @property
    def external_source_topics(self) -> tuple[str, ...]:
        return tuple(n.topic for n in self.nodes if isinstance(n, SourceNode) and not n.internal)

    @property
    def sink_topics(self) -> tuple[str, ...]:
        """The topics the sinks write, but for those a function picks per record."""
        return tuple(
            dict.fromkeys(
                n.topic for n in self.nodes if isinstance(n, SinkNode) and n.topic_of is None
            )
        )

    @property
    def external_sink_topics(self) -> tuple[str, ...]:
        internal = set(self.repartition_sink_topics)
        return tuple(t for t in self.sink_topics if t not in internal)

    @property
    def repartition_sink_topics(self) -> tuple[str, ...]:
        return tuple(
            dict.fromkeys(n.topic for n in self.nodes if isinstance(n, SinkNode) and n.internal)
        )

    @property
    def changelog_topics(self) -> dict[str, str]:
        """Store name -> changelog topic."""
        return {s.name: changelog_topic_name(self.application_id, s.name) for s in self.stores}

    @property
    def stateful(self) -> bool:
        return bool(self.stores)

    @property
    def timed(self) -> bool:
        """Whether an operator works with time (windows, timers, ticks, stores with a TTL):
        stream time is then kept and checkpointed, the wall clock watched, and every record
        needs a timestamp of at least 0."""
        return any(s.expires or s.ttl_ms > 0 for s in self.stores) or self.fires

    @property
    def fires(self) -> bool:
        """Whether something fires with no record: timers, ticks, expiring keys."""
        return any(s.ttl_ms > 0 or s.kind is StoreKind.TIMERS for s in self.stores) or any(
            isinstance(n, OperatorNode) and n.on_tick is not None for n in self.nodes
        )

    @property
    def external_sink(self) -> OperatorNode | None:
        """The operator writing to a destination outside Kafka, when this is a sink's
        sub-topology (it then holds nothing else: its source and that operator)."""
        for node in self.nodes:
            if isinstance(node, OperatorNode) and node.kind is OperatorKind.EXTERNAL_SINK:
                return node
        return None

    @property
    def async_operators(self) -> list[OperatorNode]:
        """The operators calling async functions, each the only child of its source."""
        return [
            n for n in self.nodes if isinstance(n, OperatorNode) and n.kind is OperatorKind.ASYNC
        ]

    @property
    def emits_final(self) -> bool:
        """Whether an operator emits windows once, when they close, and keeps in its store how
        far it got (`processor.topology.windowed`)."""
        return any(isinstance(n, OperatorNode) and n.emit_final for n in self.nodes)


def deserialization_overrides(subtopologies: Iterable[SubTopology]) -> dict[str, ErrorHandler]:
    """The deserialization handler each source topic was given in the topology, where it was."""
    return {
        node.topic: node.on_deserialization_error
        for sub in subtopologies
        for node in sub.nodes
        if isinstance(node, SourceNode) and node.on_deserialization_error is not None
    }


def _resolve(node: Node, application_id: str) -> Node:
    if isinstance(node, SourceNode | SinkNode) and node.internal:
        return replace(node, topic=internal_topic_name(application_id, node.topic))
    return node


def build_subtopologies(graph: LogicalGraph, application_id: str) -> list[SubTopology]:
    root: dict[str, str] = {name: name for name in graph.nodes}

    def find(name: str) -> str:
        while root[name] != name:
            root[name] = root[root[name]]
            name = root[name]
        return name

    store_users: dict[str, str] = {}
    for node in graph.nodes.values():
        for parent in parents_of(node):
            root[find(node.name)] = find(parent)
        if isinstance(node, OperatorNode):
            for read in node.reads:
                root[find(node.name)] = find(read)
        if isinstance(node, OperatorNode):
            for store in node.stores:
                if store in store_users:
                    root[find(node.name)] = find(store_users[store])
                else:
                    store_users[store] = node.name

    groups: dict[str, list[Node]] = {}
    for node in graph.nodes.values():
        groups.setdefault(find(node.name), []).append(node)

    names = list(graph.nodes)

    def first_source_position(nodes: list[Node]) -> int:
        return min(names.index(n.name) for n in nodes if isinstance(n, SourceNode))

    ordered = sorted(
        (g for g in groups.values() if any(isinstance(n, SourceNode) for n in g)),
        key=first_source_position,
    )
    result = []
    for index, nodes in enumerate(ordered):
        used = dict.fromkeys(
            store for n in nodes if isinstance(n, OperatorNode) for store in n.stores
        )
        result.append(
            SubTopology(
                index,
                tuple(_resolve(n, application_id) for n in nodes),
                tuple(graph.stores[name] for name in used),
                application_id,
            )
        )
    for spec in graph.external_sources.values():
        result.append(SubTopology(len(result), (), (), application_id, spec))
    return result
