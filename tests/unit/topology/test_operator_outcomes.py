"""What processing a record returns (whether it reached a sink or a store, which the task counts
as output or filtered), and how an operator deals with a user function that raises: retried
when transient, and only the function itself, then handed to the processing error handler
naming the operator. Run through the in-memory driver."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from processor import ErrorHandler, ProcessorContext, Retry, Topology, TransientError, serdes
from processor.testing import TopologyTestDriver
from processor.topology.handling import HEADER_MESSAGE, HEADER_OPERATOR, HEADER_TYPE, Outcome

STR = serdes.StringSerde()
DLQ = "ops-dead-letters"
RETRY = Retry(attempts=2, backoff_ms=0)


def _outcome(build: Callable[[Any], Any], value: str = "v", stores: bool = False) -> Outcome:
    """The outcome the driver counts for one record piped through `build(stream)`."""
    topology = Topology("ops")
    if stores:
        topology.add_store("s", key_serde=STR, value_serde=STR)
    build(topology.stream("in", key_serde=STR, value_serde=STR))
    driver = TopologyTestDriver(topology)
    driver.pipe("in", "k", value)
    [(outcome, _)] = driver.accounting.committed
    assert driver.accounting.committed[(outcome, "")] == 1
    return outcome


def _keep_in_store(context: ProcessorContext, key: Any, value: Any) -> None:
    context.store("s").put(key, value)


def _forward_twice(context: ProcessorContext, key: Any, value: Any) -> None:
    context.forward(key, value + "-1")
    context.forward(key, value + "-2")


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda s: s.filter(lambda _k, v: v == "v").to("out"), Outcome.OUTPUT),
        (lambda s: s.filter(lambda _k, v: v != "v").to("out"), Outcome.FILTERED),
        (lambda s: s.flat_map_values(lambda v: []).to("out"), Outcome.FILTERED),
        (lambda s: s.flat_map_values(lambda v: [v, v]).to("out"), Outcome.OUTPUT),
        (lambda s: s.split({"a": lambda _k, v: v == "v"}), Outcome.FILTERED),
        (lambda s: s.split({"a": lambda _k, v: v == "v"})["a"].to("out"), Outcome.OUTPUT),
        (lambda s: s.group_by_key().count(name="n"), Outcome.OUTPUT),
        (lambda s: s.peek(lambda _k, _v: None), Outcome.FILTERED),
        (
            # One path drops it, the other writes it: output.
            lambda s: s.filter(lambda _k, _v: False).merge(s.map_values(str.upper)).to("out"),
            Outcome.OUTPUT,
        ),
        (
            # Forwarded into a filter that drops both: nothing reached a sink.
            lambda s: s.process(_forward_twice).filter(lambda _k, v: v == "x").to("out"),
            Outcome.FILTERED,
        ),
        (
            lambda s: s.process(_forward_twice).filter(lambda _k, v: v.endswith("2")).to("out"),
            Outcome.OUTPUT,
        ),
    ],
)
def test_a_record_is_output_when_it_reaches_a_sink_or_a_store(
    build: Callable[[Any], Any], expected: Outcome
) -> None:
    assert _outcome(build) is expected


def test_a_process_function_that_only_writes_its_store_produced_output() -> None:
    assert _outcome(lambda s: s.process(_keep_in_store, stores=["s"]), stores=True) is (
        Outcome.OUTPUT
    )
    assert _outcome(lambda s: s.process(lambda c, k, v: None), stores=True) is Outcome.FILTERED


def test_a_table_update_is_output() -> None:
    topology = Topology("ops")
    topology.table("in", key_serde=STR, value_serde=STR, name="t")
    driver = TopologyTestDriver(topology)
    driver.pipe("in", "k", "v")
    assert driver.accounting.committed == {(Outcome.OUTPUT, ""): 1}


# -- user functions that raise ----------------------------------------------------------------


class _Flaky:
    """Raises TransientError the first `failures` calls, then returns `result(*args)`."""

    def __init__(self, failures: int, result: Callable[..., Any]) -> None:
        self.failures = failures
        self.result = result
        self.calls = 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise TransientError(f"attempt {self.calls}")
        return self.result(*args)


def _dead_lettered(topology: Topology, value: str = "v") -> dict[str, bytes | None]:
    driver = TopologyTestDriver(
        topology, processing_error_handler=ErrorHandler.DEAD_LETTER, retry=RETRY
    )
    driver.pipe("in", "k", value)
    [record] = driver.read_records(DLQ)
    return dict(record.headers or ())


def test_a_map_returning_a_non_pair_after_a_retry_is_the_maps_error() -> None:
    topology = Topology("ops")
    flaky = _Flaky(1, lambda _k, v: v)
    topology.stream("in", key_serde=STR, value_serde=STR).map(flaky, name="pairs").to("out")
    headers = _dead_lettered(topology)
    assert flaky.calls == 2
    assert headers[HEADER_OPERATOR] == b"pairs"
    assert headers[HEADER_TYPE] == b"ValueError"


def test_a_flat_map_generator_raising_while_iterated_is_not_retried() -> None:
    calls = 0

    def explode(_value: str) -> Iterator[str]:
        nonlocal calls
        calls += 1
        yield "a"
        raise TransientError("mid-way")

    topology = Topology("ops")
    topology.stream("in", key_serde=STR, value_serde=STR).flat_map_values(
        explode, name="explode"
    ).to("out")
    headers = _dead_lettered(topology)
    assert calls == 1
    assert (headers[HEADER_OPERATOR], headers[HEADER_MESSAGE]) == (b"explode", b"mid-way")


def test_an_aggregator_is_retried_and_an_initializer_is_not() -> None:
    aggregator = _Flaky(1, lambda _k, v, total: total + v)
    topology = Topology("ops")
    grouped = topology.stream("in", key_serde=STR, value_serde=STR).group_by_key()
    grouped.aggregate(str, aggregator, value_serde=STR, name="agg").to_stream().to("out")
    driver = TopologyTestDriver(topology, retry=RETRY)
    driver.pipe("in", "k", "v")
    assert driver.read("out") == [("k", "v")]
    assert aggregator.calls == 2

    initializer = _Flaky(1, str)
    topology = Topology("ops")
    grouped = topology.stream("in", key_serde=STR, value_serde=STR).group_by_key()
    grouped.aggregate(initializer, lambda _k, v, t: t + v, value_serde=STR, name="agg")
    headers = _dead_lettered(topology)
    assert initializer.calls == 1
    assert (headers[HEADER_OPERATOR], headers[HEADER_TYPE]) == (b"agg", b"TransientError")


def test_an_error_downstream_of_a_process_function_names_the_downstream_operator() -> None:
    process = _Flaky(1, lambda context, key, value: context.forward(key, value))
    topology = Topology("ops")
    (
        topology.stream("in", key_serde=STR, value_serde=STR)
        .process(process, name="relay")
        .map_values(int, name="parse")
        .to("out")
    )
    headers = _dead_lettered(topology, value="not a number")
    assert process.calls == 2
    assert (headers[HEADER_OPERATOR], headers[HEADER_TYPE]) == (b"parse", b"ValueError")
