"""Stream-table joins give what Kafka Streams gives: its published semantics table for the
KStream-KTable join, row by row, and seeded random inputs (several keys, null keys and values,
tombstones, timestamps out of order, with and without a repartition before the join), through
our TopologyTestDriver and through Kafka Streams' own (`tests/oracle/stream_table_join.py`, one
JVM for every case). Every output must be equal: (input index, key, value, timestamp), in order.

Both drivers process each piped record at once, so the order of the records is the order they
are piped in (timestamp synchronisation decides that order in a worker, see README).

A table record with a null key: Kafka Streams drops it with a warning; ours hands it to the
deserialization error handler, here `skip`, which drops it too.

The seed is printed on failure; set STREAM_TABLE_ORACLE_SEED to replay one.
"""

from __future__ import annotations

import os
import random

import pytest

from processor import Topology
from processor.serdes import StringSerde
from processor.testing import TopologyTestDriver
from processor.topology.handling import ErrorHandler
from tests.oracle.stream_table_join import Case, Joined, Piped, Result, joiner, run_cases

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("STREAM_TABLE_ORACLE_SEED", "17017"))
GENERATED_CASES = 120
STR = StringSerde()

# Kafka Streams' documentation, "KStream-KTable Join": one key, the stream and the table
# updated in turn. Each row: (timestamp, stream value, table value, inner result, left result);
# "-" for no record, None for a null value (a tombstone in the table).
SEMANTICS: tuple[tuple[int, str | None, str | None, str | None, str | None], ...] = (
    (1, None, "-", None, None),
    (2, "-", None, None, None),
    (3, "A", "-", None, "A+null"),
    (4, "-", "a", None, None),
    (5, "B", "-", "B+a", "B+a"),
    (6, "-", "b", None, None),
    (7, None, "-", None, None),
    (8, "-", None, None, None),
    (9, "C", "-", None, "C+null"),
    (10, "-", "c", None, None),
    (11, "-", None, None, None),
    (12, None, "-", None, None),
    (13, "-", "d", None, None),
    (14, "D", "-", "D+d", "D+d"),
    (15, "-", "-", None, None),
)


def ours(case: Case) -> tuple[Joined, ...]:
    topology = Topology("join")
    stream = topology.stream("stream", key_serde=STR, value_serde=STR)
    table = topology.table("table", key_serde=STR, value_serde=STR)
    if case.rekey:
        stream = stream.map(lambda key, value: (key, value))
    stream.join(table, joiner, how=case.how).to("out")
    driver = TopologyTestDriver(topology, deserialization_error_handler=ErrorHandler.SKIP)
    outputs: list[Joined] = []
    for index, record in enumerate(case.records):
        driver.pipe(record.topic, record.key, record.value, timestamp=record.ts)
        for out in driver.read_records("out"):
            key = STR.deserialize(out.key)
            outputs.append(Joined(index, key, STR.deserialize(out.value), out.timestamp))
    return tuple(outputs)


def semantics_case(how: str) -> Case:
    records = []
    for ts, stream_value, table_value, _, _ in SEMANTICS:
        if stream_value != "-":
            records.append(Piped("stream", "k", stream_value, ts))
        if table_value != "-":
            records.append(Piped("table", "k", table_value, ts))
    return Case(f"semantics-{how}", how, tuple(records))  # type: ignore[arg-type]


def published(how: str) -> list[tuple[str, int]]:
    column = 3 if how == "inner" else 4
    return [(row[column], row[0]) for row in SEMANTICS if row[column] is not None]  # type: ignore[misc]


def generated(rng: random.Random, index: int) -> Case:
    keys = ["a", "b", "c"]
    records = []
    for _ in range(rng.randint(1, 40)):
        topic = rng.choice(["stream", "stream", "table"])
        key: str | None = rng.choice(keys) if rng.random() > 0.08 else None
        value: str | None = f"{topic[0]}{rng.randint(0, 99)}" if rng.random() > 0.15 else None
        records.append(Piped(topic, key, value, rng.randint(0, 50)))  # type: ignore[arg-type]
    how = "inner" if index % 2 == 0 else "left"
    return Case(f"gen-{index}", how, tuple(records), rekey=index % 4 >= 2)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def oracle_results() -> dict[str, Result]:
    rng = random.Random(SEED)
    cases = [semantics_case("inner"), semantics_case("left")]
    cases += [generated(rng, i) for i in range(GENERATED_CASES)]
    return {r.id: r for r in run_cases(cases)} | {"_cases": cases}  # type: ignore[dict-item]


@pytest.mark.parametrize("how", ["inner", "left"])
def test_the_published_semantics_table_row_by_row(
    how: str, oracle_results: dict[str, Result]
) -> None:
    case = semantics_case(how)
    mine = ours(case)
    assert [(o.value, o.ts) for o in mine] == published(how)
    theirs = oracle_results[case.id]
    assert theirs.error is None
    assert mine == theirs.outputs


def test_seeded_random_inputs_give_kafka_streams_outputs(
    oracle_results: dict[str, Result],
) -> None:
    cases: list[Case] = oracle_results["_cases"]  # type: ignore[assignment]
    for case in cases[2:]:
        theirs = oracle_results[case.id]
        assert theirs.error is None, f"seed {SEED}, {case.id}: {theirs.error}"
        assert ours(case) == theirs.outputs, f"seed {SEED}, {case}"
