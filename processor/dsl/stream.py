"""`Stream`: a sequence of keyed records, transformed by chaining operators.

Functions receive `(key, value)` like Kafka Streams' operators, except `map_values` and
`flat_map_values`, which receive the value alone. A function that raises
`processor.TransientError` is called again with backoff (the `processing_retry_*` settings, or
the operator's own `retry=Retry(...)`, which may also name other exception types to retry);
other exceptions, and transient ones once the retries are used up, go to the
processing_error_handler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from processor.errors import TopologyError
from processor.serdes import Serde
from processor.topology.graph import OperatorKind, OperatorNode, SinkNode, SourceNode
from processor.topology.retry import Retry

if TYPE_CHECKING:
    from processor.dsl.table import GroupedStream
    from processor.dsl.topology import Topology
    from processor.topology.context import ProcessorContext

KeyValue = tuple[Any, Any]


class Stream:
    """A stream of records inside a `Topology`; create one with `Topology.stream`."""

    def __init__(
        self,
        topology: Topology,
        node: str,
        key_serde: Serde[Any],
        value_serde: Serde[Any],
        *,
        key_changed: bool = False,
    ) -> None:
        self._topology = topology
        self._node = node
        self.key_serde = key_serde
        self.value_serde = value_serde
        # Whether an operator since the source may have changed keys, so that records are no
        # longer in the partition of their key: grouping then needs a repartition topic.
        self.key_changed = key_changed

    @property
    def node_name(self) -> str:
        return self._node

    def _then(
        self,
        kind: OperatorKind,
        function: Callable[..., Any] | None,
        name: str | None,
        parents: tuple[str, ...] | None = None,
        retry: Retry | None = None,
    ) -> Stream:
        node_name = self._topology._name_node(kind.value, name)
        self._topology._graph.add(
            OperatorNode(node_name, kind, parents or (self._node,), function=function, retry=retry)
        )
        changes_keys = kind in (OperatorKind.MAP, OperatorKind.FLAT_MAP)
        return Stream(
            self._topology,
            node_name,
            self.key_serde,
            self.value_serde,
            key_changed=self.key_changed or changes_keys,
        )

    def filter(
        self,
        predicate: Callable[[Any, Any], bool],
        *,
        name: str | None = None,
        retry: Retry | None = None,
    ) -> Stream:
        """Keep the records for which `predicate(key, value)` is true."""
        return self._then(OperatorKind.FILTER, predicate, name, retry=retry)

    def filter_not(
        self,
        predicate: Callable[[Any, Any], bool],
        *,
        name: str | None = None,
        retry: Retry | None = None,
    ) -> Stream:
        """Drop the records for which `predicate(key, value)` is true."""
        return self._then(OperatorKind.FILTER_NOT, predicate, name, retry=retry)

    def map(
        self,
        mapper: Callable[[Any, Any], KeyValue],
        *,
        name: str | None = None,
        retry: Retry | None = None,
    ) -> Stream:
        """Replace each record by `mapper(key, value) -> (new_key, new_value)`."""
        return self._then(OperatorKind.MAP, mapper, name, retry=retry)

    def map_values(
        self, mapper: Callable[[Any], Any], *, name: str | None = None, retry: Retry | None = None
    ) -> Stream:
        """Replace each value by `mapper(value)`; the key stays."""
        return self._then(OperatorKind.MAP_VALUES, mapper, name, retry=retry)

    def flat_map(
        self,
        mapper: Callable[[Any, Any], Iterable[KeyValue]],
        *,
        name: str | None = None,
        retry: Retry | None = None,
    ) -> Stream:
        """Replace each record by the `(key, value)` pairs that `mapper(key, value)` yields."""
        return self._then(OperatorKind.FLAT_MAP, mapper, name, retry=retry)

    def flat_map_values(
        self,
        mapper: Callable[[Any], Iterable[Any]],
        *,
        name: str | None = None,
        retry: Retry | None = None,
    ) -> Stream:
        """Replace each record by one record per value `mapper(value)` yields, with the same key."""
        return self._then(OperatorKind.FLAT_MAP_VALUES, mapper, name, retry=retry)

    def peek(
        self,
        action: Callable[[Any, Any], None],
        *,
        name: str | None = None,
        retry: Retry | None = None,
    ) -> Stream:
        """Call `action(key, value)` for each record and pass the record on unchanged."""
        return self._then(OperatorKind.PEEK, action, name, retry=retry)

    def merge(self, other: Stream, *, name: str | None = None) -> Stream:
        """One stream holding the records of both; their sources become one sub-topology."""
        if other._topology is not self._topology:
            raise TopologyError("merge() needs two streams of the same Topology")
        merged = self._then(OperatorKind.MERGE, None, name, parents=(self._node, other._node))
        merged.key_changed = self.key_changed or other.key_changed
        return merged

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
                self._topology,
                node_name,
                self.key_serde,
                self.value_serde,
                key_changed=self.key_changed,
            )
        return result

    def branch(self, *predicates: Callable[[Any, Any], bool]) -> list[Stream]:
        """Kafka Streams' classic form of `split`: one stream per predicate, first match wins,
        records no predicate accepts are dropped."""
        named = {str(i): p for i, p in enumerate(predicates)}
        return list(self.split(named).values())

    def group_by(
        self,
        key_fn: Callable[[Any, Any], Any],
        *,
        key_serde: Serde[Any] | None = None,
        value_serde: Serde[Any] | None = None,
        name: str | None = None,
    ) -> GroupedStream:
        """Group records by `key_fn(key, value)`. Records go through the repartition topic
        `<application_id>-<name>-repartition`, so that each new key lands in one task."""
        base = self._topology._name_node("group_by", name)
        keyed = self._then(OperatorKind.MAP, lambda k, v: (key_fn(k, v), v), f"{base}-key")
        keyed.key_serde = key_serde or self.key_serde
        keyed.value_serde = value_serde or self.value_serde
        return keyed._repartition(base)

    def group_by_key(
        self,
        *,
        key_serde: Serde[Any] | None = None,
        value_serde: Serde[Any] | None = None,
        name: str | None = None,
    ) -> GroupedStream:
        """Group records by their key; repartitions only when an operator may have changed keys
        (`map`, `flat_map`, `process`) since the source."""
        from processor.dsl.table import GroupedStream

        grouped = Stream(
            self._topology,
            self._node,
            key_serde or self.key_serde,
            value_serde or self.value_serde,
            key_changed=self.key_changed,
        )
        if grouped.key_changed:
            return grouped._repartition(self._topology._name_node("group_by_key", name))
        return GroupedStream(self._topology, self._node, grouped.key_serde, grouped.value_serde)

    def _repartition(self, base: str) -> GroupedStream:
        from processor.dsl.table import GroupedStream

        topic = f"{base}-repartition"
        graph = self._topology._graph
        graph.add(
            SinkNode(
                f"{base}-sink", topic, self._node, self.key_serde, self.value_serde, internal=True
            )
        )
        graph.add(
            SourceNode(f"{base}-source", topic, self.key_serde, self.value_serde, internal=True)
        )
        return GroupedStream(self._topology, f"{base}-source", self.key_serde, self.value_serde)

    def process(
        self,
        function: Callable[[ProcessorContext, Any, Any], None],
        *,
        stores: Sequence[str] = (),
        key_serde: Serde[Any] | None = None,
        value_serde: Serde[Any] | None = None,
        name: str | None = None,
        retry: Retry | None = None,
    ) -> Stream:
        """Call `function(context, key, value)` for each record: `context.store(name)` gives the
        declared `stores`, `context.forward(key, value)` emits downstream (zero or more times),
        and `context.topic`, `.partition`, `.offset`, `.timestamp`, `.headers` describe the
        record. The stream it returns carries what was forwarded."""
        node_name = self._topology._name_node(OperatorKind.PROCESS.value, name)
        self._topology._graph.add(
            OperatorNode(
                node_name,
                OperatorKind.PROCESS,
                (self._node,),
                function=function,
                stores=tuple(stores),
                retry=retry,
            )
        )
        return Stream(
            self._topology,
            node_name,
            key_serde or self.key_serde,
            value_serde or self.value_serde,
            key_changed=True,
        )

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
