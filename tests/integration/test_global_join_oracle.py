"""Stream-global table joins give what Kafka Streams gives: seeded random interleavings of
table updates (new rows, changed rows, tombstones, null keys) and stream records (rows that
exist or not, None lookup keys, the record's own key as lookup key, null values, null stream
keys) through our TopologyTestDriver and through Kafka Streams' own
(`tests/oracle/global_join.py`), inner and left. What must be equal: every output, in order,
with the input after which it came out, its key, value and timestamp; and the global table at
the end.

The seed is printed on failure; set GLOBAL_JOIN_ORACLE_SEED to replay one.
"""

from __future__ import annotations

import os
import random

import pytest

from processor import Topology, serdes
from processor.testing import TopologyTestDriver
from tests.oracle.global_join import Case, Event, Joined, Result, joiner, lookup, run_cases

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("GLOBAL_JOIN_ORACLE_SEED", "17017"))
CASES_PER_HOW = 60
KEYS = ("a", "b", "c", "d", "e")


def _event(rng: random.Random, ts: int) -> Event:
    if rng.random() < 0.4:
        key = None if rng.random() < 0.06 else rng.choice(KEYS)
        value = None if rng.random() < 0.2 else f"row{rng.randint(0, 99)}"
        return Event("table", key, value, ts)
    key = None if rng.random() < 0.1 else rng.choice(KEYS)
    roll = rng.random()
    value = (
        None
        if roll < 0.08
        else "none"
        if roll < 0.16
        else "key"
        if roll < 0.4
        else rng.choice(KEYS)
    )
    return Event("stream", key, value, ts)


def generate(seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases = []
    for how in ("inner", "left"):
        for i in range(CASES_PER_HOW):
            ts = 0
            events = []
            for _ in range(rng.randint(1, 40)):
                ts += rng.randint(-3, 10)  # out of order too: a join has no notion of time
                events.append(_event(rng, max(ts, 0)))
            cases.append(Case(f"{how}-{i}", how, tuple(events)))  # type: ignore[arg-type]
    return cases


def ours(case: Case) -> Result:
    t = Topology("global-oracle")
    table = t.global_table(
        "table", key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde()
    )
    t.stream("stream", key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde()).join(
        table, joiner, key=lookup, how=case.how
    ).to("out")
    driver = TopologyTestDriver(t)
    key_serde = serdes.StringSerde()
    outputs: list[Joined] = []
    for index, e in enumerate(case.events):
        driver.pipe(e.side, e.key, e.value, timestamp=e.ts)
        for r in driver.read_records("out"):
            value = key_serde.deserialize(r.value)
            outputs.append(Joined(index, key_serde.deserialize(r.key), value, r.timestamp))
    rows = tuple(driver.global_store("table").all())
    return Result(case.id, tuple(outputs), rows)


def test_stream_global_joins_match_kafka_streams() -> None:
    cases = generate(SEED)
    theirs = run_cases(cases)
    for case, expected in zip(cases, theirs, strict=True):
        assert expected.error is None, f"seed {SEED}, case {case.id}: {expected.error}"
        got = ours(case)
        assert got.outputs == expected.outputs, f"seed {SEED}, case {case}"
        assert got.table == expected.table, f"seed {SEED}, case {case}"


def test_the_oracle_shows_kafka_streams_null_rules() -> None:
    """The rules the README states, as Kafka Streams itself applies them."""
    events = (
        Event("table", "a", "row-a", 0),
        Event("stream", "k1", "a", 1),  # a row: joined
        Event("stream", "k2", "b", 2),  # no row: inner drops, left joins with null
        Event("stream", "k3", "none", 3),  # no lookup key: the same
        Event("stream", "k4", None, 4),  # a null value: dropped by both
        Event("stream", None, "a", 5),  # a null stream key: joined
        Event("table", None, "row-x", 6),  # a null table key: skipped
    )
    inner, left = run_cases([Case("inner", "inner", events), Case("left", "left", events)])
    assert inner.outputs == (Joined(1, "k1", "a+row-a", 1), Joined(5, None, "a+row-a", 5))
    assert left.outputs == (
        Joined(1, "k1", "a+row-a", 1),
        Joined(2, "k2", "b+null", 2),
        Joined(3, "k3", "none+null", 3),
        Joined(5, None, "a+row-a", 5),
    )
    assert inner.table == (("a", "row-a"),)
