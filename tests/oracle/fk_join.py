"""Kafka Streams as the oracle for table-table joins by foreign key: the same input through its
TopologyTestDriver (class `oracle.ForeignKeyJoinOracle` of the Maven project in
`kafka-streams/`, whose docstring gives the JSON and the topology) and through ours, many
cases in one JVM.

    case = FkCase("f1", "inner", records=(In("right", "k1", 3), In("left", "a", 6)))
    [theirs] = run_fk_cases([case])
    theirs.outputs == run_ours(case)     # ((input, key, value), ...)

Two tables of string keys and long values; a left value v names the right key
"k" + str(v % 5), or none when v % 5 == 0; the result is "L|R". Outputs are compared as (input
index, key, value or None); timestamps are not (our stores keep none, so a result carries the
timestamp of the update that made it, where Kafka Streams takes the larger of both sides').
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from processor import Topology
from processor.serdes import JsonSerde, StringSerde
from processor.testing import TopologyTestDriver
from tests.oracle.kafka_streams import run_oracle
from tests.oracle.kafka_tables import In, TableResult

MAIN_CLASS = "oracle.ForeignKeyJoinOracle"

Output = tuple[int, str, str | None]


@dataclass(frozen=True)
class FkCase:
    """A foreign-key join case; with `left_filter` (mod, rem), the left table keeps, without a
    store, the values v with v % mod != rem before it joins."""

    id: str
    how: Literal["inner", "left"]
    records: tuple[In, ...]
    store: str | None = None
    left_filter: tuple[int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        flt = self.left_filter
        return {
            "id": self.id,
            "how": self.how,
            "store": self.store,
            "left_filter": None if flt is None else {"mod": flt[0], "rem": flt[1]},
            "records": [vars(r) for r in self.records],
        }


def run_fk_cases(cases: Sequence[FkCase]) -> list[TableResult]:
    """Run every case through Kafka Streams in one JVM; the results in the cases' order."""
    raw = run_oracle(MAIN_CLASS, "the foreign-key join oracle", [c.to_json() for c in cases])
    return [
        TableResult(
            r["id"],
            tuple((o["input"], o["key"], o["value"]) for o in r["outputs"]),
            r["error"],
        )
        for r in raw
    ]


def foreign_key(_key: str, value: int) -> str | None:
    return None if value % 5 == 0 else f"k{value % 5}"


def joiner(left: int, right: int | None) -> str:
    return f"{left}|{'null' if right is None else right}"


def topology_of(case: FkCase) -> Topology:
    """Ours: the topology the oracle builds for `case`, writing strings to "out"."""
    topology = Topology("fk-oracle")
    # JSON values: the result is kept with the left table's value serde.
    s, n = StringSerde(), JsonSerde()
    left = topology.table("left", key_serde=s, value_serde=n)
    if case.left_filter is not None:
        mod, rem = case.left_filter
        left = left.filter(lambda _k, v: v % mod != rem)
    right = topology.table("right", key_serde=s, value_serde=n)
    result = left.join(
        right, joiner, foreign_key=foreign_key, how=case.how, name=case.store or "fk"
    )
    result.to_stream().to("out", key_serde=s, value_serde=n)
    return topology


def run_ours(case: FkCase) -> tuple[Output, ...]:
    driver = TopologyTestDriver(topology_of(case))
    outputs: list[Output] = []
    for index, record in enumerate(case.records):
        driver.pipe(record.topic, record.key, record.value, timestamp=index)
        outputs.extend((index, key, value) for key, value in driver.read("out"))
    return tuple(outputs)
