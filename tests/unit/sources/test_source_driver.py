"""`topology.source(...)` in the test driver: items flow through the topology, bad input goes
to the dead-letter topic with where it came from."""

from __future__ import annotations

import pytest

from processor import ErrorHandler, Topology
from processor.errors import RecordError, TopologyError
from processor.testing.driver import TopologyTestDriver
from tests.unit.sources.list_source import ListSource, bad_line


def orders_topology(source: ListSource) -> Topology:
    topology = Topology("shop")
    orders = topology.source(source, topic="raw-orders", partitions=3, name="orders")
    orders.map_values(lambda v: {**v, "total": v["qty"] * v["price"]}).to("priced")
    return topology


def test_items_of_a_source_flow_through_the_topology_keyed_by_the_key_function() -> None:
    source = ListSource([{"id": "a", "qty": 2, "price": 3}, {"id": "b", "qty": 1, "price": 5}])
    source.key = lambda value: value["id"]
    driver = TopologyTestDriver(orders_topology(source))

    assert driver.poll_source("orders") == 2
    assert driver.poll_source("orders") == 0

    assert driver.read("priced") == [
        ("a", {"id": "a", "qty": 2, "price": 3, "total": 6}),
        ("b", {"id": "b", "qty": 1, "price": 5, "total": 5}),
    ]


def test_a_bad_line_goes_to_the_dead_letter_topic_with_its_origin() -> None:
    source = ListSource([bad_line(1, b"{oops"), {"id": "a", "qty": 1, "price": 1}])
    driver = TopologyTestDriver(
        orders_topology(source),
        deserialization_error_handler=ErrorHandler.DEAD_LETTER,
        dead_letter_topic="dead",
    )

    driver.poll_source("orders")

    [letter] = driver.read_records("dead")
    headers = dict(letter.headers or [])
    assert letter.value == b"{oops"
    assert headers["processor.source.line"] == b"1"
    assert headers["processor.error.stage"] == b"deserialization"
    assert b"orders.jsonl:1" in (headers["processor.error.message"] or b"")
    assert [v for _, v in driver.read("priced")] == [{"id": "a", "qty": 1, "price": 1, "total": 1}]


def test_a_bad_line_stops_under_the_default_handler() -> None:
    driver = TopologyTestDriver(orders_topology(ListSource([bad_line(7, b"x")])))
    with pytest.raises(RecordError, match=r"orders\.jsonl:7"):
        driver.poll_source("orders")


def test_the_source_has_a_sub_topology_of_its_own_after_the_others() -> None:
    topology = Topology("shop")
    topology.stream("clicks").to("clicks-copy")
    orders_before = [s.id for s in topology.subtopologies()]
    topology.source(ListSource([]), topic="raw-orders").to("copy")

    subs = topology.subtopologies()
    assert [s.id for s in subs][: len(orders_before)] == orders_before
    [source_sub] = [s for s in subs if s.source is not None]
    assert source_sub.source is not None
    assert source_sub.source.name == "raw-orders"
    assert source_sub.source_topics == ()
    assert "External source: raw-orders (ListSource; topic: raw-orders" in topology.describe()


def test_two_sources_with_one_name_are_refused() -> None:
    topology = Topology("shop")
    topology.source(ListSource([]), topic="a", name="feed")
    with pytest.raises(TopologyError, match="two sources are named 'feed'"):
        topology.source(ListSource([]), topic="b", name="feed")


def test_polling_an_unknown_source_names_the_known_ones() -> None:
    driver = TopologyTestDriver(orders_topology(ListSource([])))
    with pytest.raises(TopologyError, match=r"no source named 'nope'.*\['orders'\]"):
        driver.poll_source("nope")
