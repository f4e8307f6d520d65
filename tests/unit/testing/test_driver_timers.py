"""`TopologyTestDriver.timers`: what it lists, and in which order."""

from __future__ import annotations

from typing import Any

from processor import ProcessorContext, Topology, serdes
from processor.testing import TopologyTestDriver


def _arm(ctx: ProcessorContext, _key: Any, at: int) -> None:
    ctx.set_timer(at)
    ctx.set_timer(at, clock="wall", name="also")


def _ignore(ctx: ProcessorContext, key: Any, at_ms: int, name: str) -> None:
    pass


def test_timers_are_listed_by_key_bytes_then_name_whatever_the_keys_lengths() -> None:
    topology = Topology("listing")
    (
        topology.stream("in", key_serde=serdes.StringSerde(), value_serde=serdes.IntSerde())
        .process(_arm, name="arm", on_timer=_ignore)
        .to("out")
    )
    driver = TopologyTestDriver(topology)
    for key in ("b", "ab", "aaa", "ba"):
        driver.pipe("in", key, 1_000, timestamp=0)
    assert [(key, name) for key, name, _clock, _at in driver.timers("arm")] == [
        ("aaa", "also"),
        ("aaa", "default"),
        ("ab", "also"),
        ("ab", "default"),
        ("b", "also"),
        ("b", "default"),
        ("ba", "also"),
        ("ba", "default"),
    ]


def _record(ctx: ProcessorContext, key: Any, at_ms: int, name: str) -> None:
    ctx.forward(key, at_ms)


def test_timers_fire_by_time_then_key_bytes_then_name() -> None:
    topology = Topology("order")
    (
        topology.stream("in", key_serde=serdes.StringSerde(), value_serde=serdes.IntSerde())
        .process(_arm, name="arm", on_timer=_record)
        .to("out")
    )
    driver = TopologyTestDriver(topology)
    for key, at in [("b", 2_000), ("ab", 1_000), ("aaa", 2_000), ("ba", 1_000)]:
        driver.pipe("in", key, at, timestamp=0)
    driver.advance_stream_time("in", 2_000)
    assert driver.read("out") == [("ab", 1_000), ("ba", 1_000), ("aaa", 2_000), ("b", 2_000)]
    assert [(key, name) for key, name, _clock, _at in driver.timers("arm")] == [
        ("aaa", "also"),
        ("ab", "also"),
        ("b", "also"),
        ("ba", "also"),
    ]
