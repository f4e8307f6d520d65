"""An index by time over entries of a store: what is due when a clock reaches a point.

Timers (`processor.state.timer_store`) and expiring keys (`processor.state.ttl_store`) keep one.
An entry is `b"I" + clock + time + ref` -> `b""`: `clock` is `STREAM` or `WALL`, `time` 8 bytes
big-endian (times are at least 0, so bytes sort as values do), and `ref` the bytes that find the
indexed thing in its store. One clock's entries due by `now` are one range scan from the oldest.

The index follows from the indexed entries, so it is never changelogged: a restore derives it
from the records it applies, and a running task writes new entries to the backend directly
(`write`: at each commit, and before looking for what is due when one of them is due), not
through the cache. The index may therefore name things that are gone or have moved (a timer set
again, a key written again): every reader checks the indexed entry and skips (and removes) what
no longer matches. Removals wait in the index until the commit takes them (`take_removed`, with
the caches' changes) and reach the backend at the checkpoint after it, like the changes that
made them: a crash before it finds the index entry of a timer whose firing was not committed
still there. They do not go through the store's cache, whose byte budget they would fill with
entries nobody reads (the index reads the backend), and an entry indexed again before the
commit is no longer removed. An entry removed because what it indexed moved (`add` with
`replaced`) is skipped by `first` and `due_group` until that commit, without a look at the store.

A scan (a RocksDB iterator) is what a firing would cost most, so each scan reads ahead: the
index keeps the next `READ_AHEAD` stored entries after the consumed ones in memory until it
writes to the backend (the only way stored entries appear), and `due_group` and `first` answer
from them and from the earliest pending entry. So a task whose records each make a timer due,
or a backlog of due timers, costs one scan per `READ_AHEAD` firings and no write to the backend
between commits. What `first` answers may be earlier than the truth (a pending entry replaced or
forgotten, an entry whose timer moved), never later: a too-early answer costs a pass that finds
nothing due.
"""

from __future__ import annotations

import struct
from itertools import repeat

from processor.state.backend import TaskStateBackend
from processor.topology.clock import CLOCKS, STREAM, WALL

__all__ = ["CLOCKS", "INDEX", "STREAM", "U64", "WALL", "TimeIndex", "index_entry", "parse_entry"]

INDEX = b"I"
READ_AHEAD = 256
"""Stored entries one scan reads ahead (more when a group of one time is larger)."""

U64 = struct.Struct(">Q")
_HEAD = 2 + U64.size  # INDEX + clock + time


def index_entry(clock: bytes, at: int, ref: bytes) -> bytes:
    return INDEX + clock + U64.pack(at) + ref


def parse_entry(entry: bytes) -> tuple[bytes, int, bytes]:
    """(clock, time, ref) of an index entry."""
    return entry[1:2], U64.unpack_from(entry, 2)[0], entry[_HEAD:]


_PREFIXES = {clock: INDEX + clock for clock in (STREAM, WALL)}


def _bound(clock: bytes, at: int) -> bytes:
    """The smallest entry of `clock` at time `at` or later."""
    return INDEX + clock + U64.pack(at)


class TimeIndex:
    """The index kept in `store` (a column family) of `backend`."""

    def __init__(self, backend: TaskStateBackend, store: str) -> None:
        self._backend = backend
        self._store = store
        self.store = store
        # Entries removed since the last `take_removed`, each with whether it was removed
        # because what it indexed moved (`add` with `replaced`): readers skip those rather than
        # look at what they index. One dict rather than two sets: `add` runs once per timer set.
        self._removed: dict[bytes, bool] = {}
        # Entries not yet in the backend, the latest per ref (a ref indexed again before the
        # write needs only its last entry).
        self._pending: dict[bytes, bytes] = {}
        # Per clock, the earliest time among the pending entries (or earlier: an entry replaced
        # or forgotten since).
        self._pending_first: dict[bytes, int] = {}
        # Per clock, the last entry of the last group consumed: the backend keeps consumed
        # entries until the checkpoint, so scans start after it.
        self._consumed_to: dict[bytes, bytes] = {}
        # Per clock, the stored entries after the consumed ones as the last scan read them, last
        # first (absent: not read since the last write), and whether they are all there are.
        self._ahead: dict[bytes, list[bytes]] = {}
        self._ahead_all: dict[bytes, bool] = {}

    def add(self, clock: bytes, at: int, ref: bytes, replaced: bytes | None = None) -> None:
        """Index `ref` at `at` on `clock`; `replaced`: the clock and time (9 bytes) it was
        indexed at before, when known, whose entry is then removed now rather than found
        stale when its time comes."""
        entry = _PREFIXES[clock] + U64.pack(at) + ref
        pending = self._pending
        removed = self._removed
        if replaced is not None:
            old = INDEX + replaced + ref
            if old != entry and pending.get(ref) != old:  # a pending one is replaced below
                removed[old] = True
        pending[ref] = entry
        if removed:
            removed.pop(entry, None)
        first = self._pending_first.get(clock)
        if first is None or at < first:
            self._pending_first[clock] = at

    def forget(self, ref: bytes) -> None:
        """Drop a pending entry of `ref` (what it indexed is gone before it was written)."""
        self._pending.pop(ref, None)

    def write(self) -> None:
        """Put the pending entries into the backend."""
        if not self._pending:
            self._pending_first = {}  # what a forgotten entry left
            return
        entries = list(self._pending.values())
        pending_first = self._pending_first
        self._pending = {}
        self._pending_first = {}
        self._ahead = {}  # stored entries appear: read again
        consumed_to = self._consumed_to
        for clock, consumed in list(consumed_to.items()):
            first = pending_first.get(clock)  # no later than any pending entry of the clock
            if first is None or first > U64.unpack_from(consumed, 2)[0]:
                continue  # every pending entry of the clock comes after the consumed ones
            if any(entry <= consumed and entry[1:2] == clock for entry in entries):
                # Due already, behind where consumption got: scan from the start again.
                del consumed_to[clock]
        self._backend.write({self._store: list(zip(entries, repeat(b"")))}, {})

    def first(self, clock: bytes) -> int | None:
        """The time of the oldest entry of `clock` not consumed (None: there is none); maybe
        earlier (see the module docstring)."""
        ahead = self._front(clock)
        stored = U64.unpack_from(ahead[-1], 2)[0] if ahead else None
        pending = self._pending_first.get(clock)
        if pending is not None and (stored is None or pending < stored):
            return pending
        return stored

    def due_group(self, clock: bytes, now: int) -> list[tuple[int, bytes, bytes]]:
        """The entries of `clock` at the oldest time that is `<= now`, as (time, ref, entry),
        or [] when none is due. Call `consumed` once each is dealt with."""
        pending = self._pending_first.get(clock)
        if pending is not None and pending <= now:
            self.write()
        ahead = self._front(clock)
        removed = self._removed
        group: list[tuple[int, bytes, bytes]] = []
        position = len(ahead)
        while True:
            if position == 0:
                if self._ahead_all[clock] or not group:
                    return group
                # The group may go on past what was read: read it all.
                ahead = self._read(clock, max(READ_AHEAD, 2 * len(ahead)))
                group = []
                position = len(ahead)
                continue
            position -= 1
            entry = ahead[position]
            at = U64.unpack_from(entry, 2)[0]
            if at > now or (group and at != group[0][0]):
                return group
            if removed and removed.get(entry):
                continue  # stale (its thing moved or went): nothing to check
            group.append((at, entry[_HEAD:], entry))

    def remove(self, entry: bytes) -> None:
        """Remove one entry (at the checkpoint after the next commit)."""
        self._removed.setdefault(entry, False)

    def take_removed(self) -> list[bytes]:
        """The entries removed since the last call: a commit writes their deletion to the
        backend with its checkpoint (or forgets them, when its transaction fails)."""
        removed, self._removed = self._removed, {}
        return list(removed)

    def consumed(self, clock: bytes, last: bytes) -> None:
        """Every entry of `clock` up to `last` was removed: later scans start after it."""
        self._consumed_to[clock] = last
        ahead = self._ahead.get(clock)
        if ahead is not None:
            while ahead and ahead[-1] <= last:
                ahead.pop()

    def _front(self, clock: bytes) -> list[bytes]:
        """The stored entries of `clock` read ahead (reading them when there are none),
        without the replaced ones at the front: those count as consumed."""
        ahead = self._ahead.get(clock)
        if ahead is None or not (ahead or self._ahead_all[clock]):
            ahead = self._read(clock, READ_AHEAD)
        removed = self._removed
        if removed:
            while ahead and removed.get(ahead[-1]):
                self._consumed_to[clock] = ahead.pop()
                if not ahead and not self._ahead_all[clock]:
                    ahead = self._read(clock, READ_AHEAD)
        return ahead

    def _read(self, clock: bytes, count: int) -> list[bytes]:
        """Read up to `count` stored entries of `clock` after the consumed ones (pending
        entries are not among them) into `_ahead`; returns them, last first."""
        consumed = self._consumed_to.get(clock)
        low = _bound(clock, 0) if consumed is None else consumed + b"\x00"
        scan = self._backend.range(self._store, low, INDEX + bytes([clock[0] + 1]))
        entries: list[bytes] = []
        try:
            for entry, _ in scan:
                entries.append(entry)
                if len(entries) == count:
                    break
        finally:
            close = getattr(scan, "close", None)
            if close is not None:
                close()
        self._ahead_all[clock] = len(entries) < count
        entries.reverse()
        self._ahead[clock] = entries
        return entries
