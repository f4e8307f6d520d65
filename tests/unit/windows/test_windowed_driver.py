"""Windowed aggregations in the in-memory driver: what is late and where it goes, timestamps of
results, idle advance, retention, and what the DSL refuses."""

from __future__ import annotations

from typing import Any

import pytest

from processor import Topology, serdes
from processor.errors import RecordError, TopologyError
from processor.testing import TopologyTestDriver
from processor.topology.handling import HEADER_OPERATOR, HEADER_STAGE, ErrorHandler, Outcome
from processor.windows import SessionWindows, SlidingWindows, TumblingWindows, Windowed

STR = serdes.StringSerde()
INT = serdes.IntSerde()


def tumbling_count(emit: str = "final", **source: Any) -> Topology:
    topology = Topology("windows")
    (
        topology.stream("in", key_serde=STR, value_serde=serdes.JsonSerde(), **source)
        .group_by_key()
        .windowed_by(TumblingWindows(size_ms=100, grace_ms=20), emit=emit)  # type: ignore[arg-type]
        .count(name="counts")
        .to_stream()
        .to("out", value_serde=INT)
    )
    return topology


def test_a_late_record_is_counted_late_or_dead_lettered_naming_the_operator() -> None:
    driver = TopologyTestDriver(tumbling_count(), late_record_handler=ErrorHandler.DEAD_LETTER)
    driver.pipe("in", "a", {}, timestamp=50)
    driver.pipe("in", "a", {}, timestamp=130)  # window [0, 100) closes at stream time 120
    driver.pipe("in", "a", {}, timestamp=99)
    [dead] = driver.read_records("windows-dead-letters")
    headers = dict(dead.headers or [])
    assert headers[HEADER_STAGE] == b"late" and headers[HEADER_OPERATOR] == b"counts"
    assert dead.value == b"{}" and dead.timestamp == 99
    assert driver.accounting.totals()[Outcome.DEAD_LETTERED] == 1

    skipping = TopologyTestDriver(tumbling_count())
    for ts in (50, 130, 99, 119):
        skipping.pipe("in", "a", {}, timestamp=ts)
    assert skipping.accounting.totals()[Outcome.LATE] == 1
    assert skipping.read("out") == [(Windowed("a", 0, 100), 1)]  # 119 went to [100, 200)

    failing = TopologyTestDriver(tumbling_count(), late_record_handler=ErrorHandler.FAIL)
    failing.pipe("in", "a", {}, timestamp=130)
    with pytest.raises(RecordError, match="late"):
        failing.pipe("in", "a", {}, timestamp=5)


def test_event_time_comes_from_the_extractor_and_bad_timestamps_are_bad_records() -> None:
    topology = tumbling_count(timestamp=lambda _k, value, _ts: value["ts"])
    driver = TopologyTestDriver(topology, deserialization_error_handler=ErrorHandler.DEAD_LETTER)
    driver.pipe("in", "a", {"ts": 10}, timestamp=999_999)
    driver.pipe("in", "a", {"no": "ts"})
    driver.pipe("in", "a", {"ts": -5})
    driver.pipe("in", "a", {"ts": "soon"})
    dead = driver.read_records("windows-dead-letters")
    messages = [dict(r.headers or [])["processor.error.message"].decode() for r in dead]
    assert len(messages) == 3
    assert "extractor" in messages[0] and "KeyError" in messages[0]
    assert "negative" in messages[1]
    assert "not an int" in messages[2]
    assert driver.stream_time("in") == 10  # the record time was ignored for the extractor's


def test_a_record_with_a_negative_timestamp_is_refused_only_where_time_matters() -> None:
    driver = TopologyTestDriver(tumbling_count(), deserialization_error_handler=ErrorHandler.SKIP)
    driver.pipe("in", "a", {}, timestamp=-1)
    assert driver.accounting.totals()[Outcome.SKIPPED] == 1
    plain = Topology("plain")
    plain.stream("in").to("out")
    stateless = TopologyTestDriver(plain)
    stateless.pipe("in", b"a", b"v", timestamp=-1)
    assert stateless.read("out") == [(b"a", b"v")]


def test_results_carry_the_largest_timestamp_of_their_window() -> None:
    for emit in ("update", "final"):
        driver = TopologyTestDriver(tumbling_count(emit))
        for ts in (40, 70, 10, 500):
            driver.pipe("in", "a", {}, timestamp=ts)
        first = [r for r in driver.read_records("out") if r.key and r.key.startswith(b"a")]
        stamps = [r.timestamp for r in first]
        if emit == "update":
            assert stamps[:3] == [40, 70, 70]
        else:
            assert stamps[0] == 70


def test_idle_advance_closes_the_windows_of_a_quiet_task_in_the_driver() -> None:
    driver = TopologyTestDriver(tumbling_count(), idle_advance_ms=1_000)
    driver.pipe("in", "a", {}, timestamp=50)
    driver.advance_wall_clock(999)
    assert driver.read("out") == []
    driver.advance_wall_clock(70)  # idle 1,069 ms: stream time 50 + 1,069 passes 100 + 20
    assert driver.read("out") == [(Windowed("a", 0, 100), 1)]
    driver.pipe("in", "a", {}, timestamp=60)
    assert driver.accounting.totals()[Outcome.LATE] == 1

    without = TopologyTestDriver(tumbling_count())
    without.pipe("in", "a", {}, timestamp=50)
    without.advance_wall_clock(10**6)
    assert without.read("out") == []


def test_closed_windows_are_kept_for_their_retention_then_dropped_locally() -> None:
    topology = Topology("kept")
    (
        topology.stream("in", key_serde=STR, value_serde=STR)
        .group_by_key()
        .windowed_by(TumblingWindows(size_ms=100))
        .count(name="counts", retention_ms=1_000)
    )
    driver = TopologyTestDriver(topology)
    driver.pipe("in", "a", "x", timestamp=10)
    driver.pipe("in", "a", "x", timestamp=1_000)
    store = driver.window_store("counts")
    assert [w.start_ms for w, _ in store.fetch("a")] == [0, 1_000]  # closed, still kept
    driver.pipe("in", "b", "x", timestamp=1_100)  # stream time past 99 + 1,000
    assert [w.start_ms for w, _ in store.fetch("a")] == [1_000]
    changelog = driver.read_records("kept-counts-changelog")
    assert [r.value for r in changelog if r.value is None] == []  # its retention drops them
    assert {r.key[:1] for r in changelog if r.key} == {b"W"}  # windows only, no index entries


def test_null_values_are_not_counted_and_null_keys_are_bad_records() -> None:
    topology = Topology("nulls")
    (
        topology.stream("in", key_serde=STR, value_serde=STR)
        .group_by_key()
        .windowed_by(SessionWindows(inactivity_gap_ms=10))
        .count(name="sessions")
        .to_stream()
        .to("out", value_serde=INT)
    )
    driver = TopologyTestDriver(topology, deserialization_error_handler=ErrorHandler.SKIP)
    driver.pipe("in", "a", None, timestamp=5)
    driver.pipe("in", None, "x", timestamp=5)
    assert driver.read("out") == []
    totals = driver.accounting.totals()
    assert totals[Outcome.FILTERED] == 1 and totals[Outcome.SKIPPED] == 1


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (
            lambda g: g.windowed_by(TumblingWindows(size_ms=10), emit="sometimes"),
            'emit must be "update" or "final"',
        ),
        (
            lambda g: g.windowed_by(TumblingWindows(size_ms=10, grace_ms=5)).count(retention_ms=14),
            "retention_ms=14 is shorter than the windows need",
        ),
        (
            lambda g: g.windowed_by(SessionWindows(inactivity_gap_ms=10)).aggregate(
                lambda: 0, lambda _k, _v, a: a + 1, value_serde=INT
            ),
            "needs merger=",
        ),
        (lambda g: g.windowed_by(60_000), "windowed_by\\(\\) takes TumblingWindows"),
    ],
)
def test_the_dsl_refuses_windowed_declarations_that_cannot_work(declare: Any, message: str) -> None:
    grouped = Topology("refused").stream("in", key_serde=STR, value_serde=STR).group_by_key()
    with pytest.raises(TopologyError, match=message):
        declare(grouped)


def test_sliding_windows_aggregate_only_what_they_cover() -> None:
    topology = Topology("sliding")
    (
        topology.stream("in", key_serde=STR, value_serde=INT)
        .group_by_key()
        .windowed_by(SlidingWindows(max_difference_ms=10), emit="final")
        .reduce(lambda a, b: a + b, name="sums")
        .to_stream()
        .to("out")
    )
    driver = TopologyTestDriver(topology)
    for ts, amount in ((5, 1), (12, 2), (30, 4), (100, 0)):
        driver.pipe("in", "k", amount, timestamp=ts)
    assert [(w.start_ms, w.end_ms, v) for w, v in driver.read("out")] == [
        (0, 10, 1),
        (2, 12, 3),
        (6, 16, 2),  # the right window of 5: what follows 5 within 10
        (20, 30, 4),  # 12 and 30 are further apart: 12 has no right window, nor has 30
    ]


def test_a_session_store_fetches_the_sessions_overlapping_a_range() -> None:
    topology = Topology("overlap")
    (
        topology.stream("in", key_serde=STR, value_serde=STR)
        .group_by_key()
        .windowed_by(SessionWindows(inactivity_gap_ms=10, grace_ms=1_000))
        .count(name="sessions")
    )
    driver = TopologyTestDriver(topology)
    for ts in (0, 10, 50, 60):
        driver.pipe("in", "a", "x", timestamp=ts)
    sessions = driver.window_store("sessions")
    assert [(w.start_ms, w.end_ms) for w, _ in sessions.fetch("a", 5, 20)] == [(0, 10)]
    assert [(w.start_ms, w.end_ms) for w, _ in sessions.fetch("a", 11, 49)] == []
    assert [n for _, n in sessions.fetch("a")] == [2, 2]
