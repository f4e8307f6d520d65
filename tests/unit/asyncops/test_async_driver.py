"""Async operators in the test driver and in the topology (issue 22): each kind's result, the
hooks, retries with the loop's sleep, timeouts and errors through the handlers, and where the
operator sits (straight on a source topic nobody else reads, else behind an internal topic)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from processor import Retry, Topology, serdes
from processor.errors import RecordError, TopologyError
from processor.testing import TopologyTestDriver
from processor.topology.handling import HEADER_OPERATOR, HEADER_STAGE, ErrorHandler
from processor.windows import TumblingWindows

STR = serdes.StringSerde()


def source(topology: Topology) -> Any:
    return topology.stream("in", key_serde=STR, value_serde=STR)


async def jittered_upper(value: str) -> str:
    await asyncio.sleep(random.random() / 1000)
    return value.upper()


def test_each_kind_gives_its_result_in_input_order() -> None:
    topology = Topology("kinds")
    stream = source(topology)
    stream.map_values_async(jittered_upper, name="upper").to("upper")

    async def swap(key: str, value: str) -> tuple[str, str]:
        return value, key

    async def short(key: str, value: str) -> bool:
        return len(value) < 3

    async def letters(value: str) -> list[str]:
        return list(value)

    stream.map_async(swap, name="swap").to("swapped")
    stream.filter_async(short, name="short").to("short")
    stream.flat_map_values_async(letters, name="letters").to("letters")
    driver = TopologyTestDriver(topology)
    for i, value in enumerate(["ab", "cde", "f"]):
        driver.pipe("in", f"k{i}", value)
    assert driver.read("upper") == [("k0", "AB"), ("k1", "CDE"), ("k2", "F")]
    assert driver.read("swapped") == [("ab", "k0"), ("cde", "k1"), ("f", "k2")]
    assert driver.read("short") == [("k0", "ab"), ("k2", "f")]
    assert driver.read("letters") == [
        ("k0", "a"),
        ("k0", "b"),
        ("k1", "c"),
        ("k1", "d"),
        ("k1", "e"),
        ("k2", "f"),
    ]
    driver.close()


def test_hooks_open_and_close_what_the_calls_use_on_the_same_loop() -> None:
    topology = Topology("hooks")
    state: dict[str, Any] = {}

    @topology.on_start
    async def open_client() -> None:
        state["loop"] = asyncio.get_running_loop()
        state["open"] = True

    @topology.on_stop
    async def close_client() -> None:
        state["open"] = False

    async def uses_client(value: str) -> str:
        assert state["open"] and asyncio.get_running_loop() is state["loop"]
        return value + "!"

    source(topology).map_values_async(uses_client).to("out")
    driver = TopologyTestDriver(topology)
    driver.pipe("in", "k", "hi")
    assert driver.read("out") == [("k", "hi!")]
    driver.close()
    assert state["open"] is False


def test_a_listed_error_is_retried_and_only_the_call_is_repeated() -> None:
    calls: list[str] = []

    async def flaky(value: str) -> str:
        calls.append(value)
        if calls.count(value) < 3:
            raise ConnectionError("refused")
        return value

    topology = Topology("retries")
    upstream = source(topology).peek(lambda _k, v: calls.append("peek:" + v))
    upstream.map_values_async(
        flaky, retry=Retry(attempts=3, backoff_ms=1, on=(ConnectionError,)), name="flaky"
    ).to("out")
    driver = TopologyTestDriver(topology)
    driver.pipe("in", "k", "v")
    assert driver.read("out") == [("k", "v")]
    assert calls == ["peek:v", "v", "v", "v"]


def test_errors_and_timeouts_go_to_the_handler_naming_the_operator() -> None:
    async def slow_or_bad(value: str) -> str:
        if value == "slow":
            await asyncio.sleep(1)
        if value == "bad":
            raise ValueError("bad value")
        return value

    topology = Topology("failing")
    source(topology).map_values_async(slow_or_bad, timeout_ms=20, name="call").to("out")
    driver = TopologyTestDriver(topology, processing_error_handler=ErrorHandler.DEAD_LETTER)
    for value in ("ok", "slow", "bad", "fine"):
        driver.pipe("in", "k", value)
    assert driver.read("out") == [("k", "ok"), ("k", "fine")]
    dead = driver.read_records("failing-dead-letters")
    assert [d.value for d in dead] == [b"slow", b"bad"]
    for record in dead:
        headers = dict(record.headers or [])
        assert headers[HEADER_OPERATOR] == b"call" and headers[HEADER_STAGE] == b"processing"
    failing = TopologyTestDriver(topology)
    with pytest.raises(RecordError, match="timeout_ms=20"):
        failing.pipe("in", "k", "slow")


def test_a_map_async_that_returns_no_pair_is_the_operators_error() -> None:
    async def not_a_pair(key: str, value: str) -> str:
        return value

    topology = Topology("shapes")
    source(topology).map_async(not_a_pair, name="pairs").to("out")
    with pytest.raises(RecordError, match=r"pairs.*not a \(key, value\) pair"):
        TopologyTestDriver(topology).pipe("in", "k", "v")


def test_an_async_result_can_be_aggregated_in_windows() -> None:
    topology = Topology("windowed")
    (
        source(topology)
        .map_values_async(jittered_upper)
        .group_by_key()
        .windowed_by(TumblingWindows(size_ms=100))
        .count(name="counts")
        .to_stream()
        .map(lambda window, count: (f"{window.key}@{window.start_ms}", count))
        .to("out", key_serde=STR, value_serde=serdes.IntSerde())
    )
    driver = TopologyTestDriver(topology)
    for ts in (10, 20, 150):
        driver.pipe("in", "k", "v", timestamp=ts)
    assert driver.read("out") == [("k@0", 1), ("k@0", 2), ("k@100", 1)]


def subtopology_sources(topology: Topology) -> list[tuple[str, ...]]:
    return [sub.source_topics for sub in topology.subtopologies()]


def test_the_operator_reads_its_source_topic_unless_something_else_does() -> None:
    direct = Topology("direct")
    source(direct).map_values_async(jittered_upper, name="call").to("out")
    assert subtopology_sources(direct) == [("in",)]

    behind = Topology("behind")
    source(behind).filter(lambda _k, _v: True).map_values_async(jittered_upper, name="call")
    assert subtopology_sources(behind) == [("in",), ("behind-call-async",)]

    moved = Topology("moved")
    stream = source(moved)
    stream.map_values_async(jittered_upper, name="call").to("out")
    stream.to("copy")  # a second reader of the source: the call moves behind a topic
    assert subtopology_sources(moved) == [("in",), ("moved-call-async",)]
    driver = TopologyTestDriver(moved)
    driver.pipe("in", "k", "v")
    assert driver.read("out") == [("k", "V")] and driver.read("copy") == [("k", "v")]


@pytest.mark.parametrize(
    ("settings", "words"),
    [({"concurrency": 0}, "concurrency"), ({"timeout_ms": 0}, "timeout_ms")],
)
def test_settings_that_cannot_work_are_refused(settings: dict[str, Any], words: str) -> None:
    with pytest.raises(TopologyError, match=words):
        source(Topology("bad")).map_values_async(jittered_upper, **settings)
