"""Kafka Streams as the oracle for windowed aggregations: the same input through its own
TopologyTestDriver (kafka-streams-test-utils, the broker's Kafka version), many cases in one JVM.

    results = run_cases([
        Case("one", Window.tumbling(10), records=(Record("a", 1, 5),), emit="final"),
    ])
    results[0].outputs    # (Output(input=0, key="a", start_ms=0, end_ms=10, value=1, ts=5), ...)

The Maven project in `kafka-streams/` (class `oracle.WindowOracle`, whose docstring gives the
JSON both sides exchange) is built once into `<repo>/.cache/oracle-kafka-streams`, again when
its sources change. Needs `java` (17 or newer) and `mvn` on PATH, and Maven Central the first
time. What Kafka Streams does at the edges is written down in the issue 15 notes
(ks-semantics.md); the cases here only describe input.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from processor.errors import ProcessorError
from processor.testing.maven import Maven, default_cache, fetch_once, java_executable

__all__ = [
    "Case",
    "OracleError",
    "Output",
    "Record",
    "Result",
    "Window",
    "classpath",
    "run_cases",
]

PROJECT = Path(__file__).resolve().parent / "kafka-streams"
MAIN_CLASS = "oracle.WindowOracle"
SHARED_MEMORY = Path("/dev/shm")
"""Where the drivers keep their state when it exists: Kafka Streams fsyncs checkpoint files at
every commit (every record, in its TopologyTestDriver), cheap only in memory."""
RUN_TIMEOUT_S = 600
"""One JVM runs every case; a few thousand cases take well under a minute, so this only stops
a hung JVM."""

Kind = Literal["tumbling", "hopping", "sliding", "session"]
Emit = Literal["update", "final"]
Aggregation = Literal["count", "sum"]


class OracleError(ProcessorError):
    """The oracle could not be built or run (Maven, the JVM, or a case it rejected)."""


@dataclass(frozen=True)
class Window:
    """A window kind and its sizes, as Kafka Streams' `TimeWindows` (tumbling, hopping),
    `SlidingWindows` and `SessionWindows` take them."""

    kind: Kind
    size_ms: int | None = None
    advance_ms: int | None = None
    max_difference_ms: int | None = None
    gap_ms: int | None = None
    grace_ms: int = 0

    @classmethod
    def tumbling(cls, size_ms: int, *, grace_ms: int = 0) -> Window:
        return cls("tumbling", size_ms=size_ms, grace_ms=grace_ms)

    @classmethod
    def hopping(cls, size_ms: int, advance_ms: int, *, grace_ms: int = 0) -> Window:
        return cls("hopping", size_ms=size_ms, advance_ms=advance_ms, grace_ms=grace_ms)

    @classmethod
    def sliding(cls, max_difference_ms: int, *, grace_ms: int = 0) -> Window:
        return cls("sliding", max_difference_ms=max_difference_ms, grace_ms=grace_ms)

    @classmethod
    def session(cls, gap_ms: int, *, grace_ms: int = 0) -> Window:
        return cls("session", gap_ms=gap_ms, grace_ms=grace_ms)

    def to_json(self) -> dict[str, Any]:
        sizes = {
            "size_ms": self.size_ms,
            "advance_ms": self.advance_ms,
            "max_difference_ms": self.max_difference_ms,
            "gap_ms": self.gap_ms,
        }
        return {
            "kind": self.kind,
            "grace_ms": self.grace_ms,
            **{k: v for k, v in sizes.items() if v is not None},
        }


@dataclass(frozen=True)
class Record:
    """One input record: String key, integer value (None: a null value), timestamp."""

    key: str
    value: int | None
    ts: int


@dataclass(frozen=True)
class Case:
    """Records piped in order into one input topic, aggregated in `window`.

    `emit="update"`: EmitStrategy.onWindowUpdate() with record caches off (every update is
    forwarded); `"final"`: EmitStrategy.onWindowClose(), or, with `final_mechanism="suppress"`,
    suppress(untilWindowCloses(unbounded())). `skip_null_values` filters null values out before
    the aggregation (they then neither count nor move its stream time)."""

    id: str
    window: Window
    records: tuple[Record, ...]
    emit: Emit = "update"
    agg: Aggregation = "count"
    final_mechanism: Literal["emit_strategy", "suppress"] = "emit_strategy"
    skip_null_values: bool = False
    retention_ms: int | None = None
    """The store's retention; None: Kafka Streams' default (size + grace, sliding 2 x
    max_difference + grace, sessions gap + grace)."""
    table_filter_min: int | None = None
    """When set, the windowed table is filtered (a table filter) to aggregates >= it."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            **self.window.to_json(),
            "emit": self.emit,
            "agg": self.agg,
            "final_mechanism": self.final_mechanism,
            "skip_null_values": self.skip_null_values,
            "retention_ms": self.retention_ms,
            "table_filter_min": self.table_filter_min,
            "records": [{"key": r.key, "value": r.value, "ts": r.ts} for r in self.records],
        }


@dataclass(frozen=True)
class Output:
    """One record on the output topic, read right after input record `input` was piped."""

    input: int
    key: str
    start_ms: int
    end_ms: int
    value: int | None
    ts: int


@dataclass(frozen=True)
class Result:
    id: str
    outputs: tuple[Output, ...]
    dropped_records: int
    """Kafka Streams' dropped-records-total: late records (and null keys)."""
    aggregator_nulls: int
    """How often the sum aggregator was handed a null value."""
    error: str | None = None
    """What the driver threw, and at which input record; outputs stop there."""

    def after(self, index: int) -> tuple[Output, ...]:
        """The outputs that input record `index` caused, in Kafka Streams' order."""
        return tuple(o for o in self.outputs if o.input == index)


def _build(maven: Maven, directory: Path) -> str:
    maven.run(
        "-f",
        str(PROJECT / "pom.xml"),
        f"-Doracle.out={directory}",
        "compile",
        "dependency:copy-dependencies",
    )
    return f"the window oracle and {len(list((directory / 'lib').glob('*.jar')))} jars"


def classpath() -> str:
    """Build the oracle once (again when its pom or Java sources change); its classpath."""
    sources = [PROJECT / "pom.xml", *sorted(PROJECT.glob("src/**/*.java"))]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()
    directory = fetch_once(
        default_cache("PROCESSOR_ORACLE_CACHE", "oracle-kafka-streams"),
        what="the Kafka Streams window oracle",
        marker=f"oracle sources sha256 {digest}",
        error=OracleError,
        populate=_build,
    )
    return f"{directory / 'classes'}:{directory / 'lib'}/*"


def run_cases(cases: Sequence[Case]) -> list[Result]:
    """Run every case through Kafka Streams in one JVM; the results in the cases' order."""
    raw = run_oracle(MAIN_CLASS, "the window oracle", [c.to_json() for c in cases])
    return [_result(r) for r in raw]


def run_oracle(main_class: str, what: str, cases: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run `cases` (their JSON forms, each with a unique "id") through oracle class
    `main_class` of the Maven project in one JVM; its raw results, in the cases' order. `what`
    names the oracle in errors."""
    ids = [c["id"] for c in cases]
    if len(set(ids)) != len(ids):
        raise OracleError("case ids must be unique")
    cp = classpath()
    with tempfile.TemporaryDirectory(prefix="oracle-") as scratch:
        cases_file, results_file = Path(scratch) / "cases.json", Path(scratch) / "results.json"
        cases_file.write_text(json.dumps({"cases": list(cases)}))
        done = subprocess.run(
            [
                java_executable(OracleError),
                # Kafka Streams warns of every late or dropped record; errors are enough here.
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=error",
                "-cp",
                cp,
                main_class,
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
            raise OracleError(f"{what} exited with {done.returncode}:\n{tail}")
        results: list[dict[str, Any]] = json.loads(results_file.read_text())["results"]
    return results


def _state_parent() -> list[str]:
    if SHARED_MEMORY.is_dir() and os.access(SHARED_MEMORY, os.W_OK):
        return [str(SHARED_MEMORY)]
    return []


def _result(raw: dict[str, Any]) -> Result:
    return Result(
        id=raw["id"],
        outputs=tuple(Output(**o) for o in raw["outputs"]),
        dropped_records=int(raw["dropped_records"]),
        aggregator_nulls=int(raw["aggregator_nulls"]),
        error=raw["error"],
    )
