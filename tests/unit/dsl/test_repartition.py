"""`Stream.repartition()`: records go through `<app>-<name>-repartition` with the serdes given,
which the stream carries on, as Kafka Streams' `repartition(Repartitioned.with(...))`; and the
message when a re-keyed stream's serde cannot write its new keys says where to give one."""

from __future__ import annotations

import pytest

from processor import Topology, serdes
from processor.errors import RecordError
from processor.testing import TopologyTestDriver
from processor.windows import JoinWindows

STRING, INT = serdes.StringSerde(), serdes.IntSerde()


def test_a_stream_rekeyed_to_ints_is_joined_after_a_repartition_with_an_int_key_serde() -> None:
    t = Topology("orders")
    orders = t.stream("orders", key_serde=STRING, value_serde=STRING)
    by_customer = orders.map(lambda _order, customer: (int(customer), _order)).repartition(
        key_serde=INT, name="by-customer"
    )
    payments = t.stream("payments", key_serde=INT, value_serde=STRING)
    by_customer.join(
        payments,
        lambda order, payment: f"{order}+{payment}",
        window=JoinWindows(before_ms=10, after_ms=10),
    ).to("paid", key_serde=INT, value_serde=STRING)

    internal = {topic for sub in t.subtopologies("app") for topic in sub.source_topics}
    assert "app-by-customer-repartition" in internal
    driver = TopologyTestDriver(t, application_id="app")
    driver.pipe("orders", "o1", "7", timestamp=100)
    driver.pipe("payments", 7, "p1", timestamp=105)
    assert driver.read("paid") == [(7, "o1+p1")]


def test_repartition_keeps_keys_and_values_and_defaults_to_the_streams_serdes() -> None:
    t = Topology("copy")
    t.stream("in", key_serde=STRING, value_serde=STRING).repartition().group_by_key().count(
        name="n"
    ).to_stream().to("out", value_serde=INT)
    driver = TopologyTestDriver(t)
    for key in ("a", "b", "a"):
        driver.pipe("in", key, "x")
    assert driver.read("out") == [("a", 1), ("b", 1), ("a", 2)]


def test_a_repartition_serde_that_cannot_write_the_new_keys_says_where_to_give_one() -> None:
    t = Topology("rekey")
    (
        t.stream("in", key_serde=STRING, value_serde=STRING)
        .map(lambda _k, v: (len(v), v))
        .group_by_key()
        .count(name="by-length")
    )
    driver = TopologyTestDriver(t)
    with pytest.raises(RecordError) as raised:
        driver.pipe("in", "k", "abc")
    message = str(raised.value)
    assert "cannot serialize key 3 with the string serde" in message
    assert "give the group_by, group_by_key, to_table or repartition that makes it a matching " in (
        message
    )
    assert "give to(" not in message
