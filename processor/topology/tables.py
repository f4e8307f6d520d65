"""Table operators, how table updates flow between them, and value getters.

A table node (a table's source, MATERIALIZE; an aggregation, AGGREGATE; and the table
operators here) tells the table operators below it about each update as a
`Change(new, old)` (`processor.topology.change`), as Kafka Streams' KTable processors do:

    table source ──Change──> table filter ──Change──> table join (left side) ──Change──┐
          │                        │                                                 v
          │                        └──new value──> to_stream ──> ...           join merge ──> ...
          └──Change──> table group_by ──(new key, Change)──> repartition topic ──> table aggregate

A stream operator below a table node (`to_stream`, anything not a table operator) gets the new
value alone (`NewValues`). A table source or stream aggregation with no table operator below
it forwards plain values, as it always has: nothing changes on its path.

**Old values on demand.** The old value costs a table source a store read before its write,
so a table node fills `Change.old` only when an operator below needs it (Kafka Streams'
`enableSendingOldValues`): a table filter (to forward nothing when a row was and stays
filtered out), group_by (to subtract the old value), a left or outer join (to know whether a
result existed), and any node whose own old value is needed below and that computes it from
its parent's. `TablePlan.sends_old` says which nodes do, decided once per sub-topology.

**Value getters.** `TablePlan.lookup(node)` gives, for any table node of the task, a function
`lookup(key) -> value or None`: the row of that table now. A node with a store reads it; a
filter or map_values without one computes its value from its parent's lookup; a join without
one joins its two sides' lookups. Build lookups when the task's processors are built
(`instantiate`), e.g. for a stream-table join reading table node `table_node`:

    lookup = tables.lookup(table_node)    # once, in `_make`
    ...
    row = lookup(key)                     # per record, instead of store.get(key)

User functions a lookup calls (a filter's predicate, a join's joiner) raise to its caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from processor.errors import ChangelogRecordTooLargeError, StoredValueError, TopologyError
from processor.topology.change import Change
from processor.topology.graph import OperatorKind, OperatorNode, parents_of
from processor.topology.operator import Operator, Processor
from processor.topology.record import NullKeyError, RecordContext
from processor.topology.retry import Retry
from processor.topology.stateful import AggregateProcessor, MaterializeProcessor
from processor.topology.subtopology import SubTopology
from processor.topology.windowed import WindowedAggregate

Lookup = Callable[[Any], Any]
"""`lookup(key) -> value or None`: a table's current row for `key`."""

K = OperatorKind
# Operators that take a `Change` as each record's value.
CHANGE_INPUTS = frozenset(
    {
        K.TABLE_FILTER,
        K.TABLE_FILTER_NOT,
        K.TABLE_MAP_VALUES,
        K.TABLE_GROUP_BY,
        K.TABLE_JOIN,
        K.TABLE_JOIN_MERGE,
    }
)
# Table operators built here (`make_table_processor`).
TABLE_OPERATORS = CHANGE_INPUTS | {K.TABLE_AGGREGATE}
# The foreign-key join (`processor.topology.foreign_join`): the nodes below its two tables
# take changes; its result is a table node.
CHANGE_INPUTS = CHANGE_INPUTS | {K.FK_SUBSCRIPTION_SEND, K.FK_FOREIGN_JOIN}
# Nodes whose records are changes of a table when they emit changes at all.
_TABLES = frozenset(TABLE_OPERATORS - {K.TABLE_GROUP_BY, K.TABLE_JOIN}) | {K.FK_RESPONSE_JOIN}
# Plain values unless a table operator reads them.
_SWITCHABLE = frozenset({K.MATERIALIZE, K.AGGREGATE, K.WINDOW_AGGREGATE})


@dataclass(frozen=True)
class GroupBySpec:
    """TABLE_GROUP_BY: `function(key, value)` is the new key; `value_fn(key, value)` the
    grouped value (None: the value)."""

    value_fn: Callable[[Any, Any], Any] | None = None


@dataclass(frozen=True)
class TableAggregateSpec:
    """TABLE_AGGREGATE: `function(key, value, aggregate)` adds, `subtractor` takes away; no
    `initializer` (reduce): a group's first value is its aggregate."""

    subtractor: Callable[[Any, Any, Any], Any]


How = Literal["inner", "left", "outer"]


@dataclass(frozen=True)
class JoinSideSpec:
    """TABLE_JOIN: one side of a table-table join; `other` is the other side's table node.
    `function` is the user's `joiner(left_value, right_value)`."""

    how: How
    side: Literal["left", "right"]
    other: str


@dataclass(frozen=True)
class JoinSpec:
    """TABLE_JOIN_MERGE: the join's result table, of table nodes `left` and `right`."""

    how: How
    left: str
    right: str


class TablePlan:
    """What the table nodes of one task's sub-topology do: which emit changes, which fill in
    old values, and each table node's lookup. Built once per task, from the sub-topology and
    the task's stores; `connect` finishes the wiring `instantiate` did."""

    def __init__(self, subtopology: SubTopology, stores: Mapping[str, Any]) -> None:
        self._nodes = {n.name: n for n in subtopology.nodes if isinstance(n, OperatorNode)}
        self._children: dict[str, list[OperatorNode]] = {}
        for node in subtopology.nodes:
            for parent in parents_of(node):
                if isinstance(node, OperatorNode):
                    self._children.setdefault(parent, []).append(node)
        self._stores = stores
        self._lookups: dict[str, Lookup] = {}
        self._demanded: dict[str, bool] = {}
        for node in reversed(subtopology.nodes):  # children were declared after parents
            self._demanded[node.name] = any(
                self._requests_old(child) for child in self._children.get(node.name, ())
            )

    def _requests_old(self, child: OperatorNode) -> bool:
        """Whether `child` needs its parent's old values."""
        kind, own_store = child.kind, bool(child.stores)
        if kind in (K.TABLE_FILTER, K.TABLE_FILTER_NOT):
            return not own_store  # a stored filter reads its own old value
        if kind is K.TABLE_MAP_VALUES:
            return not own_store and self._demanded[child.name]
        if kind in (K.TABLE_GROUP_BY, K.FK_SUBSCRIPTION_SEND):
            return True  # the old row's group, the old row's foreign key
        if kind is K.TABLE_JOIN:
            spec: JoinSideSpec = child.table
            needs = spec.how == "outer" or (spec.how == "left" and spec.side == "left")
            return needs or self._demanded[child.name]
        if kind is K.TABLE_JOIN_MERGE:
            return self._demanded[child.name]
        return False

    def sends_old(self, node: str) -> bool:
        """Whether table node `node` fills in `Change.old` (an operator below needs it)."""
        return self._demanded.get(node, False)

    def emits_changes(self, node: str) -> bool:
        """Whether `node` forwards `Change`s: table operators always, a table source or a
        stream aggregation when a table operator reads it."""
        op = self._nodes.get(node)
        if op is None:
            return False
        if op.kind in _SWITCHABLE:
            return any(c.kind in CHANGE_INPUTS for c in self._children.get(node, ()))
        return op.kind in _TABLES

    def connect(self, built: Mapping[str, Processor]) -> None:
        """Switch table sources and aggregations read by table operators to changes, and give
        the stream operators below any table node its new values alone."""
        for name in self._nodes:
            if not self.emits_changes(name):
                continue
            processor = built[name]
            if isinstance(processor, MaterializeProcessor | AggregateProcessor | WindowedAggregate):
                processor.emits_changes = True
                processor.sends_old = self.sends_old(name)
            processor.children = [
                child
                if child.name in self._nodes and self._nodes[child.name].kind in CHANGE_INPUTS
                else NewValues(child)
                for child in processor.children
            ]

    def lookup(self, node: str) -> Lookup:
        """`lookup(key) -> value or None` for table node `node` of this sub-topology."""
        found = self._lookups.get(node)
        if found is None:
            found = self._lookups[node] = self._build_lookup(node)
        return found

    def _build_lookup(self, name: str) -> Lookup:
        node = self._nodes.get(name)
        if node is None or not (node.kind in _TABLES or node.kind in _SWITCHABLE):
            raise TopologyError(
                f"{name!r} is not a table of this sub-topology: look up a table's node "
                "(Table.node_name) in the sub-topology that reads it"
            )
        if node.stores:
            return self._stores[node.stores[0]].get  # type: ignore[no-any-return]
        fn = node.function
        assert fn is not None, f"table operator {name} has no function"
        if node.kind is K.TABLE_JOIN_MERGE:
            spec: JoinSpec = node.table
            return _join_lookup(spec.how, fn, self.lookup(spec.left), self.lookup(spec.right))
        parent = self.lookup(node.parents[0])
        if node.kind is K.TABLE_MAP_VALUES:
            return lambda key: None if (v := parent(key)) is None else fn(v)
        keep = node.kind is K.TABLE_FILTER
        return lambda key: (
            v if (v := parent(key)) is not None and bool(fn(key, v)) is keep else None
        )


def _join_lookup(
    how: How, joiner: Callable[[Any, Any], Any], left: Lookup, right: Lookup
) -> Lookup:
    def inner(key: Any) -> Any:
        if (lv := left(key)) is None or (rv := right(key)) is None:
            return None
        return joiner(lv, rv)

    def left_join(key: Any) -> Any:
        return None if (lv := left(key)) is None else joiner(lv, right(key))

    def outer(key: Any) -> Any:
        lv, rv = left(key), right(key)
        return None if lv is None and rv is None else joiner(lv, rv)

    return {"inner": inner, "left": left_join, "outer": outer}[how]


class NewValues(Processor):
    """Hands a stream operator below a table node the new value of each change."""

    __slots__ = ("child",)

    def __init__(self, child: Processor) -> None:
        super().__init__(f"{child.name}<new-values>")
        self.child = child

    def process(self, key: Any, value: Any) -> bool:
        return self.child.process(key, value.new)


class _TableOperator(Operator):
    """A table operator with an optional store of its own (a materialized result)."""

    __slots__ = ("function", "sends_old", "store")

    # A store update too large for its changelog: the production error handler's.
    not_mine = (ChangelogRecordTooLargeError,)

    def __init__(
        self,
        node: OperatorNode,
        context: RecordContext,
        retry: Retry | None,
        store: Any,
        sends_old: bool,
    ) -> None:
        super().__init__(node.name, context, retry)
        assert node.function is not None, f"table operator {node.name} has no function"
        self.function = node.function
        self.store = store
        self.sends_old = sends_old

    def _call(self, *args: Any) -> Any:
        try:
            return self.function(*args)
        except Exception as e:
            return self.recover(e, self.function, *args)

    def _stored(self, key: Any) -> Any:
        try:
            return self.store.get(key)
        except StoredValueError as e:
            self.failed(e)

    def _store(self, key: Any, value: Any) -> None:
        try:
            self.store.put(key, value)
        except Exception as e:
            self.failed(e)


class TableFilter(_TableOperator):
    """Kafka Streams' KTableFilter: a row the predicate rejects is no row (None); an update
    whose old and new rows are both none forwards nothing."""

    __slots__ = ("keep_when",)

    def __init__(self, *args: Any, keep_when: bool) -> None:
        super().__init__(*args)
        self.keep_when = keep_when

    def process(self, key: Any, value: Any) -> bool:
        new = self._kept(key, value.new)
        old = self._kept(key, value.old) if self.store is None else self._stored(key)
        if new is None and old is None:
            return False
        if self.store is not None:
            self._store(key, new)
            self.forward(key, Change(new, old))
            return True
        return self.forward(key, Change(new, old))

    def _kept(self, key: Any, value: Any) -> Any:
        if value is None:
            return None
        return value if bool(self._call(key, value)) is self.keep_when else None


class TableMapValues(_TableOperator):
    """Kafka Streams' KTableMapValues: `function(value)` of each row; no row stays none."""

    __slots__ = ()

    def process(self, key: Any, value: Any) -> bool:
        new = None if value.new is None else self._call(value.new)
        if self.store is not None:
            old = self._stored(key) if self.sends_old else None
            self._store(key, new)
            self.forward(key, Change(new, old))
            return True
        old = None
        if self.sends_old and value.old is not None:
            old = self._call(value.old)
        return self.forward(key, Change(new, old))


class TableGroupBy(_TableOperator):
    """Kafka Streams' KTableRepartitionMap (with KIP-904): sends each update to the group of
    its new row and the group of its old row; one record carrying both when that is the same
    group. A row whose group key or grouped value is None is in no group."""

    __slots__ = ("value_fn",)

    def __init__(self, *args: Any, value_fn: Callable[[Any, Any], Any] | None) -> None:
        super().__init__(*args)
        self.value_fn = value_fn

    def process(self, key: Any, value: Any) -> bool:
        if key is None:
            raise NullKeyError(self.name)
        new = None if value.new is None else self._grouped(key, value.new)
        old = None if value.old is None else self._grouped(key, value.old)
        if new is not None and old is not None and new[0] == old[0]:
            return self.forward(new[0], Change(new[1], old[1]))
        reached = False
        if old is not None:
            reached = self.forward(old[0], Change(None, old[1]))
        if new is not None:
            reached = self.forward(new[0], Change(new[1], None)) or reached
        return reached

    def _grouped(self, key: Any, value: Any) -> tuple[Any, Any] | None:
        group = self._call(key, value)
        value_fn = self.value_fn
        if value_fn is not None:
            try:
                value = value_fn(key, value)
            except Exception as e:
                value = self.recover(e, value_fn, key, value)
        return None if group is None or value is None else (group, value)


class TableAggregate(_TableOperator):
    """Kafka Streams' KTableAggregate and KTableReduce: subtract the old value from the
    group's aggregate, then add the new one, and forward the aggregate once."""

    __slots__ = ("initializer", "subtractor")

    def __init__(self, *args: Any, initializer: Callable[[], Any] | None, spec: Any) -> None:
        super().__init__(*args)
        self.initializer = initializer
        self.subtractor = spec.subtractor

    def process(self, key: Any, value: Any) -> bool:
        if key is None:
            raise NullKeyError(self.name)
        old_aggregate = self._stored(key)
        aggregate = old_aggregate
        if value.old is not None and old_aggregate is not None:
            try:
                aggregate = self.subtractor(key, value.old, old_aggregate)
            except Exception as e:
                aggregate = self.recover(e, self.subtractor, key, value.old, old_aggregate)
        if value.new is not None:
            if aggregate is not None:
                aggregate = self._call(key, value.new, aggregate)
            elif self.initializer is None:
                aggregate = value.new
            else:
                try:
                    initial = self.initializer()
                except Exception as e:
                    self.failed(e)
                aggregate = self._call(key, value.new, initial)
        self._store(key, aggregate)
        self.forward(key, Change(aggregate, old_aggregate))
        return True


class TableJoinSide(_TableOperator):
    """One side of a table-table join: each update of this side looks up the other side's row
    and forwards the change of the join result, by Kafka Streams' KTableKTableInnerJoin,
    LeftJoin, RightJoin (the right side of a left join) and OuterJoin rules."""

    __slots__ = ("left_side", "other", "rule")

    def __init__(self, *args: Any, spec: JoinSideSpec, other: Lookup) -> None:
        super().__init__(*args)
        self.other = other
        self.left_side = spec.side == "left"
        self.rule = "right" if spec.how == "left" and not self.left_side else spec.how

    def _joined(self, mine: Any, other: Any) -> Any:
        return self._call(mine, other) if self.left_side else self._call(other, mine)

    def process(self, key: Any, value: Any) -> bool:
        if key is None:
            return False
        try:
            other = self.other(key)
        except Exception as e:
            other = self.recover(e, self.other, key)
        rule, new, old = self.rule, value.new, value.old
        if other is None and (rule in ("inner", "right") or (new is None and old is None)):
            return False
        joined_new = joined_old = None
        if rule == "right":  # the left row is there: the result follows the right row
            joined_new = self._joined(new, other)
            if self.sends_old:
                joined_old = self._joined(old, other)
        else:
            if new is not None or (rule == "outer" and other is not None):
                joined_new = self._joined(new, other)
            if self.sends_old and (old is not None or (rule == "outer" and other is not None)):
                joined_old = self._joined(old, other)
        return self.forward(key, Change(joined_new, joined_old))


class TableJoinMerge(_TableOperator):
    """The result table of a table-table join: both sides' changes, kept in its store when
    it has one."""

    __slots__ = ()

    def process(self, key: Any, value: Any) -> bool:
        if self.store is None:
            return self.forward(key, value)
        self._store(key, value.new)
        self.forward(key, value)
        return True


def make_table_processor(
    node: OperatorNode,
    context: RecordContext,
    stores: Mapping[str, Any],
    retry: Retry | None,
    plan: TablePlan,
) -> Processor:
    """The processor of table operator `node` (a kind in `TABLE_OPERATORS`)."""
    store = stores[node.stores[0]] if node.stores else None
    args = (node, context, retry, store, plan.sends_old(node.name))
    kind = node.kind
    if kind in (K.TABLE_FILTER, K.TABLE_FILTER_NOT):
        return TableFilter(*args, keep_when=kind is K.TABLE_FILTER)
    if kind is K.TABLE_MAP_VALUES:
        return TableMapValues(*args)
    if kind is K.TABLE_GROUP_BY:
        return TableGroupBy(*args, value_fn=node.table.value_fn)
    if kind is K.TABLE_AGGREGATE:
        return TableAggregate(*args, initializer=node.initializer, spec=node.table)
    if kind is K.TABLE_JOIN:
        spec: JoinSideSpec = node.table
        return TableJoinSide(*args, spec=spec, other=plan.lookup(spec.other))
    if kind is K.TABLE_JOIN_MERGE:
        return TableJoinMerge(*args)
    raise AssertionError(f"{node.name}: {kind} is not a table operator")
