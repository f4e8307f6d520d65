"""Which client each librdkafka setting is meant for.

A setting given as `consumer.KEY`, `producer.KEY` or `admin.KEY` goes to that client only (the
prefixes Kafka Streams uses). An unprefixed setting goes to the clients it applies to:
librdkafka warns about, and ignores, a consumer setting given to a producer and the reverse.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

Client = Literal["consumer", "producer", "admin"]

_CONSUMER_ONLY_PREFIXES = (
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "group.",
    "fetch.",
    "auto.offset.reset",
    "auto.commit",
    "queued.",
    "enable.partition.eof",
    "check.crcs",
    "coordinator.query.interval.ms",
    "allow.auto.create.topics",
)
_PRODUCER_ONLY_PREFIXES = (
    "acks",
    "request.required.acks",
    "linger.ms",
    "queue.buffering.",
    "batch.",
    "compression.",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "retries",
    "message.send.max.retries",
    "retry.backoff",
    "enable.idempotence",
    "partitioner",
    "sticky.partitioning",
    "transaction.timeout.ms",
    "enable.gapless.guarantee",
    "request.timeout.ms",
)


def applies_to(key: str) -> set[Client]:
    if key.startswith(_CONSUMER_ONLY_PREFIXES):
        return {"consumer"}
    if key.startswith(_PRODUCER_ONLY_PREFIXES):
        return {"producer"}
    return {"consumer", "producer", "admin"}


def settings_for(client: Client, settings: Mapping[str, str]) -> dict[str, str]:
    """The part of the user's librdkafka `settings` meant for `client`."""
    result: dict[str, str] = {}
    for key, value in settings.items():
        prefix, _, rest = key.partition(".")
        if prefix in ("consumer", "producer", "admin") and rest:
            if prefix == client:
                result[rest] = value
        elif client in applies_to(key):
            result[key] = value
    return result
