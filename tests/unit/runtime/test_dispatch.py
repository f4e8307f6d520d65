"""A consumed batch handed to tasks a run of records at a time (`processor.runtime.dispatch`,
`StreamTask.process_run`) ends exactly as handing each record to `StreamTask.process`: the same
outputs in the same order, the same next offsets, the same counts per outcome; errors in the
batch go to the consume error handler, and a broker error stops the batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor import ErrorHandler, Topology, serdes
from processor.errors import BrokerError
from processor.ids import TaskId
from processor.runtime.dispatch import dispatch
from processor.runtime.task import StreamTask, TaskOptions
from processor.topology.handling import Accounting, ErrorHandling

STR = serdes.StringSerde()


class Message:
    """A consumed record or error, as the tasks read it."""

    def __init__(
        self, topic: str, partition: int, offset: int, value: bytes | None, error: Any = None
    ) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset
        self._value, self._error = value, error

    def error(self) -> Any:
        return self._error

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k%d" % (self._offset % 3)

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, 1000 + self._offset)

    def headers(self) -> None:
        return None


class Emitted:
    def __init__(self, fail_on: bytes | None = None) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None, int]] = []
        self.fail_on = fail_on

    def emit(self, topic: str, key: bytes | None, value: bytes | None, ts: int, *_: Any) -> None:
        if value is not None and value == self.fail_on:
            raise BrokerError("the producer is fenced")
        self.records.append((topic, key, value, ts))


def _tasks(emitted: Emitted, accounting: Accounting) -> dict[tuple[str, int], StreamTask]:
    topology = Topology("dispatch")
    (
        topology.stream("in", key_serde=STR, value_serde=STR)
        .filter(lambda _k, v: not v.endswith("0"), name="drop-tens")
        .map_values(lambda v: str(100 // int(v)), name="divide")  # "0": ZeroDivisionError
        .to("out")
    )
    [sub] = topology.subtopologies("dispatch")
    options = TaskOptions(
        handling=ErrorHandling(processing=ErrorHandler.SKIP, deserialization=ErrorHandler.SKIP),
        accounting=accounting,
    )
    tasks = {}
    for partition in (0, 1):
        task = StreamTask(TaskId(0, partition), sub, emitted, options)
        task.start(None)
        tasks[("in", partition)] = task
    return tasks


values = st.sampled_from([b"1", b"7", b"10", b"0", b"x\xff", b"3"])
# Partition 2 has no task (a rebalance took it away): its records are left alone.
batches = st.lists(st.tuples(st.integers(0, 2), values), max_size=30)


def _messages(batch: list[tuple[int, bytes]]) -> list[Message]:
    """The records of `batch` (partition, value), every 7th an error instead."""
    offsets = {0: 0, 1: 0, 2: 0}
    messages = []
    for index, (partition, value) in enumerate(batch):
        if index % 7 == 6:
            messages.append(Message("", -1, -1, None, error="broker down"))
            continue
        messages.append(Message("in", partition, offsets[partition], value))
        offsets[partition] += 1
    return messages


@settings(max_examples=100, deadline=None)
@given(batch=batches)
def test_a_batch_ends_as_its_records_one_by_one(batch: list[tuple[int, bytes]]) -> None:
    messages = _messages(batch)

    one_by_one, one_accounting = Emitted(), Accounting()
    tasks = _tasks(one_by_one, one_accounting)
    errors_one: list[Any] = []
    for message in messages:
        if message.error() is not None:
            errors_one.append(message.error())
        elif (task := tasks.get((message.topic(), message.partition()))) is not None:
            task.process(message)

    batched, batch_accounting = Emitted(), Accounting()
    batch_tasks = _tasks(batched, batch_accounting)
    errors: list[Any] = []
    routes: dict[Any, Callable[[Any], None]] = {p: t.process for p, t in batch_tasks.items()}
    assert dispatch(messages, routes, errors.append, _never)

    assert batched.records == one_by_one.records
    assert errors == errors_one
    for partition, task in batch_tasks.items():
        assert task.take_offsets() == tasks[partition].take_offsets()
        assert task.processed == tasks[partition].processed
    batch_accounting.commit()
    one_accounting.commit()
    assert batch_accounting.totals() == one_accounting.totals()


def test_a_broker_error_stops_the_batch_with_the_records_before_it_done() -> None:
    emitted = Emitted(fail_on=b"50")  # the output of "2"
    tasks = _tasks(emitted, Accounting())
    messages = [Message("in", 0, n, v) for n, v in enumerate([b"1", b"4", b"2", b"5"])]
    failures: list[BrokerError] = []
    routes: dict[Any, Callable[[Any], None]] = {p: t.process for p, t in tasks.items()}
    assert not dispatch(messages, routes, _never, failures.append)
    assert [str(f) for f in failures] == ["the producer is fenced"]
    assert [r[2] for r in emitted.records] == [b"100", b"25"]
    assert tasks[("in", 0)].take_offsets() == {("in", 0): 2}  # "2" is read again
    assert tasks[("in", 0)].processed == 2


def test_another_route_gets_its_records_one_at_a_time() -> None:
    seen: list[int] = []
    messages = [Message("in", 0, n, b"1") for n in range(3)]
    routes = {("in", 0): lambda m: seen.append(m.offset())}
    assert dispatch(messages, routes, _never, _never)
    assert seen == [0, 1, 2]


def _never(*args: Any) -> None:
    pytest.fail(f"called with {args}")
