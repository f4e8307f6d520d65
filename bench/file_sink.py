"""Rows/s of `FileSink` writers, JSON lines beside Parquet, driven as the runtime drives them.

1,000,000 small dict records (an int id, a short str, a float, a bool), prepared one by one
(the worker's main thread) and written in batches of `max_batch_records` (the writer thread),
files published every `roll_bytes` (default 64 MiB) and at the end. Prints prepare, write and
total rows/s per format; both halves run on one thread here, one after the other per batch.

    PYTHONPATH=. .venv/bin/python bench/file_sink.py [--records 1000000] [--formats jsonl,parquet]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from processor.sinks import FileSink
from processor.sinks.base import SinkBatch, SinkRecord, SinkTask

BATCH = 10_000


def _records(count: int) -> list[SinkRecord]:
    return [
        SinkRecord(
            key=None,
            value={"id": i, "name": f"user-{i % 1000}", "amount": i * 0.25, "paid": i % 3 == 0},
            timestamp=1_700_000_000_000 + i,
            headers=None,
            topic="orders",
            partition=0,
            offset=i,
        )
        for i in range(count)
    ]


def run(fmt: str, records: list[SinkRecord], directory: Path) -> tuple[float, float, int]:
    """Seconds preparing, seconds writing, bytes published."""
    sink = FileSink(directory, format=fmt)
    writer = sink.writer(SinkTask("bench", "app", "orders", 0))
    writer.open()
    preparing = writing = 0.0
    for first in range(0, len(records), BATCH):
        chunk = records[first : first + BATCH]
        started = time.perf_counter()
        items = [writer.prepare(record) for record in chunk]
        prepared = time.perf_counter()
        writer.write(SinkBatch(items, first, first + len(chunk)))
        writing += time.perf_counter() - prepared
        preparing += prepared - started
    started = time.perf_counter()
    durable = writer.roll(2**62)
    writing += time.perf_counter() - started
    assert durable == len(records), durable
    size = sum(path.stat().st_size for path in directory.iterdir())
    return preparing, writing, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--formats", default="jsonl,parquet")
    args = parser.parse_args()
    records = _records(args.records)
    for fmt in args.formats.split(","):
        with tempfile.TemporaryDirectory() as name:
            preparing, writing, size = run(fmt, records, Path(name))
        total = preparing + writing
        print(
            f"{fmt:8} {args.records:,} rows: prepare {args.records / preparing:>10,.0f} rows/s, "
            f"write {args.records / writing:>10,.0f} rows/s, together "
            f"{args.records / total:>10,.0f} rows/s ({total:.2f} s, {size / 1e6:.1f} MB)"
        )


if __name__ == "__main__":
    main()
