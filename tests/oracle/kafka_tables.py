"""Kafka Streams as the oracle for table operations and table-table joins: the same input
through its TopologyTestDriver (class `oracle.TableOracle` of the Maven project in
`kafka-streams/`, whose docstring gives the JSON) and through ours, many cases in one JVM.

    case = TableCase("j1", join=Join("left"), records=(In("left", "a", 1), In("right", "a", 2)))
    [theirs] = run_table_cases([case])
    theirs.outputs == run_ours(case)     # ((input, key, value), ...)

A case describes a topology over two tables of string keys and long values, "left" and
"right": ops on each (filter, filter_not, map_values; with `store`, materialized), then a
join of the two, or a group_by of the left one with count, reduce or aggregate (both sum
the values), or nothing (the left table's updates). `run_ours` builds the same topology with
processor's DSL. Outputs are compared as (input index, key, value as a string or None);
timestamps are not (our stores do not keep them, so a join result carries the timestamp of
the update that made it, not the larger of both sides').
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from processor import Table, Topology
from processor.serdes import IntSerde, JsonSerde, StringSerde
from processor.testing import TopologyTestDriver
from tests.oracle.kafka_streams import run_oracle

MAIN_CLASS = "oracle.TableOracle"

Output = tuple[int, str, str | None]
"""(index of the input record after which it came out, key, value or None)."""


@dataclass(frozen=True)
class In:
    """One input record: to table "left" or "right", a key, a long value or None (delete)."""

    topic: Literal["left", "right"]
    key: str
    value: int | None


@dataclass(frozen=True)
class Op:
    """filter / filter_not: keep (drop) the values v with v % mod == rem; map_values:
    v * mul + add. With `store`, the result is materialized in that store."""

    op: Literal["filter", "filter_not", "map_values"]
    mod: int = 2
    rem: int = 0
    mul: int = 1
    add: int = 0
    store: str | None = None


@dataclass(frozen=True)
class Join:
    how: Literal["inner", "left", "outer"]
    store: str | None = None


@dataclass(frozen=True)
class Group:
    """group_by "g" + str(v % mod), then count, reduce or aggregate (sums) into `store`."""

    mod: int
    agg: Literal["count", "reduce", "aggregate"]
    store: str = "grouped"


@dataclass(frozen=True)
class TableCase:
    id: str
    records: tuple[In, ...]
    left_ops: tuple[Op, ...] = ()
    right_ops: tuple[Op, ...] = ()
    join: Join | None = None
    group: Group | None = None

    def to_json(self) -> dict[str, Any]:
        def ops(ops: tuple[Op, ...]) -> list[dict[str, Any]]:
            return [vars(op) for op in ops]

        return {
            "id": self.id,
            "left_ops": ops(self.left_ops),
            "right_ops": ops(self.right_ops),
            "join": None if self.join is None else vars(self.join),
            "group": None if self.group is None else vars(self.group),
            "records": [vars(r) for r in self.records],
        }


@dataclass(frozen=True)
class TableResult:
    id: str
    outputs: tuple[Output, ...]
    error: str | None


def run_table_cases(cases: Sequence[TableCase]) -> list[TableResult]:
    """Run every case through Kafka Streams in one JVM; the results in the cases' order."""
    raw = run_oracle(MAIN_CLASS, "the table oracle", [c.to_json() for c in cases])
    return [
        TableResult(
            r["id"],
            tuple((o["input"], o["key"], o["value"]) for o in r["outputs"]),
            r["error"],
        )
        for r in raw
    ]


def _text(value: Any) -> str:
    """A value as Java's string concatenation shows it."""
    return "null" if value is None else str(value)


def _ops(table: Table[str, int], ops: tuple[Op, ...]) -> Table[str, int]:
    for op in ops:
        if op.op == "map_values":
            mul, add = op.mul, op.add
            table = table.map_values(lambda v, mul=mul, add=add: v * mul + add, name=op.store)
        else:
            mod, rem = op.mod, op.rem
            kept = table.filter if op.op == "filter" else table.filter_not
            table = kept(lambda _k, v, mod=mod, rem=rem: v % mod == rem, name=op.store)
    return table


def topology_of(case: TableCase) -> Topology:
    """Ours: the topology the oracle builds for `case`, writing strings to "out"."""
    topology = Topology("table-oracle")
    # JSON values: a materialized join keeps its strings with the left table's value serde.
    s, n = StringSerde(), JsonSerde()
    left = _ops(topology.table("left", key_serde=s, value_serde=n), case.left_ops)
    result: Table[str, Any]
    if case.join is not None:
        right = _ops(topology.table("right", key_serde=s, value_serde=n), case.right_ops)
        result = left.join(
            right,
            lambda lv, rv: f"{_text(lv)}|{_text(rv)}",
            how=case.join.how,
            name=case.join.store,
        )
    elif case.group is not None:
        mod, store = case.group.mod, case.group.store
        grouped = left.group_by(lambda _k, v: f"g{v % mod}", key_serde=s)
        if case.group.agg == "count":
            result = grouped.count(name=store)
        elif case.group.agg == "reduce":
            result = grouped.reduce(lambda a, v: a + v, lambda a, v: a - v, name=store)
        else:
            result = grouped.aggregate(
                lambda: 0,
                lambda _k, v, a: a + v,
                lambda _k, v, a: a - v,
                value_serde=IntSerde(),
                name=store,
            )
    else:
        result = left
    result.to_stream().map_values(lambda v: None if v is None else str(v)).to(
        "out", key_serde=s, value_serde=s
    )
    return topology


def run_ours(case: TableCase) -> tuple[Output, ...]:
    driver = TopologyTestDriver(topology_of(case))
    outputs: list[Output] = []
    for index, record in enumerate(case.records):
        driver.pipe(record.topic, record.key, record.value, timestamp=index)
        outputs.extend((index, key, value) for key, value in driver.read("out"))
    return tuple(outputs)
