"""An index by time over entries of a store: what is due when a clock reaches a point.

Timers (`processor.state.timer_store`) and expiring keys (`processor.state.ttl_store`) keep one.
An entry is `b"I" + clock + time + ref` -> `b""`: `clock` is `STREAM` or `WALL`, `time` 8 bytes
big-endian (times are at least 0, so bytes sort as values do), and `ref` the bytes that find the
indexed thing in its store. One clock's entries due by `now` are one range scan from the oldest.

The index follows from the indexed entries, so it is never changelogged: a restore derives it
from the records it applies. A running task keeps the entries it adds in memory (`_pending`,
with a heap per clock) and serves what is due from there as well as from the backend: an entry
that fires, or is replaced, before it ever reaches the backend costs no write and no delete
there. At each commit (`write`) the entries in memory are written to the backend when there are
more than the index's `memory_entries` (0: always); otherwise they stay in memory and the
backend holds the marker `PARTIAL` in the index's column family, written before the checkpoint
that needs it and removed with the write that makes the index whole. Whoever opens a store
whose marker is there (after a crash, or a task closed without `spill`) derives the index from
the indexed entries again (`TimerStore` does, at open).

The index may name things that are gone or have moved (a timer set again, a key written
again): every reader checks the indexed entry and skips (and removes) what no longer matches.
Removals of stored entries wait in the index until the commit takes them (`take_removed`, with
the caches' changes) and reach the backend at the checkpoint after it, like the changes that
made them: a crash before it finds the index entry of a timer whose firing was not committed
still there. They do not go through the store's cache, whose byte budget they would fill with
entries nobody reads (the index reads the backend), and an entry indexed again before the
commit is no longer removed. An entry removed because what it indexed moved (`add` with
`replaced`) is skipped by `first` and `due_group` until that commit, without a look at the store.
An aborted transaction closes the task: a new index starts from the backend (and its marker).

A scan (a RocksDB iterator) is what a firing would cost most, so each scan reads ahead: the
index keeps the next `READ_AHEAD` stored entries after the consumed ones in memory until it
writes to the backend (the only way stored entries appear), and `due_group` and `first` answer
from them and from the entries in memory. What `first` answers may be earlier than the truth
(an entry whose thing moved, found stale when its time comes), never later: a too-early answer
costs a pass that finds nothing due.
"""

from __future__ import annotations

import struct
from heapq import heapify, heappop, heappush
from itertools import repeat

from processor.state.backend import Change, TaskStateBackend
from processor.topology.clock import CLOCKS, STREAM, WALL

__all__ = [
    "CLOCKS",
    "INDEX",
    "PARTIAL",
    "STREAM",
    "U64",
    "WALL",
    "TimeIndex",
    "index_entry",
    "parse_entry",
]

INDEX = b"I"
PARTIAL = b"P"
"""The key (in the index's column family) that says entries of the index are missing from the
backend: they were in memory only when the last checkpoint was written."""
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
    """The index kept in `store` (a column family) of `backend`, holding up to `memory_entries`
    entries in memory across commits."""

    def __init__(self, backend: TaskStateBackend, store: str, memory_entries: int = 0) -> None:
        self._backend = backend
        self._store = store
        self.store = store
        self._memory_entries = memory_entries
        # Whether the backend holds the PARTIAL marker.
        self._marked = memory_entries > 0 and backend.get(store, PARTIAL) is not None
        # Stored entries removed since the last `take_removed`, each with whether it was
        # removed because what it indexed moved (`add` with `replaced`): readers skip those
        # rather than look at what they index. One dict rather than two sets: `add` runs once
        # per timer set.
        self._removed: dict[bytes, bool] = {}
        # Entries not in the backend, the latest per ref (a ref indexed again needs only its
        # last entry), and per clock a heap of them that may hold replaced ones too (an entry
        # counts only while `_pending` has it).
        self._pending: dict[bytes, bytes] = {}
        self._heaps: dict[bytes, list[bytes]] = {STREAM: [], WALL: []}
        # Entries in memory that `due_group` handed out and that were not removed yet: back
        # into their heap unless the group was dealt with (`consumed`).
        self._taken: list[bytes] = []
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
        heappush(self._heaps[clock], entry)
        if removed:
            removed.pop(entry, None)

    def forget(self, ref: bytes) -> None:
        """Drop the entry of `ref` kept in memory (what it indexed is gone)."""
        self._pending.pop(ref, None)

    def write(self) -> None:
        """At a commit, before its checkpoint: write the entries kept in memory to the backend
        when there are more than `memory_entries`, else mark the backend's index partial."""
        if self._pending and len(self._pending) <= self._memory_entries:
            self._compact_heaps()
            if not self._marked:
                self._backend.write({self._store: [(PARTIAL, b"")]}, {})
                self._marked = True
            return
        self.spill()

    def spill(self) -> None:
        """Write every entry kept in memory to the backend, which then has the whole index."""
        entries = list(self._pending.values())
        # The oldest entry per clock (or an older, replaced one): due already when it is
        # behind where consumption got, and scans then start from the beginning again.
        for clock, heap in self._heaps.items():
            consumed = self._consumed_to.get(clock)
            if heap and consumed is not None and heap[0] <= consumed:
                del self._consumed_to[clock]
        self._pending = {}
        self._heaps = {STREAM: [], WALL: []}
        self._taken = []
        changes: list[Change] = list(zip(entries, repeat(b"")))
        if self._marked:
            changes.append((PARTIAL, None))
            self._marked = False
        if not changes:
            return
        self._ahead = {}  # stored entries appear: read again
        self._backend.write({self._store: changes}, {})

    def discard(self) -> None:
        """Forget the entries kept in memory, leaving the backend as it is (its marker too):
        the task's uncommitted work was dropped, and the task closes."""
        self._pending = {}
        self._heaps = {STREAM: [], WALL: []}
        self._taken = []
        self._marked = False
        self._removed = {}

    def first(self, clock: bytes) -> int | None:
        """The time of the oldest entry of `clock` not consumed (None: there is none); maybe
        earlier (see the module docstring)."""
        ahead = self._front(clock)
        stored = U64.unpack_from(ahead[-1], 2)[0] if ahead else None
        kept = self._memory_front(clock)
        if kept is not None:
            at: int = U64.unpack_from(kept, 2)[0]
            if stored is None or at < stored:
                return at
        return stored

    def due_group(self, clock: bytes, now: int) -> list[tuple[int, bytes, bytes]]:
        """The entries of `clock` at the oldest time that is `<= now`, as (time, ref, entry),
        in entry order, or [] when none is due. Call `remove` for each, then `consumed`."""
        kept = self._memory_front(clock)
        kept_at = now + 1 if kept is None else U64.unpack_from(kept, 2)[0]
        group = self._stored_group(clock, min(now, kept_at))
        if kept_at > now or (group and group[0][0] < kept_at):
            return group
        # The entries kept in memory at that time join the group.
        heap, pending, taken = self._heaps[clock], self._pending, self._taken
        kept_group: dict[bytes, None] = {}  # a heap may hold one entry twice
        while heap:
            entry = heap[0]
            if U64.unpack_from(entry, 2)[0] != kept_at:
                break
            heappop(heap)
            if pending.get(entry[_HEAD:]) == entry:
                kept_group[entry] = None
        taken.extend(kept_group)
        group.extend((kept_at, entry[_HEAD:], entry) for entry in kept_group)
        if len(group) > len(kept_group) or len(kept_group) > 1:
            group.sort(key=_entry_of)
        return group

    def _stored_group(self, clock: bytes, limit: int) -> list[tuple[int, bytes, bytes]]:
        """The stored entries of `clock` at the oldest time that is `<= limit`."""
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
            if at > limit or (group and at != group[0][0]):
                return group
            if removed and removed.get(entry):
                continue  # stale (its thing moved or went): nothing to check
            group.append((at, entry[_HEAD:], entry))

    def remove(self, entry: bytes) -> None:
        """Remove one entry: from memory at once, from the backend at the checkpoint after the
        next commit."""
        ref = entry[_HEAD:]
        pending = self._pending
        if pending.get(ref) == entry:
            del pending[ref]
            return
        self._removed.setdefault(entry, False)

    def take_removed(self) -> list[bytes]:
        """The stored entries removed since the last call: a commit writes their deletion to
        the backend with its checkpoint (or forgets them, when its transaction fails)."""
        removed, self._removed = self._removed, {}
        return list(removed)

    def consumed(self, clock: bytes, last: bytes) -> None:
        """Every entry of `clock` up to `last` was removed: later scans start after it."""
        self._taken = []
        self._consumed_to[clock] = last
        ahead = self._ahead.get(clock)
        if ahead is not None:
            while ahead and ahead[-1] <= last:
                ahead.pop()

    def _memory_front(self, clock: bytes) -> bytes | None:
        """The oldest entry of `clock` kept in memory (dropping replaced ones off the heap)."""
        pending = self._pending
        if self._taken:  # a group not dealt with to the end: what is left is due again
            for entry in self._taken:
                if pending.get(entry[_HEAD:]) == entry:
                    heappush(self._heaps[entry[1:2]], entry)
            self._taken = []
        heap = self._heaps[clock]
        while heap:
            entry = heap[0]
            if pending.get(entry[_HEAD:]) == entry:
                return entry
            heappop(heap)
        return None

    def _compact_heaps(self) -> None:
        """Drop replaced entries from heaps that hold many of them (once per commit)."""
        for clock, heap in self._heaps.items():
            if len(heap) > 2 * len(self._pending) + 64:
                valid = {e for e in self._pending.values() if e[1:2] == clock}
                heap[:] = valid
                heapify(heap)

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
        """Read up to `count` stored entries of `clock` after the consumed ones into `_ahead`;
        returns them, last first."""
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


def _entry_of(item: tuple[int, bytes, bytes]) -> bytes:
    return item[2]
