"""`to(function)`: each record goes to the topic `function(key, value)` names (Kafka Streams'
TopicNameExtractor). A function that raises, or names no topic, is the sink's processing error,
named, with the record; windowed keys are refused when the topology is built."""

from __future__ import annotations

import pytest

from processor import Topology, serdes
from processor.errors import RecordError, TopologyError
from processor.testing import TopologyTestDriver
from processor.topology.handling import ErrorHandler
from processor.windows import TumblingWindows

STRING, JSON = serdes.StringSerde(), serdes.JsonSerde()


def routed(topic_of: object) -> Topology:
    t = Topology("events")
    t.stream("events", key_serde=STRING, value_serde=JSON).to(topic_of, name="by-kind")  # type: ignore[arg-type]
    return t


def test_each_record_goes_to_the_topic_its_function_names() -> None:
    driver = TopologyTestDriver(routed(lambda _key, event: f"events-{event['kind']}"))
    driver.pipe("events", "a", {"kind": "click"})
    driver.pipe("events", "b", {"kind": "view"})
    driver.pipe("events", "c", {"kind": "click"})
    assert driver.read("events-click") == [("a", {"kind": "click"}), ("c", {"kind": "click"})]
    assert driver.read("events-view") == [("b", {"kind": "view"})]


def test_a_function_that_raises_or_names_no_topic_is_a_processing_error_naming_the_sink() -> None:
    driver = TopologyTestDriver(routed(lambda _key, event: event["kind"]))
    with pytest.raises(RecordError) as raised:
        driver.pipe("events", "a", {"no-kind": 1})
    assert "processing error in operator 'by-kind': KeyError: 'kind'" in str(raised.value)
    assert "record events[0]@0" in str(raised.value)

    driver = TopologyTestDriver(
        routed(lambda _key, event: event.get("kind")),
        processing_error_handler=ErrorHandler.DEAD_LETTER,
    )
    driver.pipe("events", "a", {"other": 1})
    [dead] = driver.read_records("events-dead-letters")
    assert dead.value == b'{"other":1}'
    headers = dict(dead.headers or [])
    message = headers["processor.error.message"] or b""
    assert b"the topic function returned None, not a topic name" in message


def test_windowed_keys_and_what_is_not_a_function_are_refused_when_building() -> None:
    t = Topology("windows")
    counts = (
        t.stream("in", key_serde=STRING, value_serde=STRING)
        .group_by_key()
        .windowed_by(TumblingWindows(size_ms=10))
        .count(name="n")
        .to_stream()
    )
    with pytest.raises(TopologyError, match="cannot write windowed keys"):
        counts.to(lambda window, n: "out")
    with pytest.raises(TopologyError, match="takes a topic name or a function, not 3"):
        counts.to(3)  # type: ignore[arg-type]


def test_the_description_labels_the_sink_with_its_function() -> None:
    def topic_for(_key: str, event: dict[str, str]) -> str:
        return event["kind"]

    assert "topic: <topic_for(key, value)>" in routed(topic_for).describe()
