"""A store update too large for its changelog, on a real broker.

The source topic takes 5 MB records, its changelog keeps the broker's default (about 1 MB), and
a 2 MB value arrives for a `table()`. The update goes to the production error handler of that
record when the store is written, before anything is committed: `fail` stops the worker with one
line naming the store, the changelog and the sizes, and so does every restart (no silent crash
loop); `skip` and `dead_letter` keep the worker running, count the other records right, and
leave the store equal to its changelog.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from processor.topology.handling import (
    HEADER_MESSAGE,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_STAGE,
    HEADER_TARGET_TOPIC,
    HEADER_TOPIC,
    HEADER_TYPE,
)
from tests.integration.failover import metrics
from tests.integration.workers import WorkerProcess, start_worker
from tests.kafka_helpers import consume, create_topic

pytestmark = pytest.mark.integration

TOPOLOGY = "tests.worker_topologies:latest"
BIG = 2_000_000
# What the source (and the dead-letter topic) take; the changelog keeps the broker default.
LARGE_TOPIC_BYTES = 5 * 1024 * 1024
# The worker's producer must take the dead-lettered 2 MB record (librdkafka's default is 1 MB).
LARGE_PRODUCER = ["--kafka", f"producer.message.max.bytes={LARGE_TOPIC_BYTES}"]


class App:
    """One test's topics and input: a key "big" with a small value, 20 small records over keys
    k0..k3, a 2 MB value for "big", then 20 more small records."""

    def __init__(self, bootstrap: str, name: str) -> None:
        self.bootstrap = bootstrap
        self.id = name
        self.source, self.sink = f"{name}-in", f"{name}-out"
        self.dead_letters = f"{name}-dead-letters"
        self.changelog = f"{name}-latest-changelog"
        large = {"max.message.bytes": str(LARGE_TOPIC_BYTES)}
        create_topic(bootstrap, self.source, 1, config=large)
        create_topic(bootstrap, self.sink, 1)
        create_topic(bootstrap, self.dead_letters, 1, config=large)
        small = [(f"k{i % 4}", f"v{i}") for i in range(40)]
        self.records = [("big", "small"), *small[:20], ("big", "B" * BIG), *small[20:]]
        self.big_offset = 21
        producer = Producer(
            {"bootstrap.servers": bootstrap, "message.max.bytes": LARGE_TOPIC_BYTES, "acks": "all"}
        )
        for key, value in self.records:
            producer.produce(self.source, value.encode(), key.encode(), 0)
        if producer.flush(30):
            raise KafkaException(f"records for {self.source!r} were not acknowledged")
        self.env = {
            "TEST_SOURCE_TOPIC": self.source,
            "TEST_SINK_TOPIC": self.sink,
            "PROCESSOR_APPLICATION_ID": name,
        }

    def worker(self, workdir: Path, *extra: str) -> WorkerProcess:
        return start_worker(
            TOPOLOGY,
            bootstrap=self.bootstrap,
            env=self.env,
            workdir=workdir,
            instance="w1",
            extra=list(extra),
        )

    def committed(self) -> int:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.id})
        try:
            [found] = consumer.committed([TopicPartition(self.source, 0)], timeout=10)
            return int(found.offset)
        finally:
            consumer.close()


@pytest.fixture
def app(kafka_bootstrap: str, unique_name: str) -> App:
    return App(kafka_bootstrap, unique_name)


@pytest.fixture
def started() -> Iterator[list[WorkerProcess]]:
    workers: list[WorkerProcess] = []
    yield workers
    for worker in workers:
        worker.stop_quietly()


def _stop_line(worker: WorkerProcess) -> str:
    code = worker.wait(60)
    log = worker.log()
    assert code != 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    return log.strip().splitlines()[-1]


def test_fail_stops_with_one_line_naming_the_store_and_the_record_every_time(
    app: App, tmp_path: Path, started: list[WorkerProcess]
) -> None:
    first = app.worker(tmp_path, "--production-error-handler", "fail")
    started.append(first)
    line = _stop_line(first)
    assert f"record {app.source}[0]@{app.big_offset}" in line
    assert "store 'latest'" in line
    assert f"changelog {app.changelog!r}" in line
    assert f"key 3 bytes, value {BIG} bytes" in line
    # librdkafka's message.max.bytes (1,000,000) is below the changelog's max.message.bytes
    assert "at most 999900 bytes" in line
    assert "production_error_handler" in line
    assert app.committed() <= app.big_offset

    again = app.worker(tmp_path, "--production-error-handler", "fail")
    started.append(again)
    assert _stop_line(again) == line
    assert app.committed() <= app.big_offset


def _outcomes(worker: WorkerProcess, total: int) -> Counter[tuple[str, str]]:
    """processor_records_total from /metrics, once it accounts for `total` input records."""
    deadline = time.monotonic() + 30
    while True:
        samples = metrics(worker).get("processor_records_total", {})
        counts = Counter(
            {(dict(lbl)["outcome"], dict(lbl)["reason"]): int(n) for lbl, n in samples.items()}
        )
        if sum(counts.values()) >= total or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def _entries(url: str, store: str) -> dict[str, Any]:
    """Every entry of `store`, once the application answers (503 while it restores)."""
    deadline = time.monotonic() + 30
    while True:
        response = httpx.get(f"{url}/v1/stores/{store}/entries", params={"limit": 1000})
        if response.status_code == 200:
            body = response.json()
            assert body["next"] is None
            return {e["key"]: e["value"] for e in body["entries"]}
        assert time.monotonic() < deadline, response.text
        time.sleep(0.2)


def _counts(url: str) -> dict[str, int]:
    return {key: int(n) for key, n in _entries(url, "counts").items()}


def _changelog(bootstrap: str, topic: str) -> dict[str, str]:
    """The committed changelog compacted by hand: the last value per key (deletes drop it)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "changelog-limits-unused",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    contents: dict[str, str] = {}
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                return contents
            assert error is None, error
            key, value = message.key(), message.value()
            assert key is not None
            assert value is None or len(key) + len(value) < 1_000_000
            if value is None:
                contents.pop(key.decode(), None)
            else:
                contents[key.decode()] = value.decode()
        raise TimeoutError(f"did not reach the end of {topic!r}")
    finally:
        consumer.close()


@pytest.mark.parametrize(
    ("handler", "guarantee"), [("skip", "at_least_once"), ("dead_letter", "exactly_once")]
)
def test_an_update_too_large_for_the_changelog_is_handled_and_the_store_matches_it(
    app: App, tmp_path: Path, started: list[WorkerProcess], handler: str, guarantee: str
) -> None:
    extra = ["--production-error-handler", handler, "--processing-guarantee", guarantee]
    if handler == "dead_letter":
        extra += LARGE_PRODUCER
    worker = app.worker(tmp_path, *extra)
    started.append(worker)
    url = worker.url()
    outcomes = _outcomes(worker, len(app.records))
    outcome = "skipped" if handler == "skip" else "dead_lettered"
    assert outcomes == {("output", ""): len(app.records) - 1, (outcome, "production"): 1}

    # every other record counted, in the store and on the sink
    expected_counts = {"big": 1, "k0": 10, "k1": 10, "k2": 10, "k3": 10}
    assert _counts(url) == expected_counts
    sink = consume(app.bootstrap, app.sink, len(app.records) - 1, read_committed=True)
    last = {r.key.decode(): int.from_bytes(r.value, "big") for r in sink if r.key and r.value}
    assert last == expected_counts

    # the store never took the big value, and equals its changelog
    latest = _entries(url, "latest")
    assert latest == {"big": "small", "k0": "v36", "k1": "v37", "k2": "v38", "k3": "v39"}
    assert _changelog(app.bootstrap, app.changelog) == latest

    if handler == "dead_letter":
        [dead] = consume(app.bootstrap, app.dead_letters, 1, read_committed=True)
        assert (dead.key, len(dead.value or b"")) == (b"big", BIG)
        headers = dict(dead.headers)
        assert headers[HEADER_STAGE] == b"production"
        assert headers[HEADER_TYPE] == b"ChangelogRecordTooLargeError"
        assert headers[HEADER_TOPIC] == app.source.encode()
        assert headers[HEADER_PARTITION] == b"0"
        assert headers[HEADER_OFFSET] == str(app.big_offset).encode()
        assert headers[HEADER_TARGET_TOPIC] == app.changelog.encode()
        assert b"store 'latest'" in (headers[HEADER_MESSAGE] or b"")
    log = worker.log()
    assert f"record {app.source}[0]@{app.big_offset}" in log
    assert worker.terminate() == 0

    # a new copy restored from the changelogs has the same contents
    (tmp_path / "restored").mkdir()
    restored = app.worker(tmp_path / "restored", *extra)
    started.append(restored)
    url = restored.url()
    assert _entries(url, "latest") == latest
    assert _counts(url) == expected_counts
    assert re.search(
        r"state restored in [\d.]+s \([1-9]\d* changelog records read\)", restored.log()
    )
    assert "Traceback" not in log + restored.log()
