"""Scaling out and in under load, exactly-once: 2 -> 4 -> 2 workers while records flow.

Every count stays exact (no key short, no output twice), and a membership change stops only the
tasks that move: a worker starts a task only when an assignment gave it that task (its log's
`gaining [...]`), never one it kept.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

from tests.integration.failover import KeyedLoad
from tests.integration.test_state_faults import Latest, count_of
from tests.integration.workers import WorkerProcess, start_worker

TOPOLOGY = "tests.worker_topologies:keyed_counting"
EXACTLY_ONCE = [
    "--processing-guarantee",
    "exactly_once",
    "--num-standby-replicas",
    "1",
    "--max-warmup-time-ms",
    "3000",
]
KEYS = 3_000
RATE = 1_500  # records/s
_ASSIGNED = re.compile(r"members \[([^\]]*)\]; active tasks \[[^\]]*\]; .*gaining \[([^\]]*)\]")
_STARTED = re.compile(r"task (\d+_\d+): state restored in [\d.]+s \(\d+ changelog records")


def members_of(worker: WorkerProcess) -> set[str] | None:
    found = _ASSIGNED.findall(worker.log())
    return set(found[-1][0].split(", ")) if found else None


def wait_for_members(workers: dict[str, WorkerProcess], timeout: float = 90.0) -> None:
    """Until every worker in `workers` has taken an assignment for exactly these members."""
    deadline = time.monotonic() + timeout
    while any(members_of(w) != set(workers) for w in workers.values()):
        for worker in workers.values():
            assert worker.process.poll() is None, worker.log()[-3000:]
        assert time.monotonic() < deadline, {i: members_of(w) for i, w in workers.items()}
        time.sleep(0.1)


def restarts_of_kept_tasks(log: str) -> list[str]:
    """Tasks the worker started again without an assignment having given them to it: each
    start must follow an assignment line that lists the task as gained."""
    events = sorted(
        [
            (m.start(), "gain", set(filter(None, m.group(2).split(", "))))
            for m in _ASSIGNED.finditer(log)
        ]
        + [(m.start(), "start", {m.group(1)}) for m in _STARTED.finditer(log)],
        key=lambda event: event[0],
    )
    expected: set[str] = set()
    restarted: list[str] = []
    for _, kind, tasks in events:
        if kind == "gain":
            expected |= tasks
        elif tasks <= expected:
            expected -= tasks
        else:
            restarted.extend(sorted(tasks))
    return restarted


def test_scaling_out_and_in_under_exactly_once_load_keeps_every_count_and_stops_only_moved_tasks(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path
) -> None:
    env = dict(topics)
    workers: dict[str, WorkerProcess] = {}
    everyone: list[WorkerProcess] = []

    def start(instance: str) -> None:
        worker = start_worker(
            TOPOLOGY,
            bootstrap=kafka_bootstrap,
            env=env,
            workdir=tmp_path,
            instance=instance,
            extra=EXACTLY_ONCE,
        )
        workers[instance] = worker
        everyone.append(worker)

    rng = random.Random(5)
    keys = [f"k{rng.randrange(KEYS)}" for _ in range(RATE * 40)]
    load = KeyedLoad(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], keys, rate=RATE)
    output = Latest(kafka_bootstrap, topics["TEST_SINK_TOPIC"], decode=count_of)
    try:
        for instance in ("w0", "w1"):
            start(instance)
        wait_for_members(workers)
        load.start()
        for instance in ("w2", "w3"):  # scale out, one at a time, with records flowing
            start(instance)
            wait_for_members(workers)
        for instance in ("w3", "w2"):  # and back in: each leaves cleanly (SIGTERM)
            assert workers.pop(instance).terminate() == 0
            wait_for_members(workers)
        load.join(120)
        deadline = time.monotonic() + 120
        while output.latest != dict(load.produced):
            short = sum(1 for k, n in load.produced.items() if output.latest.get(k) != n)
            assert time.monotonic() < deadline, f"{short} keys without their full count"
            output.poll()
        output.poll(1.0)
    finally:
        for worker in everyone:
            worker.stop_quietly()
        output.close()

    assert output.latest == dict(load.produced)
    # Exactly once: no count of a key went out twice (a reprocessed record would repeat one).
    twice = {pair: n for pair, n in output.pairs.items() if n > 1}
    assert not twice, f"{len(twice)} counts output more than once, e.g. {list(twice)[:3]}"
    for worker in everyone:
        assert restarts_of_kept_tasks(worker.log()) == [], (
            f"{worker.instance_id} restarted tasks it kept"
        )
