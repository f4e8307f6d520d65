"""A topic the topology writes and also reads is fed back by the in-memory driver, as a broker
delivers it to the worker (and as Kafka Streams' TopologyTestDriver does): a stream source or a
global table reading it sees the record, and the record is still readable as output."""

from __future__ import annotations

from processor import Topology, serdes
from processor.testing import TopologyTestDriver

STRING, INT = serdes.StringSerde(), serdes.IntSerde()


def test_records_written_to_a_source_topic_are_processed_from_it_and_readable() -> None:
    t = Topology("two-stage")
    t.stream("raw", key_serde=STRING, value_serde=STRING).map_values(str.strip).to("clean")
    t.stream("clean", key_serde=STRING, value_serde=STRING).group_by_key().count(
        name="n"
    ).to_stream().to("counts", value_serde=INT)
    driver = TopologyTestDriver(t)
    driver.pipe("raw", "a", " x ")
    driver.pipe("raw", "a", "y")
    assert driver.read("clean") == [("a", "x"), ("a", "y")]
    assert driver.read("counts") == [("a", 1), ("a", 2)]


def test_records_written_to_a_global_tables_topic_update_it() -> None:
    t = Topology("rates")
    t.stream("rate-updates", key_serde=STRING, value_serde=INT).to("rates")
    rates = t.global_table("rates", key_serde=STRING, value_serde=INT, name="rates")
    t.stream("prices", key_serde=STRING, value_serde=INT).join(
        rates, lambda price, rate: price * (rate or 0)
    ).to("converted", value_serde=INT)
    driver = TopologyTestDriver(t)
    driver.pipe("rate-updates", "eur", 2)
    driver.pipe("prices", "eur", 5)
    assert driver.read("converted") == [("eur", 10)]
    assert driver.global_store("rates").get("eur") == 2
