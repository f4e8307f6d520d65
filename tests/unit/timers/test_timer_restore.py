"""Timers and TTL stores are state: what one task wrote to their changelogs, replayed elsewhere
into a fresh backend through `with_indexes` (as a restore or a standby applies it, in batches
of any size, or compacted), gives the same timers and the same expiring keys, with an index
rebuilt from the changelog alone (which carries no index entry): the timers that are due fire,
in order, and stale ones (replaced, cancelled, fired) do not; expired keys never come back.

The writing task is a `TopologyTestDriver` run on generated operations (checked against the
reference as in the property tests); its changelog topics are read from the driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from hypothesis import given, note
from hypothesis import strategies as st

from processor import Topology
from processor.serdes import BytesSerde, StringSerde
from processor.state.backend import Change
from processor.state.budget import MemoryBudget
from processor.state.indexing import backend_stores, unwrapped, with_indexes
from processor.state.memory import InMemoryBackend
from processor.state.task_stores import TaskStores
from processor.state.time_index import PARTIAL, STREAM, U64, WALL
from processor.state.timer_store import TimerStore
from processor.state.ttl_store import TtlKeyValueStore, expiry_store
from processor.testing import TopologyTestDriver
from processor.topology.graph import StoreKind, StoreSpec
from tests.unit.timers import harness
from tests.unit.timers.harness import run_timers, run_ttl
from tests.unit.timers.reference import kb
from tests.unit.timers.strategies import SETTINGS, TimerCase, TtlCase, timer_cases, ttl_cases

FAR = 2**62


def changelog(driver: TopologyTestDriver, topic: str) -> list[Change]:
    return [(r.key, r.value) for r in driver.read_records(topic) if r.key is not None]


def compacted(changes: Sequence[Change]) -> list[Change]:
    """What log compaction may leave: each key's last change, tombstones included."""
    last = dict(changes)
    return list(last.items())


def restore(
    topology: Topology, store: str, changes: Sequence[Change], cuts: Sequence[int]
) -> TaskStores:
    """A task's stores after replaying `changes` of `store`'s changelog, in batches split at
    `cuts`, into a fresh backend."""
    sub = topology.subtopologies(None)[0]
    backend = InMemoryBackend(backend_stores(sub.stores))
    restoring = with_indexes(backend, sub.stores)
    bounds = sorted({0, len(changes), *(c % (len(changes) + 1) for c in cuts)})
    for start, end in pairwise(bounds):
        restoring.write({store: list(changes[start:end])}, {})
    return TaskStores(unwrapped(restoring), sub.stores, sub.changelog_topics, memory=MEMORY)


MEMORY = MemoryBudget(1 << 24)
replays = st.tuples(st.booleans(), st.lists(st.integers(0, 1_000), max_size=4))


def fire_all(store: TimerStore, clock: bytes, now: int) -> list[tuple[str, str, int]]:
    return [(key.decode(), name, at) for key, name, at in store.take_due(clock, now)]


@SETTINGS
@given(timer_cases, replays)
def test_restored_timers_are_the_same_and_fire_the_same(
    case: TimerCase, replay: tuple[bool, list[int]]
) -> None:
    note(repr(case))
    driver, model = run_timers(case)
    topology = harness.timer_topology(case.on_fire, case.fire_actions_limit)
    changes = changelog(driver, "tmr-op-timers-changelog")
    assert all(key[:1] == b"T" for key, _ in changes)  # no index entry in the changelog
    is_compacted, cuts = replay
    stores = restore(topology, "op-timers", compacted(changes) if is_compacted else changes, cuts)
    restored = stores.stores["op-timers"]
    assert isinstance(restored, TimerStore)
    assert list(restored.all()) == driver.timers("op") == model.pending()
    # Whatever is due fires (a stream timer a wall firing set may be due already), in order;
    # what was replaced, cancelled or fired does not.
    stream_time = model.clocks.stream_time
    due_now = [t for t in model.due_order("stream") if t[2] <= stream_time]
    assert fire_all(restored, STREAM, stream_time) == due_now
    assert fire_all(restored, STREAM, FAR) == model.due_order("stream")[len(due_now) :]
    assert fire_all(restored, WALL, FAR) == model.due_order("wall")
    assert list(restored.all()) == []


@SETTINGS
@given(ttl_cases, replays, st.integers(0, 40))
def test_a_restored_ttl_store_shows_and_expires_the_same_keys(
    case: TtlCase, replay: tuple[bool, list[int]], later: int
) -> None:
    note(repr(case))
    driver, model = run_ttl(case)
    changes = changelog(driver, "ttl-s-changelog")
    is_compacted, cuts = replay
    topology = harness.ttl_topology(case.ttl_ms, case.clock, on_expire=case.on_expire)
    stores = restore(topology, "s", compacted(changes) if is_compacted else changes, cuts)
    restored = stores.stores["s"]
    assert isinstance(restored, TtlKeyValueStore)
    now = model.now
    restored.now = lambda: now
    # Expired keys were removed with a tombstone: not even the backend has them.
    assert {k.decode() for k, _ in stores.backend.range("s")} == set(model.entries)
    assert dict(restored.all()) == model.visible() == dict(driver.store("s").all())
    # Later, the keys expire in order of expiry time, then key bytes, each once.
    expired: list[tuple[str, Any]] = []
    restored.on_expired = lambda key, data: expired.append(
        (restored.key_of(key), restored.value_of(data))
    )
    probe = now + later
    expected = sorted(
        (w + case.ttl_ms, kb(k), k, v)
        for k, (v, w) in model.entries.items()
        if w + case.ttl_ms <= probe
    )
    restored.expire(probe, 1_000)
    assert expired == [(k, v) for _, _, k, v in expected]
    restored.expire(probe, 1_000)
    assert len(expired) == len(expected)


def test_the_restore_derives_the_index_a_running_task_wrote() -> None:
    """Only timer entries reach the changelog; replayed through `with_indexes`, they give the
    backend the running task checkpointed, index entries included."""
    specs = (StoreSpec("t", StringSerde(), BytesSerde(), StoreKind.TIMERS),)
    backend = InMemoryBackend(backend_stores(specs))
    stores = TaskStores(backend, specs, {"t": "app-t-changelog"}, memory=MEMORY)
    timers = stores.stores["t"]
    assert isinstance(timers, TimerStore)
    timers.set(b"k", "a", STREAM, 5)
    timers.set(b"k", "b", WALL, 7)
    timers.set(b"j", "a", STREAM, 3)
    written: list[Change] = []
    stores.flush(lambda _topic, key, value: written.append((key, value)))
    stores.checkpoint({})
    # The running task keeps these index entries in memory, and says so in the backend, until
    # it writes them (as when it closes after a commit).
    assert backend.get("t", PARTIAL) == b""
    assert [key[:1] for key, _ in backend.range("t")] == [b"P", b"T", b"T", b"T"]
    timers.index.spill()
    assert sorted(key[:1] for key, _ in written) == [b"T"] * 3
    restored = InMemoryBackend(backend_stores(specs))
    with_indexes(restored, specs).write({"t": written}, {})
    assert list(restored.range("t")) == list(backend.range("t"))
    first = restored.range("t", b"I", b"J")
    assert [key for key, _ in first][:1] == [b"Is" + U64.pack(3) + b"\x00\x00\x00\x01ja"]


def test_a_restored_ttl_store_is_indexed_by_expiry_with_the_newest_write_time() -> None:
    specs = (StoreSpec("s", StringSerde(), BytesSerde(), ttl_ms=10),)
    backend = InMemoryBackend(backend_stores(specs))
    stores = TaskStores(backend, specs, {"s": "app-s-changelog"}, memory=MEMORY)
    store = stores.stores["s"]
    assert isinstance(store, TtlKeyValueStore)
    now = [4]
    store.now = lambda: now[0]
    store.put("a", b"1")
    now[0] = 6
    store.put("b", b"2")
    written: list[Change] = []
    stores.flush(lambda _topic, key, value: written.append((key, value)))
    stores.checkpoint({})
    assert [(k, v[:8] if v else v) for k, v in written] == [
        (b"a", U64.pack(4)),
        (b"b", U64.pack(6)),
    ]
    restored = InMemoryBackend(backend_stores(specs))
    with_indexes(restored, specs).write({"s": written}, {})
    index = expiry_store("s")
    assert dict(restored.range(index)) == {
        b"Is" + U64.pack(14) + b"a": b"",
        b"Is" + U64.pack(16) + b"b": b"",
        b"N": U64.pack(6),
    }
