"""Table filter, filter_not and map_values: exact outputs, tombstones, stores and lookups."""

from __future__ import annotations

from typing import Any

import pytest

from processor import Table, Topology
from processor.errors import TopologyError
from processor.serdes import JsonSerde, StringSerde
from processor.testing import TopologyTestDriver
from processor.topology.tables import TablePlan

S, J = StringSerde(), JsonSerde()


def users(t: Topology) -> Table[str, Any]:
    return t.table("users", key_serde=S, value_serde=J)


def adults(t: Topology, name: str | None = None) -> Table[str, Any]:
    return users(t).filter(lambda _k, u: u["age"] >= 18, name=name)


def test_a_filtered_table_forwards_tombstones_only_for_rows_it_had() -> None:
    t = Topology("app")
    adults(t).to_stream().to("out")
    d = TopologyTestDriver(t)
    d.pipe("users", "ann", {"age": 10})  # never accepted: nothing
    d.pipe("users", "ann", {"age": 20})  # accepted
    d.pipe("users", "ann", {"age": 30})  # still accepted
    d.pipe("users", "ann", {"age": 12})  # rejected now: a tombstone
    d.pipe("users", "ann", {"age": 11})  # rejected before and now: nothing
    d.pipe("users", "bob", {"age": 40})
    d.pipe("users", "bob", None)  # deleted: a tombstone
    d.pipe("users", "cid", None)  # a delete of nothing: nothing
    assert d.read("out") == [
        ("ann", {"age": 20}),
        ("ann", {"age": 30}),
        ("ann", None),
        ("bob", {"age": 40}),
        ("bob", None),
    ]


def test_filter_not_keeps_what_filter_drops() -> None:
    t = Topology("app")
    users(t).filter_not(lambda _k, u: u["age"] >= 18).to_stream().to("out")
    d = TopologyTestDriver(t)
    d.pipe("users", "ann", {"age": 10})
    d.pipe("users", "ann", {"age": 20})
    d.pipe("users", "ann", {"age": 21})
    assert d.read("out") == [("ann", {"age": 10}), ("ann", None)]


def test_a_named_filter_is_a_queryable_store() -> None:
    t = Topology("app")
    adults(t, name="adults").to_stream().to("out")
    d = TopologyTestDriver(t)
    d.pipe("users", "ann", {"age": 20})
    d.pipe("users", "bob", {"age": 30})
    d.pipe("users", "ann", {"age": 10})
    assert list(d.store("adults").all()) == [("bob", {"age": 30})]
    assert d.read("out") == [("ann", {"age": 20}), ("bob", {"age": 30}), ("ann", None)]
    assert d.read("app-adults-changelog")[-1] == ("ann", None)


def test_map_values_maps_rows_and_keeps_tombstones() -> None:
    t = Topology("app")
    users(t).map_values(lambda u: u["age"] * 2, name="doubled").to_stream().to("out")
    d = TopologyTestDriver(t)
    d.pipe("users", "ann", {"age": 20})
    d.pipe("users", "ann", None)
    d.pipe("users", "bob", None)  # a table map forwards every update, deletes included
    assert d.read("out") == [("ann", 40), ("ann", None), ("bob", None)]
    assert list(d.store("doubled").all()) == []


def test_operators_chain_and_a_mapped_value_serde_is_used_by_the_store() -> None:
    t = Topology("app")
    (
        adults(t)
        .map_values(lambda u: str(u["age"]), name="ages", value_serde=S)
        .filter(lambda _k, age: age != "99")
        .to_stream()
        .to("out", value_serde=S)
    )
    d = TopologyTestDriver(t)
    d.pipe("users", "ann", {"age": 20})
    d.pipe("users", "ann", {"age": 99})
    d.pipe("users", "ann", {"age": 5})  # ages deletes ann; the filter had nothing: nothing
    assert d.read("out") == [("ann", "20"), ("ann", None)]
    assert d.read_records("app-ages-changelog")[0].value == b"20"


def test_a_join_reads_a_filtered_table_without_a_store_through_its_lookup() -> None:
    t = Topology("app")
    orders = t.table("orders", key_serde=S, value_serde=J)
    orders.join(adults(t), lambda o, u: {"order": o, "age": u["age"]}).to_stream().to("out")
    d = TopologyTestDriver(t)
    d.pipe("users", "ann", {"age": 10})
    d.pipe("orders", "ann", 1)  # ann is filtered out: the lookup finds no row
    d.pipe("users", "ann", {"age": 20})
    d.pipe("orders", "ann", 2)
    assert d.read("out") == [("ann", {"order": 1, "age": 20}), ("ann", {"order": 2, "age": 20})]
    assert sorted(t.graph.stores) == ["orders", "users"]  # none for the filter


def plan_of(t: Topology) -> TablePlan:
    [sub] = t.subtopologies()
    return TablePlan(sub, {})


def test_a_table_source_reads_old_values_only_when_an_operator_below_needs_them() -> None:
    t = Topology("app")
    source = users(t)
    source.to_stream().to("out")
    source.map_values(lambda u: u, name=None).to_stream().to("mapped")
    assert not plan_of(t).sends_old(source.node_name)
    assert not plan_of(t).emits_changes("to_stream-2")
    source.filter(lambda _k, _u: True)
    assert plan_of(t).sends_old(source.node_name)


def test_a_stored_filter_reads_its_own_old_value_not_its_parents() -> None:
    t = Topology("app")
    source = users(t)
    source.filter(lambda _k, _u: True, name="kept").to_stream().to("out")
    assert not plan_of(t).sends_old(source.node_name)


def test_lookup_of_a_node_that_is_not_a_table_says_so() -> None:
    t = Topology("app")
    stream = users(t).to_stream()
    with pytest.raises(TopologyError, match="is not a table of this sub-topology"):
        plan_of(t).lookup(stream.node_name)


def test_functions_are_checked_when_declared() -> None:
    t = Topology("app")
    with pytest.raises(TopologyError, match=r"Table.filter\(predicate\) must be a function"):
        users(t).filter(3)  # type: ignore[arg-type]


def test_describe_shows_the_table_operators_and_their_stores() -> None:
    t = Topology("app")
    adults(t, name="adults").map_values(lambda u: u).to_stream().to("out")
    text = t.describe()
    assert "Processor: adults (table_filter, stores: adults) --> table_map_values-2" in text
    assert "Processor: table_map_values-2 (table_map_values) --> to_stream-3" in text
