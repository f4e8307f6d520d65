"""Several worker processes against the real broker: the work is shared, every record is
processed, a killed worker's tasks move to the others, a restarted one gets its tasks back."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.integration.workers import PARTITIONS, REPO, WorkerProcess
from tests.kafka_group_generation import group_generation
from tests.kafka_helpers import create_topic, produce

SESSION_TIMEOUT_MS = 6000
LIBRDKAFKA_LINE = re.compile(r"%\d\|\d+\.\d+\|")
FAST_GROUP = [
    "--kafka",
    f"session.timeout.ms={SESSION_TIMEOUT_MS}",
    "--kafka",
    "heartbeat.interval.ms=500",
    "--commit-interval-ms",
    "200",
]


class Output:
    """Reads a sink topic incrementally; values are b"<instance>|p<partition>-<n>"."""

    def __init__(self, bootstrap: str, topic: str, *, read_committed: bool = False) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "unused",
                "enable.auto.commit": False,
                "isolation.level": "read_committed" if read_committed else "read_uncommitted",
            }
        )
        self._consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        self.values: list[tuple[str, str]] = []

    def read_until(self, predicate, timeout: float) -> float:  # type: ignore[no-untyped-def]
        """Read until `predicate(self)` holds; returns the time it took."""
        start = time.monotonic()
        while not predicate(self):
            if time.monotonic() - start > timeout:
                raise AssertionError(
                    f"output incomplete after {timeout}s: {len(self.values)} records"
                )
            for message in self._consumer.consume(1000, 0.2):
                assert message.error() is None, message.error()
                instance, _, payload = message.value().decode().partition("|")
                self.values.append((instance, payload))
        return time.monotonic() - start

    def drain(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for message in self._consumer.consume(1000, 0.2):
                instance, _, payload = message.value().decode().partition("|")
                self.values.append((instance, payload))

    def payloads(self) -> Counter[str]:
        return Counter(payload for _, payload in self.values)

    def owner_by_partition(self, batch: str) -> dict[int, set[str]]:
        owners: dict[int, set[str]] = defaultdict(set)
        for instance, payload in self.values:
            if payload.startswith(batch):
                owners[int(payload.split("-")[1][1:])].add(instance)
        return owners

    def close(self) -> None:
        self._consumer.close()


def produce_batch(bootstrap: str, topic: str, batch: str, per_partition: int) -> set[str]:
    payloads: set[str] = set()
    for partition in range(PARTITIONS):
        values = [f"{batch}-p{partition}-{i}" for i in range(per_partition)]
        produce(bootstrap, topic, [(v, v) for v in values], partition=partition)
        payloads.update(values)
    return payloads


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop_quietly()


def start(
    workers: list[WorkerProcess],
    bootstrap: str,
    env: dict[str, str],
    tmp_path: Path,
    instance_id: str,
    *extra: str,
) -> WorkerProcess:
    worker = WorkerProcess(
        "tests.worker_topologies:tagging",
        bootstrap=bootstrap,
        instance_id=instance_id,
        state_dir=tmp_path / instance_id,
        log_dir=tmp_path,
        env=env,
        extra_args=[*FAST_GROUP, *extra],
    )
    workers.append(worker)
    return worker


def wait_until_started(worker: WorkerProcess, members: str) -> None:
    """Wait until `worker` has logged an assignment for `members` (a pattern) and started every
    task of it that it gained: a task changing hands is processed by its previous owner until
    that one lets it go, and only then started here."""
    assigned = worker.wait_for_log(members + r"; active tasks \[([^\]]*)\]", 60)
    for task in filter(None, assigned.group(1).split(", ")):
        worker.wait_for_log(rf"created: \[[^\]]*\b{task}\b[^\]]*\] processing", 60)


def test_three_workers_share_the_work_fail_over_and_get_their_tasks_back(
    kafka_bootstrap: str, topics: dict[str, str], workers: list[WorkerProcess], tmp_path: Path
) -> None:
    w = [start(workers, kafka_bootstrap, topics, tmp_path, f"w{i}") for i in range(3)]
    for worker in w:
        # Started, not only assigned: a task changing hands is processed by its previous owner
        # until that one lets it go, which would make the owners below a race.
        wait_until_started(worker, r"members \[w0, w1, w2\]")
    output = Output(kafka_bootstrap, topics["TEST_SINK_TOPIC"])

    # Nothing fails: every record exactly once, each partition processed by one worker.
    first = produce_batch(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], "a", 500)
    output.read_until(lambda o: set(o.payloads()) >= first, 60)
    output.drain(1.0)
    assert output.payloads() == Counter(first), "every record exactly once"
    owners_before = output.owner_by_partition("a")
    assert all(len(owners_before[p]) == 1 for p in range(PARTITIONS)), owners_before
    assert {next(iter(o)) for o in owners_before.values()} == {"w0", "w1", "w2"}, "work is shared"

    # SIGKILL w2: its partitions are processed by the survivors within the session timeout
    # plus a few seconds, and nothing is lost.
    victim_partitions = {p for p, o in owners_before.items() if o == {"w2"}}
    w[2].kill()
    killed_at = time.monotonic()
    second = produce_batch(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], "b", 200)
    output.read_until(lambda o: set(o.payloads()) >= second, 60)
    failover = time.monotonic() - killed_at
    owners_after = output.owner_by_partition("b")
    for partition in victim_partitions:
        assert owners_after[partition] <= {"w0", "w1"}, (partition, owners_after[partition])
    assert failover < SESSION_TIMEOUT_MS / 1000 + 8, f"failover took {failover:.1f}s"
    print(f"failover after SIGKILL: {failover:.1f}s (session timeout {SESSION_TIMEOUT_MS} ms)")

    # Restart w2 with the same instance id: once the group is stable again it owns its old
    # partitions. It starts them once their interim owner has let them go (which processes them
    # until then): only records produced after that must all be w2's.
    w2 = start(workers, kafka_bootstrap, topics, tmp_path, "w2")
    wait_until_started(w2, r"members \[w0, w1, w2\]")
    third = produce_batch(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], "c", 100)
    output.read_until(lambda o: set(o.payloads()) >= third, 60)
    assert output.owner_by_partition("c") == owners_before
    assert set(output.payloads()) == first | second | third, "nothing lost"
    output.close()

    # SIGTERM: every worker finishes, commits, leaves and exits 0.
    for worker in (w[0], w[1], w2):
        assert worker.terminate() == 0, worker.log()[-2000:]
    committed = committed_offsets(kafka_bootstrap, topics)
    assert committed == {p: 800 for p in range(PARTITIONS)}


def committed_offsets(bootstrap: str, topics: dict[str, str]) -> dict[int, int]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": topics["PROCESSOR_APPLICATION_ID"]}
    )
    try:
        partitions = [TopicPartition(topics["TEST_SOURCE_TOPIC"], p) for p in range(PARTITIONS)]
        return {tp.partition: tp.offset for tp in consumer.committed(partitions, 10)}
    finally:
        consumer.close()


def test_two_live_workers_with_one_instance_id_are_a_configuration_error(
    kafka_bootstrap: str, topics: dict[str, str], workers: list[WorkerProcess], tmp_path: Path
) -> None:
    first = start(workers, kafka_bootstrap, topics, tmp_path, "twin")
    first.wait_for_log(r"members \[twin\]", 60)
    second = WorkerProcess(
        "tests.worker_topologies:tagging",
        bootstrap=kafka_bootstrap,
        instance_id="twin",
        state_dir=tmp_path / "other-state-dir",
        log_dir=tmp_path,
        env=topics,
        extra_args=FAST_GROUP,
    )
    workers.append(second)
    for worker in (first, second):
        assert worker.wait(60) == 2
        assert "two live workers use instance id 'twin'" in worker.log()


def test_sources_with_different_partition_counts_stop_the_worker_with_one_line(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    env = {
        "TEST_SOURCE_TOPIC": f"{unique_name}-a",
        "TEST_SECOND_SOURCE_TOPIC": f"{unique_name}-b",
        "TEST_SINK_TOPIC": f"{unique_name}-out",
    }
    create_topic(kafka_bootstrap, env["TEST_SOURCE_TOPIC"], 2)
    create_topic(kafka_bootstrap, env["TEST_SECOND_SOURCE_TOPIC"], 3)
    create_topic(kafka_bootstrap, env["TEST_SINK_TOPIC"], 1)
    worker = WorkerProcess(
        "tests.worker_topologies:copartitioned",
        bootstrap=kafka_bootstrap,
        instance_id="solo",
        state_dir=tmp_path / "state",
        log_dir=tmp_path,
        env=env,
    )
    assert worker.wait(60) == 2
    lines = [line for line in worker.log().splitlines() if "error" in line]
    assert lines == [
        f"processor: topology error: sub-topology 0 reads topics with different partition counts "
        f"({env['TEST_SOURCE_TOPIC']}=2, {env['TEST_SECOND_SOURCE_TOPIC']}=3): a join or merge "
        "needs the records of a key in the same partition number of each; give these topics the "
        "same partition count (or, for a stream joining a table, re-key it, e.g. with map(), so "
        "it is repartitioned to the table's)"
    ]


def test_a_missing_source_topic_is_named(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    env = {"TEST_SOURCE_TOPIC": f"{unique_name}-absent", "TEST_SINK_TOPIC": f"{unique_name}-out"}
    worker = WorkerProcess(
        "tests.worker_topologies:tagging",
        bootstrap=kafka_bootstrap,
        instance_id="solo",
        state_dir=tmp_path / "state",
        log_dir=tmp_path,
        env=env,
    )
    assert worker.wait(60) == 1
    assert f"topic '{unique_name}-absent': source topic does not exist" in worker.log()


def test_exactly_once_output_after_a_worker_is_killed_mid_stream(
    kafka_bootstrap: str, topics: dict[str, str], workers: list[WorkerProcess], tmp_path: Path
) -> None:
    eos = ["--processing-guarantee", "exactly_once"]
    w = [start(workers, kafka_bootstrap, topics, tmp_path, f"e{i}", *eos) for i in range(3)]
    for worker in w:
        worker.wait_for_log(r"members \[e0, e1, e2\]; active tasks", 60)
    output = Output(kafka_bootstrap, topics["TEST_SINK_TOPIC"], read_committed=True)
    expected = produce_batch(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], "a", 3000)
    output.read_until(lambda o: len(o.values) >= 1000, 60)
    seen_at_kill = len(output.values)
    w[2].kill()  # mid-stream: with an open transaction and uncommitted offsets
    print(f"killed e2 after {seen_at_kill} of 18000 records were output")
    expected |= produce_batch(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], "b", 300)
    output.read_until(lambda o: set(o.payloads()) >= expected, 90)
    output.drain(2.0)
    duplicates = {p: n for p, n in output.payloads().items() if n > 1}
    assert not duplicates, f"{len(duplicates)} records were output more than once"
    assert set(output.payloads()) == expected
    output.close()


def test_workers_flag_starts_several_members_and_sigterm_stops_them_all(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path
) -> None:
    log_path = tmp_path / "supervisor.log"
    log_file = log_path.open("wb")
    supervisor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "processor.cli",
            "run",
            "tests.worker_topologies:tagging",
            "--bootstrap-servers",
            kafka_bootstrap,
            "--state-dir",
            str(tmp_path / "state"),
            "--instance-id",
            "multi",
            "--workers",
            "2",
            *FAST_GROUP,
        ],
        cwd=REPO,
        # The format reaches the children through the environment they inherit.
        env={**os.environ, **topics, "PROCESSOR_LOG_FORMAT": "json"},
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    try:
        expected = produce_batch(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], "a", 50)
        output = Output(kafka_bootstrap, topics["TEST_SINK_TOPIC"])
        output.read_until(lambda o: set(o.payloads()) >= expected, 60)
        output.close()
        # The first member may process everything before the second has started (a busy
        # machine): both members must have taken the shared assignment before they are stopped.
        shared = [f"worker multi-{i}: members [multi-0, multi-1]" for i in (0, 1)]
        deadline = time.monotonic() + 60
        while not all(line in log_path.read_text(errors="replace") for line in shared):
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
            assert supervisor.poll() is None, log_path.read_text(errors="replace")[-3000:]
            time.sleep(0.2)
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=60)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
        log_file.close()
    log = log_path.read_text(errors="replace")
    assert supervisor.returncode == 0, log[-3000:]
    assert log.count("pending_shutdown -> stopped") == 2
    # Every line the processes log is one JSON object (librdkafka writes its own lines, such as
    # `%4|1796305953.252|GETPID|...`, past Python's logging); each child's assignment lines
    # carry the task ids they name, and between them the children hold every task.
    entries = [json.loads(line) for line in log.splitlines() if not LIBRDKAFKA_LINE.match(line)]
    assignments = [e for e in entries if "; active tasks [" in e["message"]]
    assert {e["pid"] for e in assignments} == {e["pid"] for e in entries} - {supervisor.pid}
    for entry in assignments:
        named = entry["message"].split("; active tasks [")[1].split("]")[0]
        assert entry["tasks"] == [t for t in named.split(", ") if t], entry
    last = {e["pid"]: e["tasks"] for e in assignments}
    assert sorted(t for tasks in last.values() for t in tasks) == [
        f"0_{p}" for p in range(PARTITIONS)
    ]


def test_a_static_member_restarted_within_the_session_timeout_keeps_its_tasks_quietly(
    kafka_bootstrap: str, topics: dict[str, str], workers: list[WorkerProcess], tmp_path: Path
) -> None:
    static = ["--static-membership"]
    s = [start(workers, kafka_bootstrap, topics, tmp_path, f"s{i}", *static) for i in range(2)]
    for worker in s:
        wait_until_started(worker, r"members \[s0, s1\]")
    # s0 may have run alone for a moment before s1 joined: only what follows counts.
    settled = len(s[0].log())
    output = Output(kafka_bootstrap, topics["TEST_SINK_TOPIC"])
    first = produce_batch(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], "a", 50)
    output.read_until(lambda o: set(o.payloads()) >= first, 60)
    owners = output.owner_by_partition("a")
    group = topics["PROCESSOR_APPLICATION_ID"]
    generation = group_generation(kafka_bootstrap, group)

    s[1].kill()
    restarted = start(workers, kafka_bootstrap, topics, tmp_path, "s1", *static)
    restarted.wait_for_log(r"members \[s0, s1\]; active tasks", 30)
    wait_until_started(restarted, r"members \[s0, s1\]")
    second = produce_batch(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], "b", 50)
    output.read_until(lambda o: set(o.payloads()) >= second, 60)
    output.close()
    assert output.owner_by_partition("b") == owners
    # The survivor never rebalanced: it accepted no membership snapshot since both were in.
    assert "; active tasks" not in s[0].log()[settled:], s[0].log()[-3000:]
    assert group_generation(kafka_bootstrap, group) == generation, "the group rebalanced"
