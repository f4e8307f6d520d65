"""The counting half of `topologies.wordcount` (records are keyed by their word already), with
its topics taken from the environment, for bench/stateful_count.py."""

import os

from processor import Topology, serdes

topology = Topology("wordcount")

(
    topology.stream(
        os.environ["BENCH_SOURCE"], key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde()
    )
    .group_by(lambda _key, _value: _key, name="words")
    .count(name="counts")
    .to_stream()
    .to(os.environ["BENCH_SINK"])
)
