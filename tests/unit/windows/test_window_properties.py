"""Windowed aggregations in the test driver against the brute-force reference (reference.py).

For random out-of-order, late and duplicate-timestamp input over a few keys (with some null
values, and with idle wall-clock time when idle advance is on), every window kind in both emit
modes must give exactly what the reference gives, input by input:

- emit="update": for each input, the same multiset of (window, aggregate, timestamp), session
  tombstones first and in the same order;
- emit="final": for each input, the same results in the same order;
- the late records counted as `Outcome.LATE` are the reference's late records;
- after the last input the window store holds exactly the reference's unexpired windows.

On a failure Hypothesis prints the shrunk case: the window spec, emit mode, aggregation,
retention, idle advance and the events (records as key, value, timestamp in arrival order;
`Idle(ms)` for wall-clock time without input); `reference.run()` on it gives the expected side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor import Topology, serdes
from processor.testing import TopologyTestDriver
from processor.topology.handling import Outcome
from processor.windows import (
    HoppingWindows,
    SessionWindows,
    SlidingWindows,
    TumblingWindows,
    Windowed,
    WindowedSerde,
)
from tests.unit.windows import reference
from tests.unit.windows.reference import (
    APPEND,
    COUNT,
    SUM,
    Aggregation,
    Emit,
    Event,
    Hopping,
    Idle,
    Output,
    Record,
    Session,
    Sliding,
    Spec,
    Tumbling,
    Window,
)

STR = serdes.StringSerde()
INT = serdes.IntSerde()
JSON = serdes.JsonSerde()
WINDOWED = WindowedSerde(STR)

# Keys of different lengths, so that "key bytes" order (ab < b) differs from length order.
KEYS = ["a", "b", "ab"]
EXAMPLES = 400
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# --- input --------------------------------------------------------------------------------------

graces = st.integers(0, 8)
specs: dict[str, st.SearchStrategy[Spec]] = {
    "tumbling": st.builds(Tumbling, size_ms=st.integers(1, 12), grace_ms=graces),
    "hopping": st.integers(2, 12).flatmap(
        lambda size: st.builds(
            Hopping, size_ms=st.just(size), advance_ms=st.integers(1, size), grace_ms=graces
        )
    ),
    "sliding": st.builds(Sliding, max_difference_ms=st.integers(1, 10), grace_ms=graces),
    "session": st.builds(Session, gap_ms=st.integers(1, 10), grace_ms=graces),
}

# About one value in ten is null: it moves stream time but is not aggregated.
values = st.integers(-3, 6).map(lambda v: None if v == 6 else v)
# Timestamps in a small range, so that they repeat, arrive out of order and late; or a drift
# upwards with jitter, so that windows close while records keep coming.
uniform_times = st.lists(st.integers(0, 40), max_size=25)
drifting_times = st.lists(st.integers(-6, 4), max_size=25).map(
    lambda steps: [max(0, 3 * i + step) for i, step in enumerate(steps)]
)


@st.composite
def record_lists(draw: st.DrawFn) -> list[Record]:
    times = draw(st.one_of(uniform_times, drifting_times))
    return [Record(draw(st.sampled_from(KEYS)), draw(values), ts) for ts in times]


@st.composite
def event_lists(draw: st.DrawFn) -> list[Event]:
    """Records with wall-clock time passing between some of them."""
    events: list[Event] = []
    for record in draw(record_lists()):
        events.append(record)
        if draw(st.integers(0, 2)) == 0:
            events.append(Idle(draw(st.integers(1, 12))))
    return events


def aggregations(spec: Spec) -> st.SearchStrategy[str]:
    names = ["count", "aggregate-sum", "reduce-sum"]
    if isinstance(spec, Tumbling | Hopping):
        names.append("aggregate-append")
    return st.sampled_from(names)


def retentions(spec: Spec) -> st.SearchStrategy[int | None]:
    """None (the default), or longer than the default by up to 10 ms."""
    least = reference.default_retention(spec)
    return st.one_of(st.none(), st.integers(least, least + 10))


REFERENCE_AGGREGATION: dict[str, Aggregation] = {
    "count": COUNT,
    "aggregate-sum": SUM,
    "reduce-sum": SUM,
    "aggregate-append": APPEND,
}


@dataclass(frozen=True)
class Case:
    spec: Spec
    emit: Emit
    aggregation: str
    events: list[Event]
    retention_ms: int | None = None
    idle_advance_ms: int = 0


# --- the topology under test --------------------------------------------------------------------


def _windows(spec: Spec) -> Any:
    match spec:
        case Tumbling(size_ms=size, grace_ms=grace):
            return TumblingWindows(size_ms=size, grace_ms=grace)
        case Hopping(size_ms=size, advance_ms=advance, grace_ms=grace):
            return HoppingWindows(size_ms=size, advance_ms=advance, grace_ms=grace)
        case Sliding(max_difference_ms=d, grace_ms=grace):
            return SlidingWindows(max_difference_ms=d, grace_ms=grace)
        case Session(gap_ms=gap, grace_ms=grace):
            return SessionWindows(inactivity_gap_ms=gap, grace_ms=grace)


def _topology(case: Case) -> tuple[Topology, serdes.Serde[Any]]:
    """The windowed aggregation "w" of topic "in", written to "out"; and its value serde."""
    topology = Topology("props")
    windowed = (
        topology.stream("in", key_serde=STR, value_serde=INT)
        .group_by_key()
        .windowed_by(_windows(case.spec), emit=case.emit)
    )
    retention_ms = case.retention_ms
    value_serde: serdes.Serde[Any] = INT
    table: Any
    if case.aggregation == "count":
        table = windowed.count(name="w", retention_ms=retention_ms)
    elif case.aggregation == "reduce-sum":
        table = windowed.reduce(lambda total, v: total + v, name="w", retention_ms=retention_ms)
    elif case.aggregation == "aggregate-sum" and isinstance(case.spec, Session):
        table = windowed.aggregate(
            lambda: 0,
            lambda _key, v, total: total + v,
            merger=lambda _key, a, b: a + b,
            value_serde=INT,
            name="w",
            retention_ms=retention_ms,
        )
    elif case.aggregation == "aggregate-sum":
        table = windowed.aggregate(
            lambda: 0,
            lambda _key, v, total: total + v,
            value_serde=INT,
            name="w",
            retention_ms=retention_ms,
        )
    else:
        value_serde = JSON
        table = windowed.aggregate(
            lambda: [],
            lambda _key, v, values: [*values, v],
            value_serde=JSON,
            name="w",
            retention_ms=retention_ms,
        )
    table.to_stream().to("out")
    return topology, value_serde


@dataclass
class Observed:
    outputs: list[list[Output]]
    late_count: int
    store: dict[Window, Any]


def _window(windowed: Windowed[str] | None) -> Window:
    assert windowed is not None
    return Window(windowed.key, windowed.start_ms, windowed.end_ms)


def _drive(case: Case) -> Observed:
    topology, value_serde = _topology(case)
    driver = TopologyTestDriver(topology, idle_advance_ms=case.idle_advance_ms)
    outputs = []
    for event in case.events:
        if isinstance(event, Idle):
            driver.advance_wall_clock(event.ms)
        else:
            driver.pipe("in", event.key, event.value, timestamp=event.ts)
        outputs.append(
            [
                Output(
                    _window(WINDOWED.deserialize(r.key)),
                    value_serde.deserialize(r.value),
                    r.timestamp,
                )
                for r in driver.read_records("out")
            ]
        )
    store = driver.window_store("w")
    return Observed(
        outputs=outputs,
        late_count=driver.accounting.totals()[Outcome.LATE],
        store={_window(w): value for key in KEYS for w, value in store.fetch(key, 0, 2**62)},
    )


# --- the comparison ---------------------------------------------------------------------------


def _check(case: Case) -> None:
    expected = reference.run(
        case.spec,
        case.events,
        emit=case.emit,
        aggregation=REFERENCE_AGGREGATION[case.aggregation],
        retention_ms=case.retention_ms,
        idle_advance_ms=case.idle_advance_ms,
    )
    got = _drive(case)
    for i, (want, have) in enumerate(zip(expected.outputs, got.outputs, strict=True)):
        where = f"after input {i} {case.events[i]} (late: {expected.late[i]})"
        if case.emit == "final":
            assert have == want, where
        else:
            assert sorted(have, key=repr) == sorted(want, key=repr), where
            tombstones = [out for out in want if out.value is None]
            assert have[: len(tombstones)] == tombstones, f"{where}: tombstones first, in order"
    assert got.late_count == expected.late_count
    assert got.store == {w: aggregate for w, (aggregate, _ts) in expected.store.items()}


KINDS = list(specs)


@pytest.mark.parametrize("emit", ["update", "final"])
@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(data=st.data())
def test_windowed_aggregation_equals_the_reference(kind: str, emit: Emit, data: Any) -> None:
    spec = data.draw(specs[kind], label="spec")
    case = Case(
        spec,
        emit,
        aggregation=data.draw(aggregations(spec), label="aggregation"),
        retention_ms=data.draw(retentions(spec), label="retention_ms"),
        events=list(data.draw(record_lists(), label="records")),
    )
    _check(case)


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(data=st.data())
def test_idle_advance_closes_windows_as_the_reference_does(kind: str, data: Any) -> None:
    spec = data.draw(specs[kind], label="spec")
    case = Case(
        spec,
        emit=data.draw(st.sampled_from(["update", "final"]), label="emit"),
        aggregation="count",
        idle_advance_ms=data.draw(st.integers(1, 10), label="idle_advance_ms"),
        events=data.draw(event_lists(), label="events"),
    )
    _check(case)


def test_the_driver_side_sees_what_the_topology_emits() -> None:
    # Hand-checked (as in test_reference.py), so that the comparison above cannot pass by
    # reading nothing on both sides.
    records: list[Event] = [Record("a", 1, 1), Record("a", 1, 5), Record("b", 1, 12)]
    records += [Record("a", 1, 3), Idle(10)]
    got = _drive(Case(Tumbling(size_ms=10), "update", "count", records, idle_advance_ms=5))
    assert got.outputs == [
        [Output(Window("a", 0, 10), 1, 1)],
        [Output(Window("a", 0, 10), 2, 5)],
        [Output(Window("b", 10, 20), 1, 12)],
        [],
        [],
    ]
    assert got.late_count == 1
    # stream time 12 + 10 idle = 22: [0, 10) expired (22 > 9 + 10), [10, 20) not (22 <= 29)
    assert got.store == {Window("b", 10, 20): 1}
