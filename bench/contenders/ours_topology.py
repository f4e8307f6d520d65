"""This project's contender for `processor run bench.contenders.ours_topology`: the topics and the
workload come from BENCH_INPUT, BENCH_OUTPUT and BENCH_WORKLOAD (stateless or count).

The count is `group_by_key().count()`: no repartition (the input is keyed already), a RocksDB
store with its changelog, every update written to the output as an 8-byte count."""

import os

from processor import Topology, serdes

topology = Topology("bench-compare")

_source = topology.stream(
    os.environ["BENCH_INPUT"], key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde()
)
if os.environ["BENCH_WORKLOAD"] == "stateless":
    (
        _source.filter(lambda _key, value: int(value) % 4 != 0)
        .map_values(lambda value: str(int(value) * 2))
        .to(os.environ["BENCH_OUTPUT"])
    )
else:
    _source.group_by_key().count(name="counts").to_stream().to(os.environ["BENCH_OUTPUT"])
