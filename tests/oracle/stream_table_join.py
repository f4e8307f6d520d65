"""Kafka Streams as the oracle for stream-table joins: the same records piped, in the same order,
into a stream topic and a table topic of its own TopologyTestDriver (class
`oracle.StreamTableJoinOracle` of the Maven project `kafka-streams/`, built like the window
oracle's, `tests.oracle.kafka_streams.classpath`), many cases in one JVM.

    results = run_cases([Case("one", "left", (Piped("table", "a", "x", 1),
                                              Piped("stream", "a", "o", 2)))])
    results[0].outputs    # (Joined(input=1, key="a", value="o+x", ts=2),)

Keys and values are strings; the joiner makes `stream + "+" + table`, a missing table value
reading "null" (`joiner` is the same function for our side).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tests.oracle.kafka_streams import run_oracle

__all__ = ["Case", "Joined", "Piped", "Result", "joiner", "run_cases"]

MAIN_CLASS = "oracle.StreamTableJoinOracle"


def joiner(stream_value: str, table_value: str | None) -> str:
    """What both sides join with: Java's `s + "+" + t`."""
    return f"{stream_value}+{'null' if table_value is None else table_value}"


@dataclass(frozen=True)
class Piped:
    """One record piped into the stream or the table topic."""

    topic: Literal["stream", "table"]
    key: str | None
    value: str | None
    ts: int


@dataclass(frozen=True)
class Case:
    """Records piped in order; `rekey`: the stream's key is set again (to itself) before the
    join, so both sides repartition it."""

    id: str
    how: Literal["inner", "left"]
    records: tuple[Piped, ...]
    rekey: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "how": self.how,
            "rekey": self.rekey,
            "records": [
                {"topic": r.topic, "key": r.key, "value": r.value, "ts": r.ts} for r in self.records
            ],
        }


@dataclass(frozen=True)
class Joined:
    """One output record, read right after input record `input` was piped."""

    input: int
    key: str | None
    value: str | None
    ts: int


@dataclass(frozen=True)
class Result:
    id: str
    outputs: tuple[Joined, ...]
    error: str | None = None


def run_cases(cases: Sequence[Case]) -> list[Result]:
    """Run every case through Kafka Streams in one JVM; the results in the cases' order."""
    raw = run_oracle(MAIN_CLASS, "the join oracle", [c.to_json() for c in cases])
    return [Result(r["id"], tuple(Joined(**o) for o in r["outputs"]), r["error"]) for r in raw]
