"""The settings of every Kafka client a worker makes, from its configuration. Pure.

Each client gets the user's librdkafka settings for its kind (`processor.kafka.settings`), then
what the worker owns and must not be overridden (group, client id, commit and isolation
settings; see `processor.config.RESERVED_KAFKA_SETTINGS`).
"""

from __future__ import annotations

from typing import Any

from processor.config import WorkerConfig
from processor.kafka.settings import settings_for

__all__ = [
    "admin_settings",
    "consumer_settings",
    "fencing_settings",
    "metadata_reader_settings",
    "producer_settings",
    "restore_consumer_settings",
    "status_producer_settings",
    "transactional_id",
]


def _common(cfg: WorkerConfig) -> dict[str, Any]:
    return {"bootstrap.servers": cfg.bootstrap_servers}


def transactional_id(cfg: WorkerConfig, instance_id: str) -> str:
    return f"{cfg.application_id}-{instance_id}"


def admin_settings(cfg: WorkerConfig) -> dict[str, Any]:
    return {**_common(cfg), **settings_for("admin", cfg.kafka)}


def consumer_settings(cfg: WorkerConfig, instance_id: str, client_id: str) -> dict[str, Any]:
    """The group consumer: `client_id` tells every member who this worker is (identity.py)."""
    settings: dict[str, Any] = {
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        **_common(cfg),
        **settings_for("consumer", cfg.kafka),
        "group.id": cfg.application_id,
        "client.id": client_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "partition.assignment.strategy": "range",
        "isolation.level": "read_committed" if cfg.exactly_once else "read_uncommitted",
    }
    if cfg.static_membership:
        settings["group.instance.id"] = instance_id
    return settings


def producer_settings(cfg: WorkerConfig, instance_id: str) -> dict[str, Any]:
    """The producer of outputs and changelogs (transactional under exactly-once)."""
    settings: dict[str, Any] = {
        # murmur2 like Kafka's Java producer, so keys land where other clients put them.
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "enable.idempotence": True,
        # Bounded local queue: when it is full, produce() waits (backpressure) instead of
        # letting memory grow.
        "queue.buffering.max.kbytes": 65536,
        **_common(cfg),
        **settings_for("producer", cfg.kafka),
        "client.id": instance_id,
    }
    if cfg.exactly_once:
        settings["transactional.id"] = transactional_id(cfg, instance_id)
        # A killed worker's open transaction blocks read_committed readers of the partitions
        # it wrote until the broker aborts it; Kafka Streams shortens this to 10 s as well.
        settings.setdefault("transaction.timeout.ms", 10000)
    return settings


def status_producer_settings(cfg: WorkerConfig, instance_id: str) -> dict[str, Any]:
    return {
        **_common(cfg),
        **settings_for("producer", cfg.kafka),
        "client.id": f"{instance_id}-status",
        "linger.ms": 0,
    }


def metadata_reader_settings(cfg: WorkerConfig, instance_id: str) -> dict[str, Any]:
    return {
        **_common(cfg),
        **settings_for("consumer", cfg.kafka),
        "group.id": f"{cfg.application_id}-metadata-{instance_id}",
        "client.id": f"{instance_id}-metadata",
    }


def restore_consumer_settings(cfg: WorkerConfig, instance_id: str) -> dict[str, Any]:
    return {
        **_common(cfg),
        **settings_for("consumer", cfg.kafka),
        "client.id": f"{instance_id}-restore",
    }


def fencing_settings(cfg: WorkerConfig, instance_id: str) -> dict[str, Any]:
    return {
        **_common(cfg),
        **settings_for("producer", cfg.kafka),
        "client.id": f"{instance_id}-fencing",
    }
