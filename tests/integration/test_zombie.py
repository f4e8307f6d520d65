"""A worker that stalls past its session timeout (SIGSTOP here; a long GC pause or a slow user
function alike) is replaced by the group while it sleeps. When it wakes it must not write its
stale state over what its successor wrote: a later restore from the changelogs would lose
counts. The state is checked the hard way: every worker killed, local state wiped, the stores
restored from their changelogs alone."""

from __future__ import annotations

import os
import random
import shutil
import signal
import struct
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

from processor.state.rocksdb import open_rocksdb
from tests.integration.failover import last_assignment
from tests.integration.test_state_faults import (
    Cluster,
    count_of,
    new_cluster,
)
from tests.integration.test_state_faults import (
    cluster_factory as cluster_factory,
)
from tests.integration.workers import PARTITIONS, SESSION_TIMEOUT_S, WorkerProcess
from tests.kafka_helpers import produce

KEYS = 120


class Load:
    """Produces `k<n>` values at about `rate` per second until stopped; counts what it sent."""

    def __init__(self, bootstrap: str, topic: str, rate: float) -> None:
        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self._topic, self._rate = topic, rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.sent: Counter[str] = Counter()

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        assert self._producer.flush(30) == 0

    def _run(self) -> None:
        rng = random.Random(5)
        started = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self._rate) - sum(self.sent.values())
            for _ in range(max(0, due)):
                value = f"k{rng.randrange(KEYS)}"
                self._producer.produce(self._topic, value=value.encode())
                self.sent[value] += 1
            self._producer.poll(0)
            time.sleep(0.01)


def _owned_by(worker: WorkerProcess, subtopology: int) -> list[int]:
    held = last_assignment(worker)
    assert held is not None
    return sorted(int(t.split("_")[1]) for t in held.active if t.startswith(f"{subtopology}_"))


@pytest.mark.parametrize(
    ("guarantee", "stall"),
    [
        ("at_least_once", "slow_function"),  # always wakes mid-batch, before it heard
        ("at_least_once", "sigstop"),
        ("exactly_once", "sigstop"),
    ],
)
def test_a_worker_that_wakes_after_being_replaced_does_not_overwrite_its_successor(
    kafka_bootstrap: str,
    topics: dict[str, str],
    cluster_factory: list[Cluster],
    tmp_path: Path,
    guarantee: str,
    stall: str,
) -> None:
    stall_s = SESSION_TIMEOUT_S + 6  # z0 still sleeps when z1 has taken over and load stops
    cluster = new_cluster(
        cluster_factory,
        kafka_bootstrap,
        {**topics, "TEST_STALL_S": str(stall_s)},
        tmp_path,
        "tests.worker_topologies:stalling_counting",
        "--processing-guarantee",
        guarantee,
        "--kafka",
        f"max.poll.interval.ms={int(SESSION_TIMEOUT_S * 1000) + 1000}",
    )
    sleeper, other = cluster.start("z0"), cluster.start("z1")
    for worker in (sleeper, other):
        worker.wait_for_log(r"members \[z0, z1\]", timeout=60)
    source = topics["TEST_SOURCE_TOPIC"]
    with Load(kafka_bootstrap, source, rate=600) as load:
        time.sleep(2.0)
        mark = len(other.log())
        began = time.monotonic()
        if stall == "sigstop":
            os.kill(sleeper.process.pid, signal.SIGSTOP)
        else:
            produce(kafka_bootstrap, source, [(None, "stall")], partition=_owned_by(sleeper, 0)[0])
            load.sent["stall"] += 1
        try:
            # The group drops z0 and gives its tasks to z1, which goes on counting.
            other.wait_for_log(r"members \[z1\]", timeout=SESSION_TIMEOUT_S + 20, after=mark)
            time.sleep(1.5)  # z1 commits newer counts of z0's keys (every 200 ms)
        finally:
            if stall == "sigstop":
                os.kill(sleeper.process.pid, signal.SIGCONT)
        load.stop()
    # z0 wakes with uncommitted updates of tasks it lost, and nothing comes in any more to
    # overwrite what it would write. Let it wake and settle.
    time.sleep(max(0.0, began + stall_s - time.monotonic()) + 3.0)
    truth = load.sent

    stored = _restored_from_changelogs(cluster, tmp_path)
    lost = {k: (stored[k], n) for k, n in truth.items() if stored[k] < n}
    assert not lost, f"{len(lost)} counts below the truth (stored, sent): {sorted(lost.items())}"
    if guarantee == "exactly_once":
        assert stored == truth


def _restored_from_changelogs(cluster: Cluster, tmp_path: Path) -> Counter[str]:
    """Every worker killed and its state wiped: the counts a new worker restores from the
    changelogs alone."""
    for worker in cluster.all:
        worker.kill()
    shutil.rmtree(tmp_path / "state")
    restorer = cluster.start("r0")
    for task in range(PARTITIONS):
        restorer.wait_for_log(rf"task 1_{task}: state restored", timeout=60)
    restorer.kill()
    stored: Counter[str] = Counter()
    for task in range(PARTITIONS):
        backend = open_rocksdb(cluster.task_dir("r0", f"1_{task}"), ["counts"])
        try:
            for key, value in backend.range("counts"):
                stored[key.decode()] = count_of(value)
        finally:
            backend.close()
    return stored


def test_at_least_once_owner_writes_over_records_a_replaced_worker_sent_to_its_changelogs(
    kafka_bootstrap: str,
    topics: dict[str, str],
    cluster_factory: list[Cluster],
    tmp_path: Path,
) -> None:
    """What a replaced worker's producer sends when it wakes, with no stall to catch it: stale
    counts of every key, and counts of keys that do not exist, in every changelog partition.
    The owner notices records it did not write, and writes its own values (or deletes) again
    after them; an idle owner too (the load has stopped before the records come)."""
    cluster = new_cluster(
        cluster_factory,
        kafka_bootstrap,
        {**topics, "TEST_STALL_S": "0"},
        tmp_path,
        "tests.worker_topologies:stalling_counting",
        "--processing-guarantee",
        "at_least_once",
    )
    owner = cluster.start("o0")
    owner.wait_for_log(r"members \[o0\]", timeout=60)
    source = topics["TEST_SOURCE_TOPIC"]
    with Load(kafka_bootstrap, source, rate=600) as load:
        time.sleep(2.0)
    truth = load.sent
    time.sleep(1.0)  # the owner commits what it counted
    changelog = f"{topics['PROCESSOR_APPLICATION_ID']}-counts-changelog"
    stale = [(f"k{n}".encode(), struct.pack(">q", 1)) for n in range(KEYS + 10)]
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for partition in range(PARTITIONS):
        for key, value in stale:
            producer.produce(changelog, key=key, value=value, partition=partition)
    assert producer.flush(30) == 0
    owner.wait_for_log(r"hold records this worker did not write", timeout=30)
    time.sleep(1.5)  # the next commit writes the owner's values

    stored = _restored_from_changelogs(cluster, tmp_path)
    assert stored == truth
