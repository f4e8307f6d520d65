"""How fast a worker loads a global table: records per second, from empty and from a checkpoint.

Fills a 6-partition topic with `--records` distinct keys (string keys of 13 bytes, JSON rows of
about 40 bytes), then runs what a worker runs at startup for its global tables
(`processor.runtime.global_tables.GlobalTables` over the real global consumer and RocksDB,
decoding every record with the table's serdes) and times it from `start()` until every
partition has been read to its end:

- from empty: a new state directory (the target is >= 300,000 records/s);
- from a checkpoint: the directory of a finished restore, after `--new` more updates were
  written; only those are read.

    PYTHONPATH=. python bench/global_table.py [--records 1000000] [--new 10000] [--runs 3]

It starts its own broker (`LocalBroker`) unless PROCESSOR_TEST_BOOTSTRAP names one.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench.restore import bootstrap_servers
from processor import Topology, serdes
from processor.kafka.global_reader import GlobalTopicReader
from processor.runtime.global_tables import GlobalTables
from processor.topology.handling import ErrorHandler

PARTITIONS = 6


def fill(bootstrap: str, topic: str, keys: Sequence[int], version: int) -> None:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.size": 1 << 20,
            "queue.buffering.max.messages": 1_000_000,
            "compression.type": "lz4",
        }
    )
    started = time.monotonic()
    for i in keys:
        row = json.dumps({"name": f"country {i}", "code": i, "v": version}).encode()
        while True:
            try:
                producer.produce(topic, row, b"country-%07d" % i)
                break
            except BufferError:
                producer.poll(0.01)
    if producer.flush(120):
        raise RuntimeError("producing the table did not finish")
    seconds = time.monotonic() - started
    print(f"produced {len(keys):,} records in {seconds:.1f} s ({len(keys) / seconds:,.0f}/s)")


def create(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"cleanup.policy": "compact"}
    admin.create_topics([NewTopic(topic, PARTITIONS, 1, config=config)])[topic].result(30)
    time.sleep(1.0)  # let the partitions get their leaders


def restore(bootstrap: str, topic: str, state_dir: Path, expected: int) -> tuple[float, float, int]:
    """Seconds from start() until restored, the CPU seconds the process used meanwhile (every
    thread: ours and librdkafka's), and the records read (checked: `expected`)."""
    topology = Topology("bench-global")
    topology.global_table(topic, key_serde=serdes.StringSerde(), value_serde=serdes.JsonSerde())
    settings = {"bootstrap.servers": bootstrap}

    def reader() -> GlobalTopicReader:
        group = f"bench-global-{uuid.uuid4().hex[:8]}"
        return GlobalTopicReader(settings, group_id=group, read_committed=False)

    def counts(topics: Sequence[str]) -> dict[str, int | None]:
        return dict.fromkeys(topics, PARTITIONS)

    tables = GlobalTables(
        topology.global_tables(), state_dir, reader, counts, deserialization=ErrorHandler.FAIL
    )
    try:
        started, cpu = time.monotonic(), time.process_time()
        tables.start()
        while not tables.restored():
            time.sleep(0.002)
        seconds, cpu = time.monotonic() - started, time.process_time() - cpu
    finally:
        tables.close()
    if tables.restore_records != expected:
        raise AssertionError(f"restored {tables.restore_records} of {expected} records")
    return seconds, cpu, tables.restore_records


def report(name: str, results: list[tuple[float, float, int]]) -> None:
    """Records per second of wall-clock time, and per CPU second (what the restore costs,
    whatever else the machine runs)."""
    rates = [records / seconds for seconds, _, records in results]
    cpu_rates = [records / cpu for _, cpu, records in results]
    times = ", ".join(f"{s:.2f} s" for s, _, _ in results)
    print(
        f"{name:<18} {results[0][2]:>9,} records  median {statistics.median(rates):>10,.0f} "
        f"records/s  (runs: {', '.join(f'{r:,.0f}' for r in rates)}; {times}); per CPU "
        f"second: median {statistics.median(cpu_rates):,.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with bootstrap_servers() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        topic = f"bench-global-{uuid.uuid4().hex[:8]}"
        create(bootstrap, topic)
        fill(bootstrap, topic, range(args.records), version=1)
        empty = [
            restore(bootstrap, topic, Path(tmp) / f"empty-{run}", args.records)
            for run in range(args.runs)
        ]
        report("from empty", empty)
        checkpointed = []
        for run in range(args.runs):
            fill(bootstrap, topic, range(run * args.new, (run + 1) * args.new), version=run + 2)
            checkpointed.append(restore(bootstrap, topic, Path(tmp) / "empty-0", args.new))
        report("from a checkpoint", checkpointed)


if __name__ == "__main__":
    main()
