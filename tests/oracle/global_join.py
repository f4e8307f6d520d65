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

import json
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from processor.testing.maven import java_executable
from tests.oracle.kafka_streams import RUN_TIMEOUT_S, OracleError, _state_parent, classpath

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
    cp = classpath()
    with tempfile.TemporaryDirectory(prefix="global-oracle-") as scratch:
        cases_file, results_file = Path(scratch) / "cases.json", Path(scratch) / "results.json"
        cases_file.write_text(json.dumps({"cases": [c.to_json() for c in cases]}))
        done = subprocess.run(
            [
                java_executable(OracleError),
                # Kafka Streams warns of every skipped record; errors are enough here.
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=error",
                "-cp",
                cp,
                MAIN_CLASS,
                str(cases_file),
                str(results_file),
                *_state_parent(),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            tail = "\n".join(done.stdout.splitlines()[-30:])
            raise OracleError(f"the global join oracle exited with {done.returncode}:\n{tail}")
        raw = json.loads(results_file.read_text())["results"]
    return [
        Result(
            id=r["id"],
            outputs=tuple(Joined(**o) for o in r["outputs"]),
            table=tuple((k, v) for k, v in r["table"]),
            error=r["error"],
        )
        for r in raw
    ]
