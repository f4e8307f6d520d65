"""Failover and scale-out on a real broker: how long processing stops, and how much state the
moved tasks read before they run again.

Every run uses fresh topics (6 partitions) and a fresh application of worker processes
(`processor run tests.worker_topologies:keyed_counting`, counting records per key in RocksDB),
with the scenario code of `tests/integration/failover.py` (`FAST`: 6 s session timeout, 200 ms
commit interval). The store is first loaded with one record for each of `--keys` keys; then a
steady load of random existing keys flows at `--rate` records/s while the measured event
happens. A thread reads the sink (read_committed) all along and notes when each task's outputs
arrive (task = source partition of the key).

1. Failover, exactly-once, with `--num-standby-replicas 1` and with 0: 3 workers; SIGKILL one
   (`kill_and_watch`). Failover = seconds from the SIGKILL until every task has logged
   "state restored ..., processing" on a survivor; replay = changelog records the moved tasks
   read before they processed again (from the same log lines).
2. Scale-out, at-least-once, 1 standby: 3 workers, then a 4th starts. Warm-up = what the joiner
   logs ("warmed up in X s"); pause = the longest interval, from the joiner's start until 2 s
   after every task processes again on the 4-member assignment, in which no output arrived from
   any task, against the same figure over the 10 s of steady state before the join; per-task
   gap = the longest interval without output from one task; max read = the largest
   `processor_task_restored_before_start_records` (/metrics) of a task that moved.

Every run checks every count: exactly-once runs must match what was produced with no duplicated
output; the at-least-once run must have no key short. A wrong run raises; nothing is reported.

    .venv/bin/python -m bench.failover [--runs 3] [--keys 1000000] [--rate 10000]

It starts its own broker (`LocalBroker`) unless PROCESSOR_TEST_BOOTSTRAP names one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shutil
import statistics
import tempfile
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from confluent_kafka.admin import AdminClient

from processor.testing.broker import LocalBroker
from tests.integration.failover import (
    _STARTED,
    FAST,
    KeyedLoad,
    kill_and_watch,
    last_assignment,
    metrics,
    produce_keys,
    standby_lags,
)
from tests.integration.test_state_faults import Latest, count_of
from tests.integration.workers import PARTITIONS, WorkerProcess
from tests.kafka_helpers import consume, create_topic

TOPOLOGY = "tests.worker_topologies:keyed_counting"
VICTIM = "w1"
FAILOVER_TIMEOUT_S = 180.0  # without standbys the survivors restore the moved tasks from scratch
STEADY_S = 10.0  # steady state measured before the 4th worker starts
AFTER_S = 2.0  # the pause window ends this long after every task processes again
LOAD_LIMIT_S = 150.0  # the steady load is stopped by the bench; this is its longest possible run
RECOVERY_LAG = 10_000  # acceptable_recovery_lag (the default), for the scale-out check
WARMED = re.compile(r"warmed up in ([\d.]+)s")


class BenchFailure(AssertionError):
    """A run went wrong (wrong counts, a timeout): nothing of it is reported."""


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@contextlib.contextmanager
def broker() -> Iterator[str]:
    external = os.environ.get("PROCESSOR_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    with LocalBroker() as local:
        yield local.bootstrap_servers


def task_of(key: bytes) -> int:
    """The source partition, hence the task, of a key: librdkafka's default partitioner
    (consistent_random) is CRC-32 of the key modulo the partition count."""
    return zlib.crc32(key) % PARTITIONS


def check_task_of(bootstrap: str, topic: str) -> None:
    """`task_of` agrees with where the producer put a sample of the source's records."""
    for record in consume(bootstrap, topic, 600):
        assert record.key is not None
        if task_of(record.key) != record.partition:
            raise BenchFailure(f"key {record.key!r} is in partition {record.partition}")


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchFailure(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def longest_gap(times: Sequence[float], start: float, end: float) -> float:
    """The longest interval within [start, end] containing none of `times`."""
    points = [start, *sorted(t for t in times if start < t < end), end]
    return max(b - a for a, b in pairwise(points))


class TimedOutput(Latest):
    """`Latest` read on a thread, noting per task when its outputs arrive (once `recording`)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(bootstrap, topic)
        self.arrivals: dict[int, list[float]] = {t: [] for t in range(PARTITIONS)}
        self.recording = False
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self.poll(0.01)  # batches of at most 10 ms: arrival times to within 10 ms
        except BaseException as e:
            self.error = e

    def poll(self, seconds: float = 0.2) -> None:
        messages = self._consumer.consume(1000, seconds)
        now = time.monotonic()
        tasks: set[int] = set()
        for message in messages:
            assert message.error() is None, message.error()
            raw, value = message.key(), message.value()
            assert raw is not None and value is not None
            key = raw.decode()
            self.pairs[(key, value)] += 1
            self.latest[key] = value
            self.total += 1
            tasks.add(task_of(raw))
        if self.recording:
            for task in tasks:
                self.arrivals[task].append(now)

    def check(self) -> None:
        if self.error is not None:
            raise BenchFailure(f"the sink reader failed: {self.error!r}")

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        def ok() -> bool:
            self.check()
            return condition()

        wait_until(ok, timeout, what)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        super().close()


class Cluster:
    """The worker processes of one run, as `tests/integration/test_standby.py` starts them."""

    def __init__(self, bootstrap: str, env: dict[str, str], workdir: Path, extra: list[str]):
        self.bootstrap, self.env, self.workdir, self.extra = bootstrap, env, workdir, extra
        self.workers: dict[str, WorkerProcess] = {}

    def start(self, instance: str) -> WorkerProcess:
        worker = WorkerProcess(
            TOPOLOGY,
            bootstrap=self.bootstrap,
            instance_id=instance,
            state_dir=self.workdir / "state" / instance,
            log_dir=self.workdir,
            env=self.env,
            extra_args=[*FAST, "--http-port", "0", *self.extra],
        )
        self.workers[instance] = worker
        return worker

    def check_alive(self, *, except_: str | None = None) -> None:
        for instance, worker in self.workers.items():
            if instance != except_ and worker.process.poll() is not None:
                raise BenchFailure(
                    f"worker {instance} exited with {worker.process.returncode}:\n"
                    f"{worker.log()[-3000:]}"
                )

    def standbys_caught_up(self, expected: int) -> bool:
        lags: dict[str, float] = {}
        for worker in self.workers.values():
            lags.update({f"{worker.instance_id}/{t}": v for t, v in standby_lags(worker).items()})
        return len(lags) >= expected and all(v == 0 for v in lags.values())

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop_quietly()


@contextlib.contextmanager
def application(bootstrap: str, kind: str, extra: list[str]) -> Iterator[tuple[Cluster, str]]:
    """Fresh topics and an empty cluster; the sink topic name. Removes the topics afterwards,
    and the logs and state unless the run failed."""
    name = f"bench-{kind}-{uuid.uuid4().hex[:8]}"
    source, sink = f"{name}-in", f"{name}-out"
    create_topic(bootstrap, source, PARTITIONS)
    create_topic(bootstrap, sink, PARTITIONS)
    env = {"TEST_SOURCE_TOPIC": source, "TEST_SINK_TOPIC": sink, "PROCESSOR_APPLICATION_ID": name}
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    cluster = Cluster(bootstrap, env, workdir, extra)
    failed = True
    try:
        yield cluster, sink
        failed = False
    finally:
        cluster.stop()
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(name)]
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result(30)
        if failed:
            progress(f"run failed; worker logs and state kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def load_store(
    cluster: Cluster, output: TimedOutput, keys: int, standbys: int, *, first: bool
) -> Counter[str]:
    """One record per key, counted by 3 workers (standbys caught up if any): the truth so far."""
    for instance in ("w0", "w1", "w2"):
        cluster.start(instance)
    output.start()
    source = cluster.env["TEST_SOURCE_TOPIC"]
    started = time.monotonic()
    truth = produce_keys(cluster.bootstrap, source, keys)
    progress(f"  produced {keys:,} keys in {time.monotonic() - started:.1f}s")
    if first:
        check_task_of(cluster.bootstrap, source)
    next_report = time.monotonic() + 15

    def counted() -> bool:
        nonlocal next_report
        cluster.check_alive()
        if time.monotonic() >= next_report:
            next_report += 15
            progress(f"  {len(output.latest):,} of {keys:,} keys counted")
        return len(output.latest) >= keys

    output.wait_for(counted, 900, "every key to be counted")
    progress(f"  every key counted {time.monotonic() - started:.1f}s after the first record")
    wait_until(
        lambda: all(
            (held := last_assignment(w)) is not None and len(held.members) == 3
            for w in cluster.workers.values()
        ),
        60,
        "a 3-member assignment on every worker",
    )
    if standbys:
        caught_up = time.monotonic()
        wait_until(lambda: cluster.standbys_caught_up(6), 300, "standbys to catch up")
        progress(f"  standbys caught up in {time.monotonic() - caught_up:.1f}s more")
    return truth


class SteadyLoad:
    """`KeyedLoad` of random existing keys at `rate`/s until `stop()`: its key list is long
    enough for LOAD_LIMIT_S, and `stop()` empties it, which ends KeyedLoad's loop over it."""

    def __init__(self, bootstrap: str, topic: str, keys: int, rate: float, seed: int) -> None:
        rng = random.Random(seed)
        self._keys = [f"k{rng.randrange(keys)}" for _ in range(int(rate * LOAD_LIMIT_S))]
        self._load = KeyedLoad(bootstrap, topic, self._keys, rate)
        self._runs_out_at = 0.0

    def start(self) -> None:
        self._load.start()
        self._runs_out_at = time.monotonic() + LOAD_LIMIT_S

    def stop(self) -> Counter[str]:
        if time.monotonic() >= self._runs_out_at - 1:
            raise BenchFailure(f"the load ran for {LOAD_LIMIT_S}s, out before the measurement")
        self._keys.clear()
        self._load.join(60)
        return self._load.produced


def verify(output: TimedOutput, truth: Counter[str], exactly_once: bool) -> int:
    """Read until every output is in and check the counts; returns how many keys were counted
    over the truth (0 under exactly-once, where it fails instead)."""
    expected = sum(truth.values())
    output.wait_for(lambda: output.total >= expected, 300, f"{expected:,} outputs")
    time.sleep(1.5)  # a duplicate arriving late still counts
    output.check()
    counts = {k: count_of(v) for k, v in output.latest.items()}
    short = {k: n for k, n in truth.items() if counts.get(k, 0) < n}
    if short:
        raise BenchFailure(f"{len(short)} keys counted short, e.g. {list(short.items())[:3]}")
    over = {k: n for k, n in counts.items() if n != truth.get(k)}
    if exactly_once:
        duplicated = [pair for pair, n in output.pairs.items() if n > 1]
        if duplicated:
            raise BenchFailure(f"{len(duplicated)} duplicated outputs, e.g. {duplicated[:3]}")
        if over or output.total != expected:
            raise BenchFailure(
                f"{output.total:,} outputs for {expected:,} records; {len(over)} over"
            )
    return len(over)


@dataclass
class FailoverRun:
    failover_s: float  # SIGKILL until every task processes again
    replayed: int  # changelog records the moved tasks read before processing again
    moved: dict[str, str]
    output_gap_s: float  # longest interval without output from a moved task
    standby_promoted: bool  # every victim task became active where it was a standby


def failover_run(bootstrap: str, keys: int, rate: float, standbys: int, run: int) -> FailoverRun:
    extra = ["--processing-guarantee", "exactly_once", "--num-standby-replicas", str(standbys)]
    with application(bootstrap, f"failover-{standbys}sb", extra) as (cluster, sink):
        output = TimedOutput(bootstrap, sink)
        try:
            truth = load_store(cluster, output, keys, standbys, first=run == 0)
            load = SteadyLoad(bootstrap, cluster.env["TEST_SOURCE_TOPIC"], keys, rate, run)
            load.start()
            output.recording = True
            time.sleep(3.0)
            progress(f"  {rate:,.0f} records/s flowing; SIGKILL {VICTIM}")
            killed = time.monotonic()
            result = kill_and_watch(cluster.workers, VICTIM, timeout=FAILOVER_TIMEOUT_S)
            resumed = killed + max(result.resumed_after_s.values())
            time.sleep(AFTER_S + 1)
            cluster.check_alive(except_=VICTIM)
            truth.update(load.stop())
            gap = max(
                longest_gap(output.arrivals[int(t.split("_")[1])], killed, resumed + AFTER_S)
                for t in result.moved
            )
            progress(
                f"  every task processing again after {max(result.resumed_after_s.values()):.1f}s;"
                f" moved {result.moved}; read {result.read_on_start}; verifying counts"
            )
            verify(output, truth, exactly_once=True)
        finally:
            output.close()
    promoted = all(t in result.before[result.moved[t]].standby for t in result.victim_tasks)
    return FailoverRun(
        max(result.resumed_after_s.values()), result.replayed, result.moved, gap, promoted
    )


@dataclass
class ScaleOutRun:
    warmup_s: float  # logged by the joiner
    rebalance_s: float  # from seeing the joiner's "warmed up" until every task processes again
    pause_s: float  # longest interval with no output at all, around the join
    steady_pause_s: float  # the same over STEADY_S of steady state before the join
    task_gap_s: float  # longest interval without output from one task, around the join
    steady_task_gap_s: float
    max_read: int  # most changelog records a moved task read before it started
    moved: dict[str, str] = field(default_factory=dict)
    over_counted: int = 0


def scale_out_run(bootstrap: str, keys: int, rate: float, run: int) -> ScaleOutRun:
    extra = ["--num-standby-replicas", "1", "--acceptable-recovery-lag", str(RECOVERY_LAG)]
    with application(bootstrap, "scaleout", extra) as (cluster, sink):
        output = TimedOutput(bootstrap, sink)
        try:
            truth = load_store(cluster, output, keys, 1, first=False)
            before = {i: last_assignment(w) for i, w in cluster.workers.items()}
            load = SteadyLoad(bootstrap, cluster.env["TEST_SOURCE_TOPIC"], keys, rate, 100 + run)
            load.start()
            time.sleep(2.0)
            output.recording = True
            progress(f"  {rate:,.0f} records/s flowing; {STEADY_S:.0f}s of steady state")
            time.sleep(STEADY_S)
            offsets = {i: len(w.log()) for i, w in cluster.workers.items()}
            joined = time.monotonic()
            joiner = cluster.start("w3")
            progress("  started w3")

            def warmed() -> bool:
                cluster.check_alive()
                return WARMED.search(joiner.log()) is not None

            wait_until(warmed, 600, "w3 to warm up")
            seen_warm = time.monotonic()
            match = WARMED.search(joiner.log())
            assert match is not None
            warmup_s = float(match.group(1))
            progress(f"  w3 warmed up in {warmup_s:.1f}s (its log); joining")
            resumed: dict[str, float] = {}
            after: dict[str, set[str]] = {}

            def settled() -> bool:
                cluster.check_alive()
                for instance, worker in cluster.workers.items():
                    held = last_assignment(worker, offsets.get(instance, 0))
                    if held is None or len(held.members) < 4:
                        continue
                    after[instance] = held.active
                    for m in _STARTED.finditer(worker.log(), offsets.get(instance, 0)):
                        if m.group(1) in held.active:
                            resumed.setdefault(m.group(1), time.monotonic())
                return len(after) == 4 and len(resumed) == PARTITIONS

            wait_until(settled, 120, "every task to process again on 4 workers")
            done = max(resumed.values())
            time.sleep(AFTER_S + 1)
            truth.update(load.stop())
            moved: dict[str, str] = {}
            for instance, active in after.items():
                previous = before.get(instance)
                moved.update(
                    {t: instance for t in active - (previous.active if previous else set())}
                )
            reads = [
                int(
                    metrics(cluster.workers[owner])["processor_task_restored_before_start_records"][
                        (("task", task),)
                    ]
                )
                for task, owner in moved.items()
            ]
            everything = [t for times in output.arrivals.values() for t in times]
            window = (joined, done + AFTER_S)
            steady = (joined - STEADY_S, joined)
            result = ScaleOutRun(
                warmup_s=warmup_s,
                rebalance_s=done - seen_warm,
                pause_s=longest_gap(everything, *window),
                steady_pause_s=longest_gap(everything, *steady),
                task_gap_s=max(longest_gap(a, *window) for a in output.arrivals.values()),
                steady_task_gap_s=max(longest_gap(a, *steady) for a in output.arrivals.values()),
                max_read=max(reads, default=0),
                moved=moved,
            )
            progress(
                f"  every task processing on 4 workers {done - seen_warm:.1f}s after the "
                f"warm-up; moved {moved}, read {reads}; verifying counts"
            )
            result.over_counted = verify(output, truth, exactly_once=False)
        finally:
            output.close()
    return result


def spread(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    return (
        f"{fmt.format(statistics.median(values))} "
        f"[{fmt.format(min(values))}-{fmt.format(max(values))}]"
    )


def records(values: Sequence[float]) -> str:
    return spread(values, "{:,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=10_000, help="steady load, records/s")
    parser.add_argument(
        "--scenario", choices=["all", "failover", "scale-out"], default="all", help="what to run"
    )
    args = parser.parse_args()
    rows: list[str] = []
    started = time.monotonic()
    with broker() as bootstrap:
        progress(
            f"{args.keys:,} keys, {PARTITIONS} partitions, steady load {args.rate:,.0f} "
            f"records/s, {args.runs} runs per scenario, broker {bootstrap}"
        )
        if args.scenario in ("all", "failover"):
            for standbys in (1, 0):
                runs: list[FailoverRun] = []
                for run in range(args.runs):
                    progress(f"failover, {standbys} standby, run {run + 1} of {args.runs}")
                    runs.append(failover_run(bootstrap, args.keys, args.rate, standbys, run))
                    r = runs[-1]
                    progress(
                        f"  failover {r.failover_s:.1f}s, {r.replayed:,} changelog records "
                        f"replayed, moved-task output gap {r.output_gap_s:.1f}s: counts exact"
                    )
                promoted = sum(r.standby_promoted for r in runs)
                moved = statistics.median(len(r.moved) for r in runs)
                rows.append(
                    f"| failover (SIGKILL 1 of 3), exactly-once, {standbys} standby | "
                    f"{spread([r.failover_s for r in runs])} | "
                    f"{records([r.replayed for r in runs])} | "
                    f"{moved:.0f} tasks moved; longest gap in a moved task's output "
                    f"{spread([r.output_gap_s for r in runs])} s"
                    + (
                        f"; promoted from standby in {promoted} of {len(runs)} runs"
                        if standbys
                        else ""
                    )
                    + " |"
                )
        if args.scenario in ("all", "scale-out"):
            scale: list[ScaleOutRun] = []
            for run in range(args.runs):
                progress(f"scale-out 3 -> 4, run {run + 1} of {args.runs}")
                scale.append(scale_out_run(bootstrap, args.keys, args.rate, run))
                s = scale[-1]
                progress(
                    f"  warm-up {s.warmup_s:.1f}s, pause {s.pause_s:.2f}s (steady "
                    f"{s.steady_pause_s:.2f}s), task gap {s.task_gap_s:.2f}s (steady "
                    f"{s.steady_task_gap_s:.2f}s), max read {s.max_read:,}, "
                    f"{s.over_counted} keys over-counted: no key short"
                )
            over = sum(s.over_counted for s in scale)
            rows += [
                f"| scale-out 3 -> 4, at-least-once, 1 standby: no output from any task | "
                f"{spread([s.pause_s for s in scale], '{:.2f}')} | "
                f"{records([s.max_read for s in scale])} (most read by one moved task) | "
                f"steady state {spread([s.steady_pause_s for s in scale], '{:.2f}')} s; "
                f"rebalance {spread([s.rebalance_s for s in scale])} s; "
                f"{over} keys over-counted in all runs |",
                f"| scale-out 3 -> 4: longest gap in one task's output | "
                f"{spread([s.task_gap_s for s in scale], '{:.2f}')} | | "
                f"steady state {spread([s.steady_task_gap_s for s in scale], '{:.2f}')} s |",
                f"| scale-out 3 -> 4: joiner warm-up (others keep processing) | "
                f"{spread([s.warmup_s for s in scale])} | | as logged by the joiner |",
            ]
    progress(f"done in {(time.monotonic() - started) / 60:.1f} min")
    print(
        f"\n{args.keys:,} keys, {args.rate:,.0f} records/s steady load, median [min-max] of "
        f"{args.runs} runs\n"
    )
    print("| scenario | failover or pause (s) | records replayed | notes |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
