"""Topics deleted under a running application (an operator's mistake, a cleanup script), or
named per record by `to(function)` and missing: the worker says which topic, what it means for
the tasks, and what to do, in one line each.

A deleted source topic leaves its tasks waiting, the others going on, and when it is created
again they read it from its beginning (Kafka Streams stops the client instead; a worker that stays
up keeps answering queries). A deleted output topic or changelog stops the worker, naming the
topic, with the input offsets uncommitted so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests.integration.test_workers import Output, start
from tests.integration.workers import PARTITIONS, WorkerProcess
from tests.kafka_helpers import consume, create_topic, produce

RUNNING = r"-> running"


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop_quietly()


def read_values(bootstrap: str, topic: str, expected: int) -> list[str]:
    return [r.value.decode() for r in consume(bootstrap, topic, expected) if r.value is not None]


def delete_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept until the answer comes
    admin.delete_topics([topic])[topic].result(30)


def test_a_deleted_source_topic_stops_its_tasks_until_it_is_created_again(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    source, sink = topics["TEST_SOURCE_TOPIC"], topics["TEST_SINK_TOPIC"]
    worker = start(workers, kafka_bootstrap, topics, tmp_path, "d0")
    worker.wait_for_log(RUNNING, timeout=60)
    before = {p: [f"before-p{p}-{i}" for i in range(10)] for p in range(PARTITIONS)}
    for p, values in before.items():
        produce(kafka_bootstrap, source, [(v, v) for v in values], partition=p)
    output = Output(kafka_bootstrap, sink)
    try:
        output.read_until(lambda o: len(o.payloads()) >= 10 * PARTITIONS, timeout=30)

        delete_topic(kafka_bootstrap, source)
        deleted = worker.wait_for_log(
            rf"source topic\(s\) '{source}' deleted while the application runs: tasks "
            rf"\[([^\]]*)\] read nothing until each is created again with its partitions "
            rf"\('{source}' {PARTITIONS}\)",
            timeout=30,
        )
        assert deleted.group(1).split(", ") == [f"0_{p}" for p in range(PARTITIONS)]
        assert worker.process.poll() is None, "the worker stays up"

        create_topic(kafka_bootstrap, source, PARTITIONS)
        worker.wait_for_log(
            rf"the source topics have their partition counts again \('{source}' {PARTITIONS}\)",
            timeout=30,
        )
        # Fewer records per partition than the tasks had read of the old topic: they are read
        # only because the tasks start the new topic from its beginning.
        after = {p: [f"after-p{p}-{i}" for i in range(3)] for p in range(PARTITIONS)}
        for p, values in after.items():
            produce(kafka_bootstrap, source, [(v, v) for v in values], partition=p)
        expected = {v for values in after.values() for v in values}
        output.read_until(lambda o: set(o.payloads()) >= expected, timeout=45)
    finally:
        output.close()
    assert worker.process.poll() is None


def test_a_deleted_output_topic_stops_the_worker_naming_it_and_what_to_do(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    source, sink = topics["TEST_SOURCE_TOPIC"], topics["TEST_SINK_TOPIC"]
    # librdkafka holds records for a topic it does not know for this long (30 s by default),
    # in case the topic was just created.
    unknown_for = "topic.metadata.propagation.max.ms=3000"
    worker = start(workers, kafka_bootstrap, topics, tmp_path, "d1", "--kafka", unknown_for)
    worker.wait_for_log(RUNNING, timeout=60)
    delete_topic(kafka_bootstrap, sink)
    produce(kafka_bootstrap, source, [(f"k{i}", f"v{i}") for i in range(20)])

    assert worker.wait(timeout=60) != 0
    worker.wait_for_log(
        rf"processor: error: the broker refused \d+ output records, first to topic '{sink}'"
        rf".*\(topic '{sink}'( partition \d)? does not exist \(any more\): create it again "
        r"with its partitions, then restart",
        timeout=5,
    )


def test_records_routed_by_a_function_land_in_their_topics_and_one_naming_none_is_a_dead_letter(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    source, sink = topics["TEST_SOURCE_TOPIC"], topics["TEST_SINK_TOPIC"]
    for kind in ("click", "view"):
        create_topic(kafka_bootstrap, f"{sink}-{kind}", PARTITIONS)
    worker = WorkerProcess(
        "tests.worker_topologies:routing",
        bootstrap=kafka_bootstrap,
        instance_id="r0",
        state_dir=tmp_path / "r0",
        log_dir=tmp_path,
        env=topics,
        extra_args=[
            "--production-error-handler",
            "dead_letter",
            "--kafka",
            "topic.metadata.propagation.max.ms=3000",
        ],
    )
    workers.append(worker)
    worker.wait_for_log(RUNNING, timeout=60)
    values = [f"{kind}:{i}" for i in range(10) for kind in ("click", "view", "nowhere")]
    produce(kafka_bootstrap, source, [(v, v) for v in values])

    for kind in ("click", "view"):
        landed = read_values(kafka_bootstrap, f"{sink}-{kind}", expected=10)
        assert sorted(landed) == sorted(f"{kind}:{i}" for i in range(10))
    dead = read_values(kafka_bootstrap, f"{topics['PROCESSOR_APPLICATION_ID']}-dead-letters", 10)
    assert sorted(dead) == sorted(f"nowhere:{i}" for i in range(10))
    assert worker.process.poll() is None
