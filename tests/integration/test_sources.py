"""A source outside Kafka on real workers (issue 18): two workers under exactly-once, the one
running the source SIGKILLed mid-file; the other takes the source task over and resumes from the
position committed with the records, so every line arrives exactly once."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from tests.integration.test_state_faults import Cluster, new_cluster
from tests.integration.test_state_faults import cluster_factory as cluster_factory

TOPOLOGY = "tests.integration.source_topology:copying"
LINES = 600
OPENED = r"source 'lines' opened at "


def committed_values(bootstrap: str, topic: str, at_least: int, timeout: float) -> list[str]:
    """The values of `topic` as a read_committed consumer sees them once it has `at_least`
    (or after `timeout`), and whatever else arrives within a further second."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        values: list[str] = []
        deadline = time.monotonic() + timeout
        settle_until = None
        while time.monotonic() < (settle_until or deadline):
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                values.append(message.value().decode())
            if settle_until is None and len(values) >= at_least:
                settle_until = time.monotonic() + 1.0
        return values
    finally:
        consumer.close()


@pytest.mark.integration
def test_a_killed_source_resumes_on_another_worker_exactly_once(
    kafka_bootstrap: str,
    topics: dict[str, str],
    cluster_factory: list[Cluster],
    tmp_path: Path,
) -> None:
    lines = [f"line-{i:04d}" for i in range(LINES)]
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(lines) + "\n")
    env = {
        **topics,
        "TEST_LINES_FILE": str(path),
        "TEST_RAW_TOPIC": f"{topics['PROCESSOR_APPLICATION_ID']}-raw",
    }
    cluster = new_cluster(
        cluster_factory,
        kafka_bootstrap,
        env,
        tmp_path,
        TOPOLOGY,
        "--processing-guarantee",
        "exactly_once",
        "--http-port",
        "0",
    )
    workers = [cluster.start("s0"), cluster.start("s1")]
    for worker in workers:
        worker.wait_for_log(r"members \[s0, s1\]", timeout=60)
    deadline = time.monotonic() + 30
    while not (runner := [w for w in workers if OPENED in w.log()]):
        assert time.monotonic() < deadline, "no worker opened the source"
        time.sleep(0.1)
    [victim] = runner
    [survivor] = [w for w in workers if w is not victim]
    sink = topics["TEST_SINK_TOPIC"]

    # Mid-file: some lines committed, most not yet read.
    seen = len(committed_values(kafka_bootstrap, sink, LINES // 4, timeout=20))
    victim.kill()
    assert LINES // 4 <= seen < LINES
    survivor.wait_for_log(OPENED + r"\{'next': \d+\}", timeout=30)

    values = committed_values(kafka_bootstrap, sink, LINES, timeout=30)
    assert sorted(values) == lines, (
        f"{len(values)} values, {len(set(values))} distinct, "
        f"missing {sorted(set(lines) - set(values))[:5]}"
    )
    metrics = httpx.get(f"{survivor.url()}/metrics", timeout=5).text
    produced = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("processor_source_records_total{")
    ]
    # The survivor produced at least what came after the position it resumed at (records of
    # transactions aborted by a rebalance are produced, and counted, again).
    resumed_at = int(re.findall(r"\{'next': (\d+)\}", survivor.log())[-1])
    assert produced and produced[0] >= LINES - resumed_at
