"""Every stateful operator (count, reduce, aggregate, table, process) and the stores behind them,
run through the in-memory `TopologyTestDriver`."""

from __future__ import annotations

import doctest
from typing import Any

import pytest

import processor.state.typed
import processor.testing.driver
from processor import ProcessorContext, Topology, serdes
from processor.errors import RecordError, TopologyError
from processor.testing import TopologyTestDriver
from processor.topology.handling import ErrorHandler, Outcome

STR = serdes.StringSerde()
INT = serdes.IntSerde()
JSON = serdes.JsonSerde()


def _text_topology(name: str = "agg") -> tuple[Topology, Any]:
    topology = Topology(name)
    return topology, topology.stream("in", key_serde=STR, value_serde=STR)


def _run(
    topology: Topology,
    records: list[tuple[Any, Any]],
    topic: str = "in",
    on_bad_record: ErrorHandler = ErrorHandler.FAIL,
) -> TopologyTestDriver:
    driver = TopologyTestDriver(topology, deserialization_error_handler=on_bad_record)
    for key, value in records:
        driver.pipe(topic, key, value)
    return driver


def _causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None:
        chain.append(cause)
        cause = cause.__cause__
    return chain


# --- count ----------------------------------------------------------------------------------


def test_count_counts_per_key_and_emits_every_update() -> None:
    topology, text = _text_topology()
    text.group_by_key().count(name="counts").to_stream().to("out")
    driver = _run(topology, [("a", "x"), ("b", "y"), ("a", "z"), ("a", "x")])
    assert driver.read("out") == [("a", 1), ("b", 1), ("a", 2), ("a", 3)]
    assert dict(driver.store("counts").all()) == {"a": 3, "b": 1}


def test_count_filters_null_values_and_hands_null_keys_to_the_deserialization_handler() -> None:
    topology, text = _text_topology()
    text.group_by_key().count(name="counts").to_stream().to("out")
    driver = _run(
        topology,
        [(None, "x"), ("a", None), ("a", "x"), (None, None), ("a", "")],
        on_bad_record=ErrorHandler.SKIP,
    )
    # an empty string is a value, not a null
    assert driver.read("out") == [("a", 1), ("a", 2)]
    assert list(driver.store("counts").all()) == [("a", 2)]
    # the skipped records changed nothing, so their commits wrote nothing
    assert driver.read("agg-counts-changelog") == [("a", 1), ("a", 2)]
    assert driver.accounting.committed == {
        (Outcome.SKIPPED, "deserialization"): 2,
        (Outcome.FILTERED, ""): 1,
        (Outcome.OUTPUT, ""): 2,
    }


def test_a_null_key_stops_a_count_by_default_naming_the_record() -> None:
    topology, text = _text_topology()
    text.group_by_key().count(name="counts").to_stream().to("out")
    driver = _run(topology, [("a", "x")])
    with pytest.raises(RecordError) as raised:
        driver.pipe("in", None, "y")
    assert raised.value.topic == "in" and raised.value.offset == 1
    assert "null key" in str(raised.value)
    assert "deserialization_error_handler" in str(raised.value)


def test_count_hands_records_whose_new_key_is_null_to_the_handler() -> None:
    topology, text = _text_topology()
    text.group_by(lambda k, v: v or None, name="by-value").count(name="counts").to_stream().to(
        "out"
    )
    driver = _run(topology, [("1", "x"), ("2", ""), ("3", "x")], on_bad_record=ErrorHandler.SKIP)
    assert driver.read("out") == [("x", 1), ("x", 2)]


def test_a_group_by_whose_key_function_returns_none_refuses_the_input_record() -> None:
    """Refused where it was keyed, not after the repartition topic: the error names the input
    record and the group_by, and a dead letter is the record as it was read (a record with a
    null key in the repartition topic could only be skipped, not fixed by changing the code)."""
    topology, text = _text_topology()
    text.group_by(lambda k, v: v or None, name="by-value").count(name="counts").to_stream().to(
        "out"
    )
    with pytest.raises(RecordError) as raised:
        _run(topology, [("1", "x"), ("2", "")])
    assert (raised.value.topic, raised.value.offset) == ("in", 1)
    assert "group_by 'by-value': the key function returned None" in str(raised.value)

    driver = TopologyTestDriver(
        topology, deserialization_error_handler=ErrorHandler.DEAD_LETTER, dead_letter_topic="dlq"
    )
    for key, value in [("1", "x"), ("2", ""), ("3", "x")]:
        driver.pipe("in", key, value)
    assert driver.read("out") == [("x", 1), ("x", 2)]
    [dead] = driver.read_records("dlq")
    assert (dead.key, dead.value) == (b"2", b"")
    headers = dict(dead.headers or [])
    assert headers["processor.error.topic"] == b"in"
    assert headers["processor.error.offset"] == b"1"
    assert headers["processor.error.type"] == b"NullKeyError"


def test_a_group_by_key_after_a_map_to_a_null_key_refuses_the_input_record() -> None:
    topology, text = _text_topology()
    (
        text.map(lambda k, v: (v or None, v), name="rekey")
        .group_by_key(name="regroup")
        .count(name="counts")
        .to_stream()
        .to("out")
    )
    with pytest.raises(RecordError) as raised:
        _run(topology, [("1", "x"), ("2", "")])
    assert (raised.value.topic, raised.value.offset) == ("in", 1)
    assert "group_by_key 'regroup': the record's key is None" in str(raised.value)
    driver = _run(topology, [("1", "x"), ("2", ""), ("3", "x")], on_bad_record=ErrorHandler.SKIP)
    assert driver.read("out") == [("x", 1), ("x", 2)]


def test_count_writes_its_store_changelog_at_each_commit() -> None:
    topology, text = _text_topology("app")
    text.group_by_key().count(name="counts")
    driver = TopologyTestDriver(topology)
    driver.pipe("in", "a", "x")
    assert driver.read("app-counts-changelog") == [("a", 1)]
    driver.pipe("in", "a", "x")
    driver.pipe("in", "b", "x")
    assert driver.read("app-counts-changelog") == [("a", 2), ("b", 1)]
    assert driver.read_records("app-counts-changelog") == []  # reading consumed them


def test_the_changelog_is_named_for_the_application_id() -> None:
    topology, text = _text_topology("app")
    text.group_by_key().count(name="counts")
    driver = TopologyTestDriver(topology, application_id="other")
    driver.pipe("in", "a", "x")
    assert driver.read("other-counts-changelog") == [("a", 1)]
    with pytest.raises(TopologyError):
        driver.read("app-counts-changelog")


def test_unnamed_aggregations_get_a_store_each() -> None:
    topology, text = _text_topology()
    grouped = text.group_by_key()
    first = grouped.count()
    second = grouped.count()
    assert first.store_name != second.store_name
    first.to_stream().to("one")
    second.to_stream().to("two")
    driver = _run(topology, [("a", "x")])
    assert driver.read("one") == driver.read("two") == [("a", 1)]
    assert driver.store(first.store_name).get("a") == 1
    assert driver.store(second.store_name).get("a") == 1


# --- reduce ---------------------------------------------------------------------------------


def test_reduce_keeps_the_first_value_then_applies_the_reducer() -> None:
    topology, text = _text_topology()
    calls: list[tuple[str, str]] = []

    def join(aggregate: str, value: str) -> str:
        calls.append((aggregate, value))
        return f"{aggregate}+{value}"

    text.group_by_key().reduce(join, name="joined").to_stream().to("out")
    driver = _run(topology, [("a", "1"), ("b", "2"), ("a", "3"), ("a", "4")])
    assert driver.read("out") == [("a", "1"), ("b", "2"), ("a", "1+3"), ("a", "1+3+4")]
    # the first value of a key is the aggregate as it is: the reducer only sees later ones
    assert calls == [("1", "3"), ("1+3", "4")]
    assert dict(driver.store("joined").all()) == {"a": "1+3+4", "b": "2"}


def test_reduce_stores_with_the_stream_value_serde() -> None:
    topology = Topology("maxes")
    topology.stream("in", key_serde=STR, value_serde=INT).group_by_key().reduce(
        max, name="max"
    ).to_stream().to("out")
    driver = _run(topology, [("a", 5), ("a", -3), ("a", 9), ("a", 1)])
    assert driver.read("out") == [("a", 5), ("a", 5), ("a", 9), ("a", 9)]
    # every pipe puts the aggregate, so every commit writes it, unchanged or not
    assert driver.read("maxes-max-changelog") == [("a", 5), ("a", 5), ("a", 9), ("a", 9)]
    assert driver.store("max").get("a") == 9


def test_reduce_skips_a_null_value() -> None:
    topology, text = _text_topology()
    text.group_by_key().reduce(lambda a, v: a + v, name="r").to_stream().to("out")
    driver = _run(topology, [("a", "x"), ("a", None), ("a", "y")])
    assert driver.read("out") == [("a", "x"), ("a", "xy")]


# --- aggregate ------------------------------------------------------------------------------


def test_aggregate_starts_from_the_initializer_for_each_key() -> None:
    topology, text = _text_topology()
    calls: list[tuple[str, str, list[str]]] = []

    def collect(key: str, value: str, aggregate: list[str]) -> list[str]:
        calls.append((key, value, list(aggregate)))
        return [*aggregate, value]

    text.group_by_key().aggregate(list, collect, value_serde=JSON, name="lists").to_stream().to(
        "out"
    )
    driver = _run(topology, [("a", "1"), ("b", "2"), ("a", "3")])
    assert driver.read("out") == [("a", ["1"]), ("b", ["2"]), ("a", ["1", "3"])]
    assert calls == [("a", "1", []), ("b", "2", []), ("a", "3", ["1"])]


def test_aggregate_uses_its_value_serde_for_the_store_changelog_and_output() -> None:
    topology, text = _text_topology("json-agg")

    def add(key: str, value: str, agg: dict[str, Any]) -> dict[str, Any]:
        return {"n": agg["n"] + 1, "chars": agg["chars"] + len(value)}

    table = text.group_by_key().aggregate(
        lambda: {"n": 0, "chars": 0}, add, value_serde=JSON, name="stats"
    )
    assert table.value_serde is JSON
    table.to_stream().to("out")
    driver = _run(topology, [("a", "xyz"), ("a", "pq")])
    assert driver.read("out") == [("a", {"n": 1, "chars": 3}), ("a", {"n": 2, "chars": 5})]
    records = driver.read_records("json-agg-stats-changelog")
    assert [(r.key, r.value) for r in records] == [
        (b"a", b'{"n":1,"chars":3}'),
        (b"a", b'{"n":2,"chars":5}'),
    ]
    assert driver.store("stats").get("a") == {"n": 2, "chars": 5}


def test_an_aggregate_the_value_serde_cannot_write_is_a_record_error() -> None:
    topology, text = _text_topology()
    # IntSerde cannot store a string aggregate
    text.group_by_key().aggregate(
        lambda: "", lambda k, v, agg: agg + v, value_serde=INT, name="bad-serde"
    )
    driver = TopologyTestDriver(topology)
    with pytest.raises(RecordError) as excinfo:
        driver.pipe("in", "a", "x")
    assert (excinfo.value.topic, excinfo.value.offset) == ("in", 0)
    assert "'bad-serde'" in str(excinfo.value)


# --- errors in aggregations -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("declare", "failing_offset"),
    [
        (
            lambda g, f: g.aggregate(
                lambda: 0, lambda k, v, a: f(), value_serde=INT, name="my-agg"
            ),
            0,
        ),
        (lambda g, f: g.aggregate(f, lambda k, v, a: a, value_serde=INT, name="my-agg"), 0),
        # a reducer runs from a key's second value on
        (lambda g, f: g.reduce(lambda a, v: f(), name="my-agg"), 1),
    ],
    ids=["aggregator", "initializer", "reducer"],
)
def test_a_raising_aggregation_function_is_a_record_error_naming_the_operator(
    declare: Any, failing_offset: int
) -> None:
    topology, text = _text_topology()

    def boom() -> Any:
        raise ValueError("boom from user code")

    declare(text.group_by_key(), boom)
    driver = TopologyTestDriver(topology)
    with pytest.raises(RecordError) as excinfo:
        driver.pipe("in", "k", "v")
        driver.pipe("in", "k", "v")
    error = excinfo.value
    assert (error.topic, error.partition, error.offset) == ("in", 0, failing_offset)
    assert "'my-agg'" in str(error)
    assert "ValueError" in str(error) and "boom from user code" in str(error)
    assert any(isinstance(c, ValueError) for c in _causes(error))


def test_an_aggregator_failing_after_a_repartition_names_the_repartition_topic() -> None:
    topology, text = _text_topology("app")
    text.group_by(lambda k, v: v, name="by-value").aggregate(
        lambda: 0, lambda k, v, a: 1 // a, value_serde=INT, name="divide"
    )
    driver = TopologyTestDriver(topology)
    with pytest.raises(RecordError) as excinfo:
        driver.pipe("in", "k", "v")
    error = excinfo.value
    assert (error.topic, error.partition, error.offset) == ("app-by-value-repartition", 0, 0)
    assert "'divide'" in str(error) and "ZeroDivisionError" in str(error)


def test_a_failing_aggregator_leaves_the_store_unchanged() -> None:
    topology, text = _text_topology()

    def add(key: str, value: str, total: int) -> int:
        return total + int(value)

    text.group_by_key().aggregate(lambda: 0, add, value_serde=INT, name="sums")
    driver = _run(topology, [("a", "2")])
    with pytest.raises(RecordError, match="'sums'"):
        driver.pipe("in", "a", "two")
    assert driver.store("sums").get("a") == 2


# --- repartitioning -------------------------------------------------------------------------


def test_group_by_rekeys_through_a_repartition_topic() -> None:
    topology, text = _text_topology("app")
    text.group_by(lambda k, v: v[0], name="initial").count(name="counts").to_stream().to("out")
    description = topology.describe()
    assert "Sub-topology 0" in description and "Sub-topology 1" in description
    assert "Sub-topology 2" not in description
    assert description.count("topic: app-initial-repartition") == 2  # its sink and its source
    subs = topology.subtopologies()
    assert [s.source_topics for s in subs] == [("in",), ("app-initial-repartition",)]
    assert subs[0].repartition_sink_topics == ("app-initial-repartition",)
    assert [s.name for s in subs[1].stores] == ["counts"]
    assert not subs[0].stateful

    driver = _run(topology, [("1", "apple"), ("2", "avocado"), ("3", "banana")])
    assert driver.read("out") == [("a", 1), ("a", 2), ("b", 1)]
    assert dict(driver.store("counts").all()) == {"a": 2, "b": 1}
    # the driver feeds the repartition topic's records to sub-topology 1 instead of keeping them
    assert driver.read("app-initial-repartition") == []


def test_group_by_with_new_serdes_uses_them_for_the_repartition_topic() -> None:
    topology, text = _text_topology("app")
    text.group_by(lambda k, v: len(v), key_serde=INT, name="by-length").count(
        name="lengths"
    ).to_stream().to("out")
    assert "topic: app-by-length-repartition, key: int, value: string" in topology.describe()
    driver = _run(topology, [("a", "xy"), ("b", "pq"), ("c", "xyz")])
    assert driver.read("out") == [(2, 1), (2, 2), (3, 1)]


def test_group_by_without_a_name_still_names_a_repartition_topic_for_the_application() -> None:
    topology, text = _text_topology("app")
    text.group_by(lambda k, v: v).count()
    [sink_topic] = topology.subtopologies()[0].repartition_sink_topics
    assert sink_topic.startswith("app-") and sink_topic.endswith("-repartition")
    [other] = topology.subtopologies("other")[0].repartition_sink_topics
    assert other == "other-" + sink_topic.removeprefix("app-")


def test_group_by_key_on_an_unchanged_key_does_not_repartition() -> None:
    topology, text = _text_topology("app")
    (
        text.filter(lambda k, v: True)
        .map_values(str.upper)
        .flat_map_values(lambda v: [v])
        .peek(lambda k, v: None)
        .group_by_key()
        .count(name="counts")
        .to_stream()
        .to("out")
    )
    subs = topology.subtopologies()
    assert len(subs) == 1
    assert subs[0].source_topics == ("in",)
    assert "repartition" not in topology.describe()
    driver = _run(topology, [("a", "x"), ("a", "y")])
    assert driver.read("out") == [("a", 1), ("a", 2)]


@pytest.mark.parametrize(
    ("change_key", "topic"),
    [
        (lambda t, s: s.map(lambda k, v: (v, k)), "in"),
        (lambda t, s: s.flat_map(lambda k, v: [(v, k)]), "in"),
        (lambda t, s: s.process(lambda c, k, v: c.forward(v, k)), "in"),
        (lambda t, s: s.map(lambda k, v: (v, k)).filter(lambda k, v: True), "in"),
        (
            lambda t, s: s.merge(
                t.stream("other", key_serde=STR, value_serde=STR).map(lambda k, v: (v, k))
            ),
            "other",
        ),
    ],
    ids=["map", "flat_map", "process", "map-then-filter", "merge-with-mapped"],
)
def test_group_by_key_after_a_key_changing_operator_repartitions(
    change_key: Any, topic: str
) -> None:
    topology, text = _text_topology("app")
    change_key(topology, text).group_by_key(name="regroup").count(name="counts").to_stream().to(
        "out"
    )
    subs = topology.subtopologies()
    assert len(subs) == 2
    assert subs[-1].source_topics == ("app-regroup-repartition",)
    assert "app-regroup-repartition" in topology.describe()
    driver = _run(topology, [("k1", "v"), ("k2", "v")], topic=topic)
    assert driver.read("out") == [("v", 1), ("v", 2)]


def test_group_by_key_after_a_table_update_stream_does_not_repartition() -> None:
    topology = Topology("app")
    table = topology.table("users", key_serde=STR, value_serde=STR)
    table.to_stream().group_by_key().count(name="updates")
    assert len(topology.subtopologies()) == 1


# --- table ----------------------------------------------------------------------------------


def test_table_keeps_the_latest_value_per_key_and_a_null_value_deletes() -> None:
    topology = Topology("app")
    table = topology.table("users", key_serde=STR, value_serde=JSON)
    assert table.store_name == "users"
    driver = TopologyTestDriver(topology)
    driver.pipe("users", "u1", {"name": "Ann"})
    driver.pipe("users", "u2", {"name": "Bob"})
    driver.pipe("users", "u1", {"name": "Ann B."})
    store = driver.store("users")
    assert dict(store.all()) == {"u1": {"name": "Ann B."}, "u2": {"name": "Bob"}}
    driver.pipe("users", "u2", None)
    assert list(store.all()) == [("u1", {"name": "Ann B."})]
    assert store.get("u2") is None and "u2" not in store
    assert driver.read("app-users-changelog") == [
        ("u1", {"name": "Ann"}),
        ("u2", {"name": "Bob"}),
        ("u1", {"name": "Ann B."}),
        ("u2", None),
    ]


def test_table_hands_records_with_a_null_key_to_the_handler() -> None:
    topology = Topology("app")
    topology.table("users", key_serde=STR, value_serde=STR).to_stream().to("out")
    driver = _run(
        topology, [(None, "x"), ("u", "y")], topic="users", on_bad_record=ErrorHandler.SKIP
    )
    assert driver.read("out") == [("u", "y")]
    assert list(driver.store("users").all()) == [("u", "y")]


def test_table_store_can_be_named() -> None:
    topology = Topology("app")
    table = topology.table("users", key_serde=STR, value_serde=STR, name="user-table")
    assert table.store_name == "user-table"
    driver = _run(topology, [("u", "x")], topic="users")
    assert driver.store("user-table").get("u") == "x"
    assert driver.read("app-user-table-changelog") == [("u", "x")]
    with pytest.raises(TopologyError, match=r"'users'.*\['user-table'\]"):
        driver.store("users")


def test_to_stream_emits_every_update_including_deletes() -> None:
    topology = Topology("app")
    topology.table("prices", key_serde=STR, value_serde=INT).to_stream().to("price-updates")
    driver = _run(topology, [("x", 1), ("x", 1), ("y", 5), ("x", 2), ("y", None)], topic="prices")
    assert driver.read("price-updates") == [("x", 1), ("x", 1), ("y", 5), ("x", 2), ("y", None)]
    assert dict(driver.store("prices").all()) == {"x": 2}


def test_to_stream_of_an_aggregation_can_go_on_through_stateless_operators() -> None:
    topology, text = _text_topology()
    text.group_by_key().count(name="counts").to_stream().filter(lambda k, n: n % 2 == 0).map_values(
        str
    ).to("even", value_serde=STR)
    driver = _run(topology, [("a", "x")] * 5)
    assert driver.read("even") == [("a", "2"), ("a", "4")]


# --- process --------------------------------------------------------------------------------


def test_process_with_a_store_keeps_a_running_sum() -> None:
    topology = Topology("sums")
    topology.add_store("totals", key_serde=STR, value_serde=INT)

    def running_sum(context: ProcessorContext, key: str, amount: int) -> None:
        totals: Any = context.store("totals")
        total = totals.get(key, 0) + amount
        totals.put(key, total)
        context.forward(key, total)

    topology.stream("in", key_serde=STR, value_serde=INT).process(
        running_sum, stores=["totals"]
    ).to("out")
    driver = _run(topology, [("a", 1), ("b", 10), ("a", 2), ("a", 3)])
    assert driver.read("out") == [("a", 1), ("b", 10), ("a", 3), ("a", 6)]
    assert dict(driver.store("totals").all()) == {"a": 6, "b": 10}
    assert driver.read("sums-totals-changelog") == [("a", 1), ("b", 10), ("a", 3), ("a", 6)]


def test_process_may_forward_zero_or_more_times() -> None:
    topology, text = _text_topology()

    def repeat(context: ProcessorContext, key: str, value: str) -> None:
        for i in range(int(value)):
            context.forward(f"{key}{i}", value)

    text.process(repeat).to("out")
    driver = _run(topology, [("a", "0"), ("b", "3"), ("c", "1")])
    assert driver.read("out") == [("b0", "3"), ("b1", "3"), ("b2", "3"), ("c0", "1")]


def test_process_output_can_use_other_serdes() -> None:
    topology, text = _text_topology()
    text.process(lambda c, k, v: c.forward(len(v), {"v": v}), key_serde=INT, value_serde=JSON).to(
        "out"
    )
    driver = _run(topology, [("a", "xyz")])
    assert driver.read("out") == [(3, {"v": "xyz"})]


def test_process_sees_the_record_context() -> None:
    topology, text = _text_topology()
    seen: list[tuple[Any, ...]] = []

    def look(context: ProcessorContext, key: str, value: str) -> None:
        seen.append(
            (context.topic, context.partition, context.offset, context.timestamp, context.headers)
        )
        context.forward(key, value)

    text.process(look).to("out")
    driver = TopologyTestDriver(topology, start_time_ms=1_000)
    driver.pipe("in", "a", "1", timestamp=42, headers=[("trace", b"t-1"), ("empty", None)])
    driver.pipe("in", "b", "2")
    driver.advance_time(500)
    driver.pipe("in", "c", "3")
    assert seen == [
        ("in", 0, 0, 42, [("trace", b"t-1"), ("empty", None)]),
        ("in", 0, 1, 1_000, None),
        ("in", 0, 2, 1_500, None),
    ]
    # what it forwards keeps the record's timestamp and headers
    records = driver.read_records("out")
    assert [(r.timestamp, r.headers) for r in records] == [
        (42, [("trace", b"t-1"), ("empty", None)]),
        (1_000, None),
        (1_500, None),
    ]


def test_process_context_after_a_repartition_names_the_repartition_topic() -> None:
    topology, text = _text_topology("app")
    seen: list[tuple[str, int]] = []
    text.group_by(lambda k, v: v, name="rekey").count(name="n").to_stream().process(
        lambda c, k, v: seen.append((c.topic, c.offset))
    )
    _run(topology, [("a", "x"), ("b", "y")])
    assert seen == [("app-rekey-repartition", 0), ("app-rekey-repartition", 1)]


def test_process_context_has_a_task_id() -> None:
    topology, text = _text_topology()
    task_ids: list[str] = []
    text.process(lambda c, k, v: task_ids.append(c.task_id))
    _run(topology, [("a", "x")])
    assert task_ids == ["0_0"]


def test_context_store_of_an_undeclared_store_names_the_declared_ones() -> None:
    topology, text = _text_topology()
    topology.add_store("mine", key_serde=STR, value_serde=STR)
    topology.add_store("elsewhere", key_serde=STR, value_serde=STR)
    raised: list[TopologyError] = []

    def use(context: ProcessorContext, key: str, value: str) -> None:
        context.store("mine").put(key, value)
        try:
            context.store("elsewhere")  # declared in the topology, not given to this operator
        except TopologyError as e:
            raised.append(e)
        context.store("typo")

    text.process(use, stores=["mine"], name="user")
    driver = TopologyTestDriver(topology)
    with pytest.raises(RecordError) as excinfo:
        driver.pipe("in", "k", "v")
    [error] = raised
    assert "'elsewhere'" in str(error) and "['mine']" in str(error)
    message = str(excinfo.value)
    assert "'user'" in message and "TopologyError" in message
    assert "'typo'" in message and "['mine']" in message
    assert any(isinstance(c, TopologyError) for c in _causes(excinfo.value))


def test_context_store_without_any_store_says_there_is_none() -> None:
    topology, text = _text_topology()
    text.process(lambda c, k, v: c.store("counts"))
    driver = TopologyTestDriver(topology)
    with pytest.raises(RecordError, match=r"'counts'.*none"):
        driver.pipe("in", "k", "v")


def test_process_naming_an_undeclared_store_fails_at_declaration() -> None:
    topology, text = _text_topology()
    topology.add_store("declared")
    with pytest.raises(TopologyError, match=r"'undeclared'.*add_store"):
        text.process(lambda c, k, v: None, stores=["declared", "undeclared"])


def test_two_stores_with_the_same_name_are_refused() -> None:
    topology, text = _text_topology()
    topology.add_store("state")
    with pytest.raises(TopologyError, match="'state'"):
        topology.add_store("state", key_serde=STR)
    with pytest.raises(TopologyError, match="'state'"):
        text.group_by_key().count(name="state")
    with pytest.raises(TopologyError, match="'state'"):
        topology.table("state")


def test_a_table_store_and_an_aggregation_store_cannot_share_a_name() -> None:
    topology, text = _text_topology()
    topology.table("users", key_serde=STR, value_serde=STR)
    with pytest.raises(TopologyError, match="'users'"):
        text.group_by_key().count(name="users")


@pytest.mark.parametrize("name", ["", "has space", "slash/no", "ünïcode"])
def test_store_names_must_be_usable_in_topic_names(name: str) -> None:
    topology = Topology("app")
    with pytest.raises(TopologyError, match="store name"):
        topology.add_store(name)


def test_processors_sharing_a_store_share_a_sub_topology() -> None:
    topology = Topology("app")
    topology.add_store("shared", key_serde=STR, value_serde=INT)

    def bump(context: ProcessorContext, key: str, value: str) -> None:
        store: Any = context.store("shared")
        store.put(key, store.get(key, 0) + 1)

    topology.stream("one", key_serde=STR, value_serde=STR).process(bump, stores=["shared"])
    topology.stream("two", key_serde=STR, value_serde=STR).process(bump, stores=["shared"])
    [sub] = topology.subtopologies()
    assert sub.source_topics == ("one", "two")
    driver = TopologyTestDriver(topology)
    driver.pipe("one", "k", "x")
    driver.pipe("two", "k", "x")
    assert driver.store("shared").get("k") == 2


def test_driver_store_of_an_unknown_name_names_the_stores() -> None:
    topology, text = _text_topology()
    text.group_by_key().count(name="counts")
    driver = TopologyTestDriver(topology)
    with pytest.raises(TopologyError, match=r"'nope'.*\['counts'\]"):
        driver.store("nope")


# --- the write-back cache -------------------------------------------------------------------


def test_a_hot_key_updated_many_times_in_one_commit_writes_one_changelog_record() -> None:
    topology, text = _text_topology("hot")
    text.flat_map(lambda k, v: [("hot", v)] * 100 + [(f"cold-{v}", v)]).group_by_key(
        name="regroup"
    ).count(name="hits").to_stream().to("out")
    driver = TopologyTestDriver(topology)
    driver.pipe("in", "k", "a")
    # every update flows downstream ...
    updates = driver.read("out")
    assert updates[:100] == [("hot", n) for n in range(1, 101)]
    assert updates[100:] == [("cold-a", 1)]
    # ... but the commit after the pipe sends each dirty key once, with its latest value
    assert driver.read("hot-hits-changelog") == [("hot", 100), ("cold-a", 1)]
    driver.pipe("in", "k", "b")
    assert driver.read("hot-hits-changelog") == [("hot", 200), ("cold-b", 1)]
    assert len(driver.read("out")) == 101
    assert dict(driver.store("hits").all()) == {"hot": 200, "cold-a": 1, "cold-b": 1}


def test_a_key_put_then_deleted_in_one_commit_writes_one_tombstone() -> None:
    topology, text = _text_topology("flip")
    topology.add_store("s", key_serde=STR, value_serde=STR)

    def flip(context: ProcessorContext, key: str, value: str) -> None:
        store: Any = context.store("s")
        for i in range(10):
            store.put(key, f"{value}{i}")
        if value == "delete":
            store.delete(key)

    text.process(flip, stores=["s"])
    driver = _run(topology, [("a", "keep"), ("b", "delete")])
    assert driver.read("flip-s-changelog") == [("a", "keep9"), ("b", None)]
    assert list(driver.store("s").all()) == [("a", "keep9")]


# --- reading stores through the driver ------------------------------------------------------


def _fruit_counts() -> TopologyTestDriver:
    topology, text = _text_topology()
    text.group_by(lambda k, v: v, name="by-fruit").count(name="fruit")
    words = "apple apricot banana apple blueberry avocado apple cherry banana"
    return _run(topology, [(None, w) for w in words.split()])


def test_driver_store_all_is_in_key_order() -> None:
    store = _fruit_counts().store("fruit")
    assert list(store.all()) == [
        ("apple", 3),
        ("apricot", 1),
        ("avocado", 1),
        ("banana", 2),
        ("blueberry", 1),
        ("cherry", 1),
    ]


def test_driver_store_range_includes_start_and_excludes_end() -> None:
    store = _fruit_counts().store("fruit")
    assert list(store.range("apricot", "banana")) == [("apricot", 1), ("avocado", 1)]
    assert list(store.range("b")) == [("banana", 2), ("blueberry", 1), ("cherry", 1)]
    assert list(store.range(None, "apricot")) == [("apple", 3)]
    assert list(store.range("z")) == []


def test_driver_store_prefix() -> None:
    store = _fruit_counts().store("fruit")
    assert list(store.prefix("ap")) == [("apple", 3), ("apricot", 1)]
    assert list(store.prefix("b")) == [("banana", 2), ("blueberry", 1)]
    assert list(store.prefix("kiwi")) == []


def test_driver_store_get_and_contains() -> None:
    store = _fruit_counts().store("fruit")
    assert store.get("apple") == 3
    assert store.get("kiwi") is None and store.get("kiwi", 0) == 0
    assert "cherry" in store and "kiwi" not in store


def test_driver_store_reads_what_the_next_pipe_changes() -> None:
    topology, text = _text_topology()
    text.group_by_key().count(name="counts")
    driver = TopologyTestDriver(topology)
    store = driver.store("counts")
    assert list(store.all()) == []
    driver.pipe("in", "a", "x")
    assert list(store.all()) == [("a", 1)]
    driver.pipe("in", "a", "x")
    assert list(store.all()) == [("a", 2)]


# --- doctests -------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [processor.state.typed, processor.testing.driver])
def test_docstring_examples_run(module: Any) -> None:
    result = doctest.testmod(module, verbose=False, report=False)
    assert result.attempted > 0
    assert result.failed == 0
