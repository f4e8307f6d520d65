"""Per-key statistics over a stream of JSON events: count, min, max and mean of `value`.

Reads `events` (key: string, value: JSON like {"value": 12.5}) and keeps, per key, a JSON
aggregate {"count", "min", "max", "sum", "mean"} in the `stats` store; every update goes to
`key-stats`. Events without a numeric `value` are skipped by the filter.

    processor run topologies.key_stats --bootstrap-servers 127.0.0.1:9092
"""

import math
from typing import Any

from processor import Topology, serdes


def has_number(_key: str, event: Any) -> bool:
    if not isinstance(event, dict):
        return False
    value = event.get("value")
    # JSON true/false are not numbers (though bool is an int in Python), and NaN, Infinity or
    # 1e999 (which the JSON serde reads as floats) could not be written back as JSON.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def empty() -> dict[str, Any]:
    return {"count": 0, "min": None, "max": None, "sum": 0.0, "mean": None}


def add(_key: str, event: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    value = float(event["value"])
    count = stats["count"] + 1
    total = stats["sum"] + value
    first = stats["count"] == 0
    return {
        "count": count,
        "min": value if first else min(stats["min"], value),
        "max": value if first else max(stats["max"], value),
        "sum": total,
        "mean": total / count,
    }


topology = Topology("key-stats")

(
    topology.stream("events", key_serde=serdes.StringSerde(), value_serde=serdes.JsonSerde())
    .filter(has_number)
    .group_by_key()
    .aggregate(empty, add, value_serde=serdes.JsonSerde(), name="stats")
    .to_stream()
    .to("key-stats")
)
