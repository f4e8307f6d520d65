"""`Stream.to_table()` (Kafka Streams' `toTable()`): the latest value per key of a stream, in a
store, with a null value deleting its key; a table like any other (table operators, joins),
behind a repartition topic when keys may have changed, which refuses a null key first."""

from __future__ import annotations

import pytest

from processor import Topology, serdes
from processor.errors import RecordError
from processor.testing import TopologyTestDriver
from processor.windows import TumblingWindows

STRING, INT, JSON = serdes.StringSerde(), serdes.IntSerde(), serdes.JsonSerde()


def test_the_latest_value_per_key_is_kept_and_a_null_value_deletes_it() -> None:
    t = Topology("profiles")
    profiles = t.stream("profile-updates", key_serde=STRING, value_serde=JSON).to_table(
        name="profiles"
    )
    profiles.to_stream().to("profiles-out")
    driver = TopologyTestDriver(t)
    driver.pipe("profile-updates", "ann", {"city": "Oslo"})
    driver.pipe("profile-updates", "ann", {"city": "Rome"})
    driver.pipe("profile-updates", "bob", {"city": "Oslo"})
    driver.pipe("profile-updates", "bob", None)
    assert driver.store("profiles").get("ann") == {"city": "Rome"}
    assert driver.store("profiles").get("bob") is None
    assert driver.read("profiles-out")[-1] == ("bob", None)


def test_it_is_a_table_for_joins_and_table_operators() -> None:
    t = Topology("orders")
    customers = t.stream("customer-updates", key_serde=STRING, value_serde=JSON).to_table()
    t.stream("orders", key_serde=STRING, value_serde=JSON).join(
        customers, lambda order, customer: {**order, "city": customer["city"]}
    ).to("enriched")
    customers.group_by(lambda _id, c: c["city"], key_serde=STRING, name="by-city").count(
        name="per-city"
    ).to_stream().to("per-city", value_serde=INT)
    driver = TopologyTestDriver(t)
    driver.pipe("customer-updates", "c1", {"city": "Oslo"})
    driver.pipe("orders", "c1", {"item": "tea"})
    driver.pipe("customer-updates", "c1", {"city": "Rome"})
    assert driver.read("enriched") == [("c1", {"item": "tea", "city": "Oslo"})]
    assert driver.read("per-city") == [("Oslo", 1), ("Oslo", 0), ("Rome", 1)]


def test_rekeyed_records_go_through_a_repartition_topic_and_a_null_key_is_refused_first() -> None:
    t = Topology("latest-by-user")
    (
        t.stream("events", key_serde=STRING, value_serde=JSON)
        .map(lambda _k, event: (event.get("user"), event))
        .to_table(name="by-user")
    )
    internal = {topic for sub in t.subtopologies("app") for topic in sub.source_topics}
    assert "app-by-user-repartition" in internal
    driver = TopologyTestDriver(t, application_id="app")
    driver.pipe("events", "e1", {"user": "ann", "n": 1})
    driver.pipe("events", "e2", {"user": "ann", "n": 2})
    assert driver.store("by-user").get("ann") == {"user": "ann", "n": 2}
    with pytest.raises(RecordError) as raised:
        driver.pipe("events", "e3", {"n": 3})
    message = str(raised.value)
    assert "record events[0]@2" in message
    assert "to_table 'by-user': the record's key is None" in message


def test_a_windowed_stream_mapped_to_plain_keys_becomes_a_table_with_the_serdes_given() -> None:
    t = Topology("hot")
    (
        t.stream("clicks", key_serde=STRING, value_serde=STRING)
        .group_by_key()
        .windowed_by(TumblingWindows(size_ms=10))
        .count(name="per-window")
        .filter(lambda _window, n: n >= 2)
        .to_stream()
        .map(lambda window, n: (window.key, n))
        .to_table(name="hot", key_serde=STRING, value_serde=INT)
    )
    driver = TopologyTestDriver(t)
    for ts in (0, 1, 2, 15):
        driver.pipe("clicks", "ann", "x", timestamp=ts)
    assert driver.store("hot").get("ann") == 3
