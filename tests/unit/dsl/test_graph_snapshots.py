"""The DSL builds the same graph as it did when `graph_snapshots.json` was recorded.

Every example topology (`topologies/`, the integration tests' `tests/worker_topologies.py`, the
benchmark topologies), one topology using every operator and one using every way of acting on
time is built from its source, fresh, and compared with the recording: `describe()`, and every
field of every node of every sub-topology and of the logical graph. Functions are compared by
presence only; the driver tests run them. Declarations the DSL refuses are recorded too: the
error, word for word, and what is left.

After a deliberate change to what the DSL builds, record again with
`python -m tests.unit.dsl.test_graph_snapshots` from the repository root, and review the diff.
"""

from __future__ import annotations

import dataclasses
import json
import os
import runpy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from processor import ErrorHandler, ProcessorContext, Retry, Topology, serdes
from processor.errors import TopologyError
from processor.topology.graph import Node, StoreSpec
from processor.windows import HoppingWindows, SessionWindows, SlidingWindows, TumblingWindows

ROOT = Path(__file__).resolve().parents[3]
SNAPSHOTS = Path(__file__).with_name("graph_snapshots.json")
STR = serdes.StringSerde()
INT = serdes.IntSerde()
JSON = serdes.JsonSerde()


def every_operator() -> Topology:
    """One topology reaching every DSL path: named and generated names, each operator, the
    repartition decisions of `group_by` and `group_by_key`, tables, stores and serde overrides."""
    topology = Topology("every-operator")
    topology.add_store("seen", key_serde=STR, value_serde=INT)
    lines = topology.stream(
        "lines", key_serde=STR, value_serde=STR, on_deserialization_error="skip"
    )
    other = topology.stream(
        "other-lines", key_serde=STR, value_serde=STR, name="other", on_deserialization_error=None
    )
    raw = topology.stream("raw", on_deserialization_error=ErrorHandler.DEAD_LETTER)
    merged = lines.filter(lambda _k, v: bool(v)).merge(other.filter_not(lambda _k, v: not v))
    words = merged.flat_map_values(str.split, name="words").peek(lambda _k, _v: None)
    branches = words.split(
        {"short": lambda _k, v: len(v) < 4, "long": lambda _k, v: len(v) > 8},
        default="medium",
        name="by-length",
    )
    branches["short"].map_values(str.upper, retry=Retry(attempts=1)).to("short-words")
    first, second = branches["long"].branch(lambda k, _v: k is None, lambda _k, _v: True)
    bytes_keys: serdes.Serde[Any] = serdes.BytesSerde()
    first.to("long-keyless", key_serde=bytes_keys, name="keyless-sink")
    second.group_by_key().count().to_stream().to("long-counts", value_serde=INT)
    rekeyed = branches["medium"].map(lambda _k, v: (v, v), name="rekey")
    rekeyed.group_by_key(name="medium-by-word").reduce(lambda a, b: a + b, name="concat")
    words.group_by(lambda _k, v: v[:1], key_serde=STR).aggregate(
        list, lambda _k, v, agg: [*agg, v], value_serde=JSON
    ).to_stream(name="letters").to("letters")
    words.flat_map(lambda k, v: [(k, v)]).process(
        _remember, stores=["seen"], value_serde=INT, name="remember"
    ).to("seen-counts")
    table = topology.table("users", key_serde=STR, value_serde=JSON)
    table.to_stream().group_by_key(value_serde=JSON).count(name="user-updates")
    topology.table("profiles", name="profile-table").to_stream().to("profiles-out")
    raw.map_values(bytes.upper).to("raw-out")
    words.map(lambda k, v: (v, k)).merge(lines).group_by_key().count(name="swapped")
    _windowed(topology)
    return topology


def _windowed(topology: Topology) -> None:
    """Every window kind, both emit modes, event time from the value, a kept-longer store."""
    clicks = topology.stream(
        "clicks", key_serde=STR, value_serde=JSON, timestamp=lambda _k, v, _ts: v["ts"]
    )
    by_user = clicks.group_by_key()
    by_user.windowed_by(TumblingWindows(size_ms=60_000, grace_ms=5_000), emit="final").count(
        name="per-minute", retention_ms=3_600_000
    ).to_stream().to("per-minute-out", value_serde=INT)
    by_user.windowed_by(HoppingWindows(size_ms=600_000, advance_ms=60_000)).reduce(lambda a, _b: a)
    by_user.windowed_by(SlidingWindows(max_difference_ms=1_000)).aggregate(
        list, lambda _k, v, agg: [*agg, v], value_serde=JSON
    ).to_stream(name="sliding-updates").map(lambda w, v: (w.key, v)).to("sliding-out")
    clicks.map(lambda k, v: (v["page"], v)).group_by_key(name="by-page").windowed_by(
        SessionWindows(inactivity_gap_ms=30_000)
    ).aggregate(lambda: 0, lambda _k, _v, n: n + 1, merger=lambda _k, a, b: a + b, value_serde=INT)


def _remember(context: ProcessorContext, key: Any, _value: Any) -> None:
    context.forward(key, 1)


def timed() -> Topology:
    """What acts on time besides windows: timers, a tick on either clock, on_expire, stores with
    a TTL on either clock, and an aggregation with a TTL."""
    topology = Topology("timed")
    topology.add_store("recent", key_serde=STR, value_serde=INT, ttl_ms=60_000)
    topology.add_store("sessions", key_serde=STR, value_serde=JSON, ttl_ms=5_000, ttl_clock="wall")
    events = topology.stream("events", key_serde=STR, value_serde=INT)
    events.process(
        _remember,
        stores=["recent", "sessions"],
        name="watch",
        on_timer=lambda _c, _k, _at, _n: None,
        on_expire=lambda _c, _s, _k, _v: None,
        on_tick=lambda _c: None,
        every_ms=1_000,
    ).to("watched")
    events.process(_remember, on_tick=lambda _c: None, every_ms=60_000, clock="stream").to("ticks")
    events.group_by_key().count(name="active", ttl_ms=3_600_000).to_stream().to("active-out")
    return topology


ENVIRONMENT = {
    "TEST_SOURCE_TOPIC": "test-source",
    "TEST_SECOND_SOURCE_TOPIC": "test-source-2",
    "TEST_SINK_TOPIC": "test-sink",
    "TEST_STALL_S": "0",
    "PROCESSOR_INSTANCE_ID": "unnamed",
    "BENCH_INPUT": "bench-in",
    "BENCH_OUTPUT": "bench-out",
    "BENCH_SOURCE": "bench-source",
    "BENCH_SINK": "bench-sink",
}

# (snapshot name, file, the module's topology variables, extra environment)
MODULES: list[tuple[str, str, tuple[str, ...], dict[str, str]]] = [
    ("clicks_per_minute", "topologies/clicks_per_minute.py", ("topology",), {}),
    ("key_stats", "topologies/key_stats.py", ("topology",), {}),
    ("running_sum", "topologies/running_sum.py", ("topology",), {}),
    ("running_sum_timeout", "topologies/running_sum_timeout.py", ("topology",), {}),
    ("device_alerts", "topologies/device_alerts.py", ("topology",), {}),
    ("order_enrichment", "topologies/order_enrichment.py", ("topology",), {}),
    ("wordcount", "topologies/wordcount.py", ("topology",), {}),
    ("words", "topologies/words.py", ("topology",), {}),
    (
        "worker_topologies",
        "tests/worker_topologies.py",
        (
            "tagging",
            "copartitioned",
            "counting",
            "collecting",
            "keyed_counting",
            "validating",
            "flaky",
            "stalling_counting",
            "windowed_counting",
            "session_counting",
            "windowed_keys",
            "windowed_collecting",
            "windowed_querying",
            "latest",
        ),
        {},
    ),
    ("bench_wordcount", "bench/wordcount_topics.py", ("topology",), {}),
    (
        "bench_stateless",
        "bench/contenders/ours_topology.py",
        ("topology",),
        {"BENCH_WORKLOAD": "stateless"},
    ),
    (
        "bench_count",
        "bench/contenders/ours_topology.py",
        ("topology",),
        {"BENCH_WORKLOAD": "count"},
    ),
]


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def built_topologies() -> Iterator[tuple[str, Topology]]:
    """Every topology, built fresh from its file (not from an imported, cached module)."""
    for snapshot, path, variables, extra in MODULES:
        with _environment({**ENVIRONMENT, **extra}):
            namespace = runpy.run_path(str(ROOT / path))
        for variable in variables:
            topology = namespace[variable]
            assert isinstance(topology, Topology)
            yield f"{snapshot}:{variable}", topology
    yield "test:every_operator", every_operator()
    yield "test:timed", timed()


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(
        value, Retry | TumblingWindows | HoppingWindows | SlidingWindows | SessionWindows
    ):
        return repr(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if hasattr(value, "serialize") and hasattr(value, "name"):
        return f"{type(value).__name__}({value.name})"
    if callable(value):
        return "<function>"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # A join's spec: its fields, functions shown as such.
        fields = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"type": type(value).__name__, **fields}
    raise TypeError(f"no snapshot form for {value!r}")


def _fields(item: Node | StoreSpec) -> dict[str, Any]:
    fields = {f.name: _plain(getattr(item, f.name)) for f in dataclasses.fields(item)}
    return {"type": type(item).__name__, **fields}


def snapshot(topology: Topology) -> dict[str, Any]:
    subtopologies = topology.subtopologies("app")
    return {
        "describe": topology.describe().splitlines(),
        "graph": {
            "nodes": [_fields(node) for node in topology.graph.nodes.values()],
            "stores": [_fields(store) for store in topology.graph.stores.values()],
        },
        "subtopologies": [
            {
                "id": sub.id,
                "nodes": [_fields(node) for node in sub.nodes],
                "stores": [_fields(store) for store in sub.stores],
                "changelogs": sub.changelog_topics,
            }
            for sub in subtopologies
        ],
    }


# --- the errors the DSL raises, word for word, and what a refused declaration leaves behind --

NAME_RULE = (
    "must be non-empty and use only letters, digits, '.', '_' and '-' (it becomes part of topic"
    " names)"
)


def always(_key: Any, _value: Any) -> bool:
    return True


def _two_of_a_kind(declare: Callable[[], object]) -> None:
    declare()
    declare()


REFUSALS: list[tuple[str, Callable[[Topology], object], str]] = [
    ("topology name", lambda _t: Topology("has space"), f"topology name 'has space' {NAME_RULE}"),
    ("store name", lambda t: t.add_store(""), f"store name '' {NAME_RULE}"),
    (
        "source topic twice",
        lambda t: t.stream("in"),
        "topic 'in' is already a source of this topology",
    ),
    (
        "handler",
        lambda t: t.stream("other", on_deserialization_error="ignore"),
        "source 'other': on_deserialization_error 'ignore' is not one of fail, skip, dead_letter",
    ),
    (
        "table handler",
        lambda t: t.table("other", on_deserialization_error="ignore"),
        "source 'other': on_deserialization_error 'ignore' is not one of fail, skip, dead_letter",
    ),
    (
        "merge",
        lambda t: t.stream("other").merge(Topology("elsewhere").stream("in")),
        "merge() needs two streams of the same Topology",
    ),
    (
        "split default",
        lambda t: t.stream("other").split({"a": always}, default="a"),
        "split(): default branch 'a' is also a named branch",
    ),
    ("split none", lambda t: t.stream("other").split({}), "split() needs at least one branch"),
    (
        "node name",
        lambda t: t.stream("other", name="x").filter(always, name="x"),
        "two nodes are named 'x'; node names must be unique",
    ),
    (
        "store twice",
        lambda t: _two_of_a_kind(lambda: t.add_store("s")),
        "two stores are named 's'; store names must be unique",
    ),
    (
        "undeclared store",
        lambda t: t.stream("other").process(lambda c, k, v: None, stores=["nope"]),
        "node 'process-3' uses store 'nope', which is not declared; declare it with"
        " Topology.add_store()",
    ),
    (
        "count store name",
        lambda t: t.stream("other").map(lambda k, v: (v, k)).group_by_key().count(name="a b"),
        f"store name 'a b' {NAME_RULE}",
    ),
    ("table store name", lambda t: t.table("other", name="a/b"), f"store name 'a/b' {NAME_RULE}"),
]


def refusal(declare: Callable[[Topology], object]) -> dict[str, Any]:
    """The error `declare` raises on a topology holding one source and one sink, and the graph
    it leaves behind, with the name the next generated node gets."""
    topology = Topology("app")
    topology.stream("in").to("out")
    with pytest.raises(TopologyError) as refused:
        declare(topology)
    after = snapshot(topology)["graph"]
    return {"error": str(refused.value), "after": after, "next": topology.stream("x").node_name}


def _recorded() -> dict[str, Any]:
    recorded: dict[str, Any] = json.loads(SNAPSHOTS.read_text())
    return recorded


def _recordings() -> dict[str, Any]:
    built = {name: snapshot(topology) for name, topology in built_topologies()}
    refused = {f"refusal:{name}": refusal(declare) for name, declare, _ in REFUSALS}
    return built | refused


def test_every_topology_has_a_recording_and_every_recording_a_topology() -> None:
    assert sorted(_recordings()) == sorted(_recorded())


@pytest.mark.parametrize(("name", "topology"), list(built_topologies()))
def test_the_dsl_builds_the_recorded_graph(name: str, topology: Topology) -> None:
    assert snapshot(topology) == _recorded()[name]


@pytest.mark.parametrize(("name", "declare", "message"), REFUSALS)
def test_a_refused_declaration_says_why_word_for_word(
    name: str, declare: Callable[[Topology], object], message: str
) -> None:
    refused = refusal(declare)
    assert refused["error"] == message
    assert refused == _recorded()[f"refusal:{name}"]


def _record(write: Callable[[str], object]) -> None:
    write(json.dumps(_recordings(), indent=1) + "\n")


if __name__ == "__main__":
    _record(SNAPSHOTS.write_text)
