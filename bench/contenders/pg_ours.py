"""This project's contender of `bench/postgres_e2e.py`, for `processor run
bench.contenders.pg_ours`: the JSON records of BENCH_INPUT into the table BENCH_PG_TABLE of the
database BENCH_PG_DSN by `PostgresSink` (append mode), exactly-once unless
BENCH_PG_EXACTLY_ONCE=0 (then at-least-once: no offsets table).

The sink follows the source stream, so the records go through the sink's internal topic
(`<application id>-pg-sink`) to the sink tasks, as in any application."""

import os

from processor import Topology, serdes
from processor.sinks import PostgresSink

topology = Topology("bench-pg-e2e")
topology.stream(
    os.environ["BENCH_INPUT"], key_serde=serdes.StringSerde(), value_serde=serdes.JsonSerde()
).sink(
    PostgresSink(
        os.environ["BENCH_PG_DSN"],
        os.environ["BENCH_PG_TABLE"],
        mode="append",
        exactly_once=os.environ.get("BENCH_PG_EXACTLY_ONCE", "1") != "0",
    ),
    name="pg",
)
