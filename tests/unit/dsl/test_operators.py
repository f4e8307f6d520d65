"""Every stateless operator, run through the in-memory `TopologyTestDriver`."""

from __future__ import annotations

import doctest
import json
from typing import Any

import pytest

import processor.dsl.topology
import processor.testing.driver
from processor import Topology, serdes
from processor.errors import RecordError, TopologyError
from processor.testing import TopologyTestDriver

STR = serdes.StringSerde()


def _text_topology(name: str = "ops") -> tuple[Topology, Any]:
    topology = Topology(name)
    return topology, topology.stream("in", key_serde=STR, value_serde=STR)


def _run(
    topology: Topology, records: list[tuple[Any, Any]], topic: str = "in"
) -> TopologyTestDriver:
    driver = TopologyTestDriver(topology)
    for key, value in records:
        driver.pipe(topic, key, value)
    return driver


# --- filter / filter_not --------------------------------------------------------------------


def test_filter_keeps_records_the_predicate_accepts() -> None:
    topology, text = _text_topology()
    text.filter(lambda k, v: v.startswith("a")).to("out")
    driver = _run(topology, [("1", "apple"), ("2", "banana"), ("3", "avocado")])
    assert driver.read("out") == [("1", "apple"), ("3", "avocado")]


def test_filter_passes_key_and_value_to_the_predicate() -> None:
    topology, text = _text_topology()
    text.filter(lambda k, v: k == "keep").to("out")
    driver = _run(topology, [("keep", "x"), ("drop", "y")])
    assert driver.read("out") == [("keep", "x")]


def test_filter_not_drops_records_the_predicate_accepts() -> None:
    topology, text = _text_topology()
    text.filter_not(lambda k, v: v.startswith("a")).to("out")
    driver = _run(topology, [("1", "apple"), ("2", "banana"), ("3", "avocado")])
    assert driver.read("out") == [("2", "banana")]


def test_filter_uses_truthiness_of_the_predicate_result() -> None:
    topology, text = _text_topology()
    text.filter(lambda k, v: len(v)).to("kept")
    text.filter_not(lambda k, v: len(v)).to("dropped")
    driver = _run(topology, [("1", ""), ("2", "x")])
    assert driver.read("kept") == [("2", "x")]
    assert driver.read("dropped") == [("1", "")]


# --- map / map_values -----------------------------------------------------------------------


def test_map_replaces_key_and_value() -> None:
    topology, text = _text_topology()
    text.map(lambda k, v: (v, k)).to("out")
    driver = _run(topology, [("k", "v")])
    assert driver.read("out") == [("v", "k")]


def test_map_values_keeps_the_key_and_receives_only_the_value() -> None:
    topology, text = _text_topology()
    seen: list[tuple[Any, ...]] = []

    def upper(*args: Any) -> str:
        seen.append(args)
        return str(args[0]).upper()

    text.map_values(upper).to("out")
    driver = _run(topology, [("k", "hello")])
    assert driver.read("out") == [("k", "HELLO")]
    assert seen == [("hello",)]


def test_map_can_change_types_when_sink_serdes_match() -> None:
    topology, text = _text_topology()
    text.map(lambda k, v: (len(v), {"word": v})).to(
        "out", key_serde=serdes.IntSerde(), value_serde=serdes.JsonSerde()
    )
    driver = _run(topology, [(None, "abc")])
    assert driver.read("out") == [(3, {"word": "abc"})]


# --- flat_map / flat_map_values -------------------------------------------------------------


def test_flat_map_emits_each_pair_in_order() -> None:
    topology, text = _text_topology()
    text.flat_map(lambda k, v: [(w, k) for w in v.split()]).to("out")
    driver = _run(topology, [("line1", "a b c")])
    assert driver.read("out") == [("a", "line1"), ("b", "line1"), ("c", "line1")]


def test_flat_map_yielding_nothing_drops_the_record() -> None:
    topology, text = _text_topology()
    text.flat_map(lambda k, v: []).to("out")
    driver = _run(topology, [("k", "v")])
    assert driver.read("out") == []


def test_flat_map_accepts_a_generator() -> None:
    topology, text = _text_topology()

    def pairs(k: str, v: str) -> Any:
        for i, ch in enumerate(v):
            yield ch, str(i)

    text.flat_map(pairs).to("out")
    driver = _run(topology, [(None, "xy")])
    assert driver.read("out") == [("x", "0"), ("y", "1")]


def test_flat_map_yielding_a_non_pair_is_a_record_error() -> None:
    topology, text = _text_topology()
    text.flat_map(lambda k, v: ["not-a-pair"], name="explode").to("out")
    driver = TopologyTestDriver(topology)
    with pytest.raises(RecordError) as excinfo:
        driver.pipe("in", "k", "v")
    assert "explode" in str(excinfo.value)
    assert "'not-a-pair'" in str(excinfo.value)


def test_flat_map_values_keeps_the_key_for_every_value() -> None:
    topology, text = _text_topology()
    text.flat_map_values(str.split).to("out")
    driver = _run(topology, [("k", "one two"), ("j", "")])
    assert driver.read("out") == [("k", "one"), ("k", "two")]


# --- peek -----------------------------------------------------------------------------------


def test_peek_sees_every_record_and_passes_it_on_unchanged() -> None:
    topology, text = _text_topology()
    seen: list[tuple[Any, Any]] = []

    def look(k: Any, v: Any) -> str:
        seen.append((k, v))
        return "ignored return value"

    text.peek(look).to("out")
    driver = _run(topology, [("a", "1"), ("b", "2")])
    assert seen == [("a", "1"), ("b", "2")]
    assert driver.read("out") == [("a", "1"), ("b", "2")]


def test_peek_runs_before_downstream_operators() -> None:
    topology, text = _text_topology()
    events: list[str] = []

    def mapped(value: str) -> str:
        events.append(f"map {value}")
        return value

    text.peek(lambda k, v: events.append(f"peek {v}")).map_values(mapped).to("out")
    _run(topology, [("a", "1")])
    assert events == ["peek 1", "map 1"]


# --- split / branch -------------------------------------------------------------------------


def test_split_routes_to_the_first_matching_branch_only() -> None:
    topology, text = _text_topology()
    branches = text.split(
        {"short": lambda k, v: len(v) < 4, "a": lambda k, v: v.startswith("a")},
        default="other",
    )
    assert list(branches) == ["short", "a", "other"]
    for branch_name, stream in branches.items():
        stream.to(f"out-{branch_name}")
    driver = _run(topology, [("1", "abc"), ("2", "apple"), ("3", "banana"), ("4", "xy")])
    # "abc" matches both predicates: only the first branch gets it.
    assert driver.read("out-short") == [("1", "abc"), ("4", "xy")]
    assert driver.read("out-a") == [("2", "apple")]
    assert driver.read("out-other") == [("3", "banana")]


def test_split_without_default_drops_unmatched_records() -> None:
    topology, text = _text_topology()
    branches = text.split({"a": lambda k, v: v.startswith("a")})
    branches["a"].to("out-a")
    text.to("all")
    driver = _run(topology, [("1", "apple"), ("2", "banana")])
    assert driver.read("out-a") == [("1", "apple")]
    assert driver.read("all") == [("1", "apple"), ("2", "banana")]


def test_split_branch_without_a_sink_swallows_its_records() -> None:
    topology, text = _text_topology()
    branches = text.split({"a": lambda k, v: v == "a", "b": lambda k, v: True})
    branches["b"].to("out-b")
    driver = _run(topology, [("1", "a"), ("2", "b")])
    assert driver.read("out-b") == [("2", "b")]


def test_split_rejects_a_default_that_is_also_a_named_branch() -> None:
    _, text = _text_topology()
    with pytest.raises(TopologyError, match="'a'"):
        text.split({"a": lambda k, v: True}, default="a")


def test_split_needs_at_least_one_branch() -> None:
    _, text = _text_topology()
    with pytest.raises(TopologyError, match="at least one branch"):
        text.split({})


def test_split_with_only_a_default_forwards_everything() -> None:
    topology, text = _text_topology()
    text.split({}, default="all")["all"].to("out")
    driver = _run(topology, [("1", "x")])
    assert driver.read("out") == [("1", "x")]


def test_branch_returns_one_stream_per_predicate_first_match_wins_rest_dropped() -> None:
    topology, text = _text_topology()
    small, large = text.branch(lambda k, v: int(v) < 10, lambda k, v: int(v) < 100)
    small.to("small")
    large.to("large")
    driver = _run(topology, [("a", "5"), ("b", "50"), ("c", "500")])
    assert driver.read("small") == [("a", "5")]
    assert driver.read("large") == [("b", "50")]


# --- merge ----------------------------------------------------------------------------------


def test_merge_carries_records_of_both_inputs_in_arrival_order() -> None:
    topology = Topology("merging")
    left = topology.stream("left", key_serde=STR, value_serde=STR)
    right = topology.stream("right", key_serde=STR, value_serde=STR)
    left.map_values(str.upper).merge(right).to("out")
    driver = TopologyTestDriver(topology)
    driver.pipe("left", "l", "a")
    driver.pipe("right", "r", "b")
    driver.pipe("left", "l", "c")
    assert driver.read("out") == [("l", "A"), ("r", "b"), ("l", "C")]


def test_merge_needs_streams_of_the_same_topology() -> None:
    a = Topology("a").stream("x")
    b = Topology("b").stream("y")
    with pytest.raises(TopologyError, match="same Topology"):
        a.merge(b)


# --- to() -----------------------------------------------------------------------------------


def test_to_uses_the_stream_serdes_by_default() -> None:
    topology, text = _text_topology()
    text.to("out")
    driver = _run(topology, [("k", "héllo")])
    [record] = driver.read_records("out")
    assert (record.key, record.value) == (b"k", "héllo".encode())


def test_to_with_overridden_serdes_writes_their_bytes() -> None:
    topology = Topology("override")
    topology.stream("in", value_serde=serdes.JsonSerde()).map(lambda k, v: (v["n"], v["name"])).to(
        "out", key_serde=serdes.IntSerde(), value_serde=serdes.StringSerde()
    )
    driver = TopologyTestDriver(topology)
    driver.pipe("in", None, {"n": 1, "name": "one"})
    [record] = driver.read_records("out")
    assert record.topic == "out"
    assert record.key == b"\x00" * 7 + b"\x01"
    assert record.value == b"one"


def test_to_overriding_only_the_value_serde_keeps_the_stream_key_serde() -> None:
    topology, text = _text_topology()
    text.map_values(len).to("out", value_serde=serdes.IntSerde())
    driver = _run(topology, [("k", "abc")])
    [record] = driver.read_records("out")
    assert record.key == b"k"
    assert record.value == (3).to_bytes(8, "big")


def test_one_stream_to_two_topics_writes_both() -> None:
    topology, text = _text_topology()
    text.to("one")
    text.to("two")
    driver = _run(topology, [("k", "v")])
    assert driver.read("one") == [("k", "v")]
    assert driver.read("two") == [("k", "v")]


def test_null_key_and_tombstone_value_pass_through() -> None:
    topology, text = _text_topology()
    text.to("out")
    driver = _run(topology, [(None, None)])
    [record] = driver.read_records("out")
    assert (record.key, record.value) == (None, None)


# --- timestamps and headers -----------------------------------------------------------------


def test_timestamp_and_headers_propagate_to_every_output_record() -> None:
    topology, text = _text_topology()
    text.flat_map_values(str.split).map(lambda k, v: (v, k)).to("out")
    driver = TopologyTestDriver(topology)
    headers: list[tuple[str, bytes | None]] = [("trace", b"abc"), ("empty", None)]
    driver.pipe("in", "k", "x y", timestamp=1_700_000_000_123, headers=headers)
    records = driver.read_records("out")
    assert [(r.key, r.value) for r in records] == [(b"x", b"k"), (b"y", b"k")]
    assert [r.timestamp for r in records] == [1_700_000_000_123] * 2
    assert [r.headers for r in records] == [headers, headers]


def test_timestamp_defaults_to_the_driver_clock() -> None:
    topology, text = _text_topology()
    text.to("out")
    driver = TopologyTestDriver(topology, start_time_ms=1000)
    driver.pipe("in", "a", "1")
    driver.advance_time(250)
    assert driver.now_ms == 1250
    driver.pipe("in", "b", "2")
    assert [r.timestamp for r in driver.read_records("out")] == [1000, 1250]


def test_records_without_headers_have_none() -> None:
    topology, text = _text_topology()
    text.to("out")
    driver = _run(topology, [("a", "1")])
    assert [r.headers for r in driver.read_records("out")] == [None]


def test_reading_consumes_the_output() -> None:
    topology, text = _text_topology()
    text.to("out")
    driver = _run(topology, [("a", "1")])
    assert driver.read("out") == [("a", "1")]
    assert driver.read("out") == []
    driver.pipe("in", "b", "2")
    assert driver.read("out") == [("b", "2")]


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declare", "operator"),
    [
        (lambda s, f: s.filter(lambda k, v: f(), name="my-filter"), "my-filter"),
        (lambda s, f: s.filter_not(lambda k, v: f(), name="my-filter-not"), "my-filter-not"),
        (lambda s, f: s.map(lambda k, v: f(), name="my-map"), "my-map"),
        (lambda s, f: s.map_values(lambda v: f(), name="my-map-values"), "my-map-values"),
        (lambda s, f: s.flat_map(lambda k, v: f(), name="my-flat-map"), "my-flat-map"),
        (lambda s, f: s.flat_map_values(lambda v: f(), name="my-fmv"), "my-fmv"),
        (lambda s, f: s.peek(lambda k, v: f(), name="my-peek"), "my-peek"),
        (lambda s, f: s.split({"x": lambda k, v: f()}, name="my-split")["x"], "my-split"),
    ],
)
def test_a_raising_user_function_is_a_record_error_naming_where(
    declare: Any, operator: str
) -> None:
    topology, text = _text_topology()

    def boom() -> Any:
        raise ValueError("boom from user code")

    declare(text, boom).to("out")
    driver = TopologyTestDriver(topology)
    with pytest.raises(RecordError) as excinfo:
        driver.pipe("in", "k", "v")
    error = excinfo.value
    assert (error.topic, error.partition, error.offset) == ("in", 0, 0)
    message = str(error)
    assert "in[0]@0" in message
    assert repr(operator) in message
    assert "ValueError" in message and "boom from user code" in message
    # the user's own exception stays reachable for debugging
    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None:
        chain.append(cause)
        cause = cause.__cause__
    assert any(isinstance(c, ValueError) and str(c) == "boom from user code" for c in chain)


def test_record_error_names_the_offset_of_the_failing_record() -> None:
    topology, text = _text_topology()
    text.map_values(lambda v: 1 // int(v), name="invert").to("out", value_serde=serdes.IntSerde())
    driver = TopologyTestDriver(topology)
    driver.pipe("in", "a", "1")
    driver.pipe("in", "b", "1")
    with pytest.raises(RecordError) as excinfo:
        driver.pipe("in", "c", "0")
    assert excinfo.value.offset == 2
    assert "in[0]@2" in str(excinfo.value)
    assert "'invert'" in str(excinfo.value)
    assert "ZeroDivisionError" in str(excinfo.value)


def test_undecodable_json_is_a_record_error_naming_the_serde_and_position() -> None:
    topology = Topology("json")
    topology.stream("events", value_serde=serdes.JsonSerde()).to("out")
    driver = TopologyTestDriver(topology)
    driver.pipe("events", None, {"ok": True})
    with pytest.raises(RecordError) as excinfo:
        driver.pipe_bytes("events", None, b"{not json")
    error = excinfo.value
    assert (error.topic, error.partition, error.offset) == ("events", 0, 1)
    message = str(error)
    assert "events[0]@1" in message
    assert "json serde" in message
    assert "value" in message
    # only the good record came out
    assert driver.read("out") == [(None, {"ok": True})]


def test_undecodable_key_is_a_record_error_naming_the_key_serde() -> None:
    topology = Topology("keys")
    topology.stream("nums", key_serde=serdes.IntSerde()).to("out")
    driver = TopologyTestDriver(topology)
    with pytest.raises(RecordError) as excinfo:
        driver.pipe_bytes("nums", b"\x01\x02", b"v")
    message = str(excinfo.value)
    assert "nums[0]@0" in message
    assert "key" in message and "int serde" in message


def test_a_sink_that_cannot_serialize_names_the_target_topic() -> None:
    topology, text = _text_topology()
    text.map_values(len, name="length").to("lengths")  # StringSerde cannot write an int
    driver = TopologyTestDriver(topology)
    with pytest.raises(RecordError) as excinfo:
        driver.pipe("in", "k", "abc")
    message = str(excinfo.value)
    assert "'lengths'" in message
    assert "string serde" in message
    assert "value_serde" in message
    assert "in[0]@0" in message
    assert driver.read_records("lengths") == []


def test_a_sink_that_cannot_serialize_the_key_names_key_serde_and_topic() -> None:
    topology, text = _text_topology()
    text.map(lambda k, v: (1, v)).to("numbered")
    driver = TopologyTestDriver(topology)
    with pytest.raises(RecordError) as excinfo:
        driver.pipe("in", "k", "v")
    message = str(excinfo.value)
    assert "'numbered'" in message
    assert "key_serde" in message


def test_bytes_sink_refuses_an_int_instead_of_writing_zero_bytes() -> None:
    topology = Topology("raw")
    topology.stream("in").map_values(len).to("out")  # bytes serdes by default
    driver = TopologyTestDriver(topology)
    with pytest.raises(RecordError, match="'out'"):
        driver.pipe("in", None, b"abc")
    assert driver.read_records("out") == []


def test_piping_to_a_topic_that_is_not_a_source_names_the_sources() -> None:
    topology, text = _text_topology()
    text.to("out")
    driver = TopologyTestDriver(topology)
    with pytest.raises(TopologyError, match=r"'nope'.*\['in'\]"):
        driver.pipe("nope", "k", "v")


def test_reading_a_topic_no_sink_writes_is_an_error() -> None:
    topology, text = _text_topology()
    text.to("out")
    driver = TopologyTestDriver(topology)
    with pytest.raises(TopologyError, match="'elsewhere'"):
        driver.read("elsewhere")


def test_driver_input_is_serialized_with_the_source_serdes() -> None:
    topology = Topology("serialized")
    topology.stream("in", value_serde=serdes.JsonSerde()).to("out")
    driver = TopologyTestDriver(topology)
    driver.pipe("in", b"key", {"a": [1, 2]})
    [record] = driver.read_records("out")
    assert record.key == b"key"
    assert json.loads(record.value or b"") == {"a": [1, 2]}


# --- doctests -------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [processor.dsl.topology, processor.testing.driver])
def test_docstring_examples_run(module: Any) -> None:
    result = doctest.testmod(module, verbose=False, report=False)
    assert result.attempted > 0
    assert result.failed == 0
