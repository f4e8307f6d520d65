"""How fast a task's store is restored from its changelog: records per second, end to end.

Produces `--records` small records (16-byte keys, 8-byte values, distinct keys) to a
one-partition changelog, then restores them into an empty RocksDB backend with `Restorer` and
prints the rate (the target is >= 300,000 records/s). For comparison it also prints the rate of
the reader alone (records read, nothing written) and of a restore into the in-memory backend.

    PYTHONPATH=. python bench/restore.py [--records 1000000] [--batch-size 20000] [--runs 3]

It starts its own broker (`LocalBroker`) unless PROCESSOR_TEST_BOOTSTRAP names one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from processor.ids import TaskId
from processor.kafka.changelog_reader import ChangelogReader, PartitionEnd
from processor.state.backend import TaskStateBackend
from processor.state.memory import InMemoryBackend
from processor.state.restore import Restorer
from processor.state.rocksdb import open_rocksdb
from processor.testing.broker import LocalBroker

STORE = "bench"
TASK = TaskId(0, 0)


@contextlib.contextmanager
def bootstrap_servers() -> Iterator[str]:
    external = os.environ.get("PROCESSOR_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    with LocalBroker() as broker:
        yield broker.bootstrap_servers


def fill_changelog(bootstrap: str, topic: str, records: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"cleanup.policy": "compact"}
    admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(30)
    time.sleep(1.0)  # let the partition get its leader
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
    value = b"v" * 8
    for i in range(records):
        while True:
            try:
                producer.produce(topic, value, b"%016d" % i, partition=0)
                break
            except BufferError:
                producer.poll(0.01)
    if producer.flush(120):
        raise RuntimeError("producing the changelog did not finish")
    seconds = time.monotonic() - started
    print(f"produced {records:,} records in {seconds:.1f} s ({records / seconds:,.0f}/s)")


def reader(bootstrap: str) -> ChangelogReader:
    group = f"bench-restore-{uuid.uuid4().hex[:8]}"
    return ChangelogReader({"bootstrap.servers": bootstrap}, group_id=group, read_committed=False)


def read_only(bootstrap: str, topic: str, batch_size: int) -> float:
    """Records per second of the reader alone, from the start to the end event."""
    source = reader(bootstrap)
    try:
        started = time.monotonic()
        source.assign({(topic, 0): 0})
        count = 0
        while True:
            items = source.consume_batches(batch_size, 0.1)
            count += sum(len(i.changes) for i in items if not isinstance(i, PartitionEnd))
            if items and isinstance(items[-1], PartitionEnd):
                return count / (time.monotonic() - started)
    finally:
        source.close()


def restore(
    bootstrap: str, topic: str, batch_size: int, backend: TaskStateBackend, records: int
) -> float:
    """Records per second restoring `topic` into the empty `backend`."""

    def no_wipe(task_id: TaskId, reason: str) -> TaskStateBackend:
        raise AssertionError(reason)

    restorer = Restorer(reader(bootstrap), wipe_callback=no_wipe, batch_size=batch_size)
    try:
        started = time.monotonic()
        restorer.add(TASK, backend, {STORE: topic})
        while TASK not in restorer.completed():
            restorer.raise_if_failed()
            time.sleep(0.005)
        seconds = time.monotonic() - started
        if restorer.records_read(TASK) != records:
            raise AssertionError(f"restored {restorer.records_read(TASK)} of {records} records")
        return records / seconds
    finally:
        restorer.close()
        backend.close()


def report(name: str, runs: int, measure: Callable[[], float]) -> None:
    rates = [measure() for _ in range(runs)]
    print(
        f"{name:<28} median {statistics.median(rates):>10,.0f} records/s   "
        f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with bootstrap_servers() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        topic = f"bench-restore-{uuid.uuid4().hex[:8]}-changelog"
        fill_changelog(bootstrap, topic, args.records)
        report("reader only", args.runs, lambda: read_only(bootstrap, topic, args.batch_size))
        report(
            "restore into memory",
            args.runs,
            lambda: restore(
                bootstrap, topic, args.batch_size, InMemoryBackend([STORE]), args.records
            ),
        )
        paths = iter(range(args.runs))
        report(
            "restore into RocksDB",
            args.runs,
            lambda: restore(
                bootstrap,
                topic,
                args.batch_size,
                open_rocksdb(Path(tmp) / f"task-{next(paths)}", [STORE]),
                args.records,
            ),
        )


if __name__ == "__main__":
    main()
