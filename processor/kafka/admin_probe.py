"""Ask a Kafka cluster whether it answers, without raising.

Used by `processor.testing.broker` to wait for a broker it started: code outside
`processor.kafka` does not import confluent_kafka.
"""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient


def broker_answers(bootstrap: str, timeout: float) -> bool:
    """Return whether a broker at `bootstrap` answers a metadata request within `timeout` seconds.

    True only when the answer names at least one broker. Connection failures are expected
    while a broker starts, so librdkafka's own logging is silenced and every client error
    reads as "not yet".
    """
    admin = AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000)),
            "log_level": 0,
        }
    )
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return bool(metadata.brokers)
