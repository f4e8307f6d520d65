"""Cutting a logical graph into sub-topologies: its connected parts.

Sub-topologies are numbered in the order their first source was declared, so the numbering,
and therefore every task id, is stable as long as the declaration order is.
"""

from __future__ import annotations

from dataclasses import dataclass

from processor.topology.graph import LogicalGraph, Node, SinkNode, SourceNode, parents_of


@dataclass(frozen=True)
class SubTopology:
    """One connected part of the graph: its id, nodes (in declaration order) and topics."""

    id: int
    nodes: tuple[Node, ...]

    @property
    def source_topics(self) -> tuple[str, ...]:
        return tuple(n.topic for n in self.nodes if isinstance(n, SourceNode))

    @property
    def sink_topics(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n.topic for n in self.nodes if isinstance(n, SinkNode)))


def build_subtopologies(graph: LogicalGraph) -> list[SubTopology]:
    root: dict[str, str] = {name: name for name in graph.nodes}

    def find(name: str) -> str:
        while root[name] != name:
            root[name] = root[root[name]]
            name = root[name]
        return name

    for node in graph.nodes.values():
        for parent in parents_of(node):
            root[find(node.name)] = find(parent)

    groups: dict[str, list[Node]] = {}
    for node in graph.nodes.values():
        groups.setdefault(find(node.name), []).append(node)

    def first_source_position(nodes: list[Node]) -> int:
        names = list(graph.nodes)
        return min(names.index(n.name) for n in nodes if isinstance(n, SourceNode))

    ordered = sorted(
        (g for g in groups.values() if any(isinstance(n, SourceNode) for n in g)),
        key=first_source_position,
    )
    return [SubTopology(i, tuple(nodes)) for i, nodes in enumerate(ordered)]
