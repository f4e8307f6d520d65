"""Calling a service per record (issue 22): records/s of one worker whose operator calls a local
HTTP service answering after --delay-ms, with `map_values_async` (--concurrency calls at once,
ordered and unordered, at-least-once and exactly-once) and with a blocking call in `map_values`.

    .venv/bin/python -m bench.async_calls [--records 20000] [--sync-records 300] [--runs 3]
        [--delay-ms 20] [--concurrency 64] [--cases async-alos,async-eos,unordered-eos,sync]

The input (key `k<n % 1000>`, value `n`) is produced once to a 6-partition topic; each run
starts one worker (`bench/contenders/async_calls.py`) under a fresh application id and reads
the output topic (read_committed) until every record is there. The rate is taken between the
first output and the last (so the worker's start-up is left out), over the records in between.
Each run is checked: every input value in the output, once under exactly-once; with `ordered`,
each key's values in input order (a partition's order holds, so a key's does). The service
(`processor.testing.http_service`) runs in this process, on a thread of its own, and counts
the calls it answered.

It starts its own broker (`LocalBroker`, unless PROCESSOR_TEST_BOOTSTRAP names one).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench.compare import base_env
from bench.postgres_e2e import broker, progress, stop
from processor.testing.http_service import EchoService

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 6
CASES = {
    # case: (mode, guarantee, ordered)
    "async-alos": ("async", "at_least_once", True),
    "async-eos": ("async", "exactly_once", True),
    "unordered-eos": ("async", "exactly_once", False),
    "unordered-alos": ("async", "at_least_once", False),
    "sync": ("sync", "at_least_once", True),
    "none": ("none", "at_least_once", True),
}


def produce_input(bootstrap: str, topic: str, records: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        future.result()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for n in range(records):
        producer.produce(topic, key=f"k{n % 1000}".encode(), value=str(n).encode())
        if n % 10_000 == 0:
            producer.poll(0)
    if producer.flush(60) != 0:
        raise SystemExit("the input was not all produced")


def run_once(
    bootstrap: str, service: EchoService, case: str, records: int, concurrency: int, work: Path
) -> tuple[float, int]:
    """One worker on a fresh input topic; returns (records/s, calls answered)."""
    mode, guarantee, ordered = CASES[case]
    suffix = uuid.uuid4().hex[:6]
    source, output = f"bench-async-in-{suffix}", f"bench-async-out-{suffix}"
    produce_input(bootstrap, source, records)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(output, PARTITIONS, 1)])[output].result()
    env = base_env()
    env.update(
        BENCH_INPUT=source,
        BENCH_OUTPUT=output,
        BENCH_SERVICE_URL=service.url,
        BENCH_MODE=mode,
        BENCH_CONCURRENCY=str(concurrency),
        BENCH_ORDERED="1" if ordered else "0",
    )
    answered_before = sum(service.answered.values())
    command = [
        sys.executable,
        "-m",
        "processor.cli",
        "run",
        "bench.contenders.async_calls",
        "--bootstrap-servers",
        bootstrap,
        "--application-id",
        f"bench-async-{case}-{suffix}",
        "--state-dir",
        str(work / suffix),
        "--processing-guarantee",
        guarantee,
        "--http-port",
        "",
        "--log-level",
        os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
    ]
    log_path = work / f"{case}-{suffix}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            values, first, last, counted = read_output(bootstrap, output, records, process)
        finally:
            stop(process)
    replays = [
        line
        for line in log_path.read_text(errors="replace").splitlines()
        if "rewinding" in line or "lost its group membership" in line
    ]
    if replays:
        progress(f"  {case}: the worker rewound its tasks: {replays[0][-160:]}")
    check(values, records, exactly_once=guarantee == "exactly_once", ordered=ordered)
    rate = (counted - 1) / (last - first) if last > first else float("nan")
    return rate, sum(service.answered.values()) - answered_before


def read_output(
    bootstrap: str, topic: str, records: int, process: subprocess.Popen[bytes]
) -> tuple[dict[bytes, list[tuple[int, int, int]]], float, float, int]:
    """Per key, (value, partition, offset) in the topic's order; when the first and the last
    record came. What
    the reader gets twice (its group may be rebalanced while the topic is new) counts once."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-reader-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    found: dict[tuple[int, int], tuple[bytes, int]] = {}
    first, last = 0.0, 0.0
    deadline = time.monotonic() + 600
    try:
        while len(found) < records:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"{len(found)} of {records} outputs (worker: {process.poll()})")
            for message in consumer.consume(1000, 0.2):
                if message.error():
                    continue
                now = time.monotonic()
                if not found:
                    first = now
                last = now
                where = (message.partition(), message.offset())
                found[where] = (message.key(), int(message.value()))
    finally:
        consumer.close()
    values: dict[bytes, list[tuple[int, int, int]]] = defaultdict(list)
    for (partition, offset), (key, value) in sorted(found.items()):
        values[key].append((value, partition, offset))
    return values, first, last, len(found)


def check(
    values: dict[bytes, list[tuple[int, int, int]]],
    records: int,
    *,
    exactly_once: bool,
    ordered: bool,
) -> None:
    every = [v for found in values.values() for v, _, _ in found]
    missing = set(range(records)) - set(every)
    if missing:
        raise SystemExit(f"values missing from the output: {sorted(missing)[:5]}")
    if exactly_once and len(every) != records:
        raise SystemExit(f"{len(every) - records} outputs duplicated under exactly-once")
    if ordered:
        # A key's records are in one input partition, in input order: they must come out so
        # (at-least-once: apart from what a rewind replays, so first appearances only).
        for key, found in values.items():
            if not exactly_once:
                seen: set[int] = set()
                found = [f for f in found if not (f[0] in seen or seen.add(f[0]))]
            for before, after in itertools.pairwise(found):
                if after[0] < before[0]:
                    raise SystemExit(
                        f"key {key!r}: value {after[0]} (partition {after[1]} offset "
                        f"{after[2]}) after {before[0]} (partition {before[1]} offset "
                        f"{before[2]})"
                    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--sync-records", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--cases", default="async-alos,async-eos,unordered-eos,sync")
    args = parser.parse_args()
    cases = args.cases.split(",")
    service = EchoService(delay_s=args.delay_ms / 1000)
    rates: dict[str, list[float]] = defaultdict(list)
    try:
        with broker() as (bootstrap, _pid), tempfile.TemporaryDirectory() as tmp:
            progress(f"broker {bootstrap}; service {service.url}, {args.delay_ms} ms a call")
            for run in range(args.runs):
                for case in cases:
                    records = args.sync_records if case == "sync" else args.records
                    rate, calls = run_once(
                        bootstrap, service, case, records, args.concurrency, Path(tmp)
                    )
                    rates[case].append(rate)
                    progress(
                        f"{case} run {run + 1}: {rate:,.0f} records/s "
                        f"({records:,} records, {calls:,} calls answered)"
                    )
    finally:
        service.close()
    print(f"\n{args.delay_ms:.0f} ms a call, concurrency {args.concurrency}, one worker")
    print("| case | records/s, median [min-max] |\n| --- | --- |")
    for case in cases:
        found = rates[case]
        print(f"| {case} | {statistics.median(found):,.0f} [{min(found):,.0f}-{max(found):,.0f}] |")


if __name__ == "__main__":
    main()
