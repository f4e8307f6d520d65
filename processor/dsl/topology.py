"""`Topology`: what a user declares in a Python module for `processor run` to execute."""

from __future__ import annotations

from typing import Any

from processor.dsl.stream import Stream
from processor.errors import TopologyError
from processor.serdes import BytesSerde, Serde
from processor.topology.graph import LogicalGraph, SourceNode
from processor.topology.subtopology import SubTopology, build_subtopologies


class Topology:
    """A named graph of sources, operators and sinks.

    The name is the default application id: every worker running this topology with the same
    application id shares its work.

    >>> from processor import Topology, serdes
    >>> topology = Topology("shout")
    >>> text = topology.stream("lines", value_serde=serdes.StringSerde())
    >>> text.map_values(str.upper).to("shouted")
    >>> [s.source_topics for s in topology.subtopologies()]
    [('lines',)]
    """

    def __init__(self, name: str) -> None:
        if not name or not all((c.isascii() and c.isalnum()) or c in "._-" for c in name):
            raise TopologyError(
                f"topology name {name!r} must be non-empty and use only letters, digits, '.', '_'"
                " and '-' (it becomes the application id and part of topic names)"
            )
        self.name = name
        self._graph = LogicalGraph()
        self._counter = 0

    def _name_node(self, kind: str, name: str | None) -> str:
        if name is not None:
            return name
        node_name = f"{kind}-{self._counter}"
        self._counter += 1
        return node_name

    def stream(
        self,
        topic: str,
        *,
        key_serde: Serde[Any] | None = None,
        value_serde: Serde[Any] | None = None,
        name: str | None = None,
    ) -> Stream:
        """The records of `topic`; keys and values are bytes unless serdes are given."""
        if any(s.topic == topic for s in self._graph.sources()):
            raise TopologyError(f"topic {topic!r} is already a source of this topology")
        node_name = self._name_node("source", name)
        key = key_serde or BytesSerde()
        value = value_serde or BytesSerde()
        self._graph.add(SourceNode(node_name, topic, key, value))
        return Stream(self, node_name, key, value)

    @property
    def graph(self) -> LogicalGraph:
        return self._graph

    def subtopologies(self) -> list[SubTopology]:
        return build_subtopologies(self._graph)

    def describe(self) -> str:
        from processor.topology.describe import describe

        return describe(self.name, self.subtopologies())
