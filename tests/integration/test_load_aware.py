"""Load-aware balancing end to end (issue 21): three workers, two hot partitions that the
count-based assignment gives to one worker. The leader weighs tasks by what arrives for them
(their input's end offsets' growth, whatever the overloaded worker gets through), so both hot
partitions weigh the same; every worker applies the plan without a group rebalance, and each hot
partition ends on a worker of its own, every task with exactly one owner."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from confluent_kafka import Producer

from processor.ids import TaskId
from processor.runtime.assignment import assign
from tests.integration.workers import WorkerProcess, start_worker
from tests.kafka_helpers import create_topic

TOPOLOGY = "bench.load_balance_topology"  # map_values costing BENCH_COST_US per record
INSTANCES = ("la0", "la1", "la2")
PARTITIONS = 12
RATE = 600  # records/s: light for the machine; the plan weighs arrivals, not the strain
HOT_SHARE = 0.3  # each hot task weighs 0.3 * 12 * 2 = 7.2 -> 7, far from a rounding step
PLAN = re.compile(r"load plan (\d+) for \[la0, la1, la2\]: .* weights (\{.*\})")
ACTIVE = re.compile(r"worker (la\d): members \[la0, la1, la2\]; active tasks \[([^\]]*)\]")


def _produce(bootstrap: str, topic: str, hot: tuple[int, int], halt: threading.Event) -> None:
    cold = (1 - 2 * HOT_SHARE) / (PARTITIONS - 2)
    shares = [HOT_SHARE if p in hot else cold for p in range(PARTITIONS)]
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    owed = [0.0] * PARTITIONS
    began, sent = time.monotonic(), 0
    while not halt.is_set():
        for _ in range(int((time.monotonic() - began) * RATE) - sent):
            for p, share in enumerate(shares):
                owed[p] += share
            p = max(range(PARTITIONS), key=owed.__getitem__)
            owed[p] -= 1.0
            producer.produce(topic, key=f"k{p}", value=b"x", partition=p)
            sent += 1
        producer.poll(0)
        time.sleep(0.02)
    producer.flush(10)


def test_two_hot_partitions_on_one_worker_are_parted_by_one_plan(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    source, sink = f"{unique_name}-in", f"{unique_name}-out"
    for topic in (source, sink):
        create_topic(kafka_bootstrap, topic, PARTITIONS)
    tasks = [TaskId(0, p) for p in range(PARTITIONS)]
    counted = assign(INSTANCES, tasks).active
    crowded = next(i for i in INSTANCES if sum(o == i for o in counted.values()) >= 2)
    first, second = sorted(t.partition for t, o in counted.items() if o == crowded)[:2]
    env = {"BENCH_INPUT": source, "BENCH_OUTPUT": sink, "BENCH_COST_US": "200"}
    extra = ["--application-id", unique_name, "--assignment-load-aware"]
    extra += ["--load-balance-interval-ms", "10000"]
    halt = threading.Event()
    load = threading.Thread(
        target=_produce, args=(kafka_bootstrap, source, (first, second), halt), daemon=True
    )
    workers: list[WorkerProcess] = []
    try:
        load.start()
        workers = [
            start_worker(
                TOPOLOGY,
                bootstrap=kafka_bootstrap,
                env=env,
                workdir=tmp_path,
                instance=i,
                extra=extra,
            )
            for i in INSTANCES
        ]
        # The leader (la0) plans once every task has a whole window of rates.
        plan = workers[0].wait_for_log(PLAN.pattern, 300)
        weights = {t: int(w) for t, w in re.findall(r"'(\d+_\d+)': (\d+)", plan.group(2))}
        assert weights.get(f"0_{first}") == weights.get(f"0_{second}") == 7
        owners: dict[str, str] = {}
        for worker in workers:
            worker.wait_for_log(r"a new load plan; applying it", 60)
            applied = worker.log().rindex("a new load plan; applying it")
            line = worker.wait_for_log(ACTIVE.pattern, 60, after=applied)
            for task in filter(None, line.group(2).split(", ")):
                assert task not in owners, f"{task} owned by {owners[task]} and {line.group(1)}"
                owners[task] = line.group(1)
        assert sorted(owners) == sorted(str(t) for t in tasks)
        assert owners[f"0_{first}"] != owners[f"0_{second}"]
    finally:
        halt.set()
        for worker in workers:
            worker.stop_quietly()
        load.join(30)
