"""A worker's task with an async operator (`processor.runtime.task`, real event loop, no broker):
it commits only the completed prefix of its partition, counts each record once with the outcome
of its call, and hands a failed call's record (as read) to the processing error handler."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from processor import Topology, serdes
from processor.ids import TaskId
from processor.runtime.async_runner import AsyncRunner
from processor.runtime.task import StreamTask, TaskOptions
from processor.topology.handling import Accounting, ErrorHandler, ErrorHandling, Outcome

DELAYS = {"slow": 0.08, "fast": 0.0, "bad": 0.0, "skip": 0.0}


@dataclass
class Message:
    _offset: int
    _value: bytes

    def topic(self) -> str:
        return "in"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, 1000 + self._offset)

    def headers(self) -> None:
        return None


class Emitter:
    def __init__(self) -> None:
        self.records: list[tuple[str, Any]] = []

    def emit(self, topic: str, key: Any, value: Any, *args: Any) -> None:
        self.records.append((topic, value))


HELD: set[str] = set()  # values whose calls wait until the test lets them go


async def call(value: str) -> str:
    await asyncio.sleep(DELAYS[value])
    while value in HELD:
        await asyncio.sleep(0.001)
    if value == "bad":
        raise ValueError("the service refused it")
    return value


def test_the_task_commits_the_completed_prefix_and_counts_each_record_once() -> None:
    topology = Topology("app")
    stream = topology.stream("in", key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde())
    stream.map_values_async(call, name="call").filter(lambda _k, v: v != "skip").to("out")
    [sub] = topology.subtopologies()
    accounting = Accounting()
    handling = ErrorHandling(processing=ErrorHandler.DEAD_LETTER, dead_letter_topic="dead")
    emitter = Emitter()
    runner = AsyncRunner([], [], max_in_flight=100)
    task = StreamTask(
        TaskId(0, 0), sub, emitter, TaskOptions(handling=handling, accounting=accounting)
    )
    task.async_runner = runner
    try:
        task.start(None)
        HELD.add("slow")  # until the test lets it go, however busy the machine
        for offset, value in enumerate(["slow", "fast", "bad", "skip", "fast"]):
            task.process(Message(offset, value.encode()))
        time.sleep(0.03)
        runner.pump()
        assert emitter.records == []  # "slow" (offset 0) holds the rest back, in order
        assert task.take_offsets() == {("in", 0): 0}  # nothing past it is committed
        HELD.clear()
        deadline = time.monotonic() + 5
        while any(c.pending for c in task.async_channels.values()):
            assert time.monotonic() < deadline
            runner.pump()
            time.sleep(0.005)
        assert emitter.records == [
            ("out", b"slow"),
            ("out", b"fast"),
            ("dead", b"bad"),  # the record as read, with the operator's error in its headers
            ("out", b"fast"),
        ]
        assert task.take_offsets() == {("in", 0): 5}
        accounting.commit()
        totals = accounting.totals()
        assert totals[Outcome.OUTPUT] == 3
        assert totals[Outcome.FILTERED] == 1
        assert totals[Outcome.DEAD_LETTERED] == 1
    finally:
        HELD.clear()
        task.close()
        runner.close()
