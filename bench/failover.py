"""Failover and scale-out on a real broker: how long processing stops, and how much state the
moved tasks read before they run again.

Every run uses fresh topics (6 partitions) and a fresh application of worker processes
(`processor run tests.worker_topologies:keyed_counting`, counting records per key in RocksDB),
with the scenario code of `tests/integration/failover.py` and the `FAST` settings of
`tests/integration/workers.py` (6 s session timeout, 200 ms commit interval). The store is first
loaded with one record for each of `--keys` keys; then a steady load of random existing keys
flows at `--rate` records/s while the measured event happens. A thread reads the sink
(read_committed) all along and notes when each task's outputs arrive (task = source partition
of the key).

1. Failover, exactly-once, with `--num-standby-replicas 1` and with 0: 3 workers; SIGKILL one
   (`kill_and_watch`). Failover = seconds from the SIGKILL until the bench sees every task's
   "state restored ..., processing" line on a survivor; replay = changelog records the moved
   tasks read before they processed again (from the same lines). Also from the survivors' logs
   (timestamps): when the rebalance began (their revoke; the session timeout is 6 s), when the
   last survivor accepted the new assignment, how long the moved tasks' restore took; and from
   the reader, the longest interval without output from a moved task.
2. Scale-out and back, at-least-once, 1 standby: 3 workers, then a 4th starts, then it stops
   (SIGTERM). For each change (3 -> 4, 4 -> 3), over the window from its start until 2 s after
   every moved task processes again: the longest interval without output from any task, from a
   task that kept its owner and from a moved task (reader); a moved task's stop in the worker
   logs (closed by its old owner to processing on its new one); against the same figures over
   the 10 s of steady state before the join. Warm-up = what the joiner logs ("warmed up in X
   s"); max read = the largest `processor_task_restored_before_start_records` (/metrics) of a
   task that moved (acceptable_recovery_lag is 10,000).

Every run checks every count: exactly-once runs must match what was produced with no duplicated
output; the at-least-once run must have no key short. A wrong run raises; nothing is reported.

    .venv/bin/python -m bench.failover [--runs 3] [--keys 1000000] [--rate 10000]
        [--scenario all|failover|scale-out]

BENCH_KEEP=1 keeps each run's worker logs, state and output arrival times (arrivals.txt).

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
from datetime import datetime
from itertools import pairwise
from pathlib import Path

from confluent_kafka.admin import AdminClient

from bench.stateful_count import broker
from tests.integration.failover import (
    _STARTED,
    KeyedLoad,
    kill_and_watch,
    last_assignment,
    metrics,
    produce_keys,
    standby_lags,
)
from tests.integration.test_state_faults import Latest, count_of
from tests.integration.workers import PARTITIONS, WorkerProcess, start_worker
from tests.kafka_helpers import consume, create_topic

TOPOLOGY = "tests.worker_topologies:keyed_counting"
VICTIM = "w1"
FAILOVER_TIMEOUT_S = 180.0  # without standbys the survivors restore the moved tasks from scratch
STEADY_S = 10.0  # steady state measured before the 4th worker starts
AFTER_S = 2.0  # the pause window ends this long after every task processes again
LOAD_LIMIT_S = 150.0  # the steady load is stopped by the bench; this is its longest possible run
RECOVERY_LAG = 10_000  # acceptable_recovery_lag (the default), for the scale-out check
KEEP = bool(os.environ.get("BENCH_KEEP"))  # keep every run's worker logs and state
WARMED = re.compile(r"warmed up in ([\d.]+)s")
# Worker log lines (processor/runtime): a revoke stops every active task of the worker; the
# assignment line; a task processing again (the line `_STARTED` matches, with the restore time).
REVOKED = re.compile(r"worker \S+: running -> waiting_for_members")
ASSIGNED = re.compile(r"members \[([^\]]*)\]; active tasks \[([^\]]*)\]")
RESTORED = re.compile(r"task (\d+_\d+): state restored in ([\d.]+)s \(\d+ changelog records read\)")


class BenchFailure(AssertionError):
    """A run went wrong (wrong counts, a timeout): nothing of it is reported."""


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


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


def logged_at(log: str, position: int) -> float:
    """Wall-clock time of the log line holding `position` (the `%(asctime)s` that starts it)."""
    start = log.rfind("\n", 0, position) + 1
    stamp = datetime.strptime(log[start : start + 23], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()


@dataclass
class Handover:
    """One rebalance, from the worker logs after given offsets (wall-clock times)."""

    revoked: dict[str, float]  # instance -> when it stopped its active tasks
    assigned: dict[str, float]  # instance -> when it accepted an assignment of `members` members
    started: dict[str, tuple[str, float, float]]  # task -> (owner, processing since, restore s)


def handover(workers: dict[str, WorkerProcess], offsets: dict[str, int], members: int) -> Handover:
    result = Handover({}, {}, {})
    for instance, worker in workers.items():
        log, offset = worker.log(), offsets.get(instance, 0)
        revoke = REVOKED.search(log, offset)
        if revoke is not None:
            result.revoked[instance] = logged_at(log, revoke.start())
        for assignment in ASSIGNED.finditer(log, offset):
            if len(list(filter(None, assignment.group(1).split(", ")))) != members:
                continue
            result.assigned[instance] = logged_at(log, assignment.start())
            active = set(filter(None, assignment.group(2).split(", ")))
            for line in RESTORED.finditer(log, assignment.end()):
                task = line.group(1)
                if task in active and task not in result.started:
                    result.started[task] = (instance, logged_at(log, line.start()), float(line[2]))
            break
    return result


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


def dump_arrivals(output: TimedOutput, workdir: Path) -> None:
    """With BENCH_KEEP: when each task's outputs arrived (wall clock), to compare with logs."""
    offset = time.time() - time.monotonic()
    with open(workdir / "arrivals.txt", "w") as f:
        for task, times in output.arrivals.items():
            for t in times:
                f.write(f"{datetime.fromtimestamp(t + offset).isoformat()} 0_{task}\n")


class Cluster:
    """The worker processes of one run, as `tests/integration/test_standby.py` starts them."""

    def __init__(self, bootstrap: str, env: dict[str, str], workdir: Path, extra: list[str]):
        self.bootstrap, self.env, self.workdir, self.extra = bootstrap, env, workdir, extra
        self.workers: dict[str, WorkerProcess] = {}
        self.gone: dict[str, WorkerProcess] = {}  # stopped by `leave`

    def start(self, instance: str) -> WorkerProcess:
        worker = start_worker(
            TOPOLOGY,
            bootstrap=self.bootstrap,
            env=self.env,
            workdir=self.workdir,
            instance=instance,
            extra=self.extra,
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

    def leave(self, instance: str) -> None:
        """Stop `instance` cleanly (SIGTERM): it commits, closes its tasks and leaves."""
        worker = self.workers.pop(instance)
        self.gone[instance] = worker
        if worker.terminate() != 0:
            raise BenchFailure(f"{instance} did not stop cleanly:\n{worker.log()[-2000:]}")

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
        if failed or KEEP:
            progress(f"{'run failed; ' if failed else ''}worker logs and state kept in {workdir}")
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
    failover_s: float  # SIGKILL until every task processes again (seen in the logs by the bench)
    replayed: int  # changelog records the moved tasks read before processing again
    moved: dict[str, str]
    rebalance_s: float  # SIGKILL until the first survivor stopped its tasks for the rebalance
    assigned_s: float  # SIGKILL until the last survivor accepted the 2-member assignment
    restore_s: float  # the longest restore of a moved task, as its new owner logs it
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
            survivors = {i: w for i, w in cluster.workers.items() if i != VICTIM}
            killed, killed_wall = time.monotonic(), time.time()
            result = kill_and_watch(cluster.workers, VICTIM, timeout=FAILOVER_TIMEOUT_S)
            failover_s = max(result.resumed_after_s.values())
            time.sleep(AFTER_S + 1)
            cluster.check_alive(except_=VICTIM)
            truth.update(load.stop())
            logs = handover(survivors, result.log_offsets, members=2)
            gap = max(
                longest_gap(
                    output.arrivals[int(t.split("_")[1])], killed, killed + failover_s + AFTER_S
                )
                for t in result.moved
            )
            run_result = FailoverRun(
                failover_s=failover_s,
                replayed=result.replayed,
                moved=result.moved,
                rebalance_s=min(logs.revoked.values()) - killed_wall,
                assigned_s=max(logs.assigned.values()) - killed_wall,
                restore_s=max(logs.started[t][2] for t in result.moved),
                output_gap_s=gap,
                standby_promoted=all(
                    t in result.before[result.moved[t]].standby for t in result.victim_tasks
                ),
            )
            progress(
                f"  every task processing again after {failover_s:.1f}s; moved {result.moved}; "
                f"read {result.read_on_start}; verifying counts"
            )
            verify(output, truth, exactly_once=True)
            if KEEP:
                dump_arrivals(output, cluster.workdir)
        finally:
            output.close()
    return run_result


@dataclass
class Change:
    """One membership change under load (3 -> 4 or 4 -> 3), over the window from its start until
    AFTER_S after the last moved task processes again."""

    task_pause_s: float  # longest stop of a moved task: closed by its old owner to processing
    moved_gap_s: float  # longest interval without output from a moved task (sink reader)
    kept_gap_s: float  # the same for the tasks that kept their owner
    pause_s: float  # longest interval with no output from any task
    moved: dict[str, str] = field(default_factory=dict)  # task -> new owner


@dataclass
class ScaleOutRun:
    warmup_s: float  # logged by the joiner
    warmup_task_gap_s: float  # longest gap of one task's output while the joiner warms up
    steady_task_gap_s: float  # the same over STEADY_S of steady state before the join
    steady_pause_s: float  # longest interval with no output at all, steady state
    max_read: int  # most changelog records a moved task read before it started
    out: Change
    in_: Change
    over_counted: int = 0


GAINED = re.compile(r"members \[([^\]]*)\]; active tasks .*; gaining \[([^\]]*)\]")
CLOSED = re.compile(r"tasks \[([^\]]*)\] closed")


def _names(listing: str) -> set[str]:
    return set(filter(None, listing.split(", ")))


def watch_change(
    cluster: Cluster, output: TimedOutput, offsets: dict[str, int], began: float, members: int
) -> Change:
    """Wait until every worker runs an assignment of `members` members and every task it gained
    processes; measure the pauses of the moved tasks and the output gaps of all."""
    seen: dict[str, tuple[str, float]] = {}  # moved task -> (new owner, started, wall clock)
    gained: dict[str, str] = {}

    def settled() -> bool:
        cluster.check_alive()
        for instance, worker in cluster.workers.items():
            log = worker.log()
            found = [
                m
                for m in GAINED.finditer(log, offsets.get(instance, 0))
                if len(_names(m.group(1))) == members
            ]
            if not found:
                return False
            for task in _names(found[-1].group(2)):
                gained[task] = instance
            for m in _STARTED.finditer(log, found[-1].start()):
                if m.group(1) in gained and m.group(1) not in seen:
                    seen[m.group(1)] = (instance, logged_at(log, m.start()))
        return set(gained) <= set(seen)

    wait_until(settled, 120, f"every moved task to process again on {members} workers")
    done = time.monotonic()
    time.sleep(AFTER_S + 1)
    closed_at: dict[str, float] = {}
    for instance, worker in list(cluster.workers.items()) + list(cluster.gone.items()):
        log = worker.log()
        for m in CLOSED.finditer(log, offsets.get(instance, 0)):
            for task in _names(m.group(1)):
                closed_at.setdefault(task, logged_at(log, m.start()))
    pauses = [since - closed_at[t] for t, (_, since) in seen.items() if t in closed_at]
    window = (began, done + AFTER_S)
    moved = {int(t.split("_")[1]) for t in gained}
    gaps = {p: longest_gap(a, *window) for p, a in output.arrivals.items()}
    everything = [t for times in output.arrivals.values() for t in times]
    return Change(
        task_pause_s=max(pauses, default=0.0),
        moved_gap_s=max((g for p, g in gaps.items() if p in moved), default=0.0),
        kept_gap_s=max((g for p, g in gaps.items() if p not in moved), default=0.0),
        pause_s=longest_gap(everything, *window),
        moved=dict(sorted(gained.items())),
    )


def scale_out_run(bootstrap: str, keys: int, rate: float, run: int) -> ScaleOutRun:
    extra = ["--num-standby-replicas", "1", "--acceptable-recovery-lag", str(RECOVERY_LAG)]
    with application(bootstrap, "scaleout", extra) as (cluster, sink):
        output = TimedOutput(bootstrap, sink)
        try:
            truth = load_store(cluster, output, keys, 1, first=False)
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
            match = WARMED.search(joiner.log())
            assert match is not None
            warm_end = logged_at(joiner.log(), match.start()) - time.time() + time.monotonic()
            progress(f"  w3 warmed up in {float(match.group(1)):.1f}s (its log); joining")
            out = watch_change(cluster, output, offsets, joined, members=4)
            reads = [
                int(
                    metrics(cluster.workers[owner])["processor_task_restored_before_start_records"][
                        (("task", task),)
                    ]
                )
                for task, owner in out.moved.items()
            ]
            progress(f"  on 4 workers: moved {out.moved}; now w3 leaves (SIGTERM)")
            offsets = {i: len(w.log()) for i, w in cluster.workers.items()}
            left = time.monotonic()
            cluster.leave("w3")
            in_ = watch_change(cluster, output, offsets, left, members=3)
            progress(f"  on 3 workers: moved {in_.moved}; verifying counts")
            truth.update(load.stop())
            steady = (joined - STEADY_S, joined)
            everything = [t for times in output.arrivals.values() for t in times]
            result = ScaleOutRun(
                warmup_s=float(match.group(1)),
                warmup_task_gap_s=max(
                    longest_gap(a, joined, warm_end) for a in output.arrivals.values()
                ),
                steady_task_gap_s=max(longest_gap(a, *steady) for a in output.arrivals.values()),
                steady_pause_s=longest_gap(everything, *steady),
                max_read=max(reads, default=0),
                out=out,
                in_=in_,
            )
            result.over_counted = verify(output, truth, exactly_once=False)
            if KEEP:
                dump_arrivals(output, cluster.workdir)
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


def failover_rows(runs: dict[int, list[FailoverRun]]) -> list[str]:
    rows = []
    for standbys, done in runs.items():
        promoted = sum(r.standby_promoted for r in done)
        moved = statistics.median(len(r.moved) for r in done)
        rows.append(
            f"| failover (SIGKILL 1 of 3 workers), exactly-once, {standbys} standby | "
            f"{spread([r.failover_s for r in done])} | {records([r.replayed for r in done])} | "
            f"rebalance starts {spread([r.rebalance_s for r in done])} s after the kill, "
            f"last survivor assigned at {spread([r.assigned_s for r in done])} s; "
            f"moved tasks ({moved:.0f}) restored in {spread([r.restore_s for r in done])} s; "
            f"longest gap in a moved task's output {spread([r.output_gap_s for r in done])} s"
            + (f"; promoted from standby in {promoted} of {len(done)} runs" if standbys else "")
            + " |"
        )
    return rows


def scale_out_rows(scale: list[ScaleOutRun]) -> list[str]:
    over = sum(s.over_counted for s in scale)
    rows = []
    for name, change in (("3 -> 4", lambda s: s.out), ("4 -> 3", lambda s: s.in_)):
        rows += [
            f"| scale {name} workers, at-least-once, 1 standby: longest time with no output "
            f"from any task (sink reader) | {spread([change(s).pause_s for s in scale], '{:.2f}')}"
            f" | | steady state {spread([s.steady_pause_s for s in scale], '{:.2f}')} s |",
            f"| scale {name}: longest gap in the output of a task that kept its owner | "
            f"{spread([change(s).kept_gap_s for s in scale], '{:.2f}')} | | steady state (any "
            f"task) {spread([s.steady_task_gap_s for s in scale], '{:.2f}')} s |",
            f"| scale {name}: longest gap in the output of a moved task | "
            f"{spread([change(s).moved_gap_s for s in scale], '{:.2f}')} | | its stop in the "
            f"logs (closed by the old owner to processing on the new one): "
            f"{spread([change(s).task_pause_s for s in scale], '{:.2f}')} s; moved per run: "
            f"{', '.join(str(len(change(s).moved)) for s in scale)} |",
        ]
    return [
        *rows,
        "| scale-out 3 -> 4: joiner warm-up, the others processing meanwhile | "
        f"{spread([s.warmup_s for s in scale])} | {records([s.max_read for s in scale])} (most "
        f"read by one moved task) | longest task output gap meanwhile "
        f"{spread([s.warmup_task_gap_s for s in scale], '{:.2f}')} s; {over} keys over-counted "
        "in all runs |",
    ]


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
            failovers: dict[int, list[FailoverRun]] = {1: [], 0: []}
            for standbys, runs in failovers.items():
                for run in range(args.runs):
                    progress(f"failover, {standbys} standby, run {run + 1} of {args.runs}")
                    r = failover_run(bootstrap, args.keys, args.rate, standbys, run)
                    runs.append(r)
                    progress(
                        f"  failover {r.failover_s:.1f}s (rebalance from {r.rebalance_s:.1f}s, "
                        f"assigned by {r.assigned_s:.1f}s, restore {r.restore_s:.1f}s), "
                        f"{r.replayed:,} changelog records replayed, moved-task output gap "
                        f"{r.output_gap_s:.1f}s: counts exact"
                    )
            rows += failover_rows(failovers)
        if args.scenario in ("all", "scale-out"):
            scale: list[ScaleOutRun] = []
            for run in range(args.runs):
                progress(f"scale-out 3 -> 4, run {run + 1} of {args.runs}")
                s = scale_out_run(bootstrap, args.keys, args.rate, run)
                scale.append(s)
                progress(
                    f"  warm-up {s.warmup_s:.1f}s; no output at all: 3->4 {s.out.pause_s:.2f}s, "
                    f"4->3 {s.in_.pause_s:.2f}s (steady {s.steady_pause_s:.2f}s); kept tasks' "
                    f"longest gap {s.out.kept_gap_s:.2f}s / {s.in_.kept_gap_s:.2f}s, moved "
                    f"{s.out.moved_gap_s:.2f}s / {s.in_.moved_gap_s:.2f}s (steady, any task "
                    f"{s.steady_task_gap_s:.2f}s); max read {s.max_read:,}; "
                    f"{s.over_counted} keys over-counted, none short"
                )
                if s.max_read > RECOVERY_LAG:
                    progress(f"  NOTE: a moved task read more than {RECOVERY_LAG:,} records")
            rows += scale_out_rows(scale)
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
