"""Store writes that cannot be kept, through the in-memory driver: an update too large for its
store's changelog goes to the production error handler when the store is written (every kind of
stateful write: table, count, reduce, aggregate, a process() store), and an aggregate its serde
can no longer read goes to the processing error handler."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from processor import ErrorHandler, ProcessorContext, Topology, serdes
from processor.errors import ChangelogRecordTooLargeError, RecordError
from processor.testing import TopologyTestDriver
from processor.testing.driver import DEFAULT_MAX_CHANGELOG_RECORD_BYTES
from processor.topology.handling import (
    HEADER_MESSAGE,
    HEADER_OFFSET,
    HEADER_OPERATOR,
    HEADER_STAGE,
    HEADER_TARGET_TOPIC,
    HEADER_TOPIC,
    HEADER_TYPE,
    Outcome,
)

STR = serdes.StringSerde()
DLQ = "app-dead-letters"
LIMIT = 20


def _table(topology: Topology) -> None:
    topology.table("in", key_serde=STR, value_serde=STR, name="s").to_stream().to("out")


def _reduce(topology: Topology) -> None:
    grouped = topology.stream("in", key_serde=STR, value_serde=STR).group_by_key()
    grouped.reduce(lambda total, value: total + value, name="s").to_stream().to("out")


def _aggregate(topology: Topology) -> None:
    grouped = topology.stream("in", key_serde=STR, value_serde=STR).group_by_key()
    grouped.aggregate(
        str, lambda _key, value, total: total + value, value_serde=STR, name="s"
    ).to_stream().to("out")


def _keep(context: ProcessorContext, key: Any, value: Any) -> None:
    context.store("s").put(key, value)
    context.forward(key, value)


def _process(topology: Topology) -> None:
    topology.add_store("s", key_serde=STR, value_serde=STR)
    topology.stream("in", key_serde=STR, value_serde=STR).process(_keep, stores=["s"]).to("out")


# Each keeps one value per key in store "s": the latest (table, process) or every value so far,
# concatenated (reduce, aggregate: an aggregate that grows).
WRITERS: dict[str, Callable[[Topology], None]] = {
    "table": _table,
    "reduce": _reduce,
    "aggregate": _aggregate,
    "process": _process,
}


def _driver(writer: str, handler: ErrorHandler) -> TopologyTestDriver:
    topology = Topology("app")
    WRITERS[writer](topology)
    return TopologyTestDriver(
        topology, production_error_handler=handler, max_changelog_record_bytes=LIMIT
    )


def _feed(driver: TopologyTestDriver) -> None:
    """ "a" gets 10 bytes, then 25 more (over the limit however it is kept), "b" gets 5."""
    driver.pipe("in", "a", "x" * 10)
    driver.pipe("in", "a", "y" * 25)
    driver.pipe("in", "b", "z" * 5)


@pytest.mark.parametrize("writer", WRITERS)
def test_fail_stops_at_the_update_naming_store_changelog_sizes_and_limit(writer: str) -> None:
    driver = _driver(writer, ErrorHandler.FAIL)
    driver.pipe("in", "a", "x" * 10)
    with pytest.raises(RecordError) as raised:
        driver.pipe("in", "a", "y" * 25)
    error = raised.value
    assert (error.topic, error.partition, error.offset) == ("in", 0, 1)
    assert isinstance(error.__cause__, ChangelogRecordTooLargeError)
    message = str(error)
    assert "\n" not in message
    assert "store 's'" in message and "changelog 'app-s-changelog'" in message
    value_size = 25 if writer in ("table", "process") else 35
    assert f"key 1 bytes, value {value_size} bytes" in message
    assert f"at most {LIMIT} bytes" in message
    assert "production_error_handler" in message
    assert driver.store("s").get("a") == "x" * 10


@pytest.mark.parametrize("handler", [ErrorHandler.SKIP, ErrorHandler.DEAD_LETTER])
@pytest.mark.parametrize("writer", WRITERS)
def test_an_update_too_large_is_not_applied_and_the_record_is_handled(
    writer: str, handler: ErrorHandler
) -> None:
    driver = _driver(writer, handler)
    _feed(driver)
    store = driver.store("s")
    assert (store.get("a"), store.get("b")) == ("x" * 10, "z" * 5)
    # the store and its changelog agree: the update reached neither
    assert driver.read("app-s-changelog") == [("a", "x" * 10), ("b", "z" * 5)]
    assert driver.read("out") == [("a", "x" * 10), ("b", "z" * 5)]
    outcome = Outcome.SKIPPED if handler is ErrorHandler.SKIP else Outcome.DEAD_LETTERED
    assert driver.accounting.committed == {
        (Outcome.OUTPUT, ""): 2,
        (outcome, "production"): 1,
    }
    dead = driver.read_records(DLQ)
    if handler is ErrorHandler.SKIP:
        assert dead == []
        return
    [record] = dead
    assert (record.key, record.value) == (b"a", b"y" * 25)
    headers = dict(record.headers or ())
    assert headers[HEADER_STAGE] == b"production"
    assert headers[HEADER_TYPE] == b"ChangelogRecordTooLargeError"
    assert headers[HEADER_TARGET_TOPIC] == b"app-s-changelog"
    assert (headers[HEADER_TOPIC], headers[HEADER_OFFSET]) == (b"in", b"1")
    assert b"store 's'" in (headers[HEADER_MESSAGE] or b"")


def test_a_count_whose_key_alone_is_too_large_is_handled() -> None:
    topology = Topology("app")
    topology.stream("in", key_serde=STR, value_serde=STR).group_by_key().count(name="n")
    driver = TopologyTestDriver(
        topology, production_error_handler=ErrorHandler.SKIP, max_changelog_record_bytes=LIMIT
    )
    driver.pipe("in", "k" * (LIMIT - 8), "v")  # a count is 8 bytes: just fits
    driver.pipe("in", "k" * (LIMIT - 7), "v")
    assert driver.read("app-n-changelog") == [("k" * (LIMIT - 8), 1)]
    assert driver.accounting.committed == {
        (Outcome.OUTPUT, ""): 1,
        (Outcome.SKIPPED, "production"): 1,
    }


def test_deletes_always_fit() -> None:
    topology = Topology("app")
    _table(topology)
    driver = TopologyTestDriver(topology, max_changelog_record_bytes=LIMIT)
    driver.pipe("in", "k" * LIMIT, None)
    assert driver.read("app-s-changelog") == [("k" * LIMIT, None)]


def test_the_default_limit_is_what_librdkafkas_default_message_max_bytes_allows() -> None:
    assert DEFAULT_MAX_CHANGELOG_RECORD_BYTES == 1_000_000 - 100
    topology = Topology("app")
    _table(topology)
    driver = TopologyTestDriver(topology, production_error_handler=ErrorHandler.SKIP)
    driver.pipe("in", "k", "v" * (DEFAULT_MAX_CHANGELOG_RECORD_BYTES - 1))
    driver.pipe("in", "k", "w" * DEFAULT_MAX_CHANGELOG_RECORD_BYTES)
    assert driver.store("s").get("k") == "v" * (DEFAULT_MAX_CHANGELOG_RECORD_BYTES - 1)
    assert driver.accounting.totals()[Outcome.SKIPPED] == 1


# -- an aggregate its serde cannot read ---------------------------------------------------------


class _VersionedInt:
    """An int serde whose bytes carry a version; it reads only its own version, as a serde
    changed between two deploys would."""

    name = "versioned-int"

    def __init__(self) -> None:
        self.version = 1

    def serialize(self, value: int | None) -> bytes | None:
        return None if value is None else f"v{self.version}:{value}".encode()

    def deserialize(self, data: bytes | None) -> int | None:
        if data is None:
            return None
        version, _, number = data.decode().partition(":")
        if version != f"v{self.version}":
            raise ValueError(f"expected version v{self.version}, got {version}")
        return int(number)


def _summing(handler: ErrorHandler) -> tuple[TopologyTestDriver, _VersionedInt]:
    serde = _VersionedInt()
    topology = Topology("app")
    (
        topology.stream("in", key_serde=STR, value_serde=serdes.IntSerde())
        .group_by_key()
        .aggregate(lambda: 0, lambda _k, v, total: total + v, value_serde=serde, name="sum")
        .to_stream()
        .to("out")
    )
    driver = TopologyTestDriver(topology, processing_error_handler=handler)
    driver.pipe("in", "a", 1)
    driver.pipe("in", "b", 2)
    serde.version = 2  # the new deploy: "a" and "b" hold values it cannot read
    return driver, serde


def test_an_unreadable_aggregate_under_fail_names_the_store_and_serde() -> None:
    driver, _ = _summing(ErrorHandler.FAIL)
    with pytest.raises(RecordError) as raised:
        driver.pipe("in", "a", 5)
    message = str(raised.value)
    assert "record in[0]@2" in message
    assert "operator 'sum'" in message and "StoredValueError" in message
    assert "store 'sum'" in message and "versioned-int" in message and "'a'" in message
    assert "processing_error_handler" in message


@pytest.mark.parametrize("handler", [ErrorHandler.SKIP, ErrorHandler.DEAD_LETTER])
def test_an_unreadable_aggregate_is_kept_and_every_record_of_its_key_is_handled(
    handler: ErrorHandler,
) -> None:
    driver, serde = _summing(handler)
    driver.read_records("out")
    driver.pipe("in", "a", 5)
    driver.pipe("in", "c", 7)  # a new key is fine
    driver.pipe("in", "a", 6)
    assert [(r.key, r.value) for r in driver.read_records("out")] == [(b"c", b"v2:7")]
    outcome = Outcome.SKIPPED if handler is ErrorHandler.SKIP else Outcome.DEAD_LETTERED
    assert driver.accounting.committed == {
        (Outcome.OUTPUT, ""): 3,
        (outcome, "processing"): 2,
    }
    serde.version = 1  # what "a" holds is what the old deploy wrote: untouched
    assert driver.store("sum").get("a") == 1
    dead = driver.read_records(DLQ)
    if handler is ErrorHandler.SKIP:
        assert dead == []
        return
    assert [(r.key, dict(r.headers or ())[HEADER_OFFSET]) for r in dead] == [
        (b"a", b"2"),
        (b"a", b"4"),
    ]
    headers = dict(dead[0].headers or ())
    assert headers[HEADER_STAGE] == b"processing"
    assert headers[HEADER_TYPE] == b"StoredValueError"
    assert headers[HEADER_OPERATOR] == b"sum"
