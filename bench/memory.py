"""How much memory one worker needs when its values are large: a table keeps --keys distinct keys
of --value-bytes each, and the worker process's resident memory is sampled throughout.

Produces --keys records with distinct keys (`k000000`, ...) and --value-bytes values (slices of
one random megabyte, so nothing compresses) to a 6-partition topic, then starts one worker
(`processor run`, in the foreground: the sampled process is the worker) running
`topology.table(input, name="latest")`: every record is one put into a RocksDB store with a
changelog, through the store cache. From the worker's start until its committed input offsets
reach the end of the topic, VmRSS is read from /proc/<pid>/status every --interval seconds; the
kernel's own high-water mark (VmHWM) is read too. The changelog must hold one record per key
(each key was put once), which checks that every record went through.

With --old-root DIR, the same input is then run by the worker of another checkout (e.g.
`git worktree add /tmp/old <commit>`), with that checkout's default cache settings: the
figure to compare with. A run whose RSS passes --rss-limit is stopped and reported as such.

    PYTHONPATH=. python -m bench.memory [--keys 60000] [--value-bytes 100000]
        [--store-cache-bytes 64MiB] [--guarantee at_least_once] [--old-root DIR]
    PYTHONPATH=. python -m bench.memory --overhead   # the store cache's ENTRY_OVERHEAD

Needs about three times keys x value-bytes of disk (input, changelog, RocksDB); topics and
state are deleted at the end. Starts its own broker (`LocalBroker`) unless
PROCESSOR_TEST_BOOTSTRAP names one. Results: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from processor.testing.broker import LocalBroker

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 6
MIB = 1 << 20
# The topology, written into the run's directory so that any checkout's worker can load it.
TOPOLOGY = """\
import os

from processor import Topology, serdes

topology = Topology("bench-memory")
topology.table(
    os.environ["BENCH_INPUT"],
    key_serde=serdes.StringSerde(),
    value_serde=serdes.BytesSerde(),
    name="latest",
)
"""


@dataclass
class Result:
    label: str
    seconds: float
    peak_rss: int  # bytes, the largest sample
    hwm: int  # bytes, the kernel's VmHWM at the last sample
    end_rss: int
    changelog_records: int
    stopped: str = ""


@contextlib.contextmanager
def broker() -> Iterator[str]:
    external = os.environ.get("PROCESSOR_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    with LocalBroker() as local:
        yield local.bootstrap_servers


def produce(bootstrap: str, topic: str, keys: int, value_bytes: int) -> None:
    noise = random.Random(keys).randbytes(MIB + value_bytes)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    step = 4099  # a prime: consecutive values start far apart in the random megabyte
    for i in range(keys):
        start = (i * step) % MIB
        value = noise[start : start + value_bytes]
        while True:
            try:
                producer.produce(topic, key=b"k%06d" % i, value=value)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(300):
        raise SystemExit("the input was not fully produced within 300 s")


def memory_of(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of `pid` in bytes."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(rest.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def committed_all(consumer: Consumer, topic: str, ends: dict[int, int]) -> bool:
    partitions = consumer.committed([TopicPartition(topic, p) for p in ends], timeout=10)
    return all(tp.offset >= ends[tp.partition] for tp in partitions)


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-memory-{topic}"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(PARTITIONS)
        }
    finally:
        consumer.close()


def run_worker(
    args: argparse.Namespace,
    bootstrap: str,
    topic: str,
    label: str,
    root: Path,
    extra: list[str],
) -> Result:
    app = f"bench-memory-{uuid.uuid4().hex[:6]}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    (workdir / "memory_table.py").write_text(TOPOLOGY)
    ends = end_offsets(bootstrap, topic)
    env = {**os.environ, "PYTHONPATH": str(root), "BENCH_INPUT": topic}
    command = [
        sys.executable,
        "-m",
        "processor.cli",
        "run",
        "memory_table",
        "--bootstrap-servers",
        bootstrap,
        "--application-id",
        app,
        "--state-dir",
        str(workdir / "state"),
        "--processing-guarantee",
        args.guarantee,
        "--http-port",
        "off",
        "--log-level",
        "WARNING",
        *extra,
    ]
    offsets = Consumer({"bootstrap.servers": bootstrap, "group.id": app})
    started = time.monotonic()
    worker = subprocess.Popen(command, cwd=workdir, env=env)
    peak = hwm = rss = 0
    stopped = ""
    next_check = started + 1
    try:
        while True:
            time.sleep(args.interval)
            if worker.poll() is not None:
                raise SystemExit(f"{label}: the worker exited with {worker.returncode}")
            rss, hwm = memory_of(worker.pid)
            peak = max(peak, rss)
            elapsed = time.monotonic() - started
            if rss > args.rss_limit:
                stopped = f"stopped at {rss / MIB:,.0f} MiB (--rss-limit) after {elapsed:.0f} s"
                break
            if elapsed > args.timeout:
                stopped = f"did not finish in {args.timeout:.0f} s"
                break
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + 1
                if committed_all(offsets, topic, ends):
                    break
            if int(elapsed / args.interval) % 20 == 0:
                print(f"  {label}: {elapsed:5.0f} s, RSS {rss / MIB:,.0f} MiB", file=sys.stderr)
        seconds = time.monotonic() - started
    finally:
        offsets.close()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(120)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    changelog = f"{app}-latest-changelog"
    records = sum(end_offsets(bootstrap, changelog).values()) if not stopped else 0
    admin = AdminClient({"bootstrap.servers": bootstrap})
    internal = [changelog, f"{app}-coordination", f"{app}-metadata"]
    for future in admin.delete_topics(internal).values():
        with contextlib.suppress(Exception):
            future.result()
    shutil.rmtree(workdir, ignore_errors=True)
    if not stopped and records < args.keys:
        raise SystemExit(f"{label}: the changelog holds {records} records for {args.keys} keys")
    return Result(label, seconds, peak, hwm, rss, records, stopped)


def overhead() -> None:
    """What a store cache entry costs beyond its key and value, per state, with tracemalloc."""
    from processor.state.budget import MemoryBudget
    from processor.state.cache import ENTRY_OVERHEAD, StoreCache
    from processor.state.memory import InMemoryBackend

    class FreshReads(InMemoryBackend):
        def get(self, store: str, key: bytes) -> bytes | None:  # a new object, as RocksDB's
            value = super().get(store, key)
            return None if value is None else bytes(bytearray(value))

    print(f"ENTRY_OVERHEAD = {ENTRY_OVERHEAD}; measured bytes per entry beyond key and value:")
    print("| entries | key, value bytes | dirty | taken, not written | written | read |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n, key_bytes, value_bytes in (
        (100_000, 8, 8),
        (131_000, 16, 100),
        (170_000, 16, 100),
        (200_000, 16, 1000),
        (2_000, 16, 100_000),
    ):
        row = []
        for state in ("dirty", "taken", "written", "read"):
            backend = FreshReads(["s"])
            if state == "read":
                backend.write(
                    {"s": [(b"k%0*d" % (key_bytes - 1, i), bytes(value_bytes)) for i in range(n)]},
                    {},
                )
            cache = StoreCache(backend, "s", budget=MemoryBudget(1 << 50))
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            for i in range(n):
                key = b"k%0*d" % (key_bytes - 1, i)  # the record's key, kept by the cache
                if state == "read":
                    cache.get(key)
                else:
                    cache.put(key, bytes(value_bytes))
            taken = cache.take_dirty() if state in ("taken", "written") else []
            if state == "written":
                cache.mark_written()
                taken = []
            gc.collect()
            used = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
            row.append(f"{used / n - key_bytes - value_bytes:.0f}")
            del taken, cache, backend
        print(f"| {n:,} | {key_bytes}, {value_bytes:,} | " + " | ".join(row) + " |")


def parse_bytes(text: str) -> int:
    from processor.config import parse_size

    return parse_size("--rss-limit", text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=60_000)
    parser.add_argument("--value-bytes", type=int, default=100_000)
    parser.add_argument(
        "--store-cache-bytes", help="passed to this checkout's worker (default: its default)"
    )
    parser.add_argument(
        "--guarantee", choices=["at_least_once", "exactly_once"], default="at_least_once"
    )
    parser.add_argument("--old-root", type=Path, help="also run this checkout's worker")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("--rss-limit", type=parse_bytes, default=parse_bytes("12GiB"))
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    parser.add_argument("--overhead", action="store_true", help="only measure ENTRY_OVERHEAD")
    args = parser.parse_args()
    if args.overhead:
        overhead()
        return
    with broker() as bootstrap:
        topic = f"bench-memory-input-{uuid.uuid4().hex[:6]}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result()
        try:
            began = time.monotonic()
            produce(bootstrap, topic, args.keys, args.value_bytes)
            size = args.keys * args.value_bytes
            print(
                f"input: {args.keys:,} keys x {args.value_bytes:,} bytes = {size / 1e9:.1f} GB "
                f"in {topic} ({time.monotonic() - began:.0f} s to produce)",
                file=sys.stderr,
            )
            cache = args.store_cache_bytes
            runs = [
                (
                    f"this checkout, store_cache_bytes {cache or 'default'}",
                    ROOT,
                    ["--store-cache-bytes", cache] if cache else [],
                )
            ]
            if args.old_root:
                runs.append((f"{args.old_root}, its defaults", args.old_root.resolve(), []))
            results = [
                run_worker(args, bootstrap, topic, label, root, extra)
                for label, root, extra in runs
            ]
        finally:
            for future in admin.delete_topics([topic]).values():
                with contextlib.suppress(Exception):
                    future.result()
    print(
        f"\n{args.keys:,} keys x {args.value_bytes:,} bytes, {args.guarantee}, one worker, "
        f"RSS sampled every {args.interval} s\n"
    )
    print("| worker | time (s) | MB/s | peak RSS (MiB) | VmHWM (MiB) | RSS at the end (MiB) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        rate = "" if r.stopped else f"{args.keys * args.value_bytes / r.seconds / 1e6:,.0f}"
        time_text = r.stopped or f"{r.seconds:,.0f}"
        print(
            f"| {r.label} | {time_text} | {rate} | {r.peak_rss / MIB:,.0f} | {r.hwm / MIB:,.0f} | "
            f"{r.end_rss / MIB:,.0f} |"
        )


if __name__ == "__main__":
    main()
