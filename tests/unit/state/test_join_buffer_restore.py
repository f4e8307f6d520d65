"""A stream-stream join's buffers and unmatched records come back from their changelogs: a
task restored from what the driver's changelogs hold, at the stream time it had checkpointed,
goes on exactly as the task that never stopped (matches with records from before the restart,
unmatched records emitted once, nothing twice)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from processor import Topology
from processor.serdes import IntSerde, StringSerde
from processor.state.backend import Change
from processor.state.budget import MemoryBudget
from processor.state.indexing import backend_stores, with_indexes
from processor.state.memory import InMemoryBackend
from processor.state.task_stores import TaskStores
from processor.testing import TopologyTestDriver
from processor.topology.clock import StreamClock
from processor.topology.processors import instantiate
from processor.topology.record import RecordContext
from processor.windows import JoinWindows

Record = tuple[str, str, int, int]  # side, key, value, ts


class _Outputs:
    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes | None, int]] = []

    def emit(
        self, topic: str, key: Any, value: Any, timestamp: int, headers: Any, origin: Any = None
    ) -> None:
        if topic == "out":
            self.records.append((key, value, timestamp))


def _topology(how: str) -> Topology:
    t = Topology("restore")
    left = t.stream("left", key_serde=StringSerde(), value_serde=IntSerde())
    right = t.stream("right", key_serde=StringSerde(), value_serde=IntSerde())
    windows = JoinWindows(before_ms=6, after_ms=4, grace_ms=3)
    left.join(right, lambda a, b: f"{a}|{b}", window=windows, how=how, name="j").to(
        "out", value_serde=StringSerde()
    )
    return t


def _records(seed: int) -> list[Record]:
    rng = random.Random(seed)
    now, records = 0, []
    for value in range(60):
        now += rng.choice((0, 1, 2, 3))
        ts = max(0, now - rng.choice((0, 0, 2, 5, 12)))
        records.append((rng.choice(("left", "right")), rng.choice("abc"), value, ts))
    return records


def _run(driver: TopologyTestDriver, records: list[Record]) -> list[Any]:
    out = []
    for side, key, value, ts in records:
        driver.pipe(side, key, value, timestamp=ts)
        out += [(r.key, r.value, r.timestamp) for r in driver.read_records("out")]
    return out


@pytest.mark.parametrize("how", ["inner", "left", "outer"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_join_restored_from_its_changelogs_goes_on_as_before(how: str, seed: int) -> None:
    records = _records(seed)
    cut = len(records) // 2
    whole = _run(TopologyTestDriver(_topology(how)), records)

    first = TopologyTestDriver(_topology(how))
    before = _run(first, records[:cut])
    [sub] = _topology(how).subtopologies()
    changelogs: dict[str, list[Change]] = {
        spec.name: [(r.key, r.value) for r in first.read_records(sub.changelog_topics[spec.name])]
        for spec in sub.stores
    }
    assert sorted(changelogs) == sorted(
        ["j-left-buffer", "j-right-buffer"] + ([] if how == "inner" else ["j-outer"])
    )
    backend = InMemoryBackend(backend_stores(sub.stores))
    with_indexes(backend, sub.stores).write(changelogs, {})  # what a restore writes
    stores = TaskStores(backend, sub.stores, sub.changelog_topics, memory=MemoryBudget(1 << 24))
    clock = StreamClock()
    clock.resume(first.stream_time("left"))
    outputs = _Outputs()
    context = RecordContext(partition=0)
    sources = instantiate(sub, context, outputs, dict(stores.stores), "0_0", clock=clock)
    for offset, (side, key, value, ts) in enumerate(records[cut:]):
        context.topic, context.offset, context.timestamp = side, offset, ts
        sources[side].process_bytes(key.encode(), IntSerde().serialize(value))
        if clock.stream_time >= clock.due_at:
            clock.fire()
    assert before + outputs.records == whole
    assert any(b"None" in value for _, value, _ in whole) == (how != "inner")
