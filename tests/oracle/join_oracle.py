"""Kafka Streams as the oracle for stream-stream joins: the same input through its own
TopologyTestDriver, many cases in one JVM (class `oracle.JoinOracle` of the Maven project in
`kafka-streams/`, built with the window oracle by `kafka_streams.classpath`).

    results = run_join_cases([
        JoinCase("one", "left", before_ms=10, after_ms=10, grace_ms=0,
                 records=(JoinRecord("left", "a", 1, 5), JoinRecord("right", "a", 2, 7))),
    ])
    results[0].outputs    # (JoinOutput(input=1, key="a", value="1|2", ts=7),)

Values are integers; the joiner writes `"<left>|<right>"`, a missing side as `null`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tests.oracle.kafka_streams import run_oracle

MAIN_CLASS = "oracle.JoinOracle"

Side = Literal["left", "right"]
How = Literal["inner", "left", "outer"]


@dataclass(frozen=True)
class JoinRecord:
    """One input record: its side, String key (None: a null key), integer value (None: a null
    value), timestamp."""

    side: Side
    key: str | None
    value: int | None
    ts: int


@dataclass(frozen=True)
class JoinCase:
    """Records piped in order, each into the topic of its side (with `self_join`, all into the
    left one, joined with itself)."""

    id: str
    how: How
    before_ms: int
    after_ms: int
    grace_ms: int
    records: tuple[JoinRecord, ...]
    self_join: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "how": self.how,
            "before_ms": self.before_ms,
            "after_ms": self.after_ms,
            "grace_ms": self.grace_ms,
            "self_join": self.self_join,
            "records": [
                {"side": r.side, "key": r.key, "value": r.value, "ts": r.ts} for r in self.records
            ],
        }


@dataclass(frozen=True)
class JoinOutput:
    """One record on the output topic, read right after input record `input` was piped."""

    input: int
    key: str
    value: str
    ts: int


@dataclass(frozen=True)
class JoinResult:
    id: str
    outputs: tuple[JoinOutput, ...]
    dropped_records: int
    error: str | None = None


def run_join_cases(cases: Sequence[JoinCase]) -> list[JoinResult]:
    """Run every case through Kafka Streams in one JVM; the results in the cases' order."""
    raw = run_oracle(MAIN_CLASS, "the join oracle", [c.to_json() for c in cases])
    return [
        JoinResult(
            id=r["id"],
            outputs=tuple(JoinOutput(**o) for o in r["outputs"]),
            dropped_records=int(r["dropped_records"]),
            error=r["error"],
        )
        for r in raw
    ]
