"""Reading one key's latest value from a small compacted topic of one partition: where a source
outside Kafka stopped (`<application_id>-source-positions`, `processor.runtime.source_task`).

Under exactly-once the topic is read committed, and not only to its last stable offset: to past
the high watermark seen at the first end of the partition. A transaction the key's previous
writer committed a moment ago may still have its markers on the way (its records are then
beyond the last stable offset for a while); reading only to that offset would find an older
value and repeat what was committed after it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from processor.errors import BrokerError
from processor.kafka.changelog_reader import ChangelogReader, PartitionEnd

__all__ = ["read_latest"]

_BATCH = 500
_POLL_S = 0.2


def read_latest(
    settings: Mapping[str, Any],
    topic: str,
    key: bytes,
    *,
    group_id: str,
    read_committed: bool,
    timeout_s: float,
) -> bytes | None:
    """The value of the last record of `key` in `topic` (partition 0), None when it has none;
    raises `BrokerError` when the topic could not be read to its end within `timeout_s`."""
    reader = ChangelogReader(
        {**settings, "fetch.wait.max.ms": 50}, group_id=group_id, read_committed=read_committed
    )
    try:
        reader.assign({(topic, 0): 0})
        latest: bytes | None = None
        # Everything written before this read began: the end it must reach.
        written_before: int | None = None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for item in reader.consume(_BATCH, _POLL_S):
                if not isinstance(item, PartitionEnd):
                    if item.key == key:
                        latest = item.value
                    continue
                if written_before is None:
                    high = reader.high_watermark(topic, 0)
                    written_before = high if high is not None else item.offset
                if item.offset >= written_before:
                    return latest
        raise BrokerError(
            f"reading {topic!r} to its end took more than {timeout_s:.0f}s"
            + (
                f" (a transaction is still open below offset {written_before})"
                if written_before is not None
                else ""
            )
        )
    finally:
        reader.close()
