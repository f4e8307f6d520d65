"""The time index keeps the entries it adds in memory across commits, up to a limit
(`processor.state.time_index`): what fires or is replaced before it is written never reaches
the backend, the backend says when its index is partial, and whoever opens a timer store after a
crash, an aborted transaction or a close derives the missing entries again, so no timer is lost
and none fires twice."""

from __future__ import annotations

from typing import Any
from unittest import mock

from hypothesis import given, note, settings
from hypothesis import strategies as st

from processor.serdes import BytesSerde
from processor.state import timer_store as timer_store_module
from processor.state.budget import MemoryBudget
from processor.state.memory import InMemoryBackend
from processor.state.task_stores import TaskStores
from processor.state.time_index import PARTIAL, STREAM, TimeIndex, index_entry
from processor.state.timer_store import TimerStore
from processor.topology.graph import StoreKind, StoreSpec

STORE = "t"
SPECS = (StoreSpec(STORE, BytesSerde(), BytesSerde(), StoreKind.TIMERS),)


class KeptBackend(InMemoryBackend):
    """A backend that outlives the task closing it, as a store directory does."""

    def close(self) -> None:
        pass


def keys_of(backend: InMemoryBackend) -> list[bytes]:
    return [key for key, _ in backend.range(STORE)]


def test_entries_stay_in_memory_up_to_the_limit_and_the_backend_says_so() -> None:
    backend = InMemoryBackend([STORE])
    index = TimeIndex(backend, STORE, memory_entries=3)
    index.add(STREAM, 5, b"a")
    index.add(STREAM, 6, b"b")
    index.write()
    assert keys_of(backend) == [PARTIAL]
    index.add(STREAM, 7, b"c")
    index.add(STREAM, 8, b"d")  # four: more than the index keeps
    index.write()
    assert keys_of(backend) == [
        index_entry(STREAM, at, ref)
        for at, ref in zip((5, 6, 7, 8), (b"a", b"b", b"c", b"d"), strict=True)
    ]
    assert TimeIndex(backend, STORE, memory_entries=3).first(STREAM) == 5


def test_a_group_has_stored_and_kept_entries_of_its_time_in_entry_order() -> None:
    backend = InMemoryBackend([STORE])
    index = TimeIndex(backend, STORE, memory_entries=10)
    index.add(STREAM, 5, b"b")
    index.add(STREAM, 5, b"d")
    index.spill()
    index.add(STREAM, 5, b"c")
    index.add(STREAM, 5, b"a")
    index.add(STREAM, 4, b"z")
    assert [ref for _, ref, _ in index.due_group(STREAM, 4)] == [b"z"]
    index.remove(index_entry(STREAM, 4, b"z"))
    index.consumed(STREAM, index_entry(STREAM, 4, b"z"))
    group = index.due_group(STREAM, 9)
    assert [ref for _, ref, _ in group] == [b"a", b"b", b"c", b"d"]
    index.remove(group[0][2])  # its caller stopped after one
    assert [ref for _, ref, _ in index.due_group(STREAM, 9)] == [b"b", b"c", b"d"]


def open_timers(backend: InMemoryBackend) -> tuple[TaskStores, TimerStore]:
    stores = TaskStores(backend, SPECS, {STORE: "app-t-changelog"}, memory=MemoryBudget(1 << 24))
    timers = stores.stores[STORE]
    assert isinstance(timers, TimerStore)
    return stores, timers


def commit(stores: TaskStores) -> None:
    stores.flush(lambda _topic, _key, _value: None)
    stores.checkpoint({})


KEYS = st.sampled_from([b"a", b"b", b"ab", b"c"])
NAMES = st.sampled_from(["x", "y"])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, NAMES, st.integers(0, 30)),
        st.tuples(st.just("cancel"), KEYS, NAMES),
        st.tuples(st.just("fire"), st.integers(0, 30)),
        st.tuples(st.sampled_from(["commit", "crash", "abort", "close"])),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(OPERATIONS, st.sampled_from([0, 1, 3, 1000]))
def test_timers_survive_crashes_aborts_and_closes_with_entries_in_memory(
    operations: list[tuple[Any, ...]], memory_entries: int
) -> None:
    """Against a model: a crash or an aborted transaction goes back to the last commit, a
    close commits first; due timers fire by time, key bytes, name, each once."""
    note(f"{memory_entries=}")
    backend = KeptBackend([STORE])
    with mock.patch.object(timer_store_module, "MEMORY_ENTRIES", memory_entries):
        stores, timers = open_timers(backend)
        live: dict[tuple[bytes, str], int] = {}
        committed: dict[tuple[bytes, str], int] = {}
        for operation in operations:
            kind = operation[0]
            if kind == "set":
                _, key, name, at = operation
                timers.set(key, name, STREAM, at)
                live[(key, name)] = at
            elif kind == "cancel":
                _, key, name = operation
                timers.cancel(key, name)
                live.pop((key, name), None)
            elif kind == "fire":
                now = operation[1]
                due = sorted((at, key, name) for (key, name), at in live.items() if at <= now)
                fired = [(at, key, name) for key, name, at in timers.take_due(STREAM, now)]
                assert fired == due
                for _, key, name in due:
                    del live[(key, name)]
            elif kind == "commit":
                commit(stores)
                committed = dict(live)
            else:
                if kind == "abort":  # the transaction failed: the worker closes the task
                    stores.drop()
                    stores.close()
                elif kind == "close":
                    commit(stores)
                    committed = dict(live)
                    stores.close()
                # "crash": the objects are gone, nothing written
                stores, timers = open_timers(backend)
                live = dict(committed)
            assert {(key, name): at for key, name, _, at in timers.all()} == live
        rest = sorted((at, key, name) for (key, name), at in live.items())
        assert [(at, key, name) for key, name, at in timers.take_due(STREAM, 10**9)] == rest
