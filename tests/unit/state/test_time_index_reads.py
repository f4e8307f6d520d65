"""How the time index reads (`processor.state.time_index`): pending entries are answered from
memory and written only at a commit (never, when they are gone by then), scans read ahead, and
whatever the index remembers between scans is never later than the truth."""

from __future__ import annotations

from processor.state.memory import InMemoryBackend
from processor.state.time_index import READ_AHEAD, STREAM, WALL, TimeIndex, index_entry

STORE = "timers"


def make_index() -> tuple[TimeIndex, InMemoryBackend]:
    backend = InMemoryBackend([STORE])
    return TimeIndex(backend, STORE), backend


def stored(backend: InMemoryBackend) -> list[bytes]:
    return [key for key, _ in backend.range(STORE)]


def checkpoint(index: TimeIndex, backend: InMemoryBackend) -> None:
    """What a commit does with the index's removals."""
    backend.write({STORE: [(entry, None) for entry in index.take_removed()]}, {})


def drain(index: TimeIndex, clock: bytes, now: int) -> list[tuple[int, bytes]]:
    """Every (time, ref) due by `now`, group by group, as a timer store consumes them."""
    fired: list[tuple[int, bytes]] = []
    while group := index.due_group(clock, now):
        for at, ref, entry in group:
            index.remove(entry)
            fired.append((at, ref))
        index.consumed(clock, group[-1][2])
    return fired


def test_first_sees_pending_entries_without_writing_them() -> None:
    index, backend = make_index()
    index.add(STREAM, 500, b"a")
    index.add(STREAM, 300, b"b")
    assert index.first(STREAM) == 300
    assert index.first(WALL) is None
    assert stored(backend) == []  # not before a commit (write) or a due scan
    index.write()
    assert stored(backend) == [index_entry(STREAM, 300, b"b"), index_entry(STREAM, 500, b"a")]
    assert index.first(STREAM) == 300


def test_a_due_entry_in_memory_is_served_from_memory_and_never_written() -> None:
    index, backend = make_index()
    index.add(STREAM, 500, b"a")
    assert index.due_group(STREAM, 499) == []
    assert drain(index, STREAM, 500) == [(500, b"a")]
    index.write()
    assert stored(backend) == []  # neither written nor deleted: it never reached the backend
    assert index.take_removed() == []


def test_a_forgotten_entry_is_due_at_most_once_more() -> None:
    index, _ = make_index()
    index.add(STREAM, 100, b"a")
    index.forget(b"a")
    assert index.first(STREAM) in (None, 100)  # earlier than the truth is allowed, once
    assert index.due_group(STREAM, 100) == []
    assert index.first(STREAM) is None


def test_a_replaced_pending_entry_leaves_only_its_last_time() -> None:
    index, _ = make_index()
    index.add(STREAM, 100, b"a")
    index.add(STREAM, 900, b"a")
    assert drain(index, STREAM, 899) == []
    assert index.first(STREAM) == 900
    assert drain(index, STREAM, 900) == [(900, b"a")]


def test_entries_come_in_order_across_read_aheads_and_commits() -> None:
    index, backend = make_index()
    count = 3 * READ_AHEAD + 7
    for i in range(count):
        index.add(STREAM, 1000 + i, b"r%05d" % i)
    index.write()
    fired: list[tuple[int, bytes]] = []
    for now in range(1000, 1000 + count, 50):
        fired += drain(index, STREAM, now)
        assert index.first(STREAM) == now + 1
        checkpoint(index, backend)
    fired += drain(index, STREAM, 10**6)
    assert fired == [(1000 + i, b"r%05d" % i) for i in range(count)]
    assert index.first(STREAM) is None
    checkpoint(index, backend)
    assert stored(backend) == []


def test_a_group_larger_than_the_read_ahead_comes_whole() -> None:
    index, _ = make_index()
    refs = [b"r%05d" % i for i in range(2 * READ_AHEAD + 1)]
    for ref in refs:
        index.add(STREAM, 7, ref)
    index.add(STREAM, 8, b"later")
    index.write()
    group = index.due_group(STREAM, 100)
    assert [ref for _, ref, _ in group] == refs
    index.consumed(STREAM, group[-1][2])
    assert index.due_group(STREAM, 100) == [(8, b"later", index_entry(STREAM, 8, b"later"))]


def test_an_entry_written_behind_the_read_ahead_is_found() -> None:
    index, backend = make_index()
    for i in range(10):
        index.add(STREAM, 100 + i, b"r%d" % i)
    index.write()
    assert drain(index, STREAM, 102) == [(100, b"r0"), (101, b"r1"), (102, b"r2")]
    checkpoint(index, backend)
    assert index.first(STREAM) == 103  # read ahead: the next stored entries are known
    index.add(STREAM, 50, b"early")  # due already, behind where consumption got
    index.write()
    assert index.first(STREAM) == 50
    assert drain(index, STREAM, 103) == [(50, b"early"), (103, b"r3")]


def test_a_group_not_consumed_comes_again() -> None:
    index, _ = make_index()
    for ref in (b"a", b"b", b"c"):
        index.add(WALL, 10, ref)
    index.write()
    first = index.due_group(WALL, 10)
    index.remove(first[0][2])  # the caller stopped after one (its function raised)
    assert index.due_group(WALL, 10) == first
    assert index.first(WALL) == 10


def test_removals_wait_for_the_commit_and_an_entry_indexed_again_stays() -> None:
    index, backend = make_index()
    for ref in (b"a", b"b"):
        index.add(STREAM, 5, ref)
    index.write()
    assert drain(index, STREAM, 5) == [(5, b"a"), (5, b"b")]
    assert len(stored(backend)) == 2  # removed at the checkpoint, not before
    index.add(STREAM, 5, b"b")  # set again, as it was, before the commit
    index.write()
    checkpoint(index, backend)
    assert stored(backend) == [index_entry(STREAM, 5, b"b")]
