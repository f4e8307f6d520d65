"""`Topology`: what a user declares in a Python module for `processor run` to execute."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from processor.dsl.builder import GraphBuilder, check_name
from processor.dsl.global_table import GlobalTable, declare_global_table
from processor.dsl.source import declare_source
from processor.dsl.stream import Stream, Table
from processor.serdes import BytesSerde, Serde
from processor.sources.base import Source
from processor.topology.describe import describe
from processor.topology.external_source import ExternalSourceSpec
from processor.topology.global_tables import GlobalTableSpec
from processor.topology.graph import LogicalGraph, OperatorKind, TimestampExtractor
from processor.topology.handling import ErrorHandler
from processor.topology.subtopology import SubTopology, build_subtopologies

if TYPE_CHECKING:
    from processor.state.restore import RestoreListener

K = TypeVar("K")  # the type of a source's keys, from its key serde (bytes without one)
V = TypeVar("V")  # the type of its values, from its value serde (bytes without one)

Handler = ErrorHandler | str | None


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
        check_name("topology", name)
        self.name = name
        self._builder = GraphBuilder()
        self.restore_listener: RestoreListener | None = None
        self.start_hooks: list[Callable[[], Awaitable[None]]] = []
        self.stop_hooks: list[Callable[[], Awaitable[None]]] = []

    def on_start(self, hook: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """Run `await hook()` on the worker's event loop before its first async call (open the
        clients async operators use there); usable as a decorator."""
        self.start_hooks.append(hook)
        return hook

    def on_stop(self, hook: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """Run `await hook()` on the worker's event loop when it stops (close those clients)."""
        self.stop_hooks.append(hook)
        return hook

    def on_restore(self, listener: RestoreListener | None) -> None:
        """Call `listener` (a `processor.RestoreListener`) as workers running this topology
        restore a task's store before it processes: `on_restore_start`, `on_batch_restored`
        for each batch written, `on_restore_end`, per changelog. The calls come from the
        worker's restorer thread; an exception raised in one stops the worker with that error.
        Standby updates are not restores and are not reported (see the /metrics instead)."""
        self.restore_listener = listener

    # Without a serde, keys and values are bytes: one overload per serde given or not.
    @overload
    def stream(
        self,
        topic: str,
        *,
        key_serde: None = None,
        value_serde: None = None,
        name: str | None = None,
        on_deserialization_error: Handler = None,
        timestamp: TimestampExtractor | None = None,
    ) -> Stream[bytes, bytes]: ...
    @overload
    def stream(
        self,
        topic: str,
        *,
        key_serde: Serde[K],
        value_serde: None = None,
        name: str | None = None,
        on_deserialization_error: Handler = None,
        timestamp: TimestampExtractor | None = None,
    ) -> Stream[K, bytes]: ...
    @overload
    def stream(
        self,
        topic: str,
        *,
        key_serde: None = None,
        value_serde: Serde[V],
        name: str | None = None,
        on_deserialization_error: Handler = None,
        timestamp: TimestampExtractor | None = None,
    ) -> Stream[bytes, V]: ...
    @overload
    def stream(
        self,
        topic: str,
        *,
        key_serde: Serde[K],
        value_serde: Serde[V],
        name: str | None = None,
        on_deserialization_error: Handler = None,
        timestamp: TimestampExtractor | None = None,
    ) -> Stream[K, V]: ...
    def stream(
        self,
        topic: str,
        *,
        key_serde: Serde[Any] | None = None,
        value_serde: Serde[Any] | None = None,
        name: str | None = None,
        on_deserialization_error: Handler = None,
        timestamp: TimestampExtractor | None = None,
    ) -> Stream[Any, Any]:
        """The records of `topic`; keys and values are bytes unless serdes are given.
        `on_deserialization_error` (fail, skip or dead_letter) overrides the application's
        deserialization_error_handler for this topic."""
        key = key_serde or BytesSerde()
        value = value_serde or BytesSerde()
        node = self._builder.add_source(
            topic,
            key,
            value,
            name=name,
            on_deserialization_error=on_deserialization_error,
            timestamp=timestamp,
        )
        return Stream(self._builder, node, key, value)

    def source(
        self,
        source: Source,
        *,
        topic: str,
        partitions: int = 6,
        key_serde: Serde[Any] | None = None,
        value_serde: Serde[Any] | None = None,
        name: str | None = None,
    ) -> Stream[Any, Any]:
        """The records `source` reads from outside Kafka (files, a database), as the stream of
        `topic`: one task, on one worker at a time, produces them to `topic` (created with
        `partitions` if missing), and the stream reads them like any topic (do not declare
        `topic` again with `stream()`). `name` (default: the topic) keys where the source
        stopped in `<application_id>-source-positions`: keep it when the topology changes.
        Keys are `source.key(value)` as strings (no key function: no key), values JSON, unless
        serdes are given. Input the source cannot parse goes to the deserialization error
        handler with its origin in the headers."""
        node, key, value = declare_source(
            self._builder,
            source,
            topic=topic,
            partitions=partitions,
            key_serde=key_serde,
            value_serde=value_serde,
            name=name,
        )
        return Stream(self._builder, node, key, value)

    @overload
    def table(
        self,
        topic: str,
        *,
        key_serde: None = None,
        value_serde: None = None,
        name: str | None = None,
        on_deserialization_error: Handler = None,
        timestamp: TimestampExtractor | None = None,
    ) -> Table[bytes, bytes]: ...
    @overload
    def table(
        self,
        topic: str,
        *,
        key_serde: Serde[K],
        value_serde: None = None,
        name: str | None = None,
        on_deserialization_error: Handler = None,
        timestamp: TimestampExtractor | None = None,
    ) -> Table[K, bytes]: ...
    @overload
    def table(
        self,
        topic: str,
        *,
        key_serde: None = None,
        value_serde: Serde[V],
        name: str | None = None,
        on_deserialization_error: Handler = None,
        timestamp: TimestampExtractor | None = None,
    ) -> Table[bytes, V]: ...
    @overload
    def table(
        self,
        topic: str,
        *,
        key_serde: Serde[K],
        value_serde: Serde[V],
        name: str | None = None,
        on_deserialization_error: Handler = None,
        timestamp: TimestampExtractor | None = None,
    ) -> Table[K, V]: ...
    def table(
        self,
        topic: str,
        *,
        key_serde: Serde[Any] | None = None,
        value_serde: Serde[Any] | None = None,
        name: str | None = None,
        on_deserialization_error: Handler = None,
        timestamp: TimestampExtractor | None = None,
    ) -> Table[Any, Any]:
        """`topic` as a table: the latest value per key, kept in a store named `name` (default:
        the topic's name); a record with a null value deletes its key, and one with a null key
        goes to the deserialization error handler."""
        source = self.stream(
            topic,
            key_serde=key_serde,
            value_serde=value_serde,
            on_deserialization_error=on_deserialization_error,
            timestamp=timestamp,
        )
        store = self.add_store(
            name or topic, key_serde=source.key_serde, value_serde=source.value_serde
        )
        node = self._builder.add_operator(
            OperatorKind.MATERIALIZE, (source.node_name,), stores=(store,)
        )
        return Table(self._builder, node, source.key_serde, source.value_serde, store)

    def global_table(
        self,
        topic: str,
        *,
        key_serde: Serde[K],
        value_serde: Serde[V],
        name: str | None = None,
        on_deserialization_error: Handler = None,
    ) -> GlobalTable[K, V]:
        """`topic` as a global table: every worker reads all its partitions into a local store
        named `name` (default: the topic's name) before its tasks process, and follows it while
        they run. Streams join it by any key (`Stream.join(table, joiner, key=...)`), with no
        co-partitioning. The topic is its changelog: it has none of its own, and a restarted
        worker reads only what is new since its checkpoint. A record with a null value deletes
        its key; one with a null key is skipped with a warning; an undecodable one goes to
        `on_deserialization_error` (default: the application's handler; dead_letter stops the
        worker, as fail does: global records are read outside any task)."""
        return declare_global_table(
            self._builder,
            topic,
            key_serde,
            value_serde,
            name=name,
            on_deserialization_error=on_deserialization_error,
        )

    def global_tables(self) -> list[GlobalTableSpec]:
        """The global tables, in the order they were declared."""
        return list(self._builder.graph.global_tables.values())

    def add_store(
        self,
        name: str,
        *,
        key_serde: Serde[Any] | None = None,
        value_serde: Serde[Any] | None = None,
        ttl_ms: int = 0,
        ttl_clock: str = "stream",
    ) -> str:
        """Declare a key-value store for `Stream.process`; returns its name. Its changelog topic
        is `<application_id>-<name>-changelog`. With `ttl_ms`, a key not written for that long
        on `ttl_clock` ("stream": the task's stream time; "wall": the wall clock) is removed
        (a changelog tombstone), reads stop seeing it at once, and the `process()` that
        declares `on_expire` for the store is told."""
        return self._builder.add_store(
            name,
            key_serde or BytesSerde(),
            value_serde or BytesSerde(),
            ttl_ms=ttl_ms,
            ttl_clock=ttl_clock,
        )

    @property
    def graph(self) -> LogicalGraph:
        return self._builder.graph

    def sources(self) -> list[ExternalSourceSpec]:
        """The sources outside Kafka, in the order they were declared."""
        return list(self._builder.graph.external_sources.values())

    def subtopologies(self, application_id: str | None = None) -> list[SubTopology]:
        """The sub-topologies, with internal topics named for `application_id` (default: the
        topology's name)."""
        return build_subtopologies(self._builder.graph, application_id or self.name)

    def describe(self) -> str:
        return describe(self.name, self.subtopologies(), self.global_tables())
