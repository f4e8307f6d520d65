"""Fused chains of stateless operators (`processor.topology.fusion`) do what the operators do
one by one: the same outputs, the same records filtered, and a failing user function retried
alone and dead-lettered under its own operator's name. Checked against a model of the operators
over random chains and inputs, through the in-memory driver (which runs the fused functions)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processor import ErrorHandler, Retry, Topology, TransientError, serdes
from processor.testing import TopologyTestDriver
from processor.topology.fusion import chain_of
from processor.topology.handling import HEADER_OPERATOR, Outcome
from processor.topology.processors import SinkProcessor, instantiate
from processor.topology.record import RecordContext

STR, INT = serdes.StringSerde(), serdes.IntSerde()
DLQ = "fusion-dead-letters"
KINDS = ("filter", "filter_truthy", "filter_not", "map_values", "map", "peek")
FAILS = 13  # the value an operator chosen to fail raises on
FLAKY = 7  # the value an operator chosen to be flaky raises TransientError on, once


@dataclass
class Step:
    kind: str
    m: int  # the step's parameter
    fails: bool  # raises ValueError on FAILS
    flaky: bool  # raises TransientError on FLAKY, once per record
    seen: list[tuple[str, int]] = field(default_factory=list)  # what a peek saw
    raised: set[tuple[str, int]] = field(default_factory=set)  # flaky: records it raised on

    @property
    def name(self) -> str:
        return f"{self.kind}-{id(self)}"

    def guard(self, key: str, value: int) -> None:
        if self.fails and value == FAILS:
            raise ValueError(f"{self.name} fails on {value}")
        if self.flaky and value == FLAKY and (key, value) not in self.raised:
            self.raised.add((key, value))
            raise TransientError(f"{self.name} is flaky")

    def apply(self, key: str, value: int) -> tuple[bool, str, int]:
        """The model: (kept, key, value) after this step (no failure)."""
        m = self.m
        if self.kind == "filter":
            return value % (m + 1) != 0, key, value
        if self.kind == "filter_truthy":
            return bool(value % (m + 1)), key, value
        if self.kind == "filter_not":
            return value % (m + 1) != 0, key, value
        if self.kind == "map_values":
            return True, key, value + m
        if self.kind == "map":
            return True, f"{key}{m}", value * 2
        return True, key, value  # peek

    def add_to(self, stream: Any) -> Any:
        m, guard = self.m, self.guard

        def predicate(k: str, v: int) -> bool:
            guard(k, v)
            return v % (m + 1) != 0

        def truthy(k: str, v: int) -> int:
            guard(k, v)
            return v % (m + 1)

        def negated(k: str, v: int) -> bool:
            guard(k, v)
            return v % (m + 1) == 0

        def pairs(k: str, v: int) -> tuple[str, int]:
            guard(k, v)
            return f"{k}{m}", v * 2

        def peek(k: str, v: int) -> None:
            guard(k, v)
            self.seen.append((k, v))

        name = self.name
        if self.kind == "filter":
            return stream.filter(predicate, name=name)
        if self.kind == "filter_truthy":
            return stream.filter(truthy, name=name)
        if self.kind == "filter_not":
            return stream.filter_not(negated, name=name)
        if self.kind == "map_values":
            return stream.map_values(_values_guarded(self, m), name=name)
        if self.kind == "map":
            return stream.map(pairs, name=name)
        return stream.peek(peek, name=name)


def _values_guarded(step: Step, m: int) -> Callable[[int], int]:
    def values(v: int) -> int:
        step.guard("", v)
        return v + m

    return values


steps = st.builds(
    Step,
    kind=st.sampled_from(KINDS),
    m=st.integers(1, 4),
    fails=st.booleans(),
    flaky=st.booleans(),
)
records = st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 20)), max_size=12)


def _model(
    chain: list[Step], key: str, value: int, peeks: dict[str, list[tuple[str, int]]]
) -> tuple[Outcome, tuple[str, int] | str | None]:
    """(outcome, the output or the failing operator's name); adds what each peek sees to
    `peeks` (by operator name)."""
    for step in chain:
        if step.fails and value == FAILS:
            return Outcome.DEAD_LETTERED, step.name
        if step.kind == "peek":
            peeks[step.name].append((key, value))
        kept, key, value = step.apply(key, value)
        if not kept:
            return Outcome.FILTERED, None
    return Outcome.OUTPUT, (key, value)


@settings(max_examples=150, deadline=None)
@given(chain=st.lists(steps, min_size=1, max_size=6), inputs=records)
def test_a_fused_chain_does_what_its_operators_do_one_by_one(
    chain: list[Step], inputs: list[tuple[str, int]]
) -> None:
    topology = Topology("fusion")
    stream = topology.stream("in", key_serde=STR, value_serde=INT)
    for step in chain:
        stream = step.add_to(stream)
    stream.to("out", key_serde=STR, value_serde=INT)
    driver = TopologyTestDriver(
        topology,
        processing_error_handler=ErrorHandler.DEAD_LETTER,
        retry=Retry(attempts=2, backoff_ms=0),
    )
    outputs: list[tuple[str, int]] = []
    failed: list[str] = []
    outcomes: dict[Outcome, int] = {}
    peeks: dict[str, list[tuple[str, int]]] = {step.name: [] for step in chain}
    for key, value in inputs:
        outcome, result = _model(chain, key, value, peeks)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome is Outcome.OUTPUT:
            assert isinstance(result, tuple)
            outputs.append(result)
        elif outcome is Outcome.DEAD_LETTERED:
            assert isinstance(result, str)
            failed.append(result)
        driver.pipe("in", key, value)
    assert driver.read("out") == outputs
    dead = [dict(r.headers or ())[HEADER_OPERATOR] for r in driver.read_records(DLQ)]
    assert dead == [name.encode() for name in failed]
    assert driver.accounting.totals() == {o: outcomes.get(o, 0) for o in Outcome}
    assert {step.name: step.seen for step in chain} == peeks


def test_a_chain_ends_at_a_sink_and_a_branch_ends_it() -> None:
    topology = Topology("fusion")
    stream = topology.stream("in", key_serde=STR, value_serde=STR)
    kept = stream.filter(lambda _k, v: v != "x", name="keep").map_values(str.upper, name="up")
    kept.to("out")
    kept.to("copy")
    [sub] = topology.subtopologies("fusion")
    [source] = instantiate(sub, RecordContext(partition=0), _Collect()).values()
    chain, end = chain_of(source.children[0])
    assert [p.name for p in chain] == ["keep", "up"]
    assert end is None  # two sinks after "up": its own forward sends to both

    topology = Topology("fusion")
    topology.stream("in", key_serde=STR, value_serde=STR).peek(print, name="look").to("out")
    [sub] = topology.subtopologies("fusion")
    [source] = instantiate(sub, RecordContext(partition=0), _Collect()).values()
    chain, end = chain_of(source.children[0])
    assert [p.name for p in chain] == ["look"]
    assert isinstance(end, SinkProcessor)


class _Collect:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None]] = []

    def emit(self, topic: str, key: bytes | None, value: bytes | None, *_: Any) -> None:
        self.records.append((topic, key, value))
