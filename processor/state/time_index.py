"""An index by time over entries of a store: what is due when a clock reaches a point.

Timers (`processor.state.timer_store`) and expiring keys (`processor.state.ttl_store`) keep one.
An entry is `b"I" + clock + time + ref` -> `b""`: `clock` is `STREAM` or `WALL`, `time` 8 bytes
big-endian (times are at least 0, so bytes sort as values do), and `ref` the bytes that find the
indexed thing in its store. One clock's entries due by `now` are one range scan from the oldest.

The index follows from the indexed entries, so it is never changelogged: a restore derives it
from the records it applies, and a running task writes new entries to the backend directly
(`write`, at the latest before each scan and at each commit), not through the cache. The index
may therefore name things that are gone or have moved (a timer set again, a key written again):
every reader checks the indexed entry and skips (and removes) what no longer matches. Removals
go through the store's cache as backend-only changes (`StoreCache.delete_local`), so they reach
the backend at the checkpoint after the commit, like the changes that made them: a crash before
it finds the index entry of a timer whose firing was not committed still there. An entry
written again after its removal in the same commit interval cancels that removal
(`StoreCache.keep_local`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from processor.state.backend import TaskStateBackend
from processor.state.cache import StoreCache
from processor.topology.clock import CLOCKS, STREAM, WALL

__all__ = ["CLOCKS", "INDEX", "STREAM", "U64", "WALL", "TimeIndex", "index_entry", "parse_entry"]

INDEX = b"I"

U64 = struct.Struct(">Q")
_HEAD = 2 + U64.size  # INDEX + clock + time


def index_entry(clock: bytes, at: int, ref: bytes) -> bytes:
    return INDEX + clock + U64.pack(at) + ref


def parse_entry(entry: bytes) -> tuple[bytes, int, bytes]:
    """(clock, time, ref) of an index entry."""
    return entry[1:2], U64.unpack_from(entry, 2)[0], entry[_HEAD:]


def _bound(clock: bytes, at: int) -> bytes:
    """The smallest entry of `clock` at time `at` or later."""
    return INDEX + clock + U64.pack(at)


class TimeIndex:
    """The index kept in `store` of `backend`; `cache` is that store's cache, through which
    removals go."""

    def __init__(self, backend: TaskStateBackend, store: str, cache: StoreCache) -> None:
        self._backend = backend
        self._store = store
        self._cache = cache
        # Entries not yet in the backend, the latest per ref (a ref indexed again before the
        # write needs only its last entry).
        self._pending: dict[bytes, bytes] = {}
        # Per clock, the last entry of the last group consumed: the backend keeps consumed
        # entries until the checkpoint, so scans start after it.
        self._consumed_to: dict[bytes, bytes] = {}

    def add(self, clock: bytes, at: int, ref: bytes) -> None:
        self._pending[ref] = index_entry(clock, at, ref)

    def forget(self, ref: bytes) -> None:
        """Drop a pending entry of `ref` (what it indexed is gone before it was written)."""
        self._pending.pop(ref, None)

    def write(self) -> None:
        """Put the pending entries into the backend."""
        if not self._pending:
            return
        entries = list(self._pending.values())
        self._pending = {}
        for entry in entries:
            clock = entry[1:2]
            consumed = self._consumed_to.get(clock)
            if consumed is not None and entry <= consumed:
                # Due already, behind where consumption got: scan from the start again.
                del self._consumed_to[clock]
            # Removed in this commit interval (the same timer fired and was set again at the
            # same time): the removal must not delete it from the backend at the checkpoint.
            self._cache.keep_local(entry, b"")
        self._backend.write({self._store: [(entry, b"") for entry in entries]}, {})

    def first(self, clock: bytes) -> int | None:
        """The time of the oldest entry of `clock` not consumed (None: there is none)."""
        for entry in self._scan(clock, None, 1):
            return parse_entry(entry)[1]
        return None

    def due_group(self, clock: bytes, now: int) -> list[tuple[int, bytes, bytes]]:
        """The entries of `clock` at the oldest time that is `<= now`, as (time, ref, entry),
        or [] when none is due. Call `consumed` once each is dealt with."""
        group: list[tuple[int, bytes, bytes]] = []
        for entry in self._scan(clock, now + 1, None):
            at = U64.unpack_from(entry, 2)[0]
            if group and at != group[0][0]:
                break
            group.append((at, entry[_HEAD:], entry))
        return group

    def remove(self, entry: bytes) -> None:
        """Remove one entry (at the next checkpoint)."""
        self._cache.delete_local(entry)

    def consumed(self, clock: bytes, last: bytes) -> None:
        """Every entry of `clock` up to `last` was removed: later scans start after it."""
        self._consumed_to[clock] = last

    def _scan(self, clock: bytes, before: int | None, limit: int | None) -> Iterator[bytes]:
        self.write()
        consumed = self._consumed_to.get(clock)
        low = _bound(clock, 0) if consumed is None else consumed + b"\x00"
        high = INDEX + bytes([clock[0] + 1]) if before is None else _bound(clock, before)
        if low >= high:
            return
        scan = self._backend.range(self._store, low, high)
        taken = 0
        try:
            for entry, _ in scan:
                yield entry
                taken += 1
                if limit is not None and taken >= limit:
                    return
        finally:
            close = getattr(scan, "close", None)
            if close is not None:
                close()
