"""How fast one worker process counts: records keyed by word, re-keyed through a repartition
topic and counted in RocksDB (changelog + output per update), the stateful half of
`topologies.wordcount` (`bench/wordcount_topics.py`), under at-least-once and exactly-once.

Produces `--records` records over `--keys` distinct words to a 6-partition topic, starts
`processor run bench.wordcount_topics` (one worker, `--workers N` for more), and times from
the worker's start until the output holds the final count of every word; correctness is checked
(every word's last count equals the truth), so a fast wrong run cannot count. Prints the median,
min and max of `--runs` runs in records per second.

    PYTHONPATH=. python bench/stateful_count.py [--records 300000] [--keys 100000] [--runs 3]

It starts its own broker (`LocalBroker`) unless PROCESSOR_TEST_BOOTSTRAP names one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from processor.testing.broker import LocalBroker

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 6


@contextlib.contextmanager
def broker() -> Iterator[str]:
    external = os.environ.get("PROCESSOR_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    with LocalBroker() as local:
        yield local.bootstrap_servers


def produce(bootstrap: str, topic: str, words: list[str]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for i, word in enumerate(words):
        while True:
            try:
                producer.produce(topic, key=word.encode(), value=str(i).encode())
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0


def run_once(bootstrap: str, records: int, keys: int, guarantee: str, workers: int) -> float:
    suffix = uuid.uuid4().hex[:6]
    app = f"bench-{guarantee}-{suffix}"
    rng = random.Random(records)
    words = [f"w{rng.randrange(keys)}" for _ in range(records)]
    truth = Counter(words)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    # wordcount reads `sentences` and writes `word-counts`; a fresh pair per run.
    source, sink = f"sentences-{suffix}", f"word-counts-{suffix}"
    for future in admin.create_topics(
        [NewTopic(source, PARTITIONS, 1), NewTopic(sink, PARTITIONS, 1)]
    ).values():
        future.result()
    produce(bootstrap, source, words)

    with tempfile.TemporaryDirectory() as state:
        env = {**os.environ, "BENCH_SOURCE": source, "BENCH_SINK": sink}
        started = time.monotonic()
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "processor.cli",
                "run",
                "bench.wordcount_topics",
                "--bootstrap-servers",
                bootstrap,
                "--application-id",
                app,
                "--state-dir",
                state,
                "--processing-guarantee",
                guarantee,
                "--workers",
                str(workers),
                "--log-level",
                os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            ],
            cwd=ROOT,
            env=env,
        )
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": app + "-reader",
                "isolation.level": "read_committed",
            }
        )
        consumer.assign([TopicPartition(sink, p, 0) for p in range(PARTITIONS)])
        latest: dict[str, int] = {}
        done = 0
        try:
            while done < len(truth):
                if worker.poll() is not None:
                    raise SystemExit(f"worker exited with {worker.returncode}")
                for message in consumer.consume(10000, 0.2):
                    word = message.key().decode()
                    count = struct.unpack(">q", message.value())[0]
                    if count == truth[word] and latest.get(word) != count:
                        done += 1
                    latest[word] = count
                if time.monotonic() - started > 600:
                    raise SystemExit(f"timed out with {done} of {len(truth)} words final")
            elapsed = time.monotonic() - started
        finally:
            consumer.close()
            worker.terminate()
            worker.wait(60)
    wrong = [w for w, n in truth.items() if latest.get(w) != n]
    if wrong and guarantee == "exactly_once":
        raise SystemExit(f"{len(wrong)} wrong counts, e.g. {wrong[0]}")
    return records / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    with broker() as bootstrap:
        print(
            f"{args.records} records, {args.keys} keys, {PARTITIONS} partitions, "
            f"{args.workers} worker(s), {args.runs} runs each",
            flush=True,
        )
        print("| guarantee | median rec/s | min | max |\n| --- | --- | --- | --- |")
        for guarantee in ("at_least_once", "exactly_once"):
            rates = []
            for run in range(args.runs):
                rates.append(run_once(bootstrap, args.records, args.keys, guarantee, args.workers))
                print(f"  {guarantee} run {run + 1}: {rates[-1]:,.0f} rec/s", file=sys.stderr)
            print(
                f"| {guarantee} | {statistics.median(rates):,.0f} | {min(rates):,.0f} | "
                f"{max(rates):,.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
