"""`stream.sink(...)` in the TopologyTestDriver: the writer gets every record that reaches the
sink, prepared, in batches covering consecutive offsets (skipped records included), and a record
the sink cannot take goes to the processing error handler like any operator's error."""

from __future__ import annotations

import pytest

from processor import Topology, serdes
from processor.errors import TopologyError
from processor.testing import TopologyTestDriver
from processor.topology.handling import ErrorHandler
from tests.unit.sinks.recording import Destination, RecordingSink


def _topology(destination: Destination) -> Topology:
    t = Topology("sinks")
    orders = t.stream("orders", key_serde=serdes.StringSerde(), value_serde=serdes.JsonSerde())
    orders.filter(lambda key, value: value != "drop").sink(RecordingSink(destination), name="db")
    return t


def test_records_reach_the_writer_in_order_with_their_offsets() -> None:
    destination = Destination()
    driver = TopologyTestDriver(_topology(destination))
    for i in range(5):
        driver.pipe("orders", f"k{i}", {"n": i})
    assert [item for _, item in destination.rows] == [(f"k{i}", {"n": i}) for i in range(5)]
    offsets = [(b.first_offset, b.next_offset) for b in destination.batches]
    assert offsets == [(i, i + 1) for i in range(5)]


def test_a_record_the_sink_refuses_goes_to_the_handler_and_the_offsets_move_past_it() -> None:
    destination = Destination()
    driver = TopologyTestDriver(
        _topology(destination),
        processing_error_handler=ErrorHandler.DEAD_LETTER,
        dead_letter_topic="dead",
    )
    driver.pipe("orders", "a", {"n": 1})
    driver.pipe("orders", "b", ["not", "a", "dict"])
    driver.pipe("orders", "c", {"n": 3})
    assert [item[0] for _, item in destination.rows] == ["a", "c"]
    assert destination.next_offset[0] == 3
    [dead] = driver.read_records("dead")
    assert dead.key == b"b"
    headers = dict(dead.headers or [])
    assert b"not a dict" in (headers.get("processor.error.message") or b"")


def test_sink_takes_only_a_sink() -> None:
    t = Topology("sinks")
    stream = t.stream("orders")
    with pytest.raises(TopologyError, match="to write to a Kafka topic use to"):
        stream.sink("orders-out")  # type: ignore[arg-type]


def test_a_sink_reads_its_own_internal_topic() -> None:
    t = _topology(Destination())
    description = t.describe()
    assert "Sink: db-to (topic: sinks-db-sink" in description
    assert "Source: db-from (topic: sinks-db-sink" in description
    assert "Processor: db (external_sink, RecordingSink, exactly once) <-- db-from" in description


def test_a_sink_right_after_a_source_reads_its_topic_until_something_else_does() -> None:
    destination = Destination()
    t = Topology("direct")
    orders = t.stream("orders", key_serde=serdes.StringSerde(), value_serde=serdes.JsonSerde())
    orders.sink(RecordingSink(destination), name="db")
    [sub] = t.subtopologies()
    assert sub.source_topics == ("orders",) and sub.external_sink is not None
    driver = TopologyTestDriver(t)
    driver.pipe("orders", "a", {"n": 1})
    assert [item for _, item in destination.rows] == [("a", {"n": 1})]
    assert [(b.first_offset, b.next_offset) for b in destination.batches] == [(0, 1)]

    orders.map_values(lambda v: v).to("copies")  # another reader of the source
    first, second = t.subtopologies()
    assert first.sink_topics == ("direct-db-sink", "copies")
    assert second.source_topics == ("direct-db-sink",) and second.external_sink is not None
    assert "Processor: db (external_sink" in t.describe()
