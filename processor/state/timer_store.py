"""The timers of one `process()` operator in one task: a store of its own, changelogged and held
by standbys like any store, so timers survive restarts, failover and rebalances.

One column family and one changelog hold the timers; the index by time shares the column family
(`processor.state.time_index`) and is never changelogged. Layout (`len` is 4 bytes big-endian):

- timer: `b"T" + len + key + name` (name in UTF-8) -> `clock + at`: one timer per key and name,
  on the stream or wall clock (`time_index.STREAM`/`WALL`), due at `at` (8 bytes).
- index: `b"I" + clock + at + len + key + name` -> `b""`.
- `b"P"` -> `b""` while index entries are kept in memory only (`time_index.PARTIAL`): whoever
  opens the store then derives the index from the timer entries again.

Setting a timer writes its timer entry (through the cache) and indexes it; the entry of the time
it replaces is removed at once when the cache holds that time in memory (`StoreCache.swap`, no
backend read), otherwise it stays in the index until its time comes, when it no longer matches
the timer entry and is dropped. Firing deletes the timer entry first (a changelog tombstone, in
the same commit as what the firing writes and forwards), then calls the user's function, which
may set it again.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Generator, Iterator, Sequence
from typing import Any

from processor.errors import ChangelogRecordTooLargeError
from processor.serdes import Serde
from processor.state.backend import Change
from processor.state.cache import StoreCache
from processor.state.time_index import PARTIAL, U64, TimeIndex, index_entry, parse_entry
from processor.state.typed import NO_LIMIT

TIMER = b"T"
U32 = struct.Struct(">I")

MEMORY_ENTRIES = 20_000
"""Index entries a timer store keeps in memory across commits (about 200 bytes each): a timer
that fires or is replaced before it is written costs no write to RocksDB and no delete."""

_REBUILD_BATCH = 100_000

log = logging.getLogger("processor.timers")


def timer_ref(key: bytes, name: str) -> bytes:
    return U32.pack(len(key)) + key + name.encode()


def parse_ref(ref: bytes) -> tuple[bytes, str]:
    """(key, name) of a timer's reference."""
    (length,) = U32.unpack_from(ref)
    return ref[4 : 4 + length], ref[4 + length :].decode()


_CLOCK_AND_TIME = 2 + U64.size  # index entry bytes 1 to this: the timer's value


def timer_index_changes(changes: Sequence[Change]) -> list[Change]:
    """The index entries the timer entries among `changes` imply, for a restore to write with
    them (a deleted timer's entry stays; readers skip it)."""
    derived: list[Change] = []
    for stored, value in changes:
        if value is not None and stored[:1] == TIMER:
            derived.append((index_entry(value[:1], U64.unpack_from(value, 1)[0], stored[1:]), b""))
    return derived


def _complete_index(cache: StoreCache) -> None:
    """Derive the index from the timer entries when the backend says some of its entries were
    in memory only (a crash, or a task closed with uncommitted work)."""
    backend, store = cache.backend, cache.store
    if backend.get(store, PARTIAL) is None:
        return
    started = time.monotonic()
    count = 0
    batch: list[Change] = []
    for stored, value in backend.range(store, TIMER, b"U"):
        batch.append((stored, value))
        if len(batch) == _REBUILD_BATCH:
            backend.write({store: timer_index_changes(batch)}, {})
            count += len(batch)
            batch = []
    count += len(batch)
    backend.write({store: [*timer_index_changes(batch), (PARTIAL, None)]}, {})
    log.info(
        "timer store %r: index of %d timers derived again in %.1f s (the last owner stopped "
        "with part of it in memory)",
        store,
        count,
        time.monotonic() - started,
    )


class TimerStore:
    """Timers per (key bytes, name) over `cache`; keys are typed with `key_serde`."""

    def __init__(self, cache: StoreCache, key_serde: Serde[Any]) -> None:
        self.name = cache.store
        self.cache = cache
        self.key_serde = key_serde
        _complete_index(cache)
        self.index = TimeIndex(cache.backend, cache.store, MEMORY_ENTRIES)
        self._max_record_bytes = NO_LIMIT
        self._changelog = ""
        # What the last `take_due` found due next, as (clock, time), for `next_due` right
        # after it: None when unknown (a timer set or cancelled since).
        self._following: tuple[bytes, int | None] | None = None

    def limit_changelog(self, changelog: str, max_record_bytes: int) -> None:
        """Refuse (`ChangelogRecordTooLargeError`) a timer whose key would not fit one record of
        topic `changelog`."""
        self._changelog = changelog
        self._max_record_bytes = max_record_bytes

    def set(self, key: bytes, name: str, clock: bytes, at: int) -> None:
        ref = U32.pack(len(key)) + key + name.encode()  # timer_ref, inline: once per record
        if len(ref) + 10 > self._max_record_bytes:
            raise ChangelogRecordTooLargeError(
                self.name, self._changelog, len(ref) + 1, 9, self._max_record_bytes
            )
        # The time it replaces, if the cache has it in memory: its index entry goes now
        # instead of costing a look when its time comes.
        replaced = self.cache.swap(TIMER + ref, clock + U64.pack(at))
        self.index.add(clock, at, ref, replaced)
        self._following = None

    def cancel(self, key: bytes, name: str) -> None:
        ref = timer_ref(key, name)
        if self.cache.get(TIMER + ref) is not None:
            self.cache.delete(TIMER + ref)
        self.index.forget(ref)
        self._following = None

    def get(self, key: bytes, name: str) -> tuple[bytes, int] | None:
        """(clock, at) of the timer `name` of `key`, if set."""
        data = self.cache.get(TIMER + timer_ref(key, name))
        return None if data is None else (data[:1], U64.unpack_from(data, 1)[0])

    def next_due(self, clock: bytes) -> int | None:
        """When the next timer of `clock` may be due (None: none is set)."""
        following, self._following = self._following, None
        if following is not None and following[0] == clock:
            return following[1]  # what `take_due` just found: no second look
        return self.index.first(clock)

    def take_due(self, clock: bytes, now: int) -> Generator[tuple[bytes, str, int], None, None]:
        """Remove and yield the timers of `clock` due by `now`, as (key, name, at), by time then
        key bytes then name. A caller that stops early (its function raised) leaves the rest for
        the next call."""
        index = self.index
        self._following = None
        while True:
            group = index.due_group(clock, now)
            if not group:
                return
            last = group[-1][2]  # the group comes in entry order
            cache = self.cache
            if len(group) == 1:
                # The common case, and nothing can change the timer between check and firing.
                at, ref, entry = group[0]
                index.remove(entry)
                # The timer's value is its clock and time, as in its index entry.
                if cache.delete_if(TIMER + ref, entry[1:_CLOCK_AND_TIME]):
                    key, name = parse_ref(ref)
                    yield key, name, at
            else:
                yield from self._take_group(group)
            index.consumed(clock, last)
            following = index.first(clock)  # known from the scan: no second scan to find out
            if following is None or following > now:
                self._following = (clock, following)
                return

    def _take_group(
        self, group: list[tuple[int, bytes, bytes]]
    ) -> Generator[tuple[bytes, str, int], None, None]:
        """Fire the timers of one time by key bytes then name. The group is the timers set for
        its time when it starts: a stale entry (its timer moved, or fired in this pass) that a
        firing of the group sets again fires after the group, like any timer set while firing,
        not in it."""
        index, cache = self.index, self.cache
        due = []
        for at, ref, entry in group:
            if cache.get(TIMER + ref) == entry[1:_CLOCK_AND_TIME]:
                due.append((parse_ref(ref), ref, at, entry))
            else:
                index.remove(entry)
        due.sort()  # by (key bytes, name): unique per timer
        for (key, name), ref, at, entry in due:
            index.remove(entry)
            if not cache.delete_if(TIMER + ref, entry[1:_CLOCK_AND_TIME]):
                continue  # cancelled, or set again, by an earlier firing of the group
            yield key, name, at

    def all(self) -> Iterator[tuple[Any, str, str, int]]:
        """Every timer as (key, name, "stream"|"wall", at), by key bytes then name (the store
        orders them by key length first)."""
        timers = sorted(
            (parse_ref(stored[1:]), data) for stored, data in self.cache.range(TIMER, b"U")
        )
        for (key, name), data in timers:
            clock = "stream" if data[:1] == b"s" else "wall"
            yield self.key_serde.deserialize(key), name, clock, U64.unpack_from(data, 1)[0]

    def write_index(self) -> None:
        self.index.write()

    def __repr__(self) -> str:
        return f"TimerStore({self.name!r})"


__all__ = ["TIMER", "TimerStore", "parse_entry", "timer_index_changes", "timer_ref"]
