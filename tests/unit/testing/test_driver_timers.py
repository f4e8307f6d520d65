"""Timers in the test driver: `timers()` and its order, the firing order, the accounting."""

from __future__ import annotations

from typing import Any

from processor import ProcessorContext, Topology, serdes
from processor.testing import TopologyTestDriver
from processor.topology.handling import Outcome


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


def _cancel(ctx: ProcessorContext, _key: Any, _value: Any) -> None:
    ctx.cancel_timer()


def test_a_record_that_only_sets_or_cancels_a_timer_counts_as_output() -> None:
    """Its timer is state of the operator (a write to its timer store), not a dropped record."""
    topology = Topology("accounting")
    numbers = topology.stream("in", key_serde=serdes.StringSerde(), value_serde=serdes.IntSerde())
    numbers.process(_arm, name="arm", on_timer=_ignore).to("out")
    topology.stream("cancels", key_serde=serdes.StringSerde()).process(
        _cancel, name="cancel", on_timer=_ignore
    ).to("out-2")
    driver = TopologyTestDriver(topology)
    driver.pipe("in", "k", 1_000, timestamp=0)
    driver.pipe("cancels", "k", None, timestamp=0)
    assert driver.accounting.totals()[Outcome.OUTPUT] == 2
    assert driver.accounting.totals()[Outcome.FILTERED] == 0
