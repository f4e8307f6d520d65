"""The local broker the integration tests run against: it takes records, gives them back, and
keeps them across a restart on the same data directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka_helpers import consume, create_topic, produce

from processor.errors import BrokerError
from processor.testing.broker import BrokerState, LocalBroker

pytestmark = pytest.mark.integration


def test_produce_and_consume_on_a_new_topic(kafka_bootstrap: str, unique_name: str) -> None:
    create_topic(kafka_bootstrap, unique_name, partitions=3)
    sent = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(10)]

    produce(kafka_bootstrap, unique_name, sent)
    received = consume(kafka_bootstrap, unique_name, len(sent))

    assert sorted((r.key, r.value) for r in received) == sorted(sent)
    assert {r.partition for r in received} <= {0, 1, 2}


def test_restart_on_the_same_data_keeps_records(tmp_path: Path, unique_name: str) -> None:
    data_dir = tmp_path / "broker"
    broker = LocalBroker(data_dir=data_dir)
    try:
        broker.start()
        with pytest.raises(BrokerError, match="from running to running"):
            broker.start()
        create_topic(broker.bootstrap_servers, unique_name)
        produce(broker.bootstrap_servers, unique_name, [(b"k", b"before-restart")])
        cluster_id = broker.cluster_id

        broker.stop()
        assert broker.state is BrokerState.STOPPED
        broker.start()

        assert broker.cluster_id == cluster_id
        [record] = consume(broker.bootstrap_servers, unique_name, 1)
        assert (record.key, record.value, record.offset) == (b"k", b"before-restart", 0)
    finally:
        broker.close()
    assert data_dir.is_dir(), "a given data dir is kept on close"


def test_new_broker_reads_the_data_of_a_killed_one(tmp_path: Path, unique_name: str) -> None:
    data_dir = tmp_path / "broker"
    with LocalBroker(data_dir=data_dir) as first:
        create_topic(first.bootstrap_servers, unique_name)
        produce(first.bootstrap_servers, unique_name, [(b"k", b"before-crash")])
        first.kill()

    with LocalBroker(data_dir=data_dir) as second:
        [record] = consume(second.bootstrap_servers, unique_name, 1)
        assert (record.key, record.value) == (b"k", b"before-crash")


def test_a_cluster_id_that_starts_with_a_dash_formats(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "cluster-id").write_text("-" + "A" * 21 + "\n")
    with LocalBroker(data_dir=data) as broker:
        assert broker.cluster_id.startswith("-")
        assert broker.running
