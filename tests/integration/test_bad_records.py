"""Bad input and failing user code on a real broker: every input record ends up exactly once as
output, filtered, skipped or dead-lettered, dead letters carry their origin, and `fail` stops at
the first bad record without committing past it."""

from __future__ import annotations

import io
import json
import random
import re
import time
from collections import Counter
from pathlib import Path

import fastavro
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from processor.topology.handling import (
    HEADER_MESSAGE,
    HEADER_OFFSET,
    HEADER_OPERATOR,
    HEADER_PARTITION,
    HEADER_STAGE,
    HEADER_TARGET_TOPIC,
    HEADER_TASK,
    HEADER_TIME,
    HEADER_TOPIC,
    HEADER_TYPE,
)
from tests.integration.failover import metrics
from tests.integration.workers import WorkerProcess, start_worker
from tests.kafka_helpers import ConsumedRecord, consume, create_topic, produce

pytestmark = pytest.mark.integration

_AVRO_SCHEMA = fastavro.parse_schema(
    {"type": "record", "name": "Reading", "fields": [{"name": "n", "type": "long"}]}
)


def _outcomes(worker: WorkerProcess) -> Counter[tuple[str, str]]:
    """processor_records_total from the worker's /metrics: (outcome, reason) -> records."""
    samples = metrics(worker).get("processor_records_total", {})
    return Counter(
        {(dict(labels)["outcome"], dict(labels)["reason"]): int(n) for labels, n in samples.items()}
    )


def _wait_for_outcomes(
    worker: WorkerProcess, total: int, timeout: float = 60.0
) -> Counter[tuple[str, str]]:
    """The committed outcomes, once they account for `total` input records."""
    deadline = time.monotonic() + timeout
    while True:
        counts = _outcomes(worker)
        if sum(counts.values()) >= total or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def _avro(n: int) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, _AVRO_SCHEMA, {"n": n})
    return out.getvalue()


def _mixed_input(rng: random.Random) -> tuple[list[tuple[bytes | None, bytes]], Counter[str]]:
    """Valid records with garbage mixed in, and the outcome each must have."""
    records: list[tuple[bytes | None, bytes]] = []
    expected: Counter[str] = Counter()
    for i in range(2400):
        key = f"k{i % 97}".encode()
        kind = rng.random()
        if kind < 0.80:
            n = rng.randrange(1000)
            records.append((key, json.dumps({"n": n}).encode()))
            expected["filtered" if n % 3 == 0 else "output"] += 1
            continue
        if kind < 0.84:
            garbage = rng.randbytes(rng.randrange(1, 64))  # random bytes
        elif kind < 0.88:
            garbage = json.dumps({"n": rng.randrange(1000), "p": "x" * 20})[:-3].encode()
        elif kind < 0.91:
            garbage = _avro(rng.randrange(10**6))[:-1]  # truncated Avro
        elif kind < 0.94:
            garbage = json.dumps(["n", 1]).encode()  # JSON, but not an object with "n"
        elif kind < 0.96:
            garbage = b"\xff" + rng.randbytes(300_000)  # huge and undecodable
        elif kind < 0.98:
            # a null key, on a record that passes the filter
            records.append((None, json.dumps({"n": 3 * rng.randrange(100) + 1}).encode()))
            expected["dead_lettered"] += 1
            continue
        else:
            records.append((b"\xc3\x28", json.dumps({"n": 1}).encode()))  # key: invalid UTF-8
            expected["dead_lettered"] += 1
            continue
        records.append((key, garbage))
        expected["dead_lettered"] += 1
    # a huge valid record goes through like any other
    records.append((b"huge", json.dumps({"n": 5, "pad": "x" * 300_000}).encode()))
    expected["output"] += 1
    return records, expected


def test_dead_letters_account_for_every_bad_record_exactly(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path
) -> None:
    records, expected = _mixed_input(random.Random(7))
    app = topics["PROCESSOR_APPLICATION_ID"]
    produce(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], records)
    worker = start_worker(
        "tests.worker_topologies:validating",
        bootstrap=kafka_bootstrap,
        env=topics,
        workdir=tmp_path,
        instance="w1",
        extra=[
            "--processing-guarantee",
            "exactly_once",
            "--deserialization-error-handler",
            "dead_letter",
            "--processing-error-handler",
            "dead_letter",
        ],
    )
    try:
        worker.url()
        outputs = consume(
            kafka_bootstrap, topics["TEST_SINK_TOPIC"], expected["output"], read_committed=True
        )
        dead = consume(
            kafka_bootstrap, f"{app}-dead-letters", expected["dead_lettered"], read_committed=True
        )
        outcomes = _wait_for_outcomes(worker, len(records))
    finally:
        worker.stop_quietly()

    assert len(outputs) == expected["output"]
    assert len(dead) == expected["dead_lettered"]
    assert sum(outcomes.values()) == len(records)
    assert outcomes[("output", "")] == expected["output"]
    assert outcomes[("filtered", "")] == expected["filtered"]
    by_reason = {reason: n for (outcome, reason), n in outcomes.items() if outcome != "output"}
    assert sum(n for r, n in by_reason.items() if r) == expected["dead_lettered"]
    assert set(by_reason) <= {"", "deserialization", "processing"}
    _assert_dead_letters_name_their_origin(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], dead)


def _assert_dead_letters_name_their_origin(
    bootstrap: str, source: str, dead: list[ConsumedRecord]
) -> None:
    read = consume(bootstrap, source, _topic_size(bootstrap, source))
    originals = {(r.partition, r.offset): r for r in read}
    for record in dead:
        headers = dict(record.headers)
        assert headers[HEADER_TOPIC] == source.encode()
        partition = int(headers[HEADER_PARTITION] or b"")
        offset = int(headers[HEADER_OFFSET] or b"")
        original = originals[(partition, offset)]
        assert (record.key, record.value) == (original.key, original.value)
        stage = headers[HEADER_STAGE]
        assert stage in (b"deserialization", b"processing")
        assert headers[HEADER_TYPE] and headers[HEADER_MESSAGE]
        assert headers[HEADER_TASK] == f"0_{partition}".encode()
        assert abs(int(headers[HEADER_TIME] or b"0") / 1000 - time.time()) < 600
        if stage == b"processing":
            assert headers[HEADER_OPERATOR] == b"n-not-divisible-by-3"


def _topic_size(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "size-unused"})
    try:
        partitions = consumer.list_topics(topic=topic, timeout=10).topics[topic].partitions
        return sum(
            high - low
            for low, high in (
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                for p in partitions
            )
        )
    finally:
        consumer.close()


def _committed(bootstrap: str, group: str, topic: str, partition: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        [found] = consumer.committed([TopicPartition(topic, partition)], timeout=10)
        return int(found.offset)
    finally:
        consumer.close()


def test_fail_stops_at_the_first_bad_record_and_commits_nothing_after_it(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path
) -> None:
    source = topics["TEST_SOURCE_TOPIC"]
    good = [(f"k{i}".encode(), json.dumps({"n": 1}).encode()) for i in range(300)]
    bad_offset = 200
    records = [*good[:bad_offset], (b"k-bad", b"{truncated"), *good[bad_offset:]]
    produce(kafka_bootstrap, source, records, partition=0)
    worker = start_worker(
        "tests.worker_topologies:validating",
        bootstrap=kafka_bootstrap,
        env=topics,
        workdir=tmp_path,
        instance="w1",
    )
    code = worker.wait(60)
    log = worker.log()
    assert code != 0
    last_line = log.strip().splitlines()[-1]
    assert f"record {source}[0]@{bad_offset}" in last_line
    assert "cannot deserialize the value with the json serde" in last_line
    assert "deserialization_error_handler" in last_line
    assert "Traceback" not in log
    committed = _committed(kafka_bootstrap, topics["PROCESSOR_APPLICATION_ID"], source, 0)
    assert committed <= bad_offset


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_failing_user_function_is_retried_then_dead_lettered_with_exact_accounting(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path, guarantee: str
) -> None:
    keys = [f"k{i}{('t', 'x', 'o', 'o', 'o')[i % 5]}" for i in range(500)]
    records = [(key.encode(), f"v{i}".encode()) for i, key in enumerate(keys)]
    transient = sum(1 for k in keys if k.endswith("t"))
    broken = sum(1 for k in keys if k.endswith("x"))
    app = topics["PROCESSOR_APPLICATION_ID"]
    produce(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], records)
    worker = start_worker(
        "tests.worker_topologies:flaky",
        bootstrap=kafka_bootstrap,
        env=topics,
        workdir=tmp_path,
        instance="w1",
        extra=[
            "--processing-guarantee",
            guarantee,
            "--processing-error-handler",
            "dead_letter",
            "--processing-retry-attempts",
            "2",
            "--processing-retry-backoff-ms",
            "1",
        ],
    )
    try:
        worker.url()
        outputs = consume(
            kafka_bootstrap, topics["TEST_SINK_TOPIC"], len(keys) - broken, read_committed=True
        )
        dead = consume(kafka_bootstrap, f"{app}-dead-letters", broken, read_committed=True)
        outcomes = _wait_for_outcomes(worker, len(records))
        log = worker.log()
    finally:
        worker.stop_quietly()

    assert sorted(r.key for r in outputs) == sorted(k.encode() for k in keys if k[-1] != "x")
    assert all(r.value is not None and r.value.startswith(b"V") for r in outputs)
    assert sorted(r.key for r in dead) == sorted(k.encode() for k in keys if k[-1] == "x")
    assert outcomes == {("output", ""): len(keys) - broken, ("dead_lettered", "processing"): broken}
    assert all(dict(r.headers)[HEADER_TYPE] == b"ValueError" for r in dead)
    # every transient record failed twice, was retried twice, and then went through
    assert len(re.findall(r"raised TransientError .* retry 1 of 2", log)) == transient
    assert len(re.findall(r"raised TransientError .* retry 2 of 2", log)) == transient
    assert "Traceback" not in log


def test_bad_records_are_counted_where_every_worker_can_see_them(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path
) -> None:
    """skip: a log line and a metric per record, and processing goes on."""
    records = [(b"a", b'{"n": 1}'), (b"b", b"not json"), (b"c", b'{"n": 2}'), (b"d", b"[1]")]
    produce(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], records, partition=0)
    worker = start_worker(
        "tests.worker_topologies:validating",
        bootstrap=kafka_bootstrap,
        env=topics,
        workdir=tmp_path,
        instance="w1",
        extra=["--deserialization-error-handler", "skip", "--processing-error-handler", "skip"],
    )
    try:
        worker.url()
        consume(kafka_bootstrap, topics["TEST_SINK_TOPIC"], 2)
        outcomes = _wait_for_outcomes(worker, len(records))
        log = worker.log()
    finally:
        worker.stop_quietly()
    assert outcomes == {
        ("output", ""): 2,
        ("skipped", "deserialization"): 1,
        ("skipped", "processing"): 1,
    }
    source = topics["TEST_SOURCE_TOPIC"]
    assert f"skipping record {source}[0]@1" in log
    assert f"skipping record {source}[0]@3" in log


def _limit_record_size(bootstrap: str, topic: str, max_bytes: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(
                "max.message.bytes",
                str(max_bytes),
                incremental_operation=AlterConfigOpType.SET,
            )
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


def _run_refusals(
    bootstrap: str,
    topics: dict[str, str],
    tmp_path: Path,
    guarantee: str,
    records: list[tuple[bytes, bytes]],
    *,
    limit_after_start: bool,
) -> None:
    """Runs `tagging` into a sink whose records may be at most 1,000 bytes (a limit set before
    the worker starts, so it refuses the larger outputs at once, or after, so that the broker
    refuses them after the fact); the refused ones must be dead-lettered with their origin."""
    sink = f"{topics['TEST_SINK_TOPIC']}-small"
    create_topic(bootstrap, sink, 6)
    if not limit_after_start:
        _limit_record_size(bootstrap, sink, 1000)
    large = sum(1 for _, value in records if len(value) > 1000)
    app = topics["PROCESSOR_APPLICATION_ID"]
    worker = start_worker(
        "tests.worker_topologies:tagging",
        bootstrap=bootstrap,
        env={**topics, "TEST_SINK_TOPIC": sink},
        workdir=tmp_path,
        instance="w1",
        extra=[
            "--processing-guarantee",
            guarantee,
            "--production-error-handler",
            "dead_letter",
            # The broker refuses whole batches: keep small records out of a large one's.
            "--kafka",
            "producer.batch.size=900",
        ],
    )
    try:
        worker.url()
        if limit_after_start:
            _limit_record_size(bootstrap, sink, 1000)
        produce(bootstrap, topics["TEST_SOURCE_TOPIC"], records)
        outputs = consume(bootstrap, sink, len(records) - large, read_committed=True)
        dead = consume(bootstrap, f"{app}-dead-letters", large, read_committed=True)
        outcomes = _wait_for_outcomes(worker, len(records))
        log = worker.log()
    finally:
        worker.stop_quietly()
    assert sorted(r.key for r in outputs) == sorted(k for k, v in records if len(v) <= 1000)
    assert sorted(r.key for r in dead) == sorted(k for k, v in records if len(v) > 1000)
    assert outcomes == {
        ("output", ""): len(records) - large,
        ("dead_lettered", "production"): large,
    }
    source = {r.key: r for r in consume(bootstrap, topics["TEST_SOURCE_TOPIC"], len(records))}
    for record in dead:
        headers = dict(record.headers)
        assert headers[HEADER_STAGE] == b"production"
        assert headers[HEADER_TARGET_TOPIC] == sink.encode()
        assert b"large" in (headers[HEADER_MESSAGE] or b"") or b"max.message.bytes" in (
            headers[HEADER_MESSAGE] or b""
        )
        origin = source[record.key]
        assert headers[HEADER_PARTITION] == str(origin.partition).encode()
        assert headers[HEADER_OFFSET] == str(origin.offset).encode()
    if limit_after_start:
        # The worker learns the new limit from the first refusal and refuses the rest at once.
        assert f"max.message.bytes is now 1000 for '{sink}'" in log
    assert "Traceback" not in log


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_outputs_too_large_for_their_topic_are_dead_lettered_at_once(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path, guarantee: str
) -> None:
    rng = random.Random(3)
    records = [(f"k{i}".encode(), rng.choice([b"s" * 10, b"L" * 1500])) for i in range(300)]
    _run_refusals(kafka_bootstrap, topics, tmp_path, guarantee, records, limit_after_start=False)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_outputs_the_broker_refuses_later_are_dead_lettered_with_their_origin(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path, guarantee: str
) -> None:
    """The limit changes while the worker runs: the broker refuses the outputs it produces."""
    records = [(f"k{i}".encode(), b"L" * 1500 if i % 40 == 7 else b"s" * 10) for i in range(240)]
    _run_refusals(kafka_bootstrap, topics, tmp_path, guarantee, records, limit_after_start=True)
