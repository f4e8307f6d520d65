"""Clicks per user and minute of event time, one final count per window.

Reads `clicks` (key: user id, value: JSON like {"page": "/home", "ts": 1764680000000}), counts
per user in one-minute tumbling windows of the click's own time (`ts`), accepting clicks up to
five seconds late, and writes each window once, when it closes, to `clicks-per-minute-out` as
("<user>@<window start>", count). The windows are queryable in the `clicks-per-minute` store.

    processor run topologies.clicks_per_minute --bootstrap-servers 127.0.0.1:9092 \\
        --idle-advance-ms 10000   # close the windows of a quiet partition after 10 s
"""

from typing import Any

from processor import Topology, serdes
from processor.windows import TumblingWindows


def click_time(_user: str, click: Any, record_ts: int) -> int:
    """The click's own time; the record's timestamp for clicks that do not say."""
    ts = click.get("ts") if isinstance(click, dict) else None
    return ts if isinstance(ts, int) and not isinstance(ts, bool) else record_ts


topology = Topology("clicks-per-minute")
(
    topology.stream(
        "clicks",
        key_serde=serdes.StringSerde(),
        value_serde=serdes.JsonSerde(),
        timestamp=click_time,
    )
    .group_by_key()
    .windowed_by(TumblingWindows(size_ms=60_000, grace_ms=5_000), emit="final")
    .count(name="clicks-per-minute")
    .to_stream()
    .map(lambda window, n: (f"{window.key}@{window.start_ms}", n))
    .to("clicks-per-minute-out", key_serde=serdes.StringSerde(), value_serde=serdes.IntSerde())
)
