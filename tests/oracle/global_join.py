"""Kafka Streams as the oracle for stream-global table joins: the same records through its own
TopologyTestDriver (class `oracle.GlobalJoinOracle` of the Maven project in `kafka-streams/`,
built by `tests.oracle.kafka_streams.classpath()`), many cases in one JVM.

    results = run_cases([Case("one", "left", (Event("table", "a", "x", 0),
                                              Event("stream", "k", "a", 1)))])
    results[0].outputs   # (Joined(input=1, key="k", value="a+x", ts=1),)

Keys and values are strings. A stream record's lookup key is None when its value is None or
"none", its own key when the value is "key", else its value; the joiner makes
f"{value}+{row}" ("...+null" without a row): `lookup` and `joiner` are the Python side of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tests.oracle.kafka_streams import run_oracle

__all__ = ["Case", "Event", "Joined", "Result", "joiner", "lookup", "run_cases"]

MAIN_CLASS = "oracle.GlobalJoinOracle"


def lookup(key: str | None, value: str | None) -> str | None:
    if value is None or value == "none":
        return None
    return key if value == "key" else value


def joiner(value: str, row: str | None) -> str:
    return f"{value}+{'null' if row is None else row}"


@dataclass(frozen=True)
class Event:
    """One record piped to the global table's topic ("table") or the stream's ("stream")."""

    side: Literal["table", "stream"]
    key: str | None
    value: str | None
    ts: int


@dataclass(frozen=True)
class Case:
    id: str
    how: Literal["inner", "left"]
    events: tuple[Event, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "how": self.how,
            "records": [
                {"side": e.side, "key": e.key, "value": e.value, "ts": e.ts} for e in self.events
            ],
        }


@dataclass(frozen=True)
class Joined:
    """One join result, read right after event `input` was piped."""

    input: int
    key: str | None
    value: str | None
    ts: int


@dataclass(frozen=True)
class Result:
    id: str
    outputs: tuple[Joined, ...]
    table: tuple[tuple[str, str], ...]
    """The global store at the end, by key."""
    error: str | None = None


def run_cases(cases: Sequence[Case]) -> list[Result]:
    """Run every case through Kafka Streams in one JVM; the results in the cases' order."""
    raw = run_oracle(MAIN_CLASS, "the global join oracle", [c.to_json() for c in cases])
    return [
        Result(
            id=r["id"],
            outputs=tuple(Joined(**o) for o in r["outputs"]),
            table=tuple((k, v) for k, v in r["table"]),
            error=r["error"],
        )
        for r in raw
    ]
