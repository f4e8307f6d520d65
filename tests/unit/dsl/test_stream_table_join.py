"""Stream-table joins (`stream.join(table, ...)`) through the in-memory driver: the lookup at
processing time, the null rules, timestamps, the repartition inserted for re-keyed streams,
where the join lands in the sub-topologies, and how it is described."""

from __future__ import annotations

from typing import Any

import pytest

from processor import Topology, serdes
from processor.errors import TopologyError
from processor.testing import TopologyTestDriver
from processor.topology.graph import OperatorKind, OperatorNode, SinkNode, SourceNode
from processor.topology.handling import ErrorHandler, Outcome

STR = serdes.StringSerde()
JSON = serdes.JsonSerde()


def _pair(order: Any, customer: Any) -> str:
    return f"{order}+{customer}"


def enrich(how: str = "inner", *, rekey: bool = False, name: str | None = None) -> Topology:
    topology = Topology("enrich")
    orders = topology.stream("orders", key_serde=STR, value_serde=STR)
    customers = topology.table("customers", key_serde=STR, value_serde=STR)
    if rekey:
        orders = orders.map(lambda key, value: (value.split(":")[0], value))
    orders.join(customers, _pair, how=how, name=name).to("out")
    return topology


def test_inner_join_looks_up_the_table_when_the_stream_record_is_processed() -> None:
    driver = TopologyTestDriver(enrich())
    driver.pipe("orders", "c1", "o1", timestamp=1)  # no customer yet: dropped
    driver.pipe("customers", "c1", "alice", timestamp=2)  # table updates emit nothing
    driver.pipe("orders", "c1", "o2", timestamp=3)
    driver.pipe("customers", "c1", "alicia", timestamp=4)
    driver.pipe("orders", "c1", "o3", timestamp=5)
    driver.pipe("customers", "c1", None, timestamp=6)  # tombstone: the customer is gone
    driver.pipe("orders", "c1", "o4", timestamp=7)
    records = driver.read_records("out")
    assert [(r.key, r.value, r.timestamp) for r in records] == [
        (b"c1", b"o2+alice", 3),
        (b"c1", b"o3+alicia", 5),
    ]
    assert driver.accounting.totals()[Outcome.FILTERED] == 2  # o1 and o4


def test_left_join_keeps_records_the_table_lacks_with_none() -> None:
    driver = TopologyTestDriver(enrich("left"))
    driver.pipe("orders", "c1", "o1")
    driver.pipe("customers", "c1", "alice")
    driver.pipe("orders", "c1", "o2")
    driver.pipe("orders", "c2", "o3")
    driver.pipe("customers", "c1", None)
    driver.pipe("orders", "c1", "o4")
    assert driver.read("out") == [
        ("c1", "o1+None"),
        ("c1", "o2+alice"),
        ("c2", "o3+None"),
        ("c1", "o4+None"),
    ]


@pytest.mark.parametrize(
    ("how", "expected"),
    [("inner", []), ("left", [(None, "o1+None")])],
)
def test_a_null_key_is_dropped_by_the_inner_join_and_joined_with_none_by_the_left(
    how: str, expected: list[tuple[Any, Any]]
) -> None:
    driver = TopologyTestDriver(enrich(how))
    driver.pipe("customers", "c1", "alice")
    driver.pipe("orders", None, "o1")
    assert driver.read("out") == expected


@pytest.mark.parametrize("how", ["inner", "left"])
def test_a_null_stream_value_is_dropped_by_both(how: str) -> None:
    driver = TopologyTestDriver(enrich(how))
    driver.pipe("customers", "c1", "alice")
    driver.pipe("orders", "c1", None)
    assert driver.read("out") == []
    assert driver.accounting.totals()[Outcome.FILTERED] == 1


def test_the_result_keeps_the_stream_records_timestamp_and_headers() -> None:
    driver = TopologyTestDriver(enrich())
    driver.pipe("customers", "c1", "alice", timestamp=900)
    driver.pipe("orders", "c1", "o1", timestamp=100, headers=[("trace", b"1")])
    [record] = driver.read_records("out")
    assert (record.timestamp, record.headers) == (100, [("trace", b"1")])


def test_the_joiner_gets_the_stream_value_then_the_table_value() -> None:
    topology = Topology("values")
    orders = topology.stream("orders", key_serde=STR, value_serde=JSON)
    customers = topology.table("customers", key_serde=STR, value_serde=JSON)
    orders.join(customers, lambda order, customer: {**order, "customer": customer}).to("out")
    driver = TopologyTestDriver(topology)
    driver.pipe("customers", "c1", {"name": "alice"})
    driver.pipe("orders", "c1", {"id": 7})
    assert driver.read("out") == [("c1", {"id": 7, "customer": {"name": "alice"}})]


def test_a_joiner_that_raises_goes_to_the_processing_error_handler() -> None:
    topology = Topology("fails")
    orders = topology.stream("orders", key_serde=STR, value_serde=STR)
    customers = topology.table("customers", key_serde=STR, value_serde=STR)
    orders.join(customers, lambda order, customer: order[99]).to("out")
    driver = TopologyTestDriver(topology, processing_error_handler=ErrorHandler.SKIP)
    driver.pipe("customers", "c1", "alice")
    driver.pipe("orders", "c1", "o1")
    assert driver.read("out") == []
    assert driver.accounting.totals()[Outcome.SKIPPED] == 1


def test_join_and_table_share_a_sub_topology_through_the_tables_store() -> None:
    [sub] = enrich(name="orders-customers").subtopologies()
    assert sub.source_topics == ("orders", "customers")
    join = next(n for n in sub.nodes if n.name == "orders-customers")
    assert isinstance(join, OperatorNode)
    assert (join.kind, join.stores) == (OperatorKind.STREAM_TABLE_JOIN, ("customers",))


def test_a_rekeyed_stream_is_repartitioned_before_the_join_named_after_it() -> None:
    topology = enrich(rekey=True, name="by-customer")
    first, second = topology.subtopologies("shop")
    assert first.source_topics == ("orders",)
    assert first.sink_topics == ("shop-by-customer-repartition",)
    assert set(second.source_topics) == {"customers", "shop-by-customer-repartition"}
    sinks = [n for n in first.nodes if isinstance(n, SinkNode)]
    assert sinks[0].key_serde is not None
    driver = TopologyTestDriver(topology)
    driver.pipe("customers", "c1", "alice")
    driver.pipe("orders", "anything", "c1:o1")
    assert driver.read("out") == [("c1", "c1:o1+alice")]


def test_a_stream_whose_keys_did_not_change_is_not_repartitioned() -> None:
    topology = Topology("direct")
    orders = topology.stream("orders", key_serde=STR, value_serde=STR)
    customers = topology.table("customers", key_serde=STR, value_serde=STR)
    orders.filter(lambda k, v: True).map_values(str.upper).join(customers, _pair).to("out")
    [sub] = topology.subtopologies()
    assert not any(isinstance(n, SourceNode) and n.internal for n in sub.nodes)


def test_a_generated_join_name_names_the_repartition_topic() -> None:
    topics = [s.sink_topics for s in enrich(rekey=True).subtopologies("shop")]
    [[repartition], _] = topics
    assert repartition.startswith("shop-stream_table_join-")
    assert repartition.endswith("-repartition")


def test_describe_shows_the_join_and_the_table_it_reads() -> None:
    text = enrich("left", name="enriched").describe()
    assert (
        "Processor: enriched (stream-table join, how: left, table: customers) "
        "--> sink-3 <-- source-0"
    ) in text


def test_joining_a_table_of_another_topology_is_refused() -> None:
    one, other = Topology("one"), Topology("other")
    table = other.table("t", key_serde=STR, value_serde=STR)
    with pytest.raises(TopologyError, match="different Topologies"):
        one.stream("s").join(table, _pair)


@pytest.mark.parametrize("how", ["outer", "right"])
def test_a_stream_table_join_refuses_other_hows(how: str) -> None:
    topology = Topology("hows")
    table = topology.table("t", key_serde=STR, value_serde=STR)
    with pytest.raises(TopologyError, match="'inner', 'left'"):
        topology.stream("s").join(table, _pair, how=how)


def test_a_backlog_is_processed_lowest_timestamp_first_so_the_stream_sees_the_right_table() -> None:
    """The table's topic was filled (with later timestamps) before the stream's backlog was
    read: timestamp synchronisation processes each order before the customer changes that came
    after it."""
    driver = TopologyTestDriver(enrich("left"))
    with driver.backlog():
        driver.pipe("customers", "c1", "alice", timestamp=10)
        driver.pipe("customers", "c1", "alicia", timestamp=20)
        for ts in (5, 15, 25):
            driver.pipe("orders", "c1", f"o{ts}", timestamp=ts)
        assert driver.read("out") == []  # held until the block ends
    assert driver.read("out") == [("c1", "o5+None"), ("c1", "o15+alice"), ("c1", "o25+alicia")]


def test_without_a_backlog_records_are_processed_in_the_order_piped() -> None:
    driver = TopologyTestDriver(enrich("left"))
    driver.pipe("customers", "c1", "alicia", timestamp=20)
    driver.pipe("orders", "c1", "o5", timestamp=5)
    assert driver.read("out") == [("c1", "o5+alicia")]


def test_a_stream_joins_a_filtered_and_mapped_table_that_has_no_store_of_its_own() -> None:
    """An unnamed table operator keeps no store: the join reads the table's value through it
    (its value getter), so it sees exactly the rows the operator would pass."""
    topology = Topology("enrich")
    orders = topology.stream("orders", key_serde=STR, value_serde=STR)
    customers = topology.table("customers", key_serde=STR, value_serde=STR)
    active = customers.filter(lambda _key, value: not value.startswith("closed"))
    shouting = active.map_values(str.upper)
    assert shouting.store_name is None
    orders.join(shouting, _pair, how="left", name="enrich").to("out")
    [sub] = topology.subtopologies()  # the join reads the table: one task holds both
    driver = TopologyTestDriver(topology)
    driver.pipe("customers", "c1", "alice")
    driver.pipe("orders", "c1", "o1")
    driver.pipe("customers", "c1", "closed: alice")  # filtered out: the join finds nothing
    driver.pipe("orders", "c1", "o2")
    driver.pipe("customers", "c1", "alice again")
    driver.pipe("orders", "c1", "o3")
    assert [(r.key, r.value) for r in driver.read_records("out")] == [
        (b"c1", b"o1+ALICE"),
        (b"c1", b"o2+None"),
        (b"c1", b"o3+ALICE AGAIN"),
    ]
    assert [s.name for s in sub.stores] == ["customers"]
