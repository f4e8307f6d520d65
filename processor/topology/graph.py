"""The logical graph a DSL builds: named nodes and the edges between them.

Nothing here runs records; `processor.topology.subtopology` cuts this graph into sub-topologies
and `processor.topology.processors` turns nodes into the objects that process records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from processor.errors import TopologyError
from processor.serdes import Serde
from processor.topology.external_source import ExternalSourceSpec
from processor.topology.global_tables import GlobalJoinSpec, GlobalTableSpec
from processor.topology.handling import ErrorHandler
from processor.topology.retry import Retry


class OperatorKind(Enum):
    """The operators a stream or table offers."""

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
    # Stateful: AGGREGATE folds each record into the key's aggregate in its store and forwards
    # (key, new aggregate); MATERIALIZE puts each record into its store and forwards it; PROCESS
    # calls a user function with a context giving its stores and the record's metadata.
    AGGREGATE = "aggregate"
    MATERIALIZE = "materialize"
    PROCESS = "process"
    TO_STREAM = "to_stream"
    # Aggregates per key and window (`windows`, `emit_final`, `retention_ms`, `merger`).
    WINDOW_AGGREGATE = "window_aggregate"
    # Table operators (`processor.topology.tables`): they pass on each update of a table as
    # its new and old value; `table` holds what they need besides `function`.
    TABLE_FILTER = "table_filter"
    TABLE_FILTER_NOT = "table_filter_not"
    TABLE_MAP_VALUES = "table_map_values"
    TABLE_GROUP_BY = "table_group_by"
    TABLE_AGGREGATE = "table_aggregate"
    TABLE_JOIN = "table_join"
    TABLE_JOIN_MERGE = "table_join_merge"
    # Joins each stream record with the value of its key in the table whose store is `stores[0]`
    # (`processor.topology.stream_table_join`); the left join keeps records the table lacks.
    STREAM_TABLE_JOIN = "stream_table_join"
    STREAM_TABLE_LEFT_JOIN = "stream_table_left_join"
    # One side of a stream-stream join (`join`: `processor.topology.stream_stream_join.JoinSpec`).
    STREAM_JOIN = "stream_join"
    # Looks each record up in a global table (`global_join`; `processor.topology.global_tables`).
    GLOBAL_JOIN = "global_join"
    # The nodes of a table-table join by foreign key (`processor.topology.foreign_join`;
    # `table` is its `ForeignJoinSpec`): the left table's subscriptions, the right side's
    # answers to them and to right-table updates, and the left side's result table.
    FK_SUBSCRIPTION_SEND = "fk_subscription_send"
    FK_SUBSCRIPTION_JOIN = "fk_subscription_join"
    FK_FOREIGN_JOIN = "fk_foreign_join"
    FK_RESPONSE_JOIN = "fk_response_join"
    # Writes each record to a destination outside Kafka (`external`: a `processor.sinks.Sink`),
    # alone in its sub-topology behind an internal topic (`processor.topology.external_sink`).
    EXTERNAL_SINK = "external_sink"
    # Calls an async function per record (`external`: a `processor.topology.async_ops.AsyncSpec`),
    # the only child of its sub-topology's source (behind an internal topic when it is not).
    ASYNC = "async"


class StoreKind(Enum):
    """What a store holds: the latest value per key, or aggregates per key and window (time
    windows and sessions are laid out alike, `processor.state.window_store`)."""

    KEY_VALUE = "key_value"
    WINDOW = "window"
    SESSION = "session"
    # The timers of a process() operator (`processor.state.timer_store`).
    TIMERS = "timers"
    # The records of one side of a stream-stream join, or its unmatched records
    # (`processor.state.join_buffer`); kept for `retention_ms` of stream time.
    JOIN_BUFFER = "join_buffer"


@dataclass(frozen=True)
class StoreSpec:
    """A key-value store: its name (unique in the topology; its changelog topic is
    `<application_id>-<name>-changelog`) and how its keys and values are serialized."""

    name: str
    key_serde: Serde[Any]
    value_serde: Serde[Any]
    kind: StoreKind = StoreKind.KEY_VALUE
    # Windowed stores: how long (in stream time) a window is kept after its last millisecond;
    # its changelog keeps records this long plus a margin (`processor.windows.spec`).
    retention_ms: int = 0
    # Key-value stores: a key not written for this long is removed (0: never), on the stream
    # clock or the wall clock (`processor.state.ttl_store`).
    ttl_ms: int = 0
    ttl_clock: str = "stream"

    @property
    def windowed(self) -> bool:
        return self.kind in (StoreKind.WINDOW, StoreKind.SESSION)

    @property
    def expires(self) -> bool:
        """Whether entries leave the store by stream time (`retention_ms`): its changelog then
        deletes by time too."""
        return self.windowed or self.kind is StoreKind.JOIN_BUFFER

    @property
    def expiry_store(self) -> str | None:
        """The column family of the expiry index of a store with a TTL (never changelogged)."""
        return f"{self.name}~expiry" if self.ttl_ms > 0 else None


def timer_store_name(operator: str) -> str:
    """The store holding the timers of `process()` operator `operator`."""
    return f"{operator}-timers"


# Returns a record's timestamp from its key, value and the timestamp it was written with.
TimestampExtractor = Callable[[Any, Any, int], int]


@dataclass(frozen=True)
class SourceNode:
    name: str
    topic: str
    key_serde: Serde[Any]
    value_serde: Serde[Any]
    # Internal topics (repartition) are named `<application_id>-<topic>` once the application
    # id is known; see `processor.topology.subtopology.build_subtopologies`.
    internal: bool = False
    # Overrides the application's deserialization_error_handler for this source.
    on_deserialization_error: ErrorHandler | None = None
    # The record's event time; None: the timestamp it was written with.
    timestamp: TimestampExtractor | None = None


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
    # AGGREGATE, MATERIALIZE, PROCESS: the stores the operator uses.
    stores: tuple[str, ...] = ()
    # Table nodes the operator looks up without receiving their updates (a stream-table join
    # reads its table): they share its sub-topology, like nodes sharing a store.
    reads: tuple[str, ...] = ()
    # AGGREGATE: makes the first aggregate of a key; None means the first value is it (reduce).
    initializer: Callable[[], Any] | None = None
    # Overrides the application's retry of transient errors raised by `function`.
    retry: Retry | None = None
    # WINDOW_AGGREGATE: the window specification (`processor.windows.spec.Windows`), whether
    # a window is emitted once, when it closes (else at every change), how long closed windows
    # are kept, and for sessions how two aggregates merge.
    windows: Any = None
    emit_final: bool = False
    retention_ms: int = 0
    merger: Callable[[Any, Any, Any], Any] | None = None
    # WINDOW_AGGREGATE over sliding windows: the serde of the values it keeps to fold new windows.
    input_serde: Serde[Any] | None = None
    # PROCESS: what it does besides records (`processor.topology.timers`): `on_timer(ctx, key,
    # at_ms, name)` for its timers, kept in the store `timer_store`; `on_expire(ctx, store, key,
    # value)` for keys of its stores with a TTL; `on_tick(ctx)` every `every_ms` on `tick_clock`.
    timer_store: str | None = None
    on_timer: Callable[..., Any] | None = None
    on_expire: Callable[..., Any] | None = None
    on_tick: Callable[..., Any] | None = None
    every_ms: int = 0
    tick_clock: str = "wall"
    # Table operators: their spec (`processor.topology.tables`), e.g. a join's kind and sides.
    table: Any = None
    # STREAM_JOIN: what the side joins (`processor.topology.stream_stream_join.JoinSpec`).
    join: Any = None
    # GLOBAL_JOIN: the global table's store, how, and the lookup key (`function`: the joiner).
    global_join: GlobalJoinSpec | None = None
    # EXTERNAL_SINK: the `processor.sinks.Sink` it writes to.
    external: Any = None


@dataclass(frozen=True)
class SinkNode:
    name: str
    topic: str
    parent: str
    key_serde: Serde[Any]
    value_serde: Serde[Any]
    internal: bool = False
    null_key_error: str | None = None
    """When set, a record with a null key is refused here, with this explanation, as a
    `NullKeyError` (a grouping's repartition topic: every record it carries is aggregated per
    key, so the record is refused where it was keyed, not after the topic)."""
    topic_of: Callable[[Any, Any], str] | None = None
    """When set, each record goes to the topic `topic_of(key, value)` names (Kafka Streams'
    TopicNameExtractor), and `topic` only labels the sink."""


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
    stores: dict[str, StoreSpec] = field(default_factory=dict)
    # Global tables by store name: no node reads their topics, every worker reads them whole.
    global_tables: dict[str, GlobalTableSpec] = field(default_factory=dict)
    # Sources outside Kafka by name: each feeds a topic some node reads, from a task of its own.
    external_sources: dict[str, ExternalSourceSpec] = field(default_factory=dict)
    # Source node -> the EXTERNAL_SINK or ASYNC operator reading it directly, while it is its
    # only child (`add_direct_sink`).
    direct_sinks: dict[str, str] = field(default_factory=dict)

    def add_external_source(self, spec: ExternalSourceSpec) -> None:
        if spec.name in self.external_sources:
            raise TopologyError(
                f"two sources are named {spec.name!r}; give each topology.source(...) its own name="
            )
        self.external_sources[spec.name] = spec

    def add_store(self, spec: StoreSpec) -> None:
        if spec.name in self.stores or spec.name in self.global_tables:
            raise TopologyError(f"two stores are named {spec.name!r}; store names must be unique")
        self.stores[spec.name] = spec

    def add_global_table(self, spec: GlobalTableSpec) -> None:
        if any(s.topic == spec.topic for s in self.sources()) or any(
            g.topic == spec.topic for g in self.global_tables.values()
        ):
            raise TopologyError(f"topic {spec.topic!r} is already a source of this topology")
        if spec.name in self.stores or spec.name in self.global_tables:
            raise TopologyError(f"two stores are named {spec.name!r}; store names must be unique")
        self.global_tables[spec.name] = spec

    def add_direct_sink(self, sink: OperatorNode, source: SourceNode) -> None:
        """A sink (or an async operator) that reads `source`'s topic itself (its sub-topology is
        that source and the sink), while nothing else reads it; once another node does, the sink
        moves behind an internal topic of its own (`<name>-sink`, `<name>-async`), as sinks
        after other operators are."""
        if self.children_of(source.name):
            raise TopologyError(f"source {source.name!r} has other readers: sink behind a topic")
        self.add(sink)
        self.direct_sinks[source.name] = sink.name

    def _move_sink_behind_topic(self, source_name: str) -> None:
        sink = self.nodes[self.direct_sinks.pop(source_name)]
        source = self.nodes[source_name]
        assert isinstance(sink, OperatorNode) and isinstance(source, SourceNode)
        topic = f"{sink.name}-{'async' if sink.kind is OperatorKind.ASYNC else 'sink'}"
        to = SinkNode(
            f"{sink.name}-to", topic, source_name, source.key_serde, source.value_serde, True
        )
        back = SourceNode(
            f"{sink.name}-from", topic, source.key_serde, source.value_serde, internal=True
        )
        for added in (to.name, back.name):
            if added in self.nodes:
                raise TopologyError(f"two nodes are named {added!r}; node names must be unique")
        reordered: dict[str, Node] = {}
        for name, existing in self.nodes.items():
            if name == sink.name:  # where the sink was declared: numbering stays stable
                reordered[to.name], reordered[back.name] = to, back
                existing = replace(sink, parents=(back.name,))
            reordered[name] = existing
        self.nodes = reordered

    def add(self, node: Node) -> None:
        for parent in parents_of(node):
            if parent in self.direct_sinks:
                self._move_sink_behind_topic(parent)
        if node.name in self.nodes:
            raise TopologyError(f"two nodes are named {node.name!r}; node names must be unique")
        for parent in parents_of(node):
            if parent not in self.nodes:
                raise TopologyError(f"node {node.name!r} reads from unknown node {parent!r}")
        if isinstance(node, OperatorNode):
            for store in node.stores:
                if store not in self.stores:
                    raise TopologyError(
                        f"node {node.name!r} uses store {store!r}, which is not declared; "
                        "declare it with Topology.add_store()"
                    )
        self.nodes[node.name] = node

    def children_of(self, name: str) -> list[str]:
        return [n.name for n in self.nodes.values() if name in parents_of(n)]

    def sources(self) -> list[SourceNode]:
        return [n for n in self.nodes.values() if isinstance(n, SourceNode)]
