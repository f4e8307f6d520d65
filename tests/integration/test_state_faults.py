"""Stateful processing against the real broker, with workers killed by SIGKILL mid-stream:
exactly-once counts are exact, at-least-once loses nothing, a restarted worker reads only the
changelog tail, and a deleted or corrupted store is rebuilt from its changelog."""

from __future__ import annotations

import json
import random
import re
import shutil
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from processor.state.rocksdb import open_rocksdb
from tests.integration.workers import FAST, PARTITIONS, WorkerProcess
from tests.kafka_helpers import produce


class Latest:
    """Reads a sink topic (read_committed) and keeps every (key, value) and the latest per key,
    values as `decode` makes them. With `tolerate_client_errors`, non-fatal client errors (the
    broker is down) are skipped instead of failing the test."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        decode: Callable[[bytes], Any] = bytes,
        tolerate_client_errors: bool = False,
    ) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "unused",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self._consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        self._decode = decode
        self._tolerate_client_errors = tolerate_client_errors
        self.pairs: Counter[tuple[str, Any]] = Counter()
        self.latest: dict[str, Any] = {}
        self.total = 0

    def poll(self, seconds: float = 0.2) -> None:
        for message in self._consumer.consume(5000, seconds):
            error = message.error()
            if error is not None:
                assert self._tolerate_client_errors and not error.fatal(), error
                continue
            key = message.key().decode()
            value = self._decode(message.value())
            self.pairs[(key, value)] += 1
            self.latest[key] = value
            self.total += 1

    def close(self) -> None:
        self._consumer.close()


def count_of(value: bytes) -> int:
    result: int = struct.unpack(">q", value)[0]
    return result


class Cluster:
    """Worker processes by instance id; a restarted instance replaces its entry."""

    def __init__(
        self, bootstrap: str, env: dict[str, str], tmp_path: Path, topology: str, extra: list[str]
    ) -> None:
        self.bootstrap, self.env, self.tmp_path = bootstrap, env, tmp_path
        self.topology, self.extra = topology, extra
        self.workers: dict[str, WorkerProcess] = {}
        self.all: list[WorkerProcess] = []

    def start(self, instance_id: str) -> WorkerProcess:
        worker = WorkerProcess(
            self.topology,
            bootstrap=self.bootstrap,
            instance_id=instance_id,
            state_dir=self.state_dir(instance_id),
            log_dir=self.tmp_path,
            env=self.env,
            extra_args=[*FAST, *self.extra],
        )
        self.workers[instance_id] = worker
        self.all.append(worker)
        return worker

    def state_dir(self, instance_id: str) -> Path:
        return self.tmp_path / "state" / instance_id

    def task_dir(self, instance_id: str, task: str) -> Path:
        return self.state_dir(instance_id) / self.env["PROCESSOR_APPLICATION_ID"] / task

    def final_owners(self) -> dict[str, str]:
        """Task -> instance, from each live worker's last accepted assignment (a worker that has
        accepted none yet owns nothing)."""
        owners: dict[str, str] = {}
        for instance, worker in self.workers.items():
            lines = re.findall(r"; active tasks \[([^\]]*)\]", worker.log()) or [""]
            for task in filter(None, lines[-1].split(", ")):
                owners[task] = instance
        return owners

    def check_alive(self) -> None:
        """Every worker not killed on purpose is still running (a worker that stopped on an
        error would leave its last assignment in its log, as if it still held those tasks)."""
        for instance, worker in self.workers.items():
            assert worker.process.poll() is None, (
                f"worker {instance} exited:\n{worker.log()[-3000:]}"
            )

    def processing_owners(self) -> dict[str, str]:
        """`final_owners()`, only the tasks their owner processes: those it gained with its
        last assignment count once its log says they started, a stateful one once its state
        is restored (until then its local store is behind its changelog)."""
        owners: dict[str, str] = {}
        for instance, worker in self.workers.items():
            log = worker.log()
            assignments = list(
                re.finditer(r"; active tasks \[([^\]]*)\]; .*; gaining \[([^\]]*)\]", log)
            )
            if not assignments:
                continue
            last = assignments[-1]
            after = log[last.end() :]
            started = {  # at once: nothing to restore (stateless)
                task
                for listed in re.findall(r"created: \[([^\]]*)\] processing", after)
                for task in listed.split(", ")
            }
            for task in filter(None, last.group(1).split(", ")):
                gained = task in last.group(2).split(", ")
                if not gained or task in started or f"task {task}: state restored in" in after:
                    owners[task] = instance
        return owners

    def stop_all(self) -> None:
        for worker in self.all:
            worker.stop_quietly()


@pytest.fixture
def cluster_factory(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path
) -> Iterator[list[Cluster]]:
    made: list[Cluster] = []
    yield made
    for cluster in made:
        cluster.stop_all()


def new_cluster(
    made: list[Cluster],
    bootstrap: str,
    env: dict[str, str],
    tmp_path: Path,
    topology: str,
    *extra: str,
) -> Cluster:
    cluster = Cluster(bootstrap, env, tmp_path, topology, list(extra))
    made.append(cluster)
    return cluster


def kill_and_restart_while_processing(
    cluster: Cluster, output: Latest, expected_outputs: int, seed: int, timeout: float
) -> None:
    """SIGKILL a random worker at 20%, 45% and 70% of the expected outputs, restart it a
    second later, and read until `expected_outputs` have arrived."""
    rng = random.Random(seed)
    kill_points = [int(expected_outputs * f) for f in (0.2, 0.45, 0.7)]
    deadline = time.monotonic() + timeout
    while output.total < expected_outputs:
        assert time.monotonic() < deadline, f"{output.total} of {expected_outputs} outputs"
        output.poll()
        if kill_points and output.total >= kill_points[0]:
            kill_points.pop(0)
            victim = rng.choice(sorted(cluster.workers))
            cluster.workers[victim].kill()
            print(f"SIGKILL {victim} at {output.total} outputs")
            time.sleep(1.0)
            cluster.start(victim)


def test_exactly_once_counts_are_exact_after_repeated_sigkills(
    kafka_bootstrap: str, topics: dict[str, str], cluster_factory: list[Cluster], tmp_path: Path
) -> None:
    keys, records = 50_000, 200_000
    values = [f"k{i % keys}" for i in range(records)]
    random.Random(1).shuffle(values)
    produce(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], [(None, v) for v in values])
    truth = Counter(values)

    cluster = new_cluster(
        cluster_factory,
        kafka_bootstrap,
        topics,
        tmp_path,
        "tests.worker_topologies:counting",
        "--processing-guarantee",
        "exactly_once",
    )
    for instance in ("w0", "w1", "w2"):
        cluster.start(instance)
    output = Latest(kafka_bootstrap, topics["TEST_SINK_TOPIC"])
    started = time.monotonic()
    kill_and_restart_while_processing(cluster, output, records, seed=7, timeout=300)
    output.poll(2.0)
    print(f"{records} records counted through 3 SIGKILLs in {time.monotonic() - started:.0f}s")

    duplicated = {pair: n for pair, n in output.pairs.items() if n > 1}
    assert not duplicated, (
        f"{len(duplicated)} output records duplicated, e.g. {next(iter(duplicated))}"
    )
    assert output.total == records, "one output per input record: every update exactly once"
    assert {k: count_of(v) for k, v in output.latest.items()} == truth

    # The stores agree: read every task's RocksDB on its final owner, after the workers are
    # killed (exactly-once keeps only committed data locally, so a kill loses nothing).
    # A worker restarted within the session timeout takes no tasks until its dead predecessor
    # expires, and a task's new owner restores its state before processing: wait until every
    # task is processed by an owner again.
    deadline = time.monotonic() + 30
    while len(owners := cluster.processing_owners()) < 2 * PARTITIONS:
        assert time.monotonic() < deadline, f"tasks not processed yet: {sorted(owners)}"
        time.sleep(0.2)
    cluster.check_alive()
    cluster.stop_all()
    stored: dict[str, int] = {}
    for task, instance in owners.items():
        if not task.startswith("1_"):
            continue  # sub-topology 0 only repartitions; the counts live in sub-topology 1
        backend = open_rocksdb(cluster.task_dir(instance, task), ["counts"])
        try:
            for key, value in backend.range("counts"):
                stored[key.decode()] = count_of(value)
        finally:
            backend.close()
    assert stored == truth
    output.close()


def test_at_least_once_loses_nothing_after_repeated_sigkills(
    kafka_bootstrap: str, topics: dict[str, str], cluster_factory: list[Cluster], tmp_path: Path
) -> None:
    keys, records = 50_000, 200_000
    values = [f"k{i % keys}:{i}" for i in range(records)]
    random.Random(2).shuffle(values)
    produce(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], [(None, v) for v in values])
    truth: dict[str, list[int]] = {}
    for value in values:
        key, record_id = value.split(":")
        truth.setdefault(key, []).append(int(record_id))

    cluster = new_cluster(
        cluster_factory, kafka_bootstrap, topics, tmp_path, "tests.worker_topologies:collecting"
    )
    for instance in ("a0", "a1", "a2"):
        cluster.start(instance)
    output = Latest(kafka_bootstrap, topics["TEST_SINK_TOPIC"])

    def complete() -> bool:
        return len(output.latest) == keys and all(
            len(json.loads(v)) == len(truth[k]) for k, v in output.latest.items()
        )

    kill_and_restart_while_processing(cluster, output, int(records * 0.9), seed=11, timeout=300)
    deadline = time.monotonic() + 120
    while not complete():
        assert time.monotonic() < deadline, "some records never reached the output"
        output.poll()
    assert {k: json.loads(v) for k, v in output.latest.items()} == {
        k: sorted(ids) for k, ids in truth.items()
    }
    assert output.total >= records
    output.close()


def changelog_end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(PARTITIONS)
        }
    finally:
        consumer.close()


def restored_records(worker: WorkerProcess, after: int = 0) -> dict[str, int]:
    """Task -> records its restore read, from the worker's log (0 when nothing was to read)."""
    log = worker.log()[after:]
    counts = {t: int(n) for t, n in re.findall(r"task (\d+_\d+): restored (\d+) records", log)}
    for task in re.findall(r"task (\d+_\d+): state is up to date", log):
        counts.setdefault(task, 0)
    return counts


def run_batch(
    cluster: Cluster, bootstrap: str, env: dict[str, str], output: Latest, batch: list[str]
) -> None:
    before = output.total
    produce(bootstrap, env["TEST_SOURCE_TOPIC"], [(None, v) for v in batch])
    deadline = time.monotonic() + 120
    while output.total < before + len(batch):
        assert time.monotonic() < deadline, f"{output.total - before} of {len(batch)} outputs"
        output.poll()


def test_restarted_worker_reads_only_the_changelog_tail_and_rebuilds_lost_stores(
    kafka_bootstrap: str, topics: dict[str, str], cluster_factory: list[Cluster], tmp_path: Path
) -> None:
    cluster = new_cluster(
        cluster_factory, kafka_bootstrap, topics, tmp_path, "tests.worker_topologies:counting"
    )
    changelog = f"{topics['PROCESSOR_APPLICATION_ID']}-counts-changelog"
    output = Latest(kafka_bootstrap, topics["TEST_SINK_TOPIC"])
    rng = random.Random(3)
    truth: Counter[str] = Counter()

    def batch(n: int) -> list[str]:
        values = [f"k{rng.randrange(2000)}" for _ in range(n)]
        truth.update(values)
        return values

    # Worker a counts a first batch and stops cleanly: its stores are checkpointed.
    a = cluster.start("a")
    a.wait_for_log(r"active tasks", 60)
    run_batch(cluster, kafka_bootstrap, topics, output, batch(5000))
    assert a.terminate() == 0
    ends_before = changelog_end_offsets(kafka_bootstrap, changelog)

    # Worker b, with its own state dir, takes everything over and counts a second batch.
    b = cluster.start("b")
    b.wait_for_log(r"active tasks", 60)
    run_batch(cluster, kafka_bootstrap, topics, output, batch(3000))
    assert b.terminate() == 0
    ends_after = changelog_end_offsets(kafka_bootstrap, changelog)
    tail = {f"1_{p}": ends_after[p] - ends_before[p] for p in range(PARTITIONS)}
    assert sum(tail.values()) > 0

    # a again: each task reads exactly the records b added to its changelog partition.
    a = cluster.start("a")
    a.wait_for_log(r"active tasks", 60)
    deadline = time.monotonic() + 60
    while len(restored_records(a)) < PARTITIONS:
        assert time.monotonic() < deadline, a.log()[-3000:]
        time.sleep(0.2)
    assert restored_records(a) == tail
    run_batch(cluster, kafka_bootstrap, topics, output, batch(1000))
    assert a.terminate() == 0
    assert {k: count_of(v) for k, v in output.latest.items()} == truth

    # Lose one store directory and corrupt another while a is down: a rebuilds both from the
    # changelog (with a warning naming the task) and counts on exactly.
    ends = changelog_end_offsets(kafka_bootstrap, changelog)
    shutil.rmtree(cluster.task_dir("a", "1_0"))
    corrupted = cluster.task_dir("a", "1_1")
    for file in corrupted.iterdir():
        if file.is_file():
            file.write_bytes(b"\x00garbage" * 64)
    a = cluster.start("a")
    a.wait_for_log(r"active tasks", 60)
    run_batch(cluster, kafka_bootstrap, topics, output, batch(1000))
    assert {k: count_of(v) for k, v in output.latest.items()} == truth
    restored = restored_records(a)
    assert restored["1_0"] == ends[0] and restored["1_1"] == ends[1], "full rebuilds"
    assert re.search(r"WARNING .*task 1_1.*wip", a.log()), a.log()[-3000:]
    assert a.terminate() == 0
    output.close()
