"""`Stream`: a sequence of keyed records, transformed by chaining operators.

Functions receive `(key, value)` like Kafka Streams' operators, except `map_values` and
`flat_map_values`, which receive the value alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from processor.errors import TopologyError
from processor.serdes import Serde
from processor.topology.graph import OperatorKind, OperatorNode, SinkNode

if TYPE_CHECKING:
    from processor.dsl.topology import Topology

KeyValue = tuple[Any, Any]


class Stream:
    """A stream of records inside a `Topology`; create one with `Topology.stream`."""

    def __init__(
        self, topology: Topology, node: str, key_serde: Serde[Any], value_serde: Serde[Any]
    ) -> None:
        self._topology = topology
        self._node = node
        self.key_serde = key_serde
        self.value_serde = value_serde

    @property
    def node_name(self) -> str:
        return self._node

    def _then(
        self,
        kind: OperatorKind,
        function: Callable[..., Any] | None,
        name: str | None,
        parents: tuple[str, ...] | None = None,
    ) -> Stream:
        node_name = self._topology._name_node(kind.value, name)
        self._topology._graph.add(
            OperatorNode(node_name, kind, parents or (self._node,), function=function)
        )
        return Stream(self._topology, node_name, self.key_serde, self.value_serde)

    def filter(self, predicate: Callable[[Any, Any], bool], *, name: str | None = None) -> Stream:
        """Keep the records for which `predicate(key, value)` is true."""
        return self._then(OperatorKind.FILTER, predicate, name)

    def filter_not(
        self, predicate: Callable[[Any, Any], bool], *, name: str | None = None
    ) -> Stream:
        """Drop the records for which `predicate(key, value)` is true."""
        return self._then(OperatorKind.FILTER_NOT, predicate, name)

    def map(self, mapper: Callable[[Any, Any], KeyValue], *, name: str | None = None) -> Stream:
        """Replace each record by `mapper(key, value) -> (new_key, new_value)`."""
        return self._then(OperatorKind.MAP, mapper, name)

    def map_values(self, mapper: Callable[[Any], Any], *, name: str | None = None) -> Stream:
        """Replace each value by `mapper(value)`; the key stays."""
        return self._then(OperatorKind.MAP_VALUES, mapper, name)

    def flat_map(
        self, mapper: Callable[[Any, Any], Iterable[KeyValue]], *, name: str | None = None
    ) -> Stream:
        """Replace each record by the `(key, value)` pairs that `mapper(key, value)` yields."""
        return self._then(OperatorKind.FLAT_MAP, mapper, name)

    def flat_map_values(
        self, mapper: Callable[[Any], Iterable[Any]], *, name: str | None = None
    ) -> Stream:
        """Replace each record by one record per value `mapper(value)` yields, with the same key."""
        return self._then(OperatorKind.FLAT_MAP_VALUES, mapper, name)

    def peek(self, action: Callable[[Any, Any], None], *, name: str | None = None) -> Stream:
        """Call `action(key, value)` for each record and pass the record on unchanged."""
        return self._then(OperatorKind.PEEK, action, name)

    def merge(self, other: Stream, *, name: str | None = None) -> Stream:
        """One stream holding the records of both; their sources become one sub-topology."""
        if other._topology is not self._topology:
            raise TopologyError("merge() needs two streams of the same Topology")
        return self._then(OperatorKind.MERGE, None, name, parents=(self._node, other._node))

    def split(
        self,
        branches: Mapping[str, Callable[[Any, Any], bool]],
        *,
        default: str | None = None,
        name: str | None = None,
    ) -> dict[str, Stream]:
        """Route each record to the first branch whose predicate `(key, value)` is true.

        Returns one stream per branch name; with `default`, records no predicate accepts go to a
        stream of that name, otherwise they are dropped.
        """
        names = list(branches)
        if default is not None:
            if default in branches:
                raise TopologyError(f"split(): default branch {default!r} is also a named branch")
            names.append(default)
        if not names:
            raise TopologyError("split() needs at least one branch")
        predicates: list[Callable[[Any, Any], bool] | None] = list(branches.values())
        if default is not None:
            predicates.append(None)
        split_name = self._topology._name_node(OperatorKind.SPLIT.value, name)
        self._topology._graph.add(
            OperatorNode(
                split_name, OperatorKind.SPLIT, (self._node,), predicates=tuple(predicates)
            )
        )
        result: dict[str, Stream] = {}
        for index, branch_name in enumerate(names):
            node_name = self._topology._name_node(
                OperatorKind.BRANCH.value, f"{split_name}-{branch_name}"
            )
            self._topology._graph.add(
                OperatorNode(node_name, OperatorKind.BRANCH, (split_name,), branch_index=index)
            )
            result[branch_name] = Stream(
                self._topology, node_name, self.key_serde, self.value_serde
            )
        return result

    def branch(self, *predicates: Callable[[Any, Any], bool]) -> list[Stream]:
        """Kafka Streams' classic form of `split`: one stream per predicate, first match wins,
        records no predicate accepts are dropped."""
        named = {str(i): p for i, p in enumerate(predicates)}
        return list(self.split(named).values())

    def to(
        self,
        topic: str,
        *,
        key_serde: Serde[Any] | None = None,
        value_serde: Serde[Any] | None = None,
        name: str | None = None,
    ) -> None:
        """Write every record to `topic`, with this stream's serdes unless others are given."""
        node_name = self._topology._name_node("sink", name)
        self._topology._graph.add(
            SinkNode(
                node_name,
                topic,
                self._node,
                key_serde or self.key_serde,
                value_serde or self.value_serde,
            )
        )
