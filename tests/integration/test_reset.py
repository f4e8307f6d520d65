"""`processor reset` against the real broker: run, reset, run again, and the outputs are computed
again from the start, exactly; a running worker makes it refuse; a dry run changes nothing;
another application whose id extends this one's keeps its topics."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from processor.kafka.admin import Admin
from tests.integration.test_state_faults import changelog_end_offsets
from tests.integration.workers import PARTITIONS, REPO, WorkerProcess, start_worker
from tests.kafka_helpers import create_topic, produce

TOPOLOGY = "tests.worker_topologies:counting"
VALUES = [f"v{i}" for i in range(12)]
EXACTLY_ONCE = ["--processing-guarantee", "exactly_once"]


def _reset(bootstrap: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "processor.cli",
            "reset",
            TOPOLOGY,
            "--bootstrap-servers",
            bootstrap,
            *args,
        ],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _latest_counts(
    bootstrap: str, topic: str, start: dict[int, int], expected: Counter[str], timeout: float
) -> dict[str, int]:
    """The latest count per value in the committed records after `start` (per partition),
    read until it equals `expected` or `timeout` passes."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in range(PARTITIONS)])
    latest: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    try:
        while latest != dict(expected) and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.2):
                assert message.error() is None, message.error()
                latest[message.key().decode()] = int.from_bytes(message.value(), "big", signed=True)
    finally:
        consumer.close()
    return latest


def test_run_reset_run_counts_again_from_the_start_exactly(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path
) -> None:
    app = topics["PROCESSOR_APPLICATION_ID"]
    admin = Admin({"bootstrap.servers": kafka_bootstrap})
    internal = [
        f"{app}-by-value-repartition",
        f"{app}-counts-changelog",
        f"{app}-coordination",
        f"{app}-metadata",
    ]
    # Another application whose id extends this one's: a bare prefix match would take these.
    neighbours = [f"{app}-v2-counts-changelog", f"{app}-v2-metadata"]
    for topic in neighbours:
        create_topic(kafka_bootstrap, topic, 1)
    records = [(None, VALUES[i % len(VALUES)]) for i in range(600)]
    produce(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], records)
    truth = Counter(value for _, value in records)
    sink = topics["TEST_SINK_TOPIC"]

    state_dir = tmp_path / "state" / "r1"

    def run_r1() -> WorkerProcess:
        return start_worker(
            TOPOLOGY,
            bootstrap=kafka_bootstrap,
            env=topics,
            workdir=tmp_path,
            instance="r1",
            extra=EXACTLY_ONCE,
        )

    first = run_r1()
    try:
        assert _latest_counts(kafka_bootstrap, sink, {}, truth, 60) == truth
        refused = _reset(kafka_bootstrap, topics, "--state-dir", str(state_dir))
        assert refused.returncode == 2, refused.stderr
        assert "r1 (member of group" in refused.stderr, refused.stderr
        holder = f"the worker using {state_dir / app} (pid {first.process.pid})"
        assert holder in refused.stderr, refused.stderr
        assert first.terminate() == 0, first.log()[-3000:]
    finally:
        first.stop_quietly()
    assert any((state_dir / app).glob("*_*")), "the first run kept no task state"

    dry = _reset(kafka_bootstrap, topics, "--state-dir", str(state_dir), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would delete topic {app}-counts-changelog" in dry.stdout, dry.stdout
    assert "(dry run: nothing was changed)" in dry.stdout, dry.stdout
    assert all(admin.partition_counts(internal).values()), "the dry run deleted topics"
    assert any((state_dir / app).glob("*_*")), "the dry run wiped state"

    reset = _reset(kafka_bootstrap, topics, "--state-dir", str(state_dir))
    assert reset.returncode == 0, reset.stderr
    for topic in internal:
        assert f"deleted topic {topic}\n" in reset.stdout, reset.stdout
    assert f"wiped state directory {state_dir / app}" in reset.stdout, reset.stdout
    assert f"reset application {app!r}: {PARTITIONS} source partitions" in reset.stdout
    assert admin.partition_counts(internal) == dict.fromkeys(internal)
    assert all(admin.partition_counts(neighbours).values()), "a neighbour lost its topics"
    assert not any((state_dir / app).glob("*_*")), "task state survived the reset"

    start = changelog_end_offsets(kafka_bootstrap, sink)
    second = run_r1()
    try:
        # Computed again from the first record: every latest count is the truth, not double.
        assert _latest_counts(kafka_bootstrap, sink, start, truth, 60) == truth
        assert all(admin.partition_counts(internal).values()), "internal topics not created anew"
        assert second.terminate() == 0, second.log()[-3000:]
    finally:
        second.stop_quietly()


def test_reset_to_a_time_commits_the_offset_of_the_first_record_at_or_after_it(
    kafka_bootstrap: str, topics: dict[str, str]
) -> None:
    app, source = topics["PROCESSOR_APPLICATION_ID"], topics["TEST_SOURCE_TOPIC"]
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    base_ms = 1_796_119_200_000  # 2026-12-01T10:00:00Z
    for i in range(10):  # one record a minute from 10:00, on partition 0 only
        producer.produce(source, value=b"v", partition=0, timestamp=base_ms + i * 60_000)
    assert producer.flush(30) == 0
    reset = _reset(kafka_bootstrap, topics, "--to-datetime", "2026-12-01T10:03:30Z")
    assert reset.returncode == 0, reset.stderr
    assert "to the first record at or after 2026-12-01T10:03:30Z" in reset.stdout, reset.stdout
    committed = Admin({"bootstrap.servers": kafka_bootstrap}).committed_offsets(app)
    # 10:04 is offset 4; the empty partitions are at their end, where their next record goes.
    assert committed == {(source, 0): 4, **{(source, p): 0 for p in range(1, PARTITIONS)}}
