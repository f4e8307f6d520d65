"""Throughput and latency of the task state backends, RocksDB beside memory.

Fixed sizes, seeded keys: 100,000 records (16-byte keys, 100-byte values) written in batches of
1,000 puts (each batch with a changelog offset, as a commit writes them), then:

- write: records/s over all batches;
- get: mean and 99th-percentile latency of 20,000 reads of random present keys, then of absent
  keys;
- range: records/s of a full scan, and of 2,000 scans of 100 keys each (seek included);
- overwrite: records/s of the same 100,000 keys written again (RocksDB now flushes and compacts).

    PYTHONPATH=. python bench/state_backend.py [--records 100000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from processor.state.backend import TaskStateBackend
from processor.state.memory import InMemoryBackend
from processor.state.rocksdb import open_rocksdb

BATCH = 1_000
READS = 20_000
SHORT_SCANS = 2_000
SHORT_SCAN_LENGTH = 100
VALUE = bytes(range(100))
STORE = "s"


def _key(i: int) -> bytes:
    return b"key-%012d" % i


def _write_all(backend: TaskStateBackend, records: int, offset: int) -> float:
    """Seconds to write `records` puts in batches of BATCH, each with its changelog offset."""
    started = time.perf_counter()
    for first in range(0, records, BATCH):
        changes = [(_key(i), VALUE) for i in range(first, min(first + BATCH, records))]
        offset += len(changes)
        backend.write({STORE: changes}, {"app-s-changelog": offset})
    return time.perf_counter() - started


def _latencies(call: Callable[[bytes], object], keys: list[bytes]) -> list[float]:
    result = []
    for key in keys:
        started = time.perf_counter_ns()
        call(key)
        result.append((time.perf_counter_ns() - started) / 1000)
    return result


def measure(backend: TaskStateBackend, records: int) -> dict[str, str]:
    rng = random.Random(0)
    row: dict[str, str] = {}
    row["write (records/s)"] = f"{records / _write_all(backend, records, 0):,.0f}"

    def get(key: bytes) -> object:
        return backend.get(STORE, key)

    present = [_key(rng.randrange(records)) for _ in range(READS)]
    absent = [b"kez-%012d" % rng.randrange(records) for _ in range(READS)]
    for name, keys in (("get present", present), ("get absent", absent)):
        times = _latencies(get, keys)
        p99 = statistics.quantiles(times, n=100)[98]
        row[f"{name} (µs mean / p99)"] = f"{statistics.fmean(times):.2f} / {p99:.2f}"

    started = time.perf_counter()
    scanned = sum(1 for _ in backend.range(STORE))
    row["full scan (records/s)"] = f"{scanned / (time.perf_counter() - started):,.0f}"
    assert scanned == records

    starts = [rng.randrange(records - SHORT_SCAN_LENGTH) for _ in range(SHORT_SCANS)]
    started = time.perf_counter()
    scanned = 0
    for first in starts:
        scanned += sum(
            1 for _ in backend.range(STORE, _key(first), _key(first + SHORT_SCAN_LENGTH))
        )
    elapsed = time.perf_counter() - started
    assert scanned == SHORT_SCANS * SHORT_SCAN_LENGTH
    row["100-key scans (scans/s)"] = f"{SHORT_SCANS / elapsed:,.0f}"
    row["100-key scans (records/s)"] = f"{scanned / elapsed:,.0f}"

    row["overwrite (records/s)"] = f"{records / _write_all(backend, records, records):,.0f}"
    row["approximate_count"] = f"{backend.approximate_count(STORE):,}"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        rocksdb = open_rocksdb(Path(tmp) / "0_0", [STORE])
        try:
            rocks_row = measure(rocksdb, args.records)
        finally:
            rocksdb.close()
    memory_row = measure(InMemoryBackend([STORE]), args.records)

    width = max(len(name) for name in rocks_row)
    print(f"{args.records:,} records, {BATCH:,} puts per write, 16-byte keys, 100-byte values")
    print(f"{'':{width}}  {'rocksdb':>18}  {'memory':>18}")
    for name, value in rocks_row.items():
        print(f"{name:{width}}  {value:>18}  {memory_row[name]:>18}")


if __name__ == "__main__":
    main()
