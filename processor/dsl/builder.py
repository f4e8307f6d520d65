"""`GraphBuilder`: the one object that adds to a topology's logical graph.

A `Topology` makes one builder; every `Stream`, `GroupedStream` and `Table` of that topology
holds it and declares its operators through it. Nothing else touches the graph while it is
being declared.

The builder names the nodes it is not given names for, `<kind>-<n>` with one counter per
topology, so names (and the sub-topology numbering, which follows declaration order) stay the
same as long as the declarations do. It checks the names users choose, and it knows the shape of
a repartition: a sink writing the internal topic `<base>-repartition` and a source reading it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from processor.errors import TopologyError
from processor.serdes import BytesSerde, Serde
from processor.topology.graph import (
    LogicalGraph,
    OperatorKind,
    OperatorNode,
    SinkNode,
    SourceNode,
    StoreKind,
    StoreSpec,
    TimestampExtractor,
    timer_store_name,
)
from processor.topology.handling import ErrorHandler
from processor.topology.retry import Retry
from processor.windows.serde import WindowedSerde
from processor.windows.spec import SessionWindows, Windows

Predicate = Callable[[Any, Any], bool]


@dataclass(frozen=True)
class WindowedAggregateSpec:
    """What a windowed aggregation declares: its windows and functions, how it emits, how long
    closed windows are kept (`retention_ms`, checked against the windows), and its name."""

    label: str
    name: str | None
    windows: Windows
    emit_final: bool
    retention_ms: int
    initializer: Callable[[], Any] | None
    aggregator: Callable[[Any, Any, Any], Any]
    merger: Callable[[Any, Any, Any], Any] | None = None


def check_name(what: str, name: str) -> None:
    """Refuse a topology or store name that cannot be part of a topic name."""
    if not name or not all((c.isascii() and c.isalnum()) or c in "._-" for c in name):
        raise TopologyError(
            f"{what} name {name!r} must be non-empty and use only letters, digits, '.', '_'"
            " and '-' (it becomes part of topic names)"
        )


def _handler(topic: str, handler: ErrorHandler | str | None) -> ErrorHandler | None:
    if handler is None or isinstance(handler, ErrorHandler):
        return handler
    try:
        return ErrorHandler.parse(handler)
    except ValueError as e:
        raise TopologyError(f"source {topic!r}: on_deserialization_error {e}") from None


class GraphBuilder:
    """Adds sources, operators, stores, sinks and repartition topics to one `LogicalGraph`.

    Every `add_*` method returns the name of the node it added, for the next declaration to read
    from. A declaration the graph refuses raises `TopologyError`; what was added before the
    refused node stays, and so do the generated names it used.
    """

    def __init__(self) -> None:
        self._graph = LogicalGraph()
        self._counter = 0
        # Store with a TTL -> the process() operator that declared its on_expire.
        self._expiring: dict[str, str] = {}

    @property
    def graph(self) -> LogicalGraph:
        return self._graph

    def name(self, kind: str, name: str | None) -> str:
        """`name` when the user gave one, otherwise the next generated name for `kind`."""
        if name is not None:
            return name
        generated = f"{kind}-{self._counter}"
        self._counter += 1
        return generated

    def add_store(
        self,
        name: str,
        key_serde: Serde[Any],
        value_serde: Serde[Any],
        *,
        kind: StoreKind = StoreKind.KEY_VALUE,
        retention_ms: int = 0,
        ttl_ms: int = 0,
        ttl_clock: str = "stream",
    ) -> str:
        check_name("store", name)
        _check_ttl(name, ttl_ms, ttl_clock)
        self._graph.add_store(
            StoreSpec(name, key_serde, value_serde, kind, retention_ms, ttl_ms, ttl_clock)
        )
        return name

    def add_source(
        self,
        topic: str,
        key_serde: Serde[Any],
        value_serde: Serde[Any],
        *,
        name: str | None,
        on_deserialization_error: ErrorHandler | str | None,
        timestamp: TimestampExtractor | None = None,
    ) -> str:
        if any(s.topic == topic for s in self._graph.sources()) or any(
            g.topic == topic for g in self._graph.global_tables.values()
        ):
            raise TopologyError(f"topic {topic!r} is already a source of this topology")
        if timestamp is not None and not callable(timestamp):
            raise TopologyError(
                f"source {topic!r}: timestamp= must be a function (key, value, record_ts) -> ms"
            )
        handler = _handler(topic, on_deserialization_error)
        node = self.name("source", name)
        self._graph.add(
            SourceNode(
                node,
                topic,
                key_serde,
                value_serde,
                on_deserialization_error=handler,
                timestamp=timestamp,
            )
        )
        return node

    def add_operator(
        self,
        kind: OperatorKind,
        parents: Sequence[str],
        *,
        name: str | None = None,
        function: Callable[..., Any] | None = None,
        stores: Sequence[str] = (),
        retry: Retry | None = None,
        reads: Sequence[str] = (),
    ) -> str:
        """An operator of `kind` reading `parents` (and looking up the tables `reads`), named
        `name` or `<kind>-<n>`."""
        node = self.name(kind.value, name)
        self._graph.add(
            OperatorNode(
                node,
                kind,
                tuple(parents),
                function=function,
                stores=tuple(stores),
                retry=retry,
                reads=tuple(reads),
            )
        )
        return node

    def add_process(
        self,
        parent: str,
        function: Callable[..., Any],
        *,
        name: str | None,
        stores: Sequence[str],
        retry: Retry | None,
        key_serde: Serde[Any],
        timing: ProcessTiming,
    ) -> str:
        """A PROCESS node; with `on_timer`, its timer store `<node>-timers` (keys in
        `key_serde`, the serde of the keys it is given)."""
        node = self.name(OperatorKind.PROCESS.value, name)
        timing.check(node, [self._graph.stores[s] for s in stores if s in self._graph.stores])
        for store in stores:
            if timing.on_expire is not None and store in self._expiring:
                raise TopologyError(
                    f"process {node!r}: store {store!r} already has an expiry handler, in "
                    f"{self._expiring[store]!r}; at most one operator may act on a store's "
                    "expired keys"
                )
        timer_store = None
        if timing.on_timer is not None:
            timer_store = self.add_store(
                timer_store_name(node), key_serde, BytesSerde(), kind=StoreKind.TIMERS
            )
        self._graph.add(
            OperatorNode(
                node,
                OperatorKind.PROCESS,
                (parent,),
                function=function,
                stores=(*stores, *([timer_store] if timer_store else [])),
                retry=retry,
                timer_store=timer_store,
                on_timer=timing.on_timer,
                on_expire=timing.on_expire,
                on_tick=timing.on_tick,
                every_ms=timing.every_ms or 0,
                tick_clock=timing.clock,
            )
        )
        if timing.on_expire is not None:
            for store in stores:
                if self._graph.stores[store].ttl_ms > 0:
                    self._expiring[store] = node
        return node

    def add_split(
        self,
        parent: str,
        branches: Mapping[str, Predicate],
        default: str | None,
        *,
        name: str | None,
    ) -> dict[str, str]:
        """A SPLIT node and one BRANCH node per entry of `branches`, and one for `default` (if
        given) taking what no other accepts, named `<split>-<branch>`; returns branch name ->
        node name."""
        predicates: dict[str, Predicate | None] = dict(branches)
        if default is not None:
            if default in branches:
                raise TopologyError(f"split(): default branch {default!r} is also a named branch")
            predicates[default] = None
        if not predicates:
            raise TopologyError("split() needs at least one branch")
        split = self.name(OperatorKind.SPLIT.value, name)
        self._graph.add(
            OperatorNode(
                split, OperatorKind.SPLIT, (parent,), predicates=tuple(predicates.values())
            )
        )
        nodes: dict[str, str] = {}
        for index, branch in enumerate(predicates):
            node = self.name(OperatorKind.BRANCH.value, f"{split}-{branch}")
            self._graph.add(OperatorNode(node, OperatorKind.BRANCH, (split,), branch_index=index))
            nodes[branch] = node
        return nodes

    def add_aggregate(
        self,
        parent: str,
        *,
        label: str,
        name: str | None,
        initializer: Callable[[], Any] | None,
        aggregator: Callable[[Any, Any, Any], Any],
        key_serde: Serde[Any],
        value_serde: Serde[Any],
        ttl_ms: int = 0,
    ) -> tuple[str, str]:
        """An AGGREGATE node, named `name` or `<label>-<n>`, and its store, named `name` or
        `<node>-store` (whose keys expire `ttl_ms` of stream time after their last update, when
        given); returns (node, store)."""
        node = self.name(label, name)
        store = self.add_store(name or f"{node}-store", key_serde, value_serde, ttl_ms=ttl_ms)
        if ttl_ms:
            self._expiring[store] = node  # forwards a tombstone for each expired aggregate
        self._graph.add(
            OperatorNode(
                node,
                OperatorKind.AGGREGATE,
                (parent,),
                function=aggregator,
                stores=(store,),
                initializer=initializer,
            )
        )
        return node, store

    def add_windowed_aggregate(
        self,
        parent: str,
        spec: WindowedAggregateSpec,
        *,
        key_serde: Serde[Any],
        value_serde: Serde[Any],
        input_serde: Serde[Any],
    ) -> tuple[str, str]:
        """A WINDOW_AGGREGATE node and its windowed store, named like `add_aggregate`'s;
        returns (node, store)."""
        node = self.name(spec.label, spec.name)
        kind = StoreKind.SESSION if isinstance(spec.windows, SessionWindows) else StoreKind.WINDOW
        store = self.add_store(
            spec.name or f"{node}-store",
            key_serde,
            value_serde,
            kind=kind,
            retention_ms=spec.retention_ms,
        )
        self._graph.add(
            OperatorNode(
                node,
                OperatorKind.WINDOW_AGGREGATE,
                (parent,),
                function=spec.aggregator,
                stores=(store,),
                initializer=spec.initializer,
                windows=spec.windows,
                emit_final=spec.emit_final,
                retention_ms=spec.retention_ms,
                merger=spec.merger,
                input_serde=input_serde,
            )
        )
        return node, store

    def add_sink(
        self,
        topic: str | Callable[[Any, Any], str],
        parent: str,
        key_serde: Serde[Any],
        value_serde: Serde[Any],
        *,
        name: str | None,
    ) -> str:
        """A sink writing to `topic`, or, when `topic` is a function, to the topic it names for
        each record."""
        node = self.name("sink", name)
        if isinstance(topic, str):
            self._graph.add(SinkNode(node, topic, parent, key_serde, value_serde))
            return node
        if not callable(topic):
            raise TopologyError(f"to() takes a topic name or a function, not {topic!r}")
        if isinstance(key_serde, WindowedSerde):
            # Windowed keys go to their inner key's partition, which needs the topic's
            # partition count before the record is sent.
            raise TopologyError(
                f"to(): a function picking the topic cannot write windowed keys ({node!r}); map "
                "them to plain keys first, or write to a named topic"
            )
        label = f"<{getattr(topic, '__name__', 'function')}(key, value)>"
        self._graph.add(SinkNode(node, label, parent, key_serde, value_serde, topic_of=topic))
        return node

    def add_external_sink(
        self, parent: str, sink: Any, key_serde: Serde[Any], value_serde: Serde[Any], name: str
    ) -> str:
        """`sink` (a `processor.sinks.Sink` named `name`) behind the internal topic
        `<application_id>-<name>-sink`: the sink task reads only that topic, so its progress
        (the offsets it commits) is the sink's alone, whatever runs before it."""
        check_name("sink", name)
        node = OperatorNode(name, OperatorKind.EXTERNAL_SINK, (), external=sink)
        return self._first_of_its_own(parent, node, "sink", key_serde, value_serde)

    def add_async(
        self, parent: str, node: OperatorNode, key_serde: Serde[Any], value_serde: Serde[Any]
    ) -> str:
        """The async operator `node` as the only child of its sub-topology's source (behind
        `<application_id>-<name>-async` when needed): every effect of a record then follows its
        call's result, and the task can commit the completed prefix."""
        check_name("async operator", node.name)
        return self._first_of_its_own(parent, node, "async", key_serde, value_serde)

    def _first_of_its_own(
        self,
        parent: str,
        node: OperatorNode,
        suffix: str,
        key_serde: Serde[Any],
        value_serde: Serde[Any],
    ) -> str:
        """`node` as the only child of a source: `parent` itself when it is a source nothing
        else reads (no hop; `LogicalGraph.add` moves `node` behind a topic once another node
        reads it), else the internal topic `<name>-<suffix>` written from `parent`."""
        name = node.name
        read = self._graph.nodes[parent]
        if isinstance(read, SourceNode) and not self._graph.children_of(parent):
            self._graph.add_direct_sink(replace(node, parents=(parent,)), read)
            return name
        topic = f"{name}-{suffix}"
        self._graph.add(
            SinkNode(f"{name}-to", topic, parent, key_serde, value_serde, internal=True)
        )
        source = f"{name}-from"
        self._graph.add(SourceNode(source, topic, key_serde, value_serde, internal=True))
        self._graph.add(replace(node, parents=(source,)))
        return name

    def add_repartition(
        self,
        parent: str,
        base: str,
        key_serde: Serde[Any],
        value_serde: Serde[Any],
        *,
        grouping: str | None = None,
    ) -> str:
        """Route `parent`'s records through the repartition topic
        `<application_id>-<base>-repartition` (sink `<base>-sink`), so that each key lands in
        the partition its hash picks; returns the node reading them back, `<base>-source`.
        For a `grouping` ("group_by", "group_by_key" or "to_table": what follows keeps a value
        per key), a record with a null key is refused before the topic
        (`SinkNode.null_key_error`)."""
        topic = f"{base}-repartition"
        null_key_error = None if grouping is None else _GROUPING_NULL_KEY[grouping].format(base)
        self._graph.add(
            SinkNode(
                f"{base}-sink",
                topic,
                parent,
                key_serde,
                value_serde,
                internal=True,
                null_key_error=null_key_error,
            )
        )
        source = f"{base}-source"
        self._graph.add(SourceNode(source, topic, key_serde, value_serde, internal=True))
        return source


_GROUPING_NULL_KEY = {
    "group_by": "group_by {0!r}: the key function returned None, and grouped records are "
    "aggregated per key; return a key for every record, or filter out the records that have none "
    "before group_by",
    "group_by_key": "group_by_key {0!r}: the record's key is None (as set by the map, flat_map or "
    "process before it), and grouped records are aggregated per key; give every record a key, or "
    "filter out the records that have none before grouping",
    "to_table": "to_table {0!r}: the record's key is None (as set by the map, flat_map or process "
    "before it), and a table keeps a value per key; give every record a key, or filter out the "
    "records that have none before to_table",
}


def _check_ttl(store: str, ttl_ms: int, ttl_clock: str) -> None:
    if not isinstance(ttl_ms, int) or isinstance(ttl_ms, bool) or ttl_ms < 0:
        raise TopologyError(
            f"store {store!r}: ttl_ms must be an int >= 0 (0: no TTL), not {ttl_ms!r}"
        )
    if ttl_clock not in ("stream", "wall"):
        raise TopologyError(f'store {store!r}: ttl_clock is "stream" or "wall", not {ttl_clock!r}')


@dataclass(frozen=True)
class ProcessTiming:
    """What a `process()` operator does besides records: timers, expiry, ticks."""

    on_timer: Callable[..., Any] | None = None
    on_expire: Callable[..., Any] | None = None
    on_tick: Callable[..., Any] | None = None
    every_ms: int | None = None
    clock: str = "wall"

    def check(self, node: str, stores: Sequence[StoreSpec]) -> None:
        for label, fn in (
            ("on_timer", self.on_timer),
            ("on_expire", self.on_expire),
            ("on_tick", self.on_tick),
        ):
            if fn is not None and not callable(fn):
                raise TopologyError(f"process {node!r}: {label}= must be a function")
        if (self.on_tick is None) != (self.every_ms is None):
            raise TopologyError(
                f"process {node!r}: on_tick= and every_ms= go together (a tick function and how "
                "often it runs)"
            )
        every = self.every_ms
        if every is not None and (
            not isinstance(every, int) or isinstance(every, bool) or every <= 0
        ):
            raise TopologyError(f"process {node!r}: every_ms must be an int > 0, not {every!r}")
        if self.clock not in ("stream", "wall"):
            raise TopologyError(
                f'process {node!r}: clock is "stream" or "wall", not {self.clock!r}'
            )
        if self.on_expire is not None and not any(s.ttl_ms > 0 for s in stores):
            raise TopologyError(
                f"process {node!r}: on_expire= needs a store with a TTL among stores=[...] "
                "(Topology.add_store(name, ttl_ms=...))"
            )
