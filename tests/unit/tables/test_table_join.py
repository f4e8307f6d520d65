"""Table-table joins by key, case by case as Kafka Streams' documentation tabulates them
(KTable-KTable equi-join: inner, left, outer); the oracle test runs the same rows through Kafka
Streams (`tests/integration/test_tables_oracle.py`)."""

from __future__ import annotations

from typing import Any

import pytest

from processor import Topology
from processor.errors import TopologyError
from processor.serdes import JsonSerde, StringSerde
from processor.testing import TopologyTestDriver

S, J = StringSerde(), JsonSerde()

# (input topic, value) per step, all with key "k"; the expected output per how after each
# step: "-" nothing, None a tombstone, else "[L, R]".
STEPS: list[tuple[str, str | None, Any, Any, Any]] = [
    ("left", None, "-", "-", "-"),
    ("right", None, "-", "-", "-"),
    ("left", "A", "-", "[A, null]", "[A, null]"),
    ("right", "a", "[A, a]", "[A, a]", "[A, a]"),
    ("left", "B", "[B, a]", "[B, a]", "[B, a]"),
    ("right", "b", "[B, b]", "[B, b]", "[B, b]"),
    ("left", None, None, None, "[null, b]"),
    ("right", None, "-", "-", None),
    ("left", "C", "-", "[C, null]", "[C, null]"),
    ("right", "c", "[C, c]", "[C, c]", "[C, c]"),
    ("right", None, None, "[C, null]", "[C, null]"),
    ("left", None, "-", None, None),
    ("right", "d", "-", "-", "[null, d]"),
    ("left", "D", "[D, d]", "[D, d]", "[D, d]"),
]
HOWS = ("inner", "left", "outer")


def joined(left: Any, right: Any) -> str:
    return f"[{'null' if left is None else left}, {'null' if right is None else right}]"


def join_topology(how: str, name: str | None = None) -> Topology:
    t = Topology("app")
    left = t.table("left", key_serde=S, value_serde=J)
    right = t.table("right", key_serde=S, value_serde=J)
    left.join(right, joined, how=how, name=name).to_stream().to("out")
    return t


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("name", [None, "joined"])
def test_the_documented_semantics_table(how: str, name: str | None) -> None:
    d = TopologyTestDriver(join_topology(how, name))
    column = 2 + HOWS.index(how)
    for step, row in enumerate(STEPS, start=1):
        topic, value = row[0], row[1]
        d.pipe(topic, "k", value, timestamp=step)
        expected = [] if row[column] == "-" else [("k", row[column])]
        assert d.read("out") == expected, f"{how} join, step {step}: {topic} <- {value}"


def test_a_named_join_keeps_its_rows_in_a_queryable_store() -> None:
    d = TopologyTestDriver(join_topology("left", "joined"))
    d.pipe("left", "k", "A")
    d.pipe("left", "j", "B")
    d.pipe("right", "k", "a")
    d.pipe("left", "j", None)
    assert list(d.store("joined").all()) == [("k", "[A, a]")]


def test_a_join_of_a_join_reads_both_through_lookups() -> None:
    t = Topology("app")
    a, b, c = (t.table(x, key_serde=S, value_serde=J) for x in "abc")
    ab = a.join(b, lambda x, y: f"{x}{y}")
    ab.join(c, lambda xy, z: f"{xy}{z}", how="left").to_stream().to("out")
    d = TopologyTestDriver(t)
    d.pipe("c", "k", "3")  # no ab row: nothing
    d.pipe("a", "k", "1")  # a alone: no ab row, nothing
    d.pipe("b", "k", "2")  # ab = 12, joined with c
    d.pipe("c", "k", "4")
    d.pipe("a", "k", None)  # ab deleted: the left join's row is deleted
    assert d.read("out") == [("k", "123"), ("k", "124"), ("k", None)]


def test_a_table_grouped_after_a_join_moves_rows_between_groups() -> None:
    t = Topology("app")
    a = t.table("a", key_serde=S, value_serde=J)
    b = t.table("b", key_serde=S, value_serde=J)
    a.join(b, lambda x, y: x + y).group_by(lambda _k, v: v, key_serde=J).count(
        name="n"
    ).to_stream().to("out", key_serde=J)
    d = TopologyTestDriver(t)
    d.pipe("a", "k", 1)
    d.pipe("b", "k", 1)  # k joins as 2
    d.pipe("b", "k", 2)  # k moves from 2 to 3
    d.pipe("a", "k", None)  # k leaves 3
    assert d.read("out") == [(2, 1), (2, 0), (3, 1), (3, 0)]


def test_joining_tables_of_two_topologies_is_refused() -> None:
    one, two = Topology("one"), Topology("two")
    left = one.table("l", key_serde=S, value_serde=J)
    right = two.table("r", key_serde=S, value_serde=J)
    with pytest.raises(TopologyError, match="same Topology"):
        left.join(right, joined)


def test_describe_shows_both_sides_and_the_result() -> None:
    text = join_topology("outer", "joined").describe()
    assert "Processor: joined-left (table_join) --> joined <-- materialize-1" in text
    assert "Processor: joined-right (table_join) --> joined <-- materialize-3" in text
    assert "Processor: joined (table_join_merge, stores: joined) --> to_stream-4" in text
