"""Members of the application's group that are not what they seem: a consumer that is no
worker, workers that would compute another assignment, a source topic that grows while workers
run. None of them may leave a task unprocessed for good or owned twice."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewPartitions

from tests.integration.test_workers import Output, produce_batch, start, wait_until_started
from tests.integration.workers import PARTITIONS, WorkerProcess
from tests.kafka_helpers import produce

RUNNING = "waiting_for_members -> running"


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop_quietly()


def _metric(worker: WorkerProcess, name: str, expected: float, timeout: float = 5.0) -> None:
    """Wait until the worker's /metrics (refreshed about once a second) shows `expected`."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"{worker.url()}/metrics", timeout=5) as response:
            text = response.read().decode()
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        if match and float(match.group(1)) == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} is {match and match.group(1)}, expected {expected}")
        time.sleep(0.2)


def _single_owners(output: Output, batch: str) -> dict[int, str]:
    """The instance that processed each partition of `batch`; fails when one had two."""
    owners = output.owner_by_partition(batch)
    assert all(len(o) == 1 for o in owners.values()), f"a partition owned twice: {owners}"
    return {p: next(iter(o)) for p, o in owners.items()}


def test_a_consumer_that_is_no_worker_joins_the_group_and_owns_nothing(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    app = topics["PROCESSOR_APPLICATION_ID"]
    p0 = start(workers, kafka_bootstrap, topics, tmp_path, "p0")
    p1 = start(workers, kafka_bootstrap, topics, tmp_path, "p1")
    for worker in (p0, p1):
        worker.wait_for_log(RUNNING, timeout=60)

    # A console consumer started for debugging, with the application's group id.
    stranger = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": app,
            "client.id": "console-consumer",
            "session.timeout.ms": 6000,
        }
    )
    marks = [len(worker.log()) for worker in (p0, p1)]
    stranger.subscribe([f"{app}-coordination"])
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            stranger.poll(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    output = Output(kafka_bootstrap, topics["TEST_SINK_TOPIC"])
    try:
        for worker, mark in zip((p0, p1), marks, strict=True):
            worker.wait_for_log(r"members \[", timeout=60, after=mark)  # the new generation
        sent = produce_batch(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], "a", 20)
        output.read_until(lambda o: set(o.payloads()) >= sent, timeout=30)
        assert set(_single_owners(output, "a").values()) <= {"p0", "p1"}
        for worker in (p0, p1):
            worker.wait_for_log(
                r"\(client id 'console-consumer', host \S+\) is not a worker", timeout=5
            )
        _metric(p0, "processor_group_foreign_members", 1)
        _metric(p0, "processor_worker_outvoted", 0)
    finally:
        stop.set()
        poller.join()
        stranger.close()
        output.close()


def test_workers_with_other_assignment_settings_wait_and_a_rolling_upgrade_never_owns_twice(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """w2 computes with another balance factor: with the names w0..w2 its assignment would
    overlap theirs (task 0_5). It waits; then the others move to its setting one at a time."""
    new_setting = ("--assignment-balance-factor", "2.0")
    w0 = start(workers, kafka_bootstrap, topics, tmp_path, "w0")
    w1 = start(workers, kafka_bootstrap, topics, tmp_path, "w1")
    for worker in (w0, w1):
        worker.wait_for_log(RUNNING, timeout=60)
    marks = [len(worker.log()) for worker in (w0, w1)]
    w2 = start(workers, kafka_bootstrap, topics, tmp_path, "w2", *new_setting)
    for worker, mark in zip((w0, w1), marks, strict=True):
        worker.wait_for_log(r"members \[", timeout=60, after=mark)  # the generation with w2
    output = Output(kafka_bootstrap, topics["TEST_SINK_TOPIC"])
    try:
        sent = produce_batch(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], "a", 20)
        output.read_until(lambda o: set(o.payloads()) >= sent, timeout=30)
        assert set(_single_owners(output, "a").values()) == {"w0", "w1"}
        w2.wait_for_log(
            r"worker w2 runs a different assignment settings .* than w0, w1 .*: it takes no tasks",
            timeout=5,
        )
        _metric(w2, "processor_worker_outvoted", 1)
        _metric(w0, "processor_group_outvoted_members", 1)

        # Step 1 of the rolling upgrade: w0 restarts with the new setting. The new setting now
        # has the majority (w0, w2); w1 waits.
        w0.terminate()
        w0 = start(workers, kafka_bootstrap, topics, tmp_path, "w0", *new_setting)
        w1.wait_for_log(r"worker w1 runs a different assignment settings", timeout=60)
        w0.wait_for_log(r"members \[w0, w2\]", timeout=60)
        w2.wait_for_log(r"the group agrees with this worker again", timeout=30)
        sent = produce_batch(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], "b", 20)
        output.read_until(lambda o: set(o.payloads()) >= sent, timeout=30)
        assert set(_single_owners(output, "b").values()) == {"w0", "w2"}

        # Step 2: w1 restarts with the new setting; every worker takes part again.
        w1.terminate()
        w1 = start(workers, kafka_bootstrap, topics, tmp_path, "w1", *new_setting)
        # Its tasks started, not only assigned: until their interim owners let them go, those
        # process them.
        wait_until_started(w1, r"members \[w0, w1, w2\]")
        sent = produce_batch(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], "c", 20)
        output.read_until(lambda o: set(o.payloads()) >= sent, timeout=30)
        assert set(_single_owners(output, "c").values()) == {"w0", "w1", "w2"}
    finally:
        output.close()


def test_a_source_topic_that_gains_partitions_is_taken_up_while_workers_run(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    source = topics["TEST_SOURCE_TOPIC"]
    g0 = start(workers, kafka_bootstrap, topics, tmp_path, "g0")
    g1 = start(workers, kafka_bootstrap, topics, tmp_path, "g1")
    for worker in (g0, g1):
        worker.wait_for_log(RUNNING, timeout=60)
    grown = PARTITIONS + 2
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_partitions([NewPartitions(source, grown)])[source].result(30)
    new_values = [f"n-p{p}-{i}" for p in range(PARTITIONS, grown) for i in range(10)]
    for p in range(PARTITIONS, grown):
        produce(
            kafka_bootstrap, source, [(v, v) for v in new_values if f"-p{p}-" in v], partition=p
        )
    output = Output(kafka_bootstrap, topics["TEST_SINK_TOPIC"])
    try:
        output.read_until(lambda o: set(o.payloads()) >= set(new_values), timeout=45)
    finally:
        output.close()
    for worker in (g0, g1):
        worker.wait_for_log(
            rf"partition counts of source topics changed \('{source}' {PARTITIONS} -> {grown}\)",
            timeout=5,
        )
