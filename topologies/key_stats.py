"""Per-key statistics over a stream of JSON events: count, min, max and mean of `value`.

Reads `events` (key: string, value: JSON like {"value": 12.5}) and keeps, per key, a JSON
aggregate {"count", "min", "max", "sum", "mean"} in the `stats` store; every update goes to
`key-stats`. Events without a numeric `value` are skipped by the filter.

    processor run topologies.key_stats --bootstrap-servers 127.0.0.1:9092
"""

from typing import Any

from processor import Topology, serdes


def has_number(_key: str, event: Any) -> bool:
    return isinstance(event, dict) and isinstance(event.get("value"), int | float)


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
