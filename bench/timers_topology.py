"""The topology `bench/timers.py` runs in a worker (`processor run bench.timers_topology`): a
`process()` operator named `fire` whose function sets the record key's stream-clock timer to
TIMER_DELAY_MS after the record's timestamp, and whose `on_timer` forwards (key, at_ms) to
BENCH_OUTPUT (string key, 8-byte time). Its timers are kept in the store `fire-timers`
(changelog `<application id>-fire-timers-changelog`). Input: BENCH_INPUT, string keys."""

from __future__ import annotations

import os

from bench.contenders import TIMER_DELAY_MS
from processor import ProcessorContext, Topology, serdes

OPERATOR = "fire"


def set_timer(context: ProcessorContext, key: str, value: bytes) -> None:
    context.set_timer(context.timestamp + TIMER_DELAY_MS)


def fired(context: ProcessorContext, key: str, at_ms: int, name: str) -> None:
    context.forward(key, at_ms)


def build(source_topic: str, output_topic: str) -> Topology:
    built = Topology("bench-timers")
    built.stream(source_topic, key_serde=serdes.StringSerde()).process(
        set_timer, on_timer=fired, name=OPERATOR
    ).to(output_topic, key_serde=serdes.StringSerde(), value_serde=serdes.IntSerde())
    return built


topology = build(
    os.environ.get("BENCH_INPUT", "bench-timers-in"), os.environ.get("BENCH_OUTPUT", "bench-out")
)
