"""How large a record's key and value may be, from the topic's and the producer's limits."""

from __future__ import annotations

from processor.kafka.record_size import (
    DEFAULT_MESSAGE_MAX_BYTES,
    RECORD_OVERHEAD,
    max_record_bytes,
    producer_max_bytes,
)


def test_the_smaller_limit_applies_less_the_record_overhead() -> None:
    assert max_record_bytes(1_048_588, 1_000_000) == 1_000_000 - RECORD_OVERHEAD
    assert max_record_bytes(500_000, 1_000_000) == 500_000 - RECORD_OVERHEAD
    assert max_record_bytes(None, 5_000_000) == 5_000_000 - RECORD_OVERHEAD
    assert max_record_bytes(50, 1_000_000) == 0


def test_the_producer_limit_is_librdkafkas_default_unless_set() -> None:
    assert producer_max_bytes({}) == DEFAULT_MESSAGE_MAX_BYTES == 1_000_000
    assert producer_max_bytes({"message.max.bytes": "6000000"}) == 6_000_000
