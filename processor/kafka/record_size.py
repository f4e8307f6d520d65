"""How large a record may be: the producer's and the topic's limits, and what a record costs
besides its key and value.

Arithmetic only, no Kafka client: the in-memory test driver applies the same limit to store
updates as a worker does without loading `confluent_kafka`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "DEFAULT_MESSAGE_MAX_BYTES",
    "RECORD_OVERHEAD",
    "max_record_bytes",
    "producer_max_bytes",
]

RECORD_OVERHEAD = 100
"""What a record batch holding one record costs besides the key, value and headers. The broker
compares the batch with the topic's max.message.bytes: a 61-byte batch header (base offset and
timestamps, lengths, CRC, producer id and epoch) and the record's own varints and attributes,
at most 19 bytes (length, key and value lengths of up to 5 bytes each; attributes, timestamp
and offset deltas, header count of 1 byte each in a batch's first record); 72 bytes in all were
measured for a 3-byte key and a 100 kB value. librdkafka counts 36 bytes for the record against
its message.max.bytes. Rounded up to 100: wider varints than we counted (a timestamp delta for a
record behind another in its batch) still fit, and being refused 20 bytes early costs nothing."""

DEFAULT_MESSAGE_MAX_BYTES = 1_000_000
"""librdkafka's default `message.max.bytes`: the largest record the producer sends."""


def producer_max_bytes(settings: Mapping[str, Any]) -> int:
    """The `message.max.bytes` of a producer with `settings` (librdkafka's default if unset)."""
    return int(settings.get("message.max.bytes", DEFAULT_MESSAGE_MAX_BYTES))


def max_record_bytes(topic_max_bytes: int | None, producer_max_bytes: int) -> int:
    """The most key + value bytes one record without headers may have, for the producer (its
    `message.max.bytes`) and the topic (its `max.message.bytes`, None when unknown) to take it."""
    limit = producer_max_bytes
    if topic_max_bytes is not None:
        limit = min(limit, topic_max_bytes)
    return max(limit - RECORD_OVERHEAD, 0)
