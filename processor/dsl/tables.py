"""Table operations: `Table.filter`, `filter_not`, `map_values`, `group_by` (with
`GroupedTable`'s count, reduce and aggregate) and the table-table join by key.

They follow Kafka Streams' KTable operators (`processor.topology.tables` runs them): each
update of a table flows on as its new and old row, so that a filter turns a row it now
rejects into a tombstone, a re-grouping subtracts a row from its old group and adds it to its
new one, and a join forwards the change of its result.

A table operator given `name=` keeps its result in a store of that name (queryable like any
table's, with a changelog); without a name it has no store, and whoever reads its rows (a
join, a lookup) computes them from its parent's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from processor.errors import TopologyError
from processor.serdes import IntSerde, Serde
from processor.topology.change import ChangeSerde
from processor.topology.graph import OperatorKind, OperatorNode
from processor.topology.tables import GroupBySpec, JoinSideSpec, JoinSpec, TableAggregateSpec

if TYPE_CHECKING:
    from processor.dsl.stream import Stream, Table

K = TypeVar("K")  # the type of a group's keys
V = TypeVar("V")  # the type of its values
A = TypeVar("A")  # the type of an aggregate


def _add(
    table: Table[Any, Any],
    kind: OperatorKind,
    parents: tuple[str, ...],
    node: str,
    name: str | None,
    function: Callable[..., Any],
    *,
    value_serde: Serde[Any] | None = None,
    spec: Any = None,
) -> Table[Any, Any]:
    """Table operator `node` reading `parents`; with `name`, its result is kept in the store
    `name`."""
    from processor.dsl.stream import Table

    builder = table._builder
    serde = value_serde or table.value_serde
    store = builder.add_store(name, table.key_serde, serde) if name is not None else None
    builder.graph.add(
        OperatorNode(
            node, kind, parents, function=function, stores=(store,) if store else (), table=spec
        )
    )
    result: Table[Any, Any] = Table(builder, node, table.key_serde, serde, store)
    result.windowed = table.windowed
    return result


def _check_function(what: str, function: Any) -> None:
    if not callable(function):
        raise TopologyError(f"{what} must be a function, not {type(function).__name__}")


def refuse_windowed(table: Table[Any, Any], operation: str, *, named: bool = True) -> None:
    """A windowed aggregation's table takes `filter`, `filter_not` and `map_values` without a
    store of their own (`named` False): its store is a window store, which a join cannot look up
    by key, and a key-value store of its windows would never drop one."""
    if table.windowed and named:
        raise TopologyError(
            f"{operation}: {table.node_name!r} is a windowed table, which supports to_stream(), "
            "filter, filter_not and map_values (without name=) for now (Kafka Streams' windowed "
            "KTable has the other table operators too); work on the stream of its updates "
            "instead, e.g. .to_stream().map(...), whose keys are Windowed(key, start_ms, end_ms)"
        )


def stream_to_table(
    stream: Stream[Any, Any],
    name: str | None,
    key_serde: Serde[Any] | None,
    value_serde: Serde[Any] | None,
) -> Table[Any, Any]:
    """`Stream.to_table`: the records kept per key as `Topology.table` keeps a topic's (a
    MATERIALIZE node and its store), behind a repartition topic when an operator may have
    changed the keys, which refuses a null key before it (a table has none)."""
    from processor.dsl.stream import Table

    builder = stream._builder
    node = builder.name("to_table", name)
    parent = stream.node_name
    key, value = key_serde or stream.key_serde, value_serde or stream.value_serde
    if stream.key_changed:
        parent = builder.add_repartition(parent, node, key, value, grouping="to_table")
    store = builder.add_store(name or f"{node}-store", key, value)
    builder.graph.add(OperatorNode(node, OperatorKind.MATERIALIZE, (parent,), stores=(store,)))
    return Table(builder, node, key, value, store)


def filter_table(
    table: Table[Any, Any], predicate: Callable[[Any, Any], bool], keep: bool, name: str | None
) -> Table[Any, Any]:
    """`Table.filter` (keep: the rows `predicate(key, value)` accepts) and `filter_not`."""
    refuse_windowed(table, f"{'filter' if keep else 'filter_not'}(name=)", named=name is not None)
    _check_function("Table.filter(predicate)", predicate)
    kind = OperatorKind.TABLE_FILTER if keep else OperatorKind.TABLE_FILTER_NOT
    node = table._builder.name(kind.value, name)
    return _add(table, kind, (table.node_name,), node, name, predicate)


def map_values_table(
    table: Table[Any, Any],
    mapper: Callable[[Any], Any],
    name: str | None,
    value_serde: Serde[Any] | None,
) -> Table[Any, Any]:
    """`Table.map_values`: each row's value replaced by `mapper(value)`."""
    refuse_windowed(table, "map_values(name=)", named=name is not None)
    _check_function("Table.map_values(mapper)", mapper)
    kind = OperatorKind.TABLE_MAP_VALUES
    node = table._builder.name(kind.value, name)
    return _add(table, kind, (table.node_name,), node, name, mapper, value_serde=value_serde)


def group_table(
    table: Table[Any, Any],
    key_fn: Callable[[Any, Any], Any],
    *,
    key_serde: Serde[Any] | None,
    value_serde: Serde[Any] | None,
    value_fn: Callable[[Any, Any], Any] | None,
    name: str | None,
) -> GroupedTable[Any, Any]:
    """`Table.group_by`: rows re-keyed by `key_fn(key, value)` (and `value_fn(key, value)`)
    through the repartition topic `<application_id>-<name>-repartition`, whose records carry
    both sides of each update (`processor.topology.change`)."""
    refuse_windowed(table, "group_by")
    _check_function("Table.group_by(key_fn)", key_fn)
    if value_fn is not None:
        _check_function("Table.group_by(value_fn=)", value_fn)
    builder = table._builder
    base = builder.name("table_group_by", name)
    keyed = f"{base}-key"
    builder.graph.add(
        OperatorNode(
            keyed,
            OperatorKind.TABLE_GROUP_BY,
            (table.node_name,),
            function=key_fn,
            table=GroupBySpec(value_fn),
        )
    )
    key = key_serde or table.key_serde
    value = value_serde or table.value_serde
    source = builder.add_repartition(keyed, base, key, ChangeSerde(value))
    return GroupedTable(table, source, key, value)


class GroupedTable(Generic[K, V]):
    """A table's rows grouped by a new key (`Table.group_by`). Its aggregations add each new
    row to its group and subtract each old row from its group, so that a row whose group
    changes moves from one aggregate to the other, and a deleted row leaves its group."""

    def __init__(
        self, table: Table[Any, Any], node: str, key_serde: Serde[Any], value_serde: Serde[Any]
    ) -> None:
        self._table = table
        self._node = node
        self.key_serde = key_serde
        self.value_serde = value_serde

    def count(self, *, name: str | None = None) -> Table[K, int]:
        """The number of rows per group (a group that empties keeps its count, 0)."""
        return self._aggregate(
            "count",
            name,
            lambda: 0,
            lambda _k, _v, n: n + 1,
            lambda _k, _v, n: n - 1,
            IntSerde(),
        )

    def reduce(
        self,
        adder: Callable[[V, V], V],
        subtractor: Callable[[V, V], V],
        *,
        name: str | None = None,
    ) -> Table[K, V]:
        """Per group, the first row's value, then `adder(aggregate, value)` for each row that
        joins the group and `subtractor(aggregate, value)` for each that leaves it."""
        _check_function("GroupedTable.reduce(adder)", adder)
        _check_function("GroupedTable.reduce(subtractor)", subtractor)
        return self._aggregate(
            "reduce",
            name,
            None,
            lambda _k, value, agg: adder(agg, value),
            lambda _k, value, agg: subtractor(agg, value),
            self.value_serde,
        )

    def aggregate(
        self,
        initializer: Callable[[], A],
        adder: Callable[[K, V, A], A],
        subtractor: Callable[[K, V, A], A],
        *,
        value_serde: Serde[A],
        name: str | None = None,
    ) -> Table[K, A]:
        """Per group, `adder(key, value, aggregate)` for each row that joins it (starting
        from `initializer()`) and `subtractor(key, value, aggregate)` for each that leaves
        it; the aggregate is stored with `value_serde`."""
        for what, fn in (
            ("initializer", initializer),
            ("adder", adder),
            ("subtractor", subtractor),
        ):
            _check_function(f"GroupedTable.aggregate({what})", fn)
        return self._aggregate("aggregate", name, initializer, adder, subtractor, value_serde)

    def _aggregate(
        self,
        label: str,
        name: str | None,
        initializer: Callable[[], Any] | None,
        adder: Callable[[Any, Any, Any], Any],
        subtractor: Callable[[Any, Any, Any], Any],
        value_serde: Serde[Any],
    ) -> Table[Any, Any]:
        from processor.dsl.stream import Table

        builder = self._table._builder
        node = builder.name(label, name)
        store = builder.add_store(name or f"{node}-store", self.key_serde, value_serde)
        builder.graph.add(
            OperatorNode(
                node,
                OperatorKind.TABLE_AGGREGATE,
                (self._node,),
                function=adder,
                stores=(store,),
                initializer=initializer,
                table=TableAggregateSpec(subtractor),
            )
        )
        return Table(builder, node, self.key_serde, value_serde, store)


def table_table_join(
    left: Table[Any, Any],
    right: Table[Any, Any],
    joiner: Callable[[Any, Any], Any],
    *,
    how: str,
    name: str | None,
) -> Table[Any, Any]:
    """`Table.join` by key: a table whose row for a key is `joiner(left_row, right_row)`
    ("inner": both rows there; "left": the left row there, the right one or None; "outer":
    either there, the other or None), updated whenever either side changes, by Kafka Streams'
    KTable-KTable join rules. With `name`, kept in the store `name`. Its values are stored
    and written with the left table's value serde."""
    if right._builder is not left._builder:
        raise TopologyError("Table.join(): both tables must belong to the same Topology")
    if left.node_name == right.node_name:
        raise TopologyError("Table.join(): a table cannot be joined with itself by key")
    _check_function("Table.join(joiner)", joiner)
    builder = left._builder
    base = builder.name("table_join", name)
    sides = []
    for side, table, other in (("left", left, right), ("right", right, left)):
        node = f"{base}-{side}"
        builder.graph.add(
            OperatorNode(
                node,
                OperatorKind.TABLE_JOIN,
                (table.node_name,),
                function=joiner,
                table=JoinSideSpec(how, side, other.node_name),  # type: ignore[arg-type]
            )
        )
        sides.append(node)
    spec = JoinSpec(how, left.node_name, right.node_name)  # type: ignore[arg-type]
    return _add(left, OperatorKind.TABLE_JOIN_MERGE, tuple(sides), base, name, joiner, spec=spec)
