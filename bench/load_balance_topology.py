"""The topology `bench/load_balance.py` runs in each worker (`processor run
bench.load_balance_topology`): every record of BENCH_INPUT costs BENCH_COST_US microseconds in
a `map_values` and goes on to BENCH_OUTPUT unchanged. BENCH_COST_KIND says how the time is spent:
`sleep` (default) or `spin` (a CPU-bound busy loop).

Why sleeping is the default: this machine has 2 cores for a broker, a load generator and 3
workers. A CPU-bound cost there measures how the operating system shares 2 cores among busy
processes, which spreads an overloaded worker's excess over the others whatever the assignment.
A fixed time per record instead gives each worker a capacity of its own (about 1e6 / cost
records/s), as workers on machines of their own have: exactly what a skew overloads."""

from __future__ import annotations

import os
import time

from processor import Topology, serdes

COST_S = int(os.environ.get("BENCH_COST_US", "400")) / 1e6
SPIN = os.environ.get("BENCH_COST_KIND", "sleep") == "spin"


def costly(value: bytes) -> bytes:
    if SPIN:
        until = time.perf_counter() + COST_S
        while time.perf_counter() < until:
            pass
    else:
        time.sleep(COST_S)
    return value


def build(source_topic: str, output_topic: str) -> Topology:
    built = Topology("bench-load-balance")
    built.stream(source_topic, key_serde=serdes.StringSerde()).map_values(costly).to(
        output_topic, key_serde=serdes.StringSerde()
    )
    return built


topology = build(
    os.environ.get("BENCH_INPUT", "bench-load-in"), os.environ.get("BENCH_OUTPUT", "bench-out")
)
