"""Error handlers, dead-letter headers, retries and the accounting of every input's outcome,
run through the in-memory driver (the same processors and handling code a worker runs)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor import ErrorHandler, Retry, Topology, TransientError, serdes
from processor.errors import ConfigError, RecordError, TopologyError
from processor.testing import TopologyTestDriver
from processor.topology.handling import (
    HEADER_MESSAGE,
    HEADER_OFFSET,
    HEADER_OPERATOR,
    HEADER_PARTITION,
    HEADER_STAGE,
    HEADER_TASK,
    HEADER_TIME,
    HEADER_TOPIC,
    HEADER_TYPE,
    MAX_MESSAGE_CHARS,
    RECENT_FAILURES,
    Accounting,
    ErrorHandling,
    ErrorStage,
    Outcome,
    RecordFailure,
    dead_letter_headers,
)

STR = serdes.StringSerde()
JSON = serdes.JsonSerde()
DLQ = "checks-dead-letters"


def _checks(**source: Any) -> Topology:
    """JSON objects whose "n" is even go to "out"; others are filtered out."""
    topology = Topology("checks")
    (
        topology.stream("in", key_serde=STR, value_serde=JSON, **source)
        .filter(lambda _k, v: v["n"] % 2 == 0, name="even")
        .to("out")
    )
    return topology


def _headers(driver: TopologyTestDriver) -> list[dict[str, bytes | None]]:
    return [dict(r.headers or ()) for r in driver.read_records(DLQ)]


def test_fail_names_the_record_the_stage_and_the_setting_to_change() -> None:
    driver = TopologyTestDriver(_checks())
    driver.pipe("in", "a", {"n": 2})
    with pytest.raises(RecordError) as raised:
        driver.pipe_bytes("in", b"b", b"{oops")
    error = raised.value
    assert (error.topic, error.partition, error.offset) == ("in", 0, 1)
    message = str(error)
    assert "record in[0]@1" in message
    assert "cannot deserialize the value with the json serde" in message
    assert "deserialization_error_handler" in message and "dead_letter" in message


def test_a_user_function_error_under_fail_names_the_operator() -> None:
    driver = TopologyTestDriver(_checks())
    with pytest.raises(RecordError) as raised:
        driver.pipe("in", "a", [1])
    assert "operator 'even'" in str(raised.value)
    assert "TypeError" in str(raised.value)
    assert "processing_error_handler" in str(raised.value)


def test_dead_letters_keep_the_original_bytes_and_headers_and_name_the_error() -> None:
    driver = TopologyTestDriver(
        _checks(),
        deserialization_error_handler=ErrorHandler.DEAD_LETTER,
        processing_error_handler=ErrorHandler.DEAD_LETTER,
    )
    driver.pipe("in", "ok", {"n": 2})
    driver.pipe_bytes("in", b"bad", b"\x00\x01", headers=[("trace", b"t-1")], timestamp=77)
    driver.pipe("in", "list", [1, 2])
    records = driver.read_records(DLQ)
    assert [(r.key, r.value, r.timestamp) for r in records] == [
        (b"bad", b"\x00\x01", 77),
        (b"list", b"[1,2]", 0),
    ]
    first, second = (dict(r.headers or ()) for r in records)
    assert first["trace"] == b"t-1"
    assert first[HEADER_STAGE] == b"deserialization"
    assert first[HEADER_TYPE] == b"DeserializationError"
    assert (first[HEADER_TOPIC], first[HEADER_PARTITION], first[HEADER_OFFSET]) == (
        b"in",
        b"0",
        b"1",
    )
    assert first[HEADER_TASK] == b"0_0"
    assert int(first[HEADER_TIME] or b"") > 0
    assert HEADER_OPERATOR not in first
    assert second[HEADER_STAGE] == b"processing"
    assert second[HEADER_TYPE] == b"TypeError"
    assert second[HEADER_OPERATOR] == b"even"
    assert second[HEADER_OFFSET] == b"2"
    assert driver.read("out") == [("ok", {"n": 2})]


def test_a_source_can_override_the_applications_deserialization_handler() -> None:
    driver = TopologyTestDriver(_checks(on_deserialization_error="skip"))
    driver.pipe_bytes("in", b"a", b"not json")
    assert driver.read_records(DLQ) == []
    assert driver.accounting.committed == {(Outcome.SKIPPED, "deserialization"): 1}


def test_an_unknown_handler_name_is_a_topology_error_naming_the_choices() -> None:
    with pytest.raises(TopologyError, match=r"source 'in'.*one of fail, skip, dead_letter"):
        _checks(on_deserialization_error="ignore")


def test_null_keys_go_to_the_deserialization_handler_at_keyed_operators() -> None:
    topology = Topology("checks")
    topology.stream("in", key_serde=STR, value_serde=STR).group_by_key().count(name="n")
    driver = TopologyTestDriver(topology, deserialization_error_handler=ErrorHandler.DEAD_LETTER)
    driver.pipe("in", None, "x")
    [headers] = _headers(driver)
    assert headers[HEADER_STAGE] == b"deserialization"
    assert headers[HEADER_TYPE] == b"NullKeyError"
    assert b"null key" in (headers[HEADER_MESSAGE] or b"")


def test_a_long_error_message_is_cut_in_the_header() -> None:
    failure = RecordFailure(ErrorStage.PROCESSING, ValueError("x" * 10_000), "in", 0, 5, "0_0")
    headers = dict(dead_letter_headers(failure, None, 1))
    message = headers[HEADER_MESSAGE] or b""
    assert len(message) == MAX_MESSAGE_CHARS + 3 and message.endswith(b"...")


# -- retries ----------------------------------------------------------------------------------


def _flaky_topology(failures: int, retry: Retry | None, error: type[Exception]) -> Topology:
    calls: dict[str, int] = {}

    def lookup(value: str) -> str:
        calls[value] = calls.get(value, 0) + 1
        if calls[value] <= failures:
            raise error(f"attempt {calls[value]} for {value}")
        return value.upper()

    topology = Topology("checks")
    topology.stream("in", value_serde=STR).map_values(lookup, retry=retry, name="lookup").to("out")
    return topology


def test_a_transient_error_is_retried_and_the_record_goes_through_once() -> None:
    driver = TopologyTestDriver(_flaky_topology(2, Retry(attempts=2, backoff_ms=0), TransientError))
    driver.pipe("in", None, "a")
    assert driver.read("out") == [(None, "A")]
    assert driver.accounting.committed == {(Outcome.OUTPUT, ""): 1}


def test_retries_used_up_hand_the_last_error_to_the_processing_handler() -> None:
    driver = TopologyTestDriver(
        _flaky_topology(3, Retry(attempts=2, backoff_ms=0), TransientError),
        processing_error_handler=ErrorHandler.DEAD_LETTER,
    )
    driver.pipe("in", None, "a")
    [headers] = _headers(driver)
    assert headers[HEADER_TYPE] == b"TransientError"
    assert headers[HEADER_MESSAGE] == b"attempt 3 for a"


def test_errors_not_marked_transient_are_not_retried() -> None:
    driver = TopologyTestDriver(
        _flaky_topology(1, Retry(attempts=5, backoff_ms=0), ValueError),
        processing_error_handler=ErrorHandler.SKIP,
    )
    driver.pipe("in", None, "a")
    assert driver.read("out") == []
    assert driver.accounting.committed == {(Outcome.SKIPPED, "processing"): 1}


def test_an_operator_can_name_its_own_transient_errors() -> None:
    retry = Retry(attempts=1, backoff_ms=0, on=(ConnectionError,))
    driver = TopologyTestDriver(_flaky_topology(1, retry, ConnectionError))
    driver.pipe("in", None, "a")
    assert driver.read("out") == [(None, "A")]


def test_the_applications_retry_applies_where_an_operator_has_none() -> None:
    driver = TopologyTestDriver(
        _flaky_topology(1, None, TransientError), retry=Retry(attempts=1, backoff_ms=0)
    )
    driver.pipe("in", None, "a")
    assert driver.read("out") == [(None, "A")]


@given(
    backoff=st.integers(0, 10_000),
    extra=st.integers(0, 100_000),
    retry=st.integers(1, 200),
)
def test_backoff_doubles_from_the_first_delay_and_never_exceeds_the_maximum(
    backoff: int, extra: int, retry: int
) -> None:
    policy = Retry(attempts=retry, backoff_ms=backoff, max_backoff_ms=backoff + extra)
    delays = [policy.delay_ms(i) for i in range(1, retry + 1)]
    assert delays[0] == min(backoff, backoff + extra)
    assert all(d <= backoff + extra for d in delays)
    assert all(b == min(2 * a, backoff + extra) for a, b in itertools.pairwise(delays))


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"attempts": -1}, "retry.attempts"),
        ({"backoff_ms": 10, "max_backoff_ms": 5}, "retry.backoff_ms"),
        ({"on": ()}, "retry.on"),
        ({"on": ("ValueError",)}, "retry.on"),
    ],
)
def test_a_bad_retry_policy_names_what_is_wrong(kwargs: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Retry(**kwargs)
    assert raised.value.setting == setting


# -- accounting -------------------------------------------------------------------------------

_RECORD = st.one_of(
    st.integers(0, 100).map(lambda n: json.dumps({"n": n}).encode()),
    st.binary(max_size=20),
    st.sampled_from([b"[1]", b'{"n": "x"}', b"null", b'{"n": 1']).map(lambda b: b),
)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(_RECORD, max_size=40), handler=st.sampled_from(list(ErrorHandler)[1:]))
def test_every_input_ends_in_exactly_one_outcome(
    values: list[bytes], handler: ErrorHandler
) -> None:
    driver = TopologyTestDriver(
        _checks(), deserialization_error_handler=handler, processing_error_handler=handler
    )
    expected = {outcome: 0 for outcome in Outcome}
    for value in values:
        driver.pipe_bytes("in", b"k", value)
        try:
            decoded = json.loads(value)
            kept = decoded["n"] % 2 == 0
        except Exception:
            expected[
                Outcome.SKIPPED if handler is ErrorHandler.SKIP else Outcome.DEAD_LETTERED
            ] += 1
            continue
        expected[Outcome.OUTPUT if kept else Outcome.FILTERED] += 1
    assert driver.accounting.totals() == expected
    assert len(driver.read_records("out")) == expected[Outcome.OUTPUT]
    assert len(driver.read_records(DLQ)) == expected[Outcome.DEAD_LETTERED]


def test_pending_counts_become_final_only_at_commit_and_an_abort_drops_them() -> None:
    accounting = Accounting()
    accounting.count(Outcome.OUTPUT)
    accounting.count(Outcome.DEAD_LETTERED, "processing")
    assert accounting.totals()[Outcome.OUTPUT] == 0
    accounting.commit()
    accounting.count(Outcome.OUTPUT)
    accounting.drop_pending()
    assert accounting.committed == {
        (Outcome.OUTPUT, ""): 1,
        (Outcome.DEAD_LETTERED, "processing"): 1,
    }
    accounting.retract(Outcome.OUTPUT)
    accounting.count(Outcome.DEAD_LETTERED, "production")
    accounting.commit()
    assert accounting.totals() == {
        Outcome.OUTPUT: 0,
        Outcome.FILTERED: 0,
        Outcome.SKIPPED: 0,
        Outcome.DEAD_LETTERED: 2,
        Outcome.LATE: 0,
    }


def test_the_handler_per_stage_and_whether_dead_letters_are_needed() -> None:
    handling = ErrorHandling(
        processing=ErrorHandler.SKIP, source_overrides={"raw": ErrorHandler.DEAD_LETTER}
    )
    assert handling.handler_for(ErrorStage.DESERIALIZATION, "in") is ErrorHandler.FAIL
    assert handling.handler_for(ErrorStage.DESERIALIZATION, "raw") is ErrorHandler.DEAD_LETTER
    assert handling.handler_for(ErrorStage.PROCESSING, "raw") is ErrorHandler.SKIP
    assert handling.handler_for(ErrorStage.PRODUCTION, "in") is ErrorHandler.FAIL
    assert handling.uses_dead_letters
    assert not ErrorHandling(processing=ErrorHandler.SKIP).uses_dead_letters


@pytest.mark.parametrize("text", ["dead_letter", "DEAD-LETTER", " skip ", "Fail"])
def test_handler_names_parse_leniently(text: str) -> None:
    assert ErrorHandler.parse(text).value == text.strip().lower().replace("-", "_")


class _FlakySerde:
    """Deserializes UTF-8 but first raises TransientError `failures` times, as a serde whose
    schema registry cannot be reached would."""

    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def serialize(self, value: str | None) -> bytes | None:
        return None if value is None else value.encode()

    def deserialize(self, data: bytes | None) -> str | None:
        if self.failures > 0:
            self.failures -= 1
            raise TransientError("schema registry at http://127.0.0.1:1 cannot be reached")
        return None if data is None else data.decode()


def _unreachable_registry_topology(failures: int) -> Topology:
    topology = Topology("checks")
    topology.stream("in", value_serde=_FlakySerde(failures)).to("out", value_serde=STR)
    return topology


def test_a_serde_that_cannot_reach_its_registry_is_retried() -> None:
    driver = TopologyTestDriver(
        _unreachable_registry_topology(2), retry=Retry(attempts=2, backoff_ms=0)
    )
    driver.pipe_bytes("in", None, b"a")
    assert driver.read("out") == [(None, "a")]


def test_a_registry_that_stays_unreachable_stops_processing_instead_of_dead_lettering() -> None:
    """The record is not at fault: no handler may skip or dead-letter it."""
    driver = TopologyTestDriver(
        _unreachable_registry_topology(10),
        deserialization_error_handler=ErrorHandler.DEAD_LETTER,
        retry=Retry(attempts=2, backoff_ms=0),
    )
    with pytest.raises(TransientError, match="cannot be reached"):
        driver.pipe_bytes("in", None, b"a")
    assert driver.read_records(DLQ) == []


def test_the_last_skipped_and_dead_lettered_records_are_remembered_for_the_status_page() -> None:
    driver = TopologyTestDriver(
        _checks(),
        deserialization_error_handler=ErrorHandler.SKIP,
        processing_error_handler=ErrorHandler.DEAD_LETTER,
    )
    driver.pipe_bytes("in", b"bad", b"\x00")
    driver.pipe("in", "list", [1, 2])
    skipped, dead_lettered = driver.accounting.recent
    assert (skipped.outcome, skipped.task, skipped.where) == ("skipped", "0_0", "in[0]@0")
    assert skipped.description.startswith("deserialization error")
    assert (dead_lettered.outcome, dead_lettered.where) == ("dead_lettered", "in[0]@1")
    assert "operator 'even'" in dead_lettered.description
    for _ in range(RECENT_FAILURES + 5):
        driver.pipe_bytes("in", b"bad", b"\x00")
    assert len(driver.accounting.recent) == RECENT_FAILURES  # a ring: the oldest go
    assert driver.accounting.recent[-1].where == f"in[0]@{RECENT_FAILURES + 6}"
