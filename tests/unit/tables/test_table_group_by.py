"""Table re-grouping: count, reduce and aggregate with adder and subtractor, exact outputs, and
a property test against a reference model (rows move between groups, rows are deleted)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processor import GroupedTable, Topology
from processor.serdes import IntSerde, JsonSerde, StringSerde
from processor.testing import TopologyTestDriver

S, J, N = StringSerde(), JsonSerde(), IntSerde()


def by_city(t: Topology, **options: Any) -> GroupedTable[str, Any]:
    users = t.table("users", key_serde=S, value_serde=J)
    return users.group_by(lambda _k, u: u["city"], key_serde=S, **options)


def test_count_moves_a_row_between_groups_and_deletes_subtract() -> None:
    t = Topology("app")
    by_city(t, name="cities").count(name="per-city").to_stream().to("out", value_serde=N)
    d = TopologyTestDriver(t)
    d.pipe("users", "ann", {"city": "Oslo"})
    d.pipe("users", "bob", {"city": "Oslo"})
    d.pipe("users", "ann", {"city": "Oslo", "age": 3})  # same group: one update, same count
    d.pipe("users", "ann", {"city": "Rome"})  # moves: Oslo loses, Rome gains
    d.pipe("users", "bob", None)  # deleted: Oslo loses
    d.pipe("users", "cid", None)  # nothing to delete: nothing
    assert d.read("out") == [
        ("Oslo", 1),
        ("Oslo", 2),
        ("Oslo", 2),
        ("Oslo", 1),
        ("Rome", 1),
        ("Oslo", 0),
    ]
    assert list(d.store("per-city").all()) == [("Oslo", 0), ("Rome", 1)]
    assert d.read_records("app-cities-repartition") == []  # internal: fed back, not output


def test_reduce_adds_and_subtracts_values() -> None:
    t = Topology("app")
    users = t.table("users", key_serde=S, value_serde=J)
    grouped = users.group_by(lambda _k, u: u["city"], value_fn=lambda _k, u: u["age"])
    grouped.reduce(lambda a, v: a + v, lambda a, v: a - v, name="ages").to_stream().to("out")
    d = TopologyTestDriver(t)
    d.pipe("users", "ann", {"city": "Oslo", "age": 30})
    d.pipe("users", "bob", {"city": "Oslo", "age": 40})
    d.pipe("users", "ann", {"city": "Oslo", "age": 31})  # subtract 30, add 31: one update
    d.pipe("users", "bob", {"city": "Rome", "age": 40})
    assert d.read("out") == [("Oslo", 30), ("Oslo", 70), ("Oslo", 71), ("Oslo", 31), ("Rome", 40)]


def test_aggregate_gets_key_value_and_aggregate() -> None:
    t = Topology("app")
    by_city(t).aggregate(
        list,
        lambda city, u, names: sorted([*names, u["name"]]),
        lambda city, u, names: [n for n in names if n != u["name"]],
        value_serde=J,
        name="names",
    ).to_stream().to("out")
    d = TopologyTestDriver(t)
    d.pipe("users", "1", {"city": "Oslo", "name": "ann"})
    d.pipe("users", "2", {"city": "Oslo", "name": "bob"})
    d.pipe("users", "1", {"city": "Rome", "name": "ann"})
    assert d.read("out") == [
        ("Oslo", ["ann"]),
        ("Oslo", ["ann", "bob"]),
        ("Oslo", ["bob"]),
        ("Rome", ["ann"]),
    ]


def test_a_row_whose_group_key_is_none_is_in_no_group() -> None:
    t = Topology("app")
    users = t.table("users", key_serde=S, value_serde=J)
    users.group_by(lambda _k, u: u.get("city"), key_serde=S).count(name="n").to_stream().to(
        "out", value_serde=N
    )
    d = TopologyTestDriver(t)
    d.pipe("users", "ann", {})
    d.pipe("users", "ann", {"city": "Oslo"})
    d.pipe("users", "ann", {})
    assert d.read("out") == [("Oslo", 1), ("Oslo", 0)]


updates = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d"]),
        st.one_of(st.none(), st.integers(min_value=0, max_value=9)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(updates)
def test_count_and_sums_follow_a_reference_model(steps: list[tuple[str, int | None]]) -> None:
    """After every update, each group's count, reduce-sum and aggregate-sum are those of the
    rows now in it (groups once seen keep 0), and nothing else is in the stores."""
    t = Topology("app")
    rows = t.table("rows", key_serde=S, value_serde=N)
    grouped = rows.group_by(lambda _k, v: v % 3, key_serde=N)
    grouped.count(name="count")
    grouped.reduce(lambda a, v: a + v, lambda a, v: a - v, name="reduce")
    grouped.aggregate(
        lambda: 0, lambda _k, v, a: a + v, lambda _k, v, a: a - v, value_serde=N, name="sum"
    )
    d = TopologyTestDriver(t)
    table: dict[str, int] = {}
    seen: set[int] = set()
    for key, value in steps:
        d.pipe("rows", key, value)
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
            seen.add(value % 3)
        counts = Counter(v % 3 for v in table.values())
        sums = Counter()
        for v in table.values():
            sums[v % 3] += v
        assert dict(d.store("count").all()) == {g: counts[g] for g in seen}
        assert dict(d.store("reduce").all()) == {g: sums[g] for g in seen}
        assert dict(d.store("sum").all()) == {g: sums[g] for g in seen}
