"""The time index and the timer store on their own: due groups one time at a time, a cursor
past what was consumed (whose removal reaches the backend only at the checkpoint), entries
added behind the cursor still found, and `take_due` firing in order and leaving what its caller
did not take."""

from __future__ import annotations

import pytest

from processor.errors import ChangelogRecordTooLargeError
from processor.serdes import BytesSerde
from processor.state.cache import StoreCache
from processor.state.memory import InMemoryBackend
from processor.state.time_index import STREAM, WALL, TimeIndex, index_entry, parse_entry
from processor.state.timer_store import TimerStore, parse_ref, timer_ref


def index() -> tuple[TimeIndex, InMemoryBackend]:
    backend = InMemoryBackend(["t"])
    return TimeIndex(backend, "t"), backend


def checkpoint(idx: TimeIndex, backend: InMemoryBackend) -> None:
    """What a commit does with the index: its pending entries and its removals reach the
    backend."""
    idx.write()
    backend.write({"t": [(entry, None) for entry in idx.take_removed()]}, {})


def consume(idx: TimeIndex, clock: bytes, now: int) -> list[tuple[int, bytes]]:
    group = idx.due_group(clock, now)
    for _, _, entry in group:
        idx.remove(entry)
    if group:
        idx.consumed(clock, max(entry for _, _, entry in group))
    return [(at, ref) for at, ref, _ in group]


def test_entries_round_trip_and_sort_by_clock_then_time() -> None:
    entry = index_entry(WALL, 2**40, b"ref")
    assert parse_entry(entry) == (WALL, 2**40, b"ref")
    entries = [index_entry(c, at, b"r") for c in (WALL, STREAM) for at in (256, 1, 0)]
    assert [parse_entry(e)[:2] for e in sorted(entries)] == [
        (STREAM, 0),
        (STREAM, 1),
        (STREAM, 256),
        (WALL, 0),
        (WALL, 1),
        (WALL, 256),
    ]


def test_a_due_group_is_the_oldest_time_due_and_consuming_moves_the_cursor() -> None:
    idx, backend = index()
    idx.add(STREAM, 7, b"c")
    idx.add(STREAM, 5, b"b")
    idx.add(STREAM, 5, b"a")
    idx.add(WALL, 1, b"w")
    idx.write()  # a commit: in the backend from now on
    assert idx.due_group(STREAM, 4) == []
    assert idx.first(STREAM) == 5 and idx.first(WALL) == 1
    assert consume(idx, STREAM, 9) == [(5, b"a"), (5, b"b")]  # one time at a time
    # Removed entries stay in the backend until the checkpoint; the cursor skips them.
    assert len(list(backend.range("t"))) == 4
    assert idx.first(STREAM) == 7
    assert consume(idx, STREAM, 6) == []
    assert consume(idx, STREAM, 9) == [(7, b"c")]
    assert idx.first(STREAM) is None and idx.first(WALL) == 1
    checkpoint(idx, backend)
    assert [parse_entry(k) for k, _ in backend.range("t")] == [(WALL, 1, b"w")]


def test_entries_added_behind_the_cursor_are_still_found() -> None:
    idx, backend = index()
    idx.add(STREAM, 5, b"a")
    idx.add(STREAM, 9, b"z")
    idx.write()
    assert consume(idx, STREAM, 9) == [(5, b"a")]
    idx.add(STREAM, 3, b"late")  # earlier than the consumed group
    idx.add(STREAM, 5, b"0")  # same time as the consumed group, smaller ref
    assert idx.first(STREAM) == 3
    idx.write()  # written behind the cursor
    assert consume(idx, STREAM, 9) == [(3, b"late")]
    # Scanning from the start again finds the consumed entry (5, b"a") too, still in the backend
    # until the checkpoint: readers skip it, its timer being gone.
    assert consume(idx, STREAM, 9) == [(5, b"0"), (5, b"a")]
    assert consume(idx, STREAM, 9) == [(9, b"z")]
    checkpoint(idx, backend)
    assert list(backend.range("t")) == []


def test_an_entry_written_again_after_its_removal_survives_the_checkpoint() -> None:
    idx, backend = index()
    idx.add(STREAM, 5, b"a")
    assert consume(idx, STREAM, 9) == [(5, b"a")]
    idx.add(STREAM, 5, b"a")  # the same timer, set again at the same time
    idx.write()
    checkpoint(idx, backend)
    assert [parse_entry(k) for k, _ in backend.range("t")] == [(STREAM, 5, b"a")]
    assert consume(idx, STREAM, 9) == [(5, b"a")]


def test_pending_entries_keep_the_last_per_ref_and_forget_drops_them() -> None:
    idx, backend = index()
    idx.add(STREAM, 5, b"a")
    idx.add(WALL, 8, b"a")
    idx.add(STREAM, 6, b"b")
    idx.forget(b"b")
    idx.write()
    assert [parse_entry(k) for k, _ in backend.range("t")] == [(WALL, 8, b"a")]


def timers() -> TimerStore:
    return TimerStore(StoreCache(InMemoryBackend(["t"]), "t"), BytesSerde())


def test_timers_fire_by_time_then_key_bytes_then_name_and_list_by_key_bytes() -> None:
    store = timers()
    # Keys of different lengths: the store's own order (length first) is not key byte order.
    for key, name in [(b"b", "x"), (b"ab", "y"), (b"ab", "x"), (b"a\x00\x00", "x"), (b"", "z")]:
        store.set(key, name, STREAM, 5)
    store.set(b"zz", "x", STREAM, 4)
    assert [(k, n) for k, n, _, _ in store.all()] == [
        (b"", "z"),
        (b"a\x00\x00", "x"),
        (b"ab", "x"),
        (b"ab", "y"),
        (b"b", "x"),
        (b"zz", "x"),
    ]
    assert [(k, n, at) for k, n, at in store.take_due(STREAM, 5)] == [
        (b"zz", "x", 4),
        (b"", "z", 5),
        (b"a\x00\x00", "x", 5),
        (b"ab", "x", 5),
        (b"ab", "y", 5),
        (b"b", "x", 5),
    ]


def test_a_key_that_is_a_prefix_of_another_keeps_its_own_timers() -> None:
    assert timer_ref(b"a", "bc") != timer_ref(b"ab", "c")
    assert parse_ref(timer_ref(b"a", "bc")) == (b"a", "bc")
    store = timers()
    store.set(b"a", "bc", STREAM, 1)
    store.set(b"ab", "c", WALL, 2)
    assert store.get(b"a", "bc") == (STREAM, 1) and store.get(b"ab", "c") == (WALL, 2)
    store.cancel(b"a", "bc")
    assert list(store.all()) == [(b"ab", "c", "wall", 2)]


def test_replaced_and_cancelled_timers_do_not_fire_at_their_old_time() -> None:
    store = timers()
    store.set(b"k", "a", STREAM, 5)
    store.set(b"k", "b", STREAM, 5)
    store.set(b"k", "c", STREAM, 5)
    store.index.spill()  # their entries at 5 are in the backend
    store.set(b"k", "a", STREAM, 8)  # moved
    store.set(b"k", "b", WALL, 5)  # same time, other clock
    store.cancel(b"k", "c")
    assert store.next_due(STREAM) == 5  # the stale entries are still indexed
    assert list(store.take_due(STREAM, 7)) == []
    assert list(store.take_due(STREAM, 8)) == [(b"k", "a", 8)]
    assert list(store.take_due(WALL, 5)) == [(b"k", "b", 5)]
    assert store.next_due(STREAM) is None and list(store.all()) == []


def test_take_due_stopped_early_leaves_the_rest_for_the_next_call() -> None:
    store = timers()
    for key in (b"a", b"b", b"c"):
        store.set(key, "t", STREAM, 3)
    store.set(b"d", "t", STREAM, 4)
    due = store.take_due(STREAM, 10)
    assert next(due) == (b"a", "t", 3)
    due.close()  # the caller's function raised
    assert store.get(b"a", "t") is None  # taken: removed before its function ran
    assert [k for k, _, _, _ in store.all()] == [b"b", b"c", b"d"]
    assert [k for k, _, _ in store.take_due(STREAM, 10)] == [b"b", b"c", b"d"]


def test_a_timer_whose_key_does_not_fit_a_changelog_record_is_refused() -> None:
    store = timers()
    store.limit_changelog("app-op-timers-changelog", 40)
    store.set(b"k" * 20, "t", STREAM, 1)
    with pytest.raises(ChangelogRecordTooLargeError):
        store.set(b"k" * 30, "t", STREAM, 1)
    assert [k for k, _, _, _ in store.all()] == [b"k" * 20]
