"""Skewed keys on a real broker: how evenly 3 workers share the load, and how much they get
through, balancing tasks by count or by measured load (`--assignment-load-aware`).

Each run uses fresh topics of 12 partitions and a fresh application of 3 worker processes
(`processor run bench.load_balance_topology`, one `map_values` costing `--cost-us` per record,
see that module for why it sleeps by default). A producer thread writes `--rate` records/s:
the two *hot* partitions take `--hot-share` of them each, the 10 others share the rest. The hot
partitions are chosen where counting hurts: two tasks that the count-based assignment of the
instances `lb0, lb1, lb2` gives to the same worker (two random hot partitions share a worker one
time in three with 3 workers). After `--warmup` seconds the bench reads every worker's
`processor_records_processed_total` every 2 s for `--measure` seconds and reports:

- per worker: records/s processed, and its tasks at the end;
- spread: the busiest worker's records/s over the mean (1.0: even);
- throughput: all workers' records/s together, against the input rate; and the consumer lag
  at the start and at the end of the measurement (what the workers did not get through: growing
  when they do not keep up);
- plans: the load plans the leader logged (load-aware runs).

Load-aware runs pass `--assignment-load-aware --load-balance-interval-ms <--interval-ms>` (10 s
by default here; the worker's default is 30 s), and `--load-balance-max-moves` when `--max-moves`
is given. The leader plans once every task has a whole 30 s window of rates and the imbalance
has lasted an interval: about a minute in, at the end of the default warm-up, so the measured
window then holds the catch-up of the backlog built before; `--warmup 180` measures the steady
state after it. Every worker applies a new plan without a group rebalance: the
tasks it moves are handed over (processor.runtime.handover), the others go on.

    .venv/bin/python -m bench.load_balance [--mode count|load-aware|both] [--rate 3000]
        [--hot-share 0.35] [--cost-us 400] [--warmup 60] [--measure 60] [--runs 1]
        [--interval-ms 10000] [--max-moves N] [--cost-kind sleep|spin]

It starts its own broker (`LocalBroker`) unless PROCESSOR_TEST_BOOTSTRAP names one.
BENCH_KEEP=1 keeps each run's worker logs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Producer

from bench.stateful_count import broker
from processor.ids import TaskId
from processor.runtime.assignment import assign
from tests.integration.failover import metrics
from tests.integration.workers import WorkerProcess, start_worker
from tests.kafka_helpers import create_topic

TOPOLOGY = "bench.load_balance_topology"
INSTANCES = ("lb0", "lb1", "lb2")
PARTITIONS = 12
SAMPLE_S = 2.0
PLAN_LINE = re.compile(r"load plan \d+ for .*")


def hot_partitions() -> tuple[int, int]:
    """Two partitions the count-based assignment gives to one worker."""
    owners = assign(INSTANCES, [TaskId(0, p) for p in range(PARTITIONS)]).active
    for instance in INSTANCES:
        mine = sorted(t.partition for t, owner in owners.items() if owner == instance)
        if len(mine) >= 2:
            return mine[0], mine[1]
    raise AssertionError("no worker owns two tasks")


class Load(threading.Thread):
    """`rate` records/s, partition p taking `shares[p]` of them, until stopped."""

    def __init__(self, bootstrap: str, topic: str, rate: float, shares: Sequence[float]) -> None:
        super().__init__(daemon=True)
        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self._topic = topic
        self._rate = rate
        self._shares = shares
        self._halt = threading.Event()
        self.produced = 0

    def run(self) -> None:
        began = time.monotonic()
        owed = [0.0] * len(self._shares)
        while not self._halt.is_set():
            due = int((time.monotonic() - began) * self._rate) - self.produced
            for _ in range(due):
                # Deficit round robin: the partition furthest behind its share goes next.
                for p, share in enumerate(self._shares):
                    owed[p] += share
                p = max(range(len(owed)), key=owed.__getitem__)
                owed[p] -= 1.0
                self._producer.produce(self._topic, key=f"k{p}", value=b"x" * 20, partition=p)
                self.produced += 1
            self._producer.poll(0)
            time.sleep(0.01)
        self._producer.flush(30)

    def stop(self) -> None:
        self._halt.set()
        self.join(60)


@dataclass
class Outcome:
    mode: str
    per_worker: dict[str, float]
    tasks: dict[str, list[str]]
    input_rate: float
    lag_before: float
    lag: float
    plans: list[str]

    @property
    def spread(self) -> float:
        mean = statistics.fmean(self.per_worker.values())
        return max(self.per_worker.values()) / mean if mean else 1.0

    @property
    def throughput(self) -> float:
        return sum(self.per_worker.values())


def _processed(worker: WorkerProcess) -> dict[str, float]:
    samples = metrics(worker).get("processor_records_processed_total", {})
    return {dict(labels)["task"]: value for labels, value in samples.items()}


def _lag(workers: Sequence[WorkerProcess]) -> float:
    """The consumer lag of every worker's tasks, summed."""
    return sum(sum(metrics(w).get("processor_consumer_lag_records", {}).values()) for w in workers)


def measure(workers: Sequence[WorkerProcess], seconds: float) -> dict[str, float]:
    """Records/s each worker processed over `seconds`, from its per-task counters (a counter
    that went back is a task created anew here: it counts from zero)."""
    last = {w.instance_id: _processed(w) for w in workers}
    done = dict.fromkeys(last, 0.0)
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        time.sleep(SAMPLE_S)
        for worker in workers:
            now = _processed(worker)
            before = last[worker.instance_id]
            for task, value in now.items():
                previous = before.get(task, 0.0)
                done[worker.instance_id] += value - previous if value >= previous else value
            last[worker.instance_id] = now
    elapsed = time.monotonic() - began
    return {instance: n / elapsed for instance, n in done.items()}


def run_once(bootstrap: str, mode: str, args: argparse.Namespace) -> Outcome:
    suffix = uuid.uuid4().hex[:6]
    source, sink, app = f"lb-in-{suffix}", f"lb-out-{suffix}", f"bench-lb-{suffix}"
    for topic in (source, sink):
        create_topic(bootstrap, topic, PARTITIONS)
    hot = hot_partitions()
    cold_share = (1.0 - 2 * args.hot_share) / (PARTITIONS - 2)
    shares = [args.hot_share if p in hot else cold_share for p in range(PARTITIONS)]
    workdir = Path(tempfile.mkdtemp(prefix="bench-lb-"))
    env = {
        "BENCH_INPUT": source,
        "BENCH_OUTPUT": sink,
        "BENCH_COST_US": str(args.cost_us),
        "BENCH_COST_KIND": args.cost_kind,
    }
    extra = ["--application-id", app]
    if mode == "load-aware":
        extra += ["--assignment-load-aware", "--load-balance-interval-ms", str(args.interval_ms)]
        if args.max_moves is not None:
            extra += ["--load-balance-max-moves", str(args.max_moves)]
    load = Load(bootstrap, source, args.rate, shares)
    workers: list[WorkerProcess] = []
    try:
        load.start()
        workers = [
            start_worker(
                TOPOLOGY, bootstrap=bootstrap, env=env, workdir=workdir, instance=i, extra=extra
            )
            for i in INSTANCES
        ]
        for worker in workers:
            worker.wait_for_log(r"members \[lb0, lb1, lb2\]", 120)
        time.sleep(args.warmup)
        lag_before = _lag(workers)
        per_worker = measure(workers, args.measure)
        lag = _lag(workers)
        tasks = {worker.instance_id: sorted(_processed(worker)) for worker in workers}
        plans = [m.group(0) for w in workers for m in PLAN_LINE.finditer(w.log())]
        print(f"  hot partitions {hot}, shares {[round(s, 3) for s in shares]}")
        return Outcome(mode, per_worker, tasks, args.rate, lag_before, lag, plans)
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.terminate(60)
        load.stop()
        if os.environ.get("BENCH_KEEP"):
            print(f"  kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def report(outcome: Outcome) -> None:
    workers = ", ".join(
        f"{i} {rate:.0f}/s [{' '.join(outcome.tasks[i])}]"
        for i, rate in sorted(outcome.per_worker.items())
    )
    print(
        f"{outcome.mode:>10}: spread {outcome.spread:.2f}, throughput {outcome.throughput:.0f}/s "
        f"of {outcome.input_rate:.0f}/s in, lag {outcome.lag_before:.0f} -> {outcome.lag:.0f}; "
        f"{workers}"
    )
    for plan in outcome.plans:
        print(f"            {plan}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["count", "load-aware", "both"], default="count")
    parser.add_argument("--rate", type=float, default=3000.0)
    parser.add_argument("--hot-share", type=float, default=0.35)
    parser.add_argument("--cost-us", type=int, default=400)
    parser.add_argument("--cost-kind", choices=["sleep", "spin"], default="sleep")
    parser.add_argument("--warmup", type=float, default=60.0)
    parser.add_argument("--measure", type=float, default=60.0)
    parser.add_argument("--interval-ms", type=int, default=10_000)
    parser.add_argument("--max-moves", type=int, default=None, help="default: the setting's")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    if not 0 < 2 * args.hot_share < 1:
        parser.error("--hot-share must be between 0 and 0.5")
    modes = ["count", "load-aware"] if args.mode == "both" else [args.mode]
    with broker() as bootstrap:
        print(f"load average {os.getloadavg()[0]:.2f}; {args}")
        for _ in range(args.runs):
            for mode in modes:
                report(run_once(bootstrap, mode, args))


if __name__ == "__main__":
    main()
