"""Timers (issue 16): what a timer costs on the per-record path, and how fast a million pending
timers are restored and fired.

    PYTHONPATH=. python -m bench.timers [--part cost,task,restore,fire] [--timers 1000000]
        [--records 500000] [--keys 100000] [--runs 3] [--guarantee exactly_once]
        [--profile N] [--json PATH]

Parts (each figure the median of --runs runs, with min and max):

- ``cost``: single calls in isolation, over a RocksDB backend and the store cache as a task has
  them: `ctx.store("sums").put(key, value)` against `ctx.set_timer(at)` (the context of a
  `process()` operator with `on_timer`), and under them `KeyValueStore.put` against
  `TimerStore.set`; then what a commit adds per entry (flush to the changelog and checkpoint
  into RocksDB: a timer also writes its index entry). Nanoseconds per call, CPU time.
- ``task``: `StreamTask.process` alone (no Kafka: messages built in memory, outputs counted),
  --records records over --keys keys with timestamps rising over 10 minutes as in
  `bench.compare`, through the `process` and `process-timers` operators of
  `bench/contenders/ours_process.py`, committed (flush + checkpoint into RocksDB) every 20,000
  records; microseconds of CPU per record, side by side, and the firings. With --profile N,
  cProfile's top N entries (by own time) of the `process-timers` run.
- ``restore``: --timers pending timers (distinct keys, stream clock, times spread over an
  hour) in the exact changelog format of a timer store (`processor.state.timer_store`'s
  layout; checked against what the test driver's changelog holds for the same timers),
  produced to a 6-partition changelog; then (a) `Restorer` into empty RocksDB backends through
  the same `with_indexes` a worker uses, in process: changelog records per second with the
  derived index, beside the same number of plain key-value records restored the same way; and
  (b) end to end: a worker (`processor run bench.timers_topology`) started on an empty state
  directory, from its start until every task logged "state restored" (group join included).
- ``fire``: that worker, once restored: one record per partition with a timestamp past every
  timer moves each task's stream time beyond all of them; timed from producing it until every
  firing's output was read (read_committed): firings per second, the firings' outputs, the
  timer deletions in the changelog and the commits (--guarantee) included. Each firing must
  come exactly once, with its time. The same, in process: a `StreamTask` over the restored
  backend, one record, the firings until none is due, commits every 10,000 firings.

It starts its own broker (`LocalBroker`) unless PROCESSOR_TEST_BOOTSTRAP names one (for
``restore`` and ``fire``; ``cost`` and ``task`` need none).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.compare import PARTITIONS, create_topic, delete_topics_of, input_timestamps
from bench.contenders import TIMER_DELAY_MS, ours_process
from bench.stateful_count import broker
from bench.timers_topology import OPERATOR, build
from processor import Topology, serdes
from processor.ids import TaskId
from processor.kafka.changelog_reader import ChangelogReader
from processor.runtime.task import StreamTask
from processor.state.backend import TaskStateBackend
from processor.state.budget import DEFAULT_STORE_CACHE_BYTES, MemoryBudget
from processor.state.indexing import backend_stores, unwrapped, with_indexes
from processor.state.restore import Restorer
from processor.state.rocksdb import open_rocksdb
from processor.state.task_stores import TaskStores
from processor.state.time_index import STREAM, U64
from processor.state.timer_store import TIMER, TimerStore, timer_ref
from processor.state.typed import KeyValueStore
from processor.testing.driver import TopologyTestDriver
from processor.topology.context import ProcessorContext
from processor.topology.subtopology import SubTopology

ROOT = Path(__file__).resolve().parents[1]
APP = "bench-timers"
COMMIT_EVERY = 20_000  # task: records between commits (a worker at ~20-50k records/s, 1 s)
FIRE_COMMIT_EVERY = 10_000  # fire, in process: firings between commits (one pass of a task)
SPREAD_MS = 3_600_000  # the pending timers' times spread over an hour
RESTORED = re.compile(r"task (\S+): state restored in ([\d.]+)s \((\d+) changelog records read\)")


def progress(message: str, *, end: str = "\n") -> None:
    tty = sys.stderr.isatty()
    if end == "" and not tty:
        return  # a line that rewrites itself: only on a terminal
    prefix = "\r\033[K" if tty else ""
    print(f"{prefix}[{time.strftime('%H:%M:%S')}] {message}", end=end, file=sys.stderr, flush=True)


def spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    return (
        f"{fmt.format(statistics.median(values))} "
        f"[{fmt.format(min(values))}-{fmt.format(max(values))}]"
    )


# --- a task in process ------------------------------------------------------------------------


class Message:
    """A consumed record, as `StreamTask.process` reads it."""

    __slots__ = ("_key", "_offset", "_partition", "_timestamp", "_topic", "_value")

    def __init__(
        self, topic: str, partition: int, offset: int, key: bytes, value: bytes, timestamp: int
    ) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset
        self._key, self._value, self._timestamp = key, value, timestamp

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp)

    def headers(self) -> None:
        return None


class CountingEmitter:
    """Counts what the sinks write (the producer's part is not measured here)."""

    def __init__(self) -> None:
        self.emitted = 0

    def emit(self, *args: Any, **kwargs: Any) -> None:
        self.emitted += 1


class Changelogs:
    """Counts the changelog records a commit sends; their offsets go into the checkpoint."""

    def __init__(self) -> None:
        self.offsets: dict[str, int] = {}

    def write(self, topic: str, key: bytes, value: bytes | None) -> None:
        self.offsets[topic] = self.offsets.get(topic, -1) + 1


def open_task(
    sub: SubTopology, backend: TaskStateBackend, emitter: CountingEmitter, partition: int = 0
) -> StreamTask:
    stores = TaskStores(
        backend,
        sub.stores,
        sub.changelog_topics,
        memory=MemoryBudget(DEFAULT_STORE_CACHE_BYTES),
    )
    task = StreamTask(TaskId(0, partition), sub, emitter)
    task.start(stores)
    return task


def commit(task: StreamTask, changelogs: Changelogs) -> None:
    assert task.stores is not None
    task.stores.flush(changelogs.write)
    task.stores.checkpoint(changelogs.offsets)


def process_topology(workload: str) -> SubTopology:
    topology = Topology(APP)
    source = topology.stream("in", key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde())
    ours_process.build(topology, source, workload, "out")
    [sub] = topology.subtopologies(APP)
    return sub


def input_messages(records: int, keys: int) -> list[Message]:
    """bench.compare's input in one partition: random keys, timestamps rising over 10 min."""
    rng = random.Random(20261125)
    stamps = input_timestamps(records, 10, int(time.time() * 1000))
    return [
        Message("in", 0, i, b"k%d" % rng.randrange(keys), b"%d" % i, stamps[i])
        for i in range(records)
    ]


def task_run(
    workload: str, messages: list[Message], workdir: Path, profiler: cProfile.Profile | None
) -> dict[str, float]:
    """`StreamTask.process` over `messages` with a commit every COMMIT_EVERY records: CPU
    microseconds per record (commits included) and the firings."""
    sub = process_topology(workload)
    path = workdir / f"task-{workload}-{uuid.uuid4().hex[:6]}"
    emitter = CountingEmitter()
    task = open_task(sub, open_rocksdb(path, backend_stores(sub.stores)), emitter)
    changelogs = Changelogs()
    process = task.process
    try:
        if profiler is not None:
            profiler.enable()
        started, wall = time.process_time(), time.perf_counter()
        for first in range(0, len(messages), COMMIT_EVERY):
            for message in messages[first : first + COMMIT_EVERY]:
                process(message)
            commit(task, changelogs)
        cpu, wall = time.process_time() - started, time.perf_counter() - wall
        if profiler is not None:
            profiler.disable()
    finally:
        task.close()
        shutil.rmtree(path, ignore_errors=True)
    return {
        "us_per_record": cpu / len(messages) * 1e6,
        "wall_us_per_record": wall / len(messages) * 1e6,
        "firings": emitter.emitted - len(messages),
        "changelog_records": sum(o + 1 for o in changelogs.offsets.values()),
    }


def part_task(args: argparse.Namespace, workdir: Path, results: dict[str, Any]) -> None:
    messages = input_messages(args.records, args.keys)
    found: dict[str, list[dict[str, float]]] = {"process": [], "process-timers": []}
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:  # a run of its own, not counted: the profiler slows it down
        task_run("process-timers", messages, workdir, profiler)
    for run in range(args.runs):
        for workload in found:  # side by side, alternating
            found[workload].append(task_run(workload, messages, workdir, None))
            last = found[workload][-1]
            progress(
                f"task {workload} run {run + 1}/{args.runs}: {last['us_per_record']:.2f} µs CPU "
                f"per record, {last['firings']:,.0f} firings"
            )
    results["task"] = found
    if profiler is not None:
        results["task_profile"] = top_entries(profiler, args.profile)
        print(f"\ncProfile, process-timers (a run of its own), top {args.profile} by own time:")
        print(results["task_profile"])
    if not args.runs:
        return
    plain = statistics.median(r["us_per_record"] for r in found["process"])
    timed = statistics.median(r["us_per_record"] for r in found["process-timers"])
    print(
        f"\nStreamTask.process, {args.records:,} records over {args.keys:,} keys, a commit every "
        f"{COMMIT_EVERY:,} (µs CPU per record, median [min-max] of {args.runs}):"
    )
    for workload, runs in found.items():
        print(
            f"  {workload:15} {spread([r['us_per_record'] for r in runs], '{:.2f}')}  "
            f"firings {runs[0]['firings']:,.0f}, "
            f"changelog records {runs[0]['changelog_records']:,.0f}"
        )
    print(f"  records/s ratio process-timers / process: {plain / timed:.2f}")


def top_entries(profiler: cProfile.Profile, count: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(count)
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    root = str(ROOT) + "/"
    return "\n".join(line.replace(root, "") for line in lines[start:] if line.strip())


# --- cost: single calls -----------------------------------------------------------------------


def part_cost(args: argparse.Namespace, workdir: Path, results: dict[str, Any]) -> None:
    calls = args.cost_calls
    found: dict[str, list[float]] = {}
    for run in range(args.runs):
        for name, ns in cost_run(calls, workdir / f"cost-{run}").items():
            found.setdefault(name, []).append(ns)
        progress(f"cost run {run + 1}/{args.runs} done")
    results["cost"] = found
    print(f"\nSingle calls over RocksDB and the store cache, {calls:,} distinct keys per phase")
    print(f"(ns of CPU per call or per entry, median [min-max] of {args.runs}):")
    for name, values in found.items():
        print(f"  {name:58} {spread(values)}")


def cost_run(calls: int, path: Path) -> dict[str, float]:
    """Each phase on a task of its own (an empty store cache and database), so that none pays
    for what the others left in the cache's byte budget."""
    at0 = 1_000_000_000_000
    found: dict[str, float] = {}

    def loop_only(context: ProcessorContext, task: StreamTask, keys: list[str]) -> None:
        for key in keys:
            context._key = key

    def context_put(context: ProcessorContext, task: StreamTask, keys: list[str]) -> None:
        sums = context.store("sums")
        for key in keys:
            context._key = key
            sums.put(key, 1)

    def context_set_timer(context: ProcessorContext, task: StreamTask, keys: list[str]) -> None:
        at = at0
        for key in keys:
            context._key = key
            context.set_timer(at)
            at += 1

    def store_put(context: ProcessorContext, task: StreamTask, keys: list[str]) -> None:
        assert task.stores is not None
        kv = task.stores.stores["sums"]
        assert isinstance(kv, KeyValueStore)
        for key in keys:
            kv.put(key, 1)

    def timer_set(context: ProcessorContext, task: StreamTask, keys: list[str]) -> None:
        assert task.stores is not None
        timers = task.stores.stores["sum-timers"]
        assert isinstance(timers, TimerStore)
        at = at0
        for key in [k.encode() for k in keys]:
            timers.set(key, "default", STREAM, at)
            at += 1

    phases: list[tuple[str, Callable[[ProcessorContext, StreamTask, list[str]], None], str]] = [
        ("the loop alone (`ctx._key = key`)", loop_only, ""),
        ('ctx.store("sums").put(key, 1)', context_put, "entry"),
        ("ctx.set_timer(at)", context_set_timer, "timer"),
        ("KeyValueStore.put(key, 1)", store_put, ""),
        ('TimerStore.set(key_bytes, "default", STREAM, at) (keys encoded before)', timer_set, ""),
    ]
    keys = [f"k{i}" for i in range(calls)]
    for index, (name, loop, what) in enumerate(phases):
        grabbed: list[ProcessorContext] = []
        topology = Topology(APP)
        topology.add_store("sums", key_serde=serdes.StringSerde(), value_serde=serdes.IntSerde())
        topology.stream(
            "in", key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde()
        ).process(
            lambda context, key, value, grabbed=grabbed: grabbed.append(context),
            stores=["sums"],
            on_timer=ours_process.flush,
            name="sum",
        ).to("out", key_serde=serdes.StringSerde(), value_serde=serdes.IntSerde())
        [sub] = topology.subtopologies(APP)
        phase_path = path / str(index)
        task = open_task(
            sub, open_rocksdb(phase_path, backend_stores(sub.stores)), CountingEmitter()
        )
        try:
            task.process(Message("in", 0, 0, b"k", b"0", 1))
            context = grabbed[0]
            started = time.process_time()
            loop(context, task, keys)
            found[name] = (time.process_time() - started) / calls * 1e9
            started = time.process_time()
            commit(task, Changelogs())
            if what:
                found[f"  the commit after it, per {what}"] = (
                    (time.process_time() - started) / calls * 1e9
                )
        finally:
            task.close()
            shutil.rmtree(phase_path, ignore_errors=True)
    return found


# --- restore and fire: a million pending timers -----------------------------------------------


def changelog_of(app: str) -> str:
    [sub] = build("in", "out").subtopologies(app)
    return sub.changelog_topics[f"{OPERATOR}-timers"]


def timer_at(i: int, count: int, base: int) -> int:
    return base + i * SPREAD_MS // count


def timer_record(i: int, count: int, base: int) -> tuple[bytes, bytes]:
    """The changelog record of pending timer `i`: key `t<i>`, default name, stream clock."""
    key = b"t%07d" % i
    return TIMER + timer_ref(key, "default"), STREAM + U64.pack(timer_at(i, count, base))


def check_format() -> None:
    """The records `timer_record` makes are what a timer store writes to its changelog: the test
    driver sets three timers through the same topology, and its changelog must hold them."""
    driver = TopologyTestDriver(build("in", "out"), application_id="format-check")
    count, base = 1000, 1_000_000  # the three times within 60 s: none fires
    for i in (0, 3, 7):
        at = timer_at(i, count, base)
        driver.pipe("in", f"t{i:07d}", b"0", timestamp=at - TIMER_DELAY_MS)
    written = [(r.key, r.value) for r in driver.read_records(changelog_of("format-check"))]
    expected = [timer_record(i, count, base) for i in (0, 3, 7)]
    if sorted(written) != expected:
        raise AssertionError(f"the changelog format changed: {written} != {expected}")


def fill_changelog(bootstrap: str, topic: str, count: int, base: int, plain: bool = False) -> None:
    """Produce `count` pending timers (timer i to partition i % PARTITIONS) to `topic`."""
    create_topic(bootstrap, topic, config={"cleanup.policy": "compact"})
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
    next_report = started + 2
    for i in range(count):
        key, value = timer_record(i, count, base)
        while True:
            try:
                producer.produce(topic, value, key, i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.01)
        if i % 10_000 == 0 and time.monotonic() >= next_report:
            next_report = time.monotonic() + 2
            progress(f"  producing the changelog: {100 * i / count:.0f}%", end="")
    if producer.flush(120):
        raise RuntimeError("producing the changelog did not finish")
    seconds = time.monotonic() - started
    what = "key-value records of the same sizes" if plain else "pending timers"
    progress(f"  {count:,} {what} produced to {topic} in {seconds:.1f} s")


def restore_in_process(
    bootstrap: str, topic: str, store: str, sub: SubTopology | None, workdir: Path
) -> tuple[float, dict[TaskId, TaskStateBackend], int]:
    """Restore every partition of `topic` into empty RocksDB backends at once, as a worker's
    restorer does (with the derived index when `sub` has the timer store; else a plain store):
    records per second, the backends, the records read."""
    reader = ChangelogReader(
        {"bootstrap.servers": bootstrap},
        group_id=f"bench-timers-{uuid.uuid4().hex[:8]}",
        read_committed=False,
    )

    def no_wipe(task_id: TaskId, reason: str) -> TaskStateBackend:
        raise AssertionError(reason)

    restorer = Restorer(reader, wipe_callback=no_wipe, batch_size=20_000)
    backends: dict[TaskId, TaskStateBackend] = {}
    for partition in range(PARTITIONS):
        path = workdir / f"{store}-{partition}"
        if sub is None:
            backends[TaskId(0, partition)] = open_rocksdb(path, [store])
        else:
            backend = open_rocksdb(path, backend_stores(sub.stores))
            backends[TaskId(0, partition)] = with_indexes(backend, sub.stores)
    try:
        started = time.monotonic()
        next_report = started + 2
        for task_id, backend in backends.items():
            restorer.add(task_id, backend, {store: topic})
        completed: set[TaskId] = set()
        while len(completed) < len(backends):
            completed.update(restorer.completed())  # since the last call
            restorer.raise_if_failed()
            time.sleep(0.005)
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + 2
                read = sum(restorer.records_read(t) for t in backends)
                progress(f"  restoring in process: {read:,} records", end="")
        seconds = time.monotonic() - started
        records = sum(restorer.records_read(t) for t in backends)
    finally:
        restorer.close()
    return records / seconds, backends, records


def count_restored(backends: dict[TaskId, TaskStateBackend], store: str) -> tuple[int, int]:
    """(timer entries, index entries) in the restored backends."""
    timers = index = 0
    for backend in backends.values():
        timers += sum(1 for _ in backend.range(store, TIMER, b"U"))
        index += sum(1 for _ in backend.range(store, b"I", b"J"))
    return timers, index


def fire_in_process(
    backends: dict[TaskId, TaskStateBackend], sub: SubTopology, jump: int, profiler: Any
) -> dict[str, float]:
    """Each restored task gets one record at `jump` and fires until nothing is due, with a
    commit (flush + checkpoint into RocksDB) every pass (FIRINGS_PER_PASS firings)."""
    emitter = CountingEmitter()
    changelogs = Changelogs()
    tasks = [open_task(sub, unwrapped(b), emitter, t.partition) for t, b in backends.items()]
    try:
        if profiler is not None:
            profiler.enable()
        cpu, wall = time.process_time(), time.perf_counter()
        for task in tasks:
            task.process(Message(sub.source_topics[0], task.id.partition, 0, b"jump", b"0", jump))
            commit(task, changelogs)
            while task.due():
                task.fire_idle()
                commit(task, changelogs)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if profiler is not None:
            profiler.disable()
    finally:
        for task in tasks:
            task.close()
    return {"firings": emitter.emitted, "cpu_s": cpu, "wall_s": wall}


class Worker:
    """`processor run bench.timers_topology`, one process, logging at INFO to `log`."""

    def __init__(
        self, bootstrap: str, app: str, source: str, sink: str, state: Path, guarantee: str
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROCESSOR_")}
        env.update(
            PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", BENCH_INPUT=source, BENCH_OUTPUT=sink
        )
        command = [
            sys.executable,
            "-m",
            "processor.cli",
            "run",
            "bench.timers_topology",
            "--bootstrap-servers",
            bootstrap,
            "--application-id",
            app,
            "--state-dir",
            str(state),
            "--processing-guarantee",
            guarantee,
            "--commit-interval-ms",
            "1000",
            "--http-port",
            "0",
            "--log-level",
            "INFO",
        ]
        self.log = state.parent / f"{app}.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"the worker exited with {self.proc.returncode}:\n{tail}")

    def restored(self) -> list[tuple[str, float, int]]:
        """(task, seconds, records) of each "state restored" line so far."""
        text = self.log.read_text(errors="replace")
        return [(t, float(s), int(n)) for t, s, n in RESTORED.findall(text)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def worker_restore(worker: Worker, started: float, timeout: float) -> dict[str, float]:
    """Wait until every task logged "state restored"; seconds from the worker's start, and the
    longest restore the worker logged."""
    next_report = started + 2
    while len(lines := worker.restored()) < PARTITIONS:
        worker.check()
        now = time.monotonic()
        if now - started > timeout:
            raise RuntimeError(f"{len(lines)} of {PARTITIONS} tasks restored after {timeout} s")
        if now >= next_report:
            next_report = now + 2
            progress(f"  worker: {len(lines)} of {PARTITIONS} tasks restored", end="")
        time.sleep(0.05)
    return {
        "end_to_end_s": time.monotonic() - started,
        "logged_s": max(s for _, s, _ in lines),
        "records": sum(n for _, _, n in lines),
    }


def worker_fire(
    bootstrap: str, source: str, sink: str, count: int, base: int, jump: int, timeout: float
) -> dict[str, float]:
    """Produce one record per partition at `jump` (past every timer) and read every firing's
    output (read_committed): each timer once, with its time. Seconds from the produce."""
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-timers-reader-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 << 20,
            "max.partition.fetch.bytes": 8 << 20,
        }
    )
    reader.assign([TopicPartition(sink, p, 0) for p in range(PARTITIONS)])
    seen = bytearray(count)
    fired = duplicates = 0
    try:
        producer = Producer({"bootstrap.servers": bootstrap})
        for partition in range(PARTITIONS):
            producer.produce(source, b"0", b"jump-%d" % partition, partition, timestamp=jump)
        started = time.monotonic()
        if producer.flush(30):
            raise RuntimeError("the jump records were not acknowledged")
        next_report = started + 2
        while fired < count:
            for message in reader.consume(20000, 0.2):
                if message.error():
                    raise RuntimeError(f"reading the firings: {message.error()}")
                i = int(message.key()[1:])
                if U64.unpack(message.value())[0] != timer_at(i, count, base):
                    raise AssertionError(f"firing {message.key()!r} at the wrong time")
                if seen[i]:
                    duplicates += 1
                else:
                    seen[i] = 1
                    fired += 1
            now = time.monotonic()
            if now - started > timeout:
                raise RuntimeError(f"{fired:,} of {count:,} timers fired after {timeout} s")
            if now >= next_report:
                next_report = now + 2
                rate = fired / (now - started)
                progress(f"  worker firing: {fired:,} of {count:,} ({rate:,.0f}/s)", end="")
        seconds = time.monotonic() - started
        settle = time.monotonic() + 2
        while time.monotonic() < settle:  # a late duplicate still counts
            duplicates += len(reader.consume(20000, 0.2))
    finally:
        reader.close()
    return {"seconds": seconds, "rate": count / seconds, "duplicates": duplicates}


def part_restore_fire(
    args: argparse.Namespace, bootstrap: str, workdir: Path, results: dict[str, Any]
) -> None:
    """Per run and guarantee: fill a changelog, restore it in process (beside a plain store of
    the same size), fire in process, then restore and fire in a worker."""
    check_format()
    count = args.timers
    now = int(time.time() * 1000)
    base = now - 2 * SPREAD_MS  # every time in the recent past: the broker takes the outputs
    jump = base + SPREAD_MS + 1  # past every timer
    plain_topic = f"bench-timers-plain-{uuid.uuid4().hex[:6]}-changelog"
    fill_changelog(bootstrap, plain_topic, count, base, plain=True)
    found: dict[str, list[Any]] = {}
    try:
        if args.profile:  # a run of its own, in process only, not counted
            profiler = cProfile.Profile()
            one_restore_fire(
                args, bootstrap, workdir, base, jump, plain_topic, "", "profile run", profiler
            )
            results["fire_profile"] = top_entries(profiler, args.profile)
            print(
                f"\ncProfile, firing in process (a run of its own), top {args.profile} by own time:"
            )
            print(results["fire_profile"])
        for run in range(args.runs):
            for guarantee in args.guarantees:
                label = f"run {run + 1}/{args.runs}, {guarantee}"
                for key, value in one_restore_fire(
                    args, bootstrap, workdir, base, jump, plain_topic, guarantee, label, None
                ).items():
                    found.setdefault(key, []).append(value)
    finally:
        delete_topics_of(bootstrap, plain_topic)
    results["restore_fire"] = found


def one_restore_fire(
    args: argparse.Namespace,
    bootstrap: str,
    workdir: Path,
    base: int,
    jump: int,
    plain_topic: str,
    guarantee: str,
    label: str,
    profiler: cProfile.Profile | None,
) -> dict[str, Any]:
    count = args.timers
    app = f"bench-timers-{uuid.uuid4().hex[:6]}"
    source, sink, changelog = f"{app}-in", f"{app}-out", changelog_of(app)
    [sub] = build(source, sink).subtopologies(app)
    store = f"{OPERATOR}-timers"
    run_dir = workdir / app
    run_dir.mkdir()
    found: dict[str, Any] = {}
    worker: Worker | None = None
    try:
        create_topic(bootstrap, source)
        create_topic(bootstrap, sink)
        fill_changelog(bootstrap, changelog, count, base)

        plain_rate, plain, records = restore_in_process(
            bootstrap, plain_topic, "plain", None, run_dir
        )
        for backend in plain.values():
            backend.close()
        found["restore_plain_rate"] = plain_rate
        rate, backends, records = restore_in_process(bootstrap, changelog, store, sub, run_dir)
        if records != count:
            raise AssertionError(f"restored {records:,} of {count:,} records")
        found["restore_rate"] = rate
        if label.startswith("run 1/"):
            timers, index = count_restored(backends, store)
            if (timers, index) != (count, count):
                raise AssertionError(f"restored {timers:,} timers, {index:,} index entries")
        progress(
            f"{label}: in process, {count:,} timers restored at {rate:,.0f} records/s "
            f"(with the index); a plain store of the same size at {plain_rate:,.0f}/s"
        )
        fired = fire_in_process(backends, sub, jump, profiler)
        if fired["firings"] != count:
            raise AssertionError(f"{fired['firings']:,} of {count:,} timers fired in process")
        found["fire_in_process_rate"] = count / fired["wall_s"]
        found["fire_in_process_us_cpu"] = fired["cpu_s"] / count * 1e6
        progress(
            f"{label}: in process, {count:,} timers fired at {count / fired['wall_s']:,.0f}/s "
            f"({found['fire_in_process_us_cpu']:.1f} µs CPU each, commits included)"
        )
        if profiler is not None:
            return found

        started = time.monotonic()
        worker = Worker(bootstrap, app, source, sink, run_dir / "state", guarantee)
        restored = worker_restore(worker, started, args.timeout)
        found["worker_restore_s"] = restored["end_to_end_s"]
        found["worker_restore_logged_s"] = restored["logged_s"]
        found["worker_restore_rate"] = restored["records"] / restored["end_to_end_s"]
        progress(
            f"{label}: worker restored {restored['records']:,.0f} changelog records in "
            f"{restored['end_to_end_s']:.1f} s from its start ({found['worker_restore_rate']:,.0f}"
            f"/s; the longest task restore it logged: {restored['logged_s']:.1f} s)"
        )
        fire = worker_fire(bootstrap, source, sink, count, base, jump, args.timeout)
        if fire["duplicates"] and guarantee == "exactly_once":
            raise AssertionError(f"{fire['duplicates']:,} timers fired twice under exactly-once")
        found["worker_fire_rate"] = fire["rate"]
        found["worker_fire_s"] = fire["seconds"]
        found["worker_fire_duplicates"] = fire["duplicates"]
        progress(
            f"{label}: worker fired {count:,} timers in {fire['seconds']:.1f} s: "
            f"{fire['rate']:,.0f}/s, each once with its time"
            + (f" ({fire['duplicates']:,} duplicates)" if fire["duplicates"] else "")
        )
        return {f"{guarantee}:{k}" if k.startswith("worker") else k: v for k, v in found.items()}
    finally:
        if worker is not None:
            worker.stop()
        delete_topics_of(bootstrap, source, sink, containing=app)
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)


def report_restore_fire(args: argparse.Namespace, found: dict[str, list[Any]]) -> None:
    count = args.timers
    rows = [
        ("restore in process, timers with the derived index (records/s)", "restore_rate"),
        ("restore in process, plain key-value store, same sizes (records/s)", "restore_plain_rate"),
        ("fire in process (firings/s, wall)", "fire_in_process_rate"),
        ("fire in process (µs CPU per firing)", "fire_in_process_us_cpu"),
    ]
    for guarantee in args.guarantees:
        rows += [
            (
                f"worker restore, start to all tasks restored (s), {guarantee}",
                f"{guarantee}:worker_restore_s",
            ),
            (
                f"worker restore (changelog records/s), {guarantee}",
                f"{guarantee}:worker_restore_rate",
            ),
            (
                f"worker fire, jump to last output read (s), {guarantee}",
                f"{guarantee}:worker_fire_s",
            ),
            (f"worker fire (firings/s), {guarantee}", f"{guarantee}:worker_fire_rate"),
        ]
    print(f"\n{count:,} pending timers (median [min-max] of {args.runs}):")
    for title, key in rows:
        values = found.get(key)
        if values:
            fmt = "{:,.1f}" if key.endswith(("_s", "us_cpu")) else "{:,.0f}"
            print(f"  {title:70} {spread(values, fmt)}")


# --- main -------------------------------------------------------------------------------------


def csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", type=csv, default=["cost", "task", "restore", "fire"])
    parser.add_argument("--timers", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=500_000, help="task: records")
    parser.add_argument("--keys", type=int, default=100_000, help="task: keys")
    parser.add_argument("--cost-calls", type=int, default=100_000, help="cost: calls per phase")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--guarantees", type=csv, default=["exactly_once"])
    parser.add_argument("--timeout", type=float, default=600, help="seconds per worker phase")
    parser.add_argument("--profile", type=int, default=0, help="print cProfile's top N entries")
    parser.add_argument("--keep", action="store_true", help="keep state dirs and worker logs")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    for part in args.part:
        if part not in ("cost", "task", "restore", "fire"):
            parser.error(f"unknown part {part}")
    workdir = Path(tempfile.mkdtemp(prefix="bench-timers-"))
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    try:
        if "cost" in args.part:
            part_cost(args, workdir, results)
        if "task" in args.part:
            part_task(args, workdir, results)
        if {"restore", "fire"} & set(args.part):
            with broker() as bootstrap:
                progress(f"broker {bootstrap}; work dir {workdir}")
                part_restore_fire(args, bootstrap, workdir, results)
            report_restore_fire(args, results["restore_fire"])
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
