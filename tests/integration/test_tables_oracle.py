"""Table operations and table-table joins give what Kafka Streams gives: the documented
KTable-KTable join table and seeded random inputs (filters and maps with and without stores on
either side, joins inner/left/outer, re-grouping with count/reduce/aggregate, deletes, keys
moving between groups) through our TopologyTestDriver and Kafka Streams' own
(`tests/oracle/kafka_tables.py`, one JVM for every case).

Compared exactly: every output record, in order, with the index of the input after which it
came out, its key and value (tombstones included). Timestamps are not compared (see
`tests/oracle/kafka_tables.py`). The seed is printed on failure; set TABLES_ORACLE_SEED to
replay one.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.oracle.kafka_tables import (
    Group,
    In,
    Join,
    Op,
    TableCase,
    TableResult,
    run_ours,
    run_table_cases,
)
from tests.unit.tables.test_table_join import HOWS, STEPS

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("TABLES_ORACLE_SEED", "17017"))
CASES_PER_SHAPE = 120
KEYS = ("a", "b", "c", "d")

# The documented table's letters as longs: left A..D, right a..d.
LETTERS = {"A": 1, "B": 2, "C": 3, "D": 4, "a": 10, "b": 20, "c": 30, "d": 40}


def documented_cases() -> list[tuple[TableCase, list[tuple[int, str, str | None]]]]:
    """The documented table for each join, stored or not, and the outputs it documents."""
    records = tuple(
        In(topic, "k", None if value is None else LETTERS[value])  # type: ignore[arg-type]
        for topic, value, *_ in STEPS
    )

    def text(cell: str | None) -> str | None:
        if cell is None:
            return None
        left, right = cell.strip("[]").split(", ")
        return f"{LETTERS.get(left, 'null')}|{LETTERS.get(right, 'null')}"

    cases = []
    for how in HOWS:
        column = 2 + HOWS.index(how)
        expected = [
            (i, "k", text(row[column])) for i, row in enumerate(STEPS) if row[column] != "-"
        ]
        for store in (None, "joined"):
            case = TableCase(f"doc-{how}-{store}", records, join=Join(how, store))  # type: ignore[arg-type]
            cases.append((case, expected))
    return cases


def _ops(rng: random.Random, side: str) -> tuple[Op, ...]:
    ops = []
    for n in range(rng.choice((0, 0, 1, 1, 2))):
        store = f"{side}-op{n}" if rng.random() < 0.4 else None
        kind = rng.choice(("filter", "filter_not", "map_values"))
        if kind == "map_values":
            ops.append(
                Op("map_values", mul=rng.choice((1, 2, 3)), add=rng.randint(0, 3), store=store)
            )
        else:
            mod = rng.choice((2, 3))
            ops.append(Op(kind, mod=mod, rem=rng.randrange(mod), store=store))  # type: ignore[arg-type]
    return tuple(ops)


def _records(rng: random.Random, topics: tuple[str, ...]) -> tuple[In, ...]:
    return tuple(
        In(
            rng.choice(topics),  # type: ignore[arg-type]
            rng.choice(KEYS),
            None if rng.random() < 0.25 else rng.randint(0, 9),
        )
        for _ in range(rng.randint(5, 40))
    )


def generate(seed: int) -> list[TableCase]:
    rng = random.Random(seed)
    cases = []
    for n in range(CASES_PER_SHAPE):
        how = rng.choice(HOWS)
        join = Join(how, "joined" if rng.random() < 0.3 else None)  # type: ignore[arg-type]
        cases.append(
            TableCase(
                f"join-{n}",
                _records(rng, ("left", "right")),
                left_ops=_ops(rng, "left"),
                right_ops=_ops(rng, "right"),
                join=join,
            )
        )
        agg = rng.choice(("count", "reduce", "aggregate"))
        group = Group(rng.choice((2, 3, 4)), agg)  # type: ignore[arg-type]
        cases.append(
            TableCase(
                f"group-{n}", _records(rng, ("left",)), left_ops=_ops(rng, "left"), group=group
            )
        )
        cases.append(TableCase(f"ops-{n}", _records(rng, ("left",)), left_ops=_ops(rng, "left")))
    return cases


def mismatch(case: TableCase, theirs: TableResult) -> str | None:
    if theirs.error is not None:
        return f"{case.id}: Kafka Streams failed: {theirs.error}"
    ours = run_ours(case)
    if ours == theirs.outputs:
        return None
    return (
        f"{case.id} (seed {SEED}): {case}\n  Kafka Streams: {list(theirs.outputs)}\n"
        f"  ours:          {list(ours)}"
    )


def test_the_documented_join_table_is_what_kafka_streams_does_and_ours() -> None:
    documented = documented_cases()
    results = run_table_cases([case for case, _ in documented])
    for (case, expected), theirs in zip(documented, results, strict=True):
        assert list(theirs.outputs) == expected, f"{case.id}: Kafka Streams differs from its docs"
        assert list(run_ours(case)) == expected, f"{case.id}: ours differs"


def test_agrees_with_kafka_streams_on_generated_inputs() -> None:
    cases = generate(SEED)
    results = run_table_cases(cases)
    problems = [m for c, r in zip(cases, results, strict=True) if (m := mismatch(c, r))]
    assert not problems, f"{len(problems)} of {len(cases)} cases differ:\n" + "\n".join(
        problems[:5]
    )
