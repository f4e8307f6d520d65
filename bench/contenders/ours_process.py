"""This project's process() workloads (`process`, `process-timers`), shared by
`ours_topology` (for `processor run`) and `bench/timers.py` (in process, no broker).

One `process()` operator keeps a running sum per key in a RocksDB store (`sums`, changelogged):
a get, a put and a forward per record. `process-timers` adds
`ctx.set_timer(ctx.timestamp + TIMER_DELAY_MS)` per record (the key's stream-clock timer, set
again by each of its records) and an `on_timer` that forwards the key's sum under
`<key>@<at_ms>`."""

from __future__ import annotations

from typing import Any

from bench.contenders import TIMER_DELAY_MS
from processor import ProcessorContext, Topology, serdes


def add_up(context: ProcessorContext, key: str, value: str) -> None:
    sums = context.store("sums")
    total = sums.get(key, 0) + int(value)
    sums.put(key, total)
    context.forward(key, total)


def add_up_and_time(context: ProcessorContext, key: str, value: str) -> None:
    sums = context.store("sums")
    total = sums.get(key, 0) + int(value)
    sums.put(key, total)
    context.forward(key, total)
    context.set_timer(context.timestamp + TIMER_DELAY_MS)


def flush(context: ProcessorContext, key: str, at_ms: int, name: str) -> None:
    context.forward(f"{key}@{at_ms}", context.store("sums").get(key))


def build(topology: Topology, source: Any, workload: str, output: str) -> None:
    """Add the `workload` operator ("process" or "process-timers") reading `source` (a stream
    of string keys and values) and writing to `output` (string keys, 8-byte sums)."""
    topology.add_store("sums", key_serde=serdes.StringSerde(), value_serde=serdes.IntSerde())
    timers = workload == "process-timers"
    source.process(
        add_up_and_time if timers else add_up,
        stores=["sums"],
        on_timer=flush if timers else None,
        name="sum",
    ).to(output, key_serde=serdes.StringSerde(), value_serde=serdes.IntSerde())
