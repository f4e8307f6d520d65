"""The logical graph a DSL builds: named nodes and the edges between them.

Nothing here runs records; `processor.topology.subtopology` cuts this graph into sub-topologies
and `processor.topology.processors` turns nodes into the objects that process records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from processor.errors import TopologyError
from processor.serdes import Serde


class OperatorKind(Enum):
    """The stateless operators a stream offers."""

    FILTER = "filter"
    FILTER_NOT = "filter_not"
    MAP = "map"
    MAP_VALUES = "map_values"
    FLAT_MAP = "flat_map"
    FLAT_MAP_VALUES = "flat_map_values"
    PEEK = "peek"
    SPLIT = "split"
    BRANCH = "branch"
    MERGE = "merge"


@dataclass(frozen=True)
class SourceNode:
    name: str
    topic: str
    key_serde: Serde[Any]
    value_serde: Serde[Any]


@dataclass(frozen=True)
class OperatorNode:
    name: str
    kind: OperatorKind
    parents: tuple[str, ...]
    function: Callable[..., Any] | None = None
    # SPLIT: the branch predicates in order; None stands for the default branch (always true).
    predicates: tuple[Callable[[Any, Any], bool] | None, ...] = ()
    # BRANCH: which of its SPLIT parent's predicates leads here.
    branch_index: int = -1


@dataclass(frozen=True)
class SinkNode:
    name: str
    topic: str
    parent: str
    key_serde: Serde[Any]
    value_serde: Serde[Any]


Node = SourceNode | OperatorNode | SinkNode


def parents_of(node: Node) -> tuple[str, ...]:
    if isinstance(node, SourceNode):
        return ()
    if isinstance(node, SinkNode):
        return (node.parent,)
    return node.parents


@dataclass
class LogicalGraph:
    """Nodes in the order they were declared; names are unique."""

    nodes: dict[str, Node] = field(default_factory=dict)

    def add(self, node: Node) -> None:
        if node.name in self.nodes:
            raise TopologyError(f"two nodes are named {node.name!r}; node names must be unique")
        for parent in parents_of(node):
            if parent not in self.nodes:
                raise TopologyError(f"node {node.name!r} reads from unknown node {parent!r}")
        self.nodes[node.name] = node

    def children_of(self, name: str) -> list[str]:
        return [n.name for n in self.nodes.values() if name in parents_of(n)]

    def sources(self) -> list[SourceNode]:
        return [n for n in self.nodes.values() if isinstance(n, SourceNode)]
