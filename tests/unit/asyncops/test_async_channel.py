"""A task's channel to an async operator's calls (`processor.runtime.async_channel`), on a real
worker event loop (`AsyncRunner`): results are released in offset order when the operator is
ordered (and always under exactly-once), as they come otherwise, one call per key at a time
when unordered, within the concurrency; the task commits only the completed prefix; records
beyond the concurrency wait and ask for a pause."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest

from processor.runtime.async_channel import AsyncChannel, Slot
from processor.runtime.async_runner import AsyncRunner
from processor.topology.async_ops import AsyncKind, AsyncProcessor, AsyncSpec
from processor.topology.record import RecordContext

# value -> how long its call takes (s): later records finish first.
DELAYS = {"a": 0.06, "b": 0.03, "c": 0.0, "d": 0.01}


@pytest.fixture
def runner() -> Iterator[AsyncRunner]:
    runner = AsyncRunner([], [], max_in_flight=100)
    yield runner
    runner.close()


class Harness:
    def __init__(self, runner: AsyncRunner, *, ordered: bool, exactly_once: bool, limit: int):
        self.runner = runner
        self.released: list[tuple[int, str]] = []
        self.running: dict[str, int] = {}
        self.overlapped = False
        self.held: set[str] = set()  # keys whose calls wait until the test lets them go
        self.key = ""  # of the record being read
        spec = AsyncSpec(AsyncKind.MAP_VALUES, concurrency=limit, ordered=ordered)
        self.channel = AsyncChannel(
            runner,
            spec,
            "in",
            0,
            exactly_once=exactly_once,
            current=lambda: (self.key.encode(), None, 0, None),
            release=self.release,
        )
        self.context = RecordContext(topic="in", partition=0)
        self.processor = AsyncProcessor(
            "call", spec, self.call, self.context, self.channel, None, None
        )

    async def call(self, value: str) -> str:
        key = value[0]
        self.running[key] = self.running.get(key, 0) + 1
        self.overlapped = self.overlapped or self.running[key] > 1
        await asyncio.sleep(DELAYS[key])
        while key in self.held:
            await asyncio.sleep(0.001)
        self.running[key] -= 1
        return value

    def release(self, channel: AsyncChannel, slot: Slot) -> None:
        self.released.append((slot.offset, slot.outcome))

    def read(self, values: list[str]) -> None:
        for value in values:
            self.context.offset += 1
            self.key = value[0]
            self.processor.process(value[0], value)

    def pump_until(self, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 5
        while not condition():
            assert time.monotonic() < deadline
            self.runner.pump()
            time.sleep(0.001)

    def settle(self) -> None:
        deadline = time.monotonic() + 5
        while self.channel.pending:
            assert time.monotonic() < deadline
            self.runner.pump()
            time.sleep(0.001)


def test_ordered_results_come_in_offset_order_and_the_prefix_is_committed(
    runner: AsyncRunner,
) -> None:
    harness = Harness(runner, ordered=True, exactly_once=False, limit=8)
    harness.held.add("a")  # a1 runs until the test lets it go, however busy the machine
    harness.context.offset = -1
    harness.read(["a1", "b1", "c1", "d1"])
    assert harness.channel.committable() == 0
    time.sleep(0.04)  # b, c and d are done (on a quiet machine), a is not
    runner.pump()
    assert harness.released == [] and harness.channel.committable() == 0
    harness.held.clear()
    harness.settle()
    assert harness.released == [(0, "a1"), (1, "b1"), (2, "c1"), (3, "d1")]
    assert harness.channel.committable() == 4


def test_unordered_results_come_as_they_arrive_one_call_per_key_at_a_time(
    runner: AsyncRunner,
) -> None:
    harness = Harness(runner, ordered=False, exactly_once=False, limit=8)
    harness.held.add("a")  # a1 runs until c1 and c2 are out, however busy the machine
    harness.context.offset = -1
    harness.read(["a1", "c1", "a2", "c2"])
    # c2 starts once c1 is back (one call per key); both come out while a1 still runs
    harness.pump_until(lambda: len(harness.released) == 2)
    assert [value for _, value in harness.released] == ["c1", "c2"]
    assert harness.channel.committable() == 0  # a1 is not done: nothing past it commits
    harness.held.clear()
    harness.settle()
    assert [value for _, value in harness.released] == ["c1", "c2", "a1", "a2"]
    assert not harness.overlapped and harness.channel.committable() == 4


def test_unordered_under_exactly_once_still_releases_in_offset_order(
    runner: AsyncRunner,
) -> None:
    harness = Harness(runner, ordered=False, exactly_once=True, limit=8)
    harness.context.offset = -1
    harness.read(["a1", "c1", "d1"])
    harness.settle()
    assert [offset for offset, _ in harness.released] == [0, 1, 2]


def test_records_beyond_the_concurrency_wait_and_ask_for_a_pause(runner: AsyncRunner) -> None:
    harness = Harness(runner, ordered=True, exactly_once=False, limit=2)
    harness.context.offset = -1
    harness.read(["b1", "b2", "b3", "b4"])
    assert harness.channel.running == 2 and harness.channel.over_limit()
    harness.settle()
    assert not harness.channel.over_limit()
    assert [value for _, value in harness.released] == ["b1", "b2", "b3", "b4"]


def test_close_cancels_the_calls_and_drops_what_they_would_have_released(
    runner: AsyncRunner,
) -> None:
    harness = Harness(runner, ordered=True, exactly_once=False, limit=8)
    harness.context.offset = -1
    harness.read(["a1"])
    harness.channel.close()
    time.sleep(0.08)
    runner.pump()
    assert harness.released == [] and runner.in_flight == 0
