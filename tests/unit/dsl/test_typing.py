"""What a type checker sees through the DSL: the key and value types of each stream, group and
table follow from the serdes and the functions, mistakes are errors, and the example topologies
(and the DSL's tests) check under `mypy --strict`.

`EXAMPLES` is a module of declarations: mypy must accept every line, where `assert_type` states
what it infers, except the lines marked `# error: <part of the message>`, which it must refuse
with that message. The examples also run, so that they stay real declarations.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_TOPOLOGIES = [
    "topologies",
    "tests/worker_topologies.py",
    "bench/wordcount_topics.py",
    "bench/contenders/ours_topology.py",
    "tests/unit/dsl",
]

EXAMPLES = """\
from typing import Any, assert_type

from processor import GroupedStream, ProcessorContext, Stream, Table, Topology, serdes
from processor.dsl.windowed import WindowedStream
from processor.windows import SessionWindows, TumblingWindows, Windowed

topology = Topology("types")

# A source's types are its serdes' (bytes without one).
raw = topology.stream("raw")
assert_type(raw, Stream[bytes, bytes])
events = topology.stream("events", key_serde=serdes.StringSerde(), value_serde=serdes.JsonSerde())
assert_type(events, Stream[str, Any])
counts = topology.stream("counts", value_serde=serdes.IntSerde())
assert_type(counts, Stream[bytes, int])
assert_type(topology.stream("names", key_serde=serdes.StringSerde()), Stream[str, bytes])
users = topology.table("users", key_serde=serdes.StringSerde(), value_serde=serdes.JsonSerde())
assert_type(users, Table[str, Any])
assert_type(topology.table("raw-table"), Table[bytes, bytes])

# Operators: what their functions return.
assert_type(events.filter(lambda key, _value: key.startswith("a")), Stream[str, Any])
assert_type(counts.filter_not(lambda _key, n: n > 3), Stream[bytes, int])
assert_type(counts.map_values(str), Stream[bytes, str])
assert_type(counts.map(lambda key, n: (n, key.hex())), Stream[int, str])
assert_type(counts.flat_map_values(range), Stream[bytes, int])
assert_type(counts.flat_map(lambda key, n: [(n, key)]), Stream[int, bytes])
assert_type(counts.peek(lambda _key, _n: None), Stream[bytes, int])
more = topology.stream("more", value_serde=serdes.IntSerde())
assert_type(counts.merge(more), Stream[bytes, int])
assert_type(counts.split({"big": lambda _key, n: n > 9}), dict[str, Stream[bytes, int]])
assert_type(counts.branch(lambda _key, n: n > 9), list[Stream[bytes, int]])
assert_type(users.to_stream(), Stream[str, Any])


def forward(context: ProcessorContext, key: bytes, n: int) -> None:
    context.forward(key, n)


assert_type(counts.process(forward), Stream[Any, Any])

# Grouping and aggregating.
by_digit = counts.group_by(lambda _key, n: n % 10, key_serde=serdes.IntSerde())
assert_type(by_digit, GroupedStream[int, int])
assert_type(counts.group_by_key(), GroupedStream[bytes, int])
assert_type(by_digit.count(), Table[int, int])
assert_type(by_digit.reduce(lambda total, n: total + n), Table[int, int])


def none_seen() -> list[int]:
    return []


def seen(_digit: int, n: int, so_far: list[int]) -> list[int]:
    return [*so_far, n]


def add(_digit: int, n: int, total: int) -> int:
    return total + n


assert_type(by_digit.aggregate(lambda: 0, add, value_serde=serdes.IntSerde()), Table[int, int])
# JSON is any value, so an aggregate stored as JSON is too.
assert_type(by_digit.aggregate(none_seen, seen, value_serde=serdes.JsonSerde()), Table[int, Any])
assert_type(by_digit.count().to_stream(), Stream[int, int])
counts.map_values(str).to("strings", value_serde=serdes.StringSerde())

# Windows: keys become Windowed[key], and the values are the aggregation's.
per_minute = by_digit.windowed_by(TumblingWindows(size_ms=60_000), emit="final")
assert_type(per_minute, WindowedStream[int, int])
assert_type(per_minute.count(), Table[Windowed[int], int])
assert_type(per_minute.reduce(lambda total, n: total + n), Table[Windowed[int], int])
assert_type(
    by_digit.windowed_by(SessionWindows(inactivity_gap_ms=10)).aggregate(
        lambda: 0, add, merger=lambda _d, a, b: a + b, value_serde=serdes.IntSerde()
    ),
    Table[Windowed[int], int],
)
assert_type(
    per_minute.count().to_stream().map(lambda w, n: (f"{w.key}@{w.start_ms}", n)),
    Stream[str, int],
)

# Mistakes.
counts.map_values(str).to("out", value_serde=serdes.IntSerde())  # error: "to" of "Stream"
counts.filter(lambda _key, n: n.startswith("1"))  # error: "int" has no attribute "startswith"
counts.merge(events)  # error: "merge" of "Stream"
by_digit.reduce(lambda total, n: str(total))  # error: "reduce" of "GroupedStream"
counts.process(seen)  # error: "process" of "Stream"
counts.group_by(lambda key, _: key, key_serde=serdes.StringSerde())  # error: "group_by" of "Stream"
per_minute.count().to_stream().map(lambda w, n: (w.key.upper(), n))  # error: "upper"
"""


def _errors(mypy_output: str, file: Path) -> dict[int, list[str]]:
    # By file name: mypy replays the errors of an unchanged module from its cache, under the
    # path it had then (another test run's tmp_path).
    errors: dict[int, list[str]] = {}
    for line in mypy_output.splitlines():
        match = re.match(rf"(?:.*/)?{re.escape(file.name)}:(\d+): error: (.*)", line)
        if match:
            errors.setdefault(int(match[1]), []).append(match[2])
    return errors


def test_the_examples_run() -> None:
    exec(compile(EXAMPLES, "typing_examples", "exec"), {})


def test_mypy_infers_the_types_and_refuses_the_mistakes(tmp_path: Path) -> None:
    examples = tmp_path / "typing_examples.py"
    examples.write_text(EXAMPLES)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", str(examples), *EXAMPLE_TOPOLOGIES],
        cwd=ROOT,
        env={**os.environ, "MYPYPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    expected = {
        number: line.split("# error: ")[1]
        for number, line in enumerate(EXAMPLES.splitlines(), start=1)
        if "# error: " in line
    }
    errors = _errors(result.stdout, examples)
    assert sorted(errors) == sorted(expected), result.stdout
    for number, fragment in expected.items():
        assert any(fragment in error for error in errors[number]), (number, errors[number])
    others = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(others) == sum(len(e) for e in errors.values()), result.stdout
