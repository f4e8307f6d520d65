"""A topology that uses what every panel of the Grafana dashboard shows: records counted per key
(a store with a changelog, so restores and standbys), a filter that raises for keys ending in
"99" (dead letters with `--processing-error-handler dead_letter`), an async operator (a local
coroutine, no service), and the counts read back from the sink topic into a sink outside Kafka
(`SlowLinesSink`, files under $TEST_SINK_DIR). With $TEST_RESTORE_HOLD_FILE, an active restore
waits after each batch while that file exists (at most `HOLD_LIMIT_S`), so that a restore lasts
until the test has seen it scraped: Prometheus takes up to about 5 s to scrape a new target."""

from __future__ import annotations

import os
import time
from pathlib import Path

from processor import Topology, serdes
from tests.integration.sink_topology import SlowLinesSink

SOURCE = os.environ.get("TEST_SOURCE_TOPIC", "test-source")
SINK = os.environ.get("TEST_SINK_TOPIC", "test-sink")
HOLD_LIMIT_S = 60.0


def _valid(key: str, _value: str) -> bool:
    if key.endswith("99"):
        raise ValueError(f"key {key!r} is refused, for the dead letters panel")
    return True


async def _same(value: str) -> str:
    return value


class SlowRestoreListener:
    """Holds the restore thread after each batch while the hold file exists."""

    def __init__(self) -> None:
        hold = os.environ.get("TEST_RESTORE_HOLD_FILE")
        self._hold = Path(hold) if hold else None

    def on_restore_start(self, task_id: object, topic: str, start: int, end: int) -> None:
        pass

    def on_batch_restored(self, task_id: object, topic: str, last_offset: int, count: int) -> None:
        deadline = time.monotonic() + HOLD_LIMIT_S
        while self._hold is not None and self._hold.exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def on_restore_end(self, task_id: object, topic: str, total: int) -> None:
        pass


everything = Topology("everything")
(
    everything.stream(SOURCE, key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde())
    .filter(_valid, name="valid")
    .map_values_async(_same, concurrency=8, timeout_ms=3_000, name="same")
    .group_by_key()
    .count(name="counts")
    .to_stream()
    .to(SINK, value_serde=serdes.IntSerde())
)
everything.stream(SINK, key_serde=serdes.StringSerde(), value_serde=serdes.IntSerde()).sink(
    SlowLinesSink(), name="lines"
)
everything.on_restore(SlowRestoreListener())
