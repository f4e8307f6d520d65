"""`Topology`: what a user declares in a Python module for `processor run` to execute."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from processor.dsl.stream import Stream
from processor.dsl.table import Table
from processor.errors import TopologyError
from processor.serdes import BytesSerde, Serde
from processor.topology.graph import (
    LogicalGraph,
    OperatorKind,
    OperatorNode,
    SourceNode,
    StoreSpec,
)
from processor.topology.handling import ErrorHandler
from processor.topology.subtopology import SubTopology, build_subtopologies


def _handler(topic: str, handler: ErrorHandler | str | None) -> ErrorHandler | None:
    if handler is None or isinstance(handler, ErrorHandler):
        return handler
    try:
        return ErrorHandler.parse(handler)
    except ValueError as e:
        raise TopologyError(f"source {topic!r}: on_deserialization_error {e}") from None


def _check_name(what: str, name: str) -> None:
    if not name or not all((c.isascii() and c.isalnum()) or c in "._-" for c in name):
        raise TopologyError(
            f"{what} name {name!r} must be non-empty and use only letters, digits, '.', '_'"
            " and '-' (it becomes part of topic names)"
        )


if TYPE_CHECKING:
    from processor.state.restore import RestoreListener


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
        _check_name("topology", name)
        self.name = name
        self._graph = LogicalGraph()
        self._counter = 0
        self.restore_listener: RestoreListener | None = None

    def on_restore(self, listener: RestoreListener | None) -> None:
        """Call `listener` (a `processor.RestoreListener`) as workers running this topology
        restore a task's store before it processes: `on_restore_start`, `on_batch_restored`
        for each batch written, `on_restore_end`, per changelog. The calls come from the
        worker's restorer thread; an exception raised in one stops the worker with that error.
        Standby updates are not restores and are not reported (see the /metrics instead)."""
        self.restore_listener = listener

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
        on_deserialization_error: ErrorHandler | str | None = None,
    ) -> Stream:
        """The records of `topic`; keys and values are bytes unless serdes are given.
        `on_deserialization_error` (fail, skip or dead_letter) overrides the application's
        deserialization_error_handler for this topic."""
        if any(s.topic == topic for s in self._graph.sources()):
            raise TopologyError(f"topic {topic!r} is already a source of this topology")
        handler = _handler(topic, on_deserialization_error)
        node_name = self._name_node("source", name)
        key = key_serde or BytesSerde()
        value = value_serde or BytesSerde()
        self._graph.add(SourceNode(node_name, topic, key, value, on_deserialization_error=handler))
        return Stream(self, node_name, key, value)

    def table(
        self,
        topic: str,
        *,
        key_serde: Serde[Any] | None = None,
        value_serde: Serde[Any] | None = None,
        name: str | None = None,
        on_deserialization_error: ErrorHandler | str | None = None,
    ) -> Table:
        """`topic` as a table: the latest value per key, kept in a store named `name` (default:
        the topic's name); a record with a null value deletes its key, and one with a null key
        goes to the deserialization error handler."""
        source = self.stream(
            topic,
            key_serde=key_serde,
            value_serde=value_serde,
            on_deserialization_error=on_deserialization_error,
        )
        store = name or topic
        self.add_store(store, key_serde=source.key_serde, value_serde=source.value_serde)
        node_name = self._name_node(OperatorKind.MATERIALIZE.value, None)
        self._graph.add(
            OperatorNode(node_name, OperatorKind.MATERIALIZE, (source.node_name,), stores=(store,))
        )
        return Table(self, node_name, source.key_serde, source.value_serde, store)

    def add_store(
        self,
        name: str,
        *,
        key_serde: Serde[Any] | None = None,
        value_serde: Serde[Any] | None = None,
    ) -> str:
        """Declare a key-value store for `Stream.process`; returns its name. Its changelog topic
        is `<application_id>-<name>-changelog`."""
        _check_name("store", name)
        self._graph.add_store(
            StoreSpec(name, key_serde or BytesSerde(), value_serde or BytesSerde())
        )
        return name

    @property
    def graph(self) -> LogicalGraph:
        return self._graph

    def subtopologies(self, application_id: str | None = None) -> list[SubTopology]:
        """The sub-topologies, with internal topics named for `application_id` (default: the
        topology's name)."""
        return build_subtopologies(self._graph, application_id or self.name)

    def describe(self) -> str:
        from processor.topology.describe import describe

        return describe(self.name, self.subtopologies())
