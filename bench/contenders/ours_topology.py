"""This project's contender for `processor run bench.contenders.ours_topology`: the topics and the
workload come from BENCH_INPUT, BENCH_OUTPUT and BENCH_WORKLOAD (stateless, count,
count-window, process or process-timers).

The count is `group_by_key().count()`: no repartition (the input is keyed already), a RocksDB
store with its changelog, every update written to the output as an 8-byte count. The windowed
count is the same in tumbling windows of WINDOW_SIZE_MS (grace WINDOW_GRACE_MS) by the records'
timestamps, with emit="update" (every update written, as for the plain count and as Kafka
Streams' default and Quix Streams' `.current()` do), under the key `<key>@<window start ms>`.

The process workloads (`process`, `process-timers`) are in `ours_process`.

The join (BENCH_WORKLOAD=join) reads JSON orders from BENCH_INPUT and the customers table from
BENCH_TABLE (a table source: a RocksDB store), and writes
`orders.join(customers, enrich, how="left")` as JSON."""

import os

from processor import Topology, serdes

topology = Topology("bench-compare")

if os.environ["BENCH_WORKLOAD"] == "join":
    from bench.contenders import enrich

    _customers = topology.table(
        os.environ["BENCH_TABLE"], key_serde=serdes.StringSerde(), value_serde=serdes.JsonSerde()
    )
    _orders = topology.stream(
        os.environ["BENCH_INPUT"], key_serde=serdes.StringSerde(), value_serde=serdes.JsonSerde()
    )
    _orders.join(_customers, enrich, how="left", name="enrich").to(os.environ["BENCH_OUTPUT"])
else:
    _source = topology.stream(
        os.environ["BENCH_INPUT"], key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde()
    )
    if os.environ["BENCH_WORKLOAD"] == "stateless":
        (
            _source.filter(lambda _key, value: int(value) % 4 != 0)
            .map_values(lambda value: str(int(value) * 2))
            .to(os.environ["BENCH_OUTPUT"])
        )
    elif os.environ["BENCH_WORKLOAD"] == "count-window":
        from bench.contenders import WINDOW_GRACE_MS, WINDOW_SIZE_MS
        from processor.windows import TumblingWindows

        (
            _source.group_by_key()
            .windowed_by(
                TumblingWindows(size_ms=WINDOW_SIZE_MS, grace_ms=WINDOW_GRACE_MS), emit="update"
            )
            .count(name="window-counts")
            .to_stream()
            .map(lambda window, count: (f"{window.key}@{window.start_ms}", count))
            .to(
                os.environ["BENCH_OUTPUT"],
                key_serde=serdes.StringSerde(),
                value_serde=serdes.IntSerde(),
            )
        )
    elif os.environ["BENCH_WORKLOAD"] in ("process", "process-timers"):
        from bench.contenders import ours_process

        ours_process.build(
            topology, _source, os.environ["BENCH_WORKLOAD"], os.environ["BENCH_OUTPUT"]
        )
    else:
        _source.group_by_key().count(name="counts").to_stream().to(os.environ["BENCH_OUTPUT"])
