"""The store of a windowed aggregation: per key and window, the aggregate and the largest
timestamp of the window's records, over a `StoreCache` like a key-value store.

One column family and one changelog hold three kinds of entries, told apart by their first byte
(integers are big-endian, 8 bytes; `len` is the key's length in 4 bytes):

- window: `b"W" + len + key + start + end` -> `max_timestamp + aggregate`. One key's windows are
  one range scan, in start order.
- index:  `b"I" + end + start + b"W" + key + end` -> `b""`, and, for sliding windows,
  `b"I" + ts + ts + b"R" + key + 0` for the records kept. Ordered by end, then start, then key
  bytes (Kafka Streams' emit order): emitting closed windows and expiring old ones are range
  scans from the oldest entry. Index entries follow from the window and record entries
  (`index_changes`), so they are never changelogged: a restore derives them from the records it
  applies (`processor.state.indexing`). A running task writes them to the backend directly, at the
  latest at each commit, not through the cache: the index is allowed to name windows that are
  not (or no longer) there, and every reader skips those, so it needs no atomicity with the
  data, and a scan of it never pays for the cache's sorted view of its changes.
- meta:   `b"M" + name` -> bytes (where emit-final got to).
- record (sliding windows only): `b"R" + len + key + ts` -> the values of the key's records with
  that timestamp, each as `len + value`.

Timestamps and window bounds are at least 0 (a record with a negative timestamp never reaches a
window), so their bytes sort as their values do.

Expiry deletes windows and kept records locally only, like Kafka Streams dropping a segment: the
changelog (`cleanup.policy=compact,delete`) drops them by its retention. A restore may therefore
bring back windows that had expired; the task expires them again as soon as it starts, before
its first record (it then knows its stream time, from the committed offsets).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar, cast

from processor.errors import ChangelogRecordTooLargeError, StoredValueError, TransientError
from processor.serdes import Serde
from processor.state.backend import Change
from processor.state.cache import StoreCache
from processor.state.typed import NO_LIMIT
from processor.windows.layout import (
    BOUNDS,
    INDEX,
    META,
    RECORD,
    U32,
    U64,
    WINDOW,
    index_bound,
    index_key,
    key_prefix,
    pack_u64,
    parse_index_key,
    parse_window_key,
    record_index_key,
    successor,
    window_key,
)
from processor.windows.spec import Windowed

K = TypeVar("K")
V = TypeVar("V")


class WindowEntry:
    """One window of one key as stored: bounds, aggregate bytes and largest record timestamp."""

    __slots__ = ("aggregate", "end", "key", "max_timestamp", "start")

    def __init__(self, key: bytes, start: int, end: int, max_timestamp: int, aggregate: bytes):
        self.key = key
        self.start = start
        self.end = end
        self.max_timestamp = max_timestamp
        self.aggregate = aggregate


class WindowStore(Generic[K, V]):
    """A task's view of one windowed store. Operators work in key bytes (`key_bytes`); queries
    and the test driver read typed windows (`fetch`, `all`)."""

    def __init__(
        self,
        cache: StoreCache,
        key_serde: Serde[K],
        value_serde: Serde[V],
        *,
        sessions: bool = False,
    ) -> None:
        self.name = cache.store
        # A session store: `fetch` finds the sessions overlapping a time range (Kafka Streams'
        # `findSessions`); a window store the windows starting in it (`fetch`).
        self.sessions = sessions
        self.cache = cache
        self.key_serde = key_serde
        self.value_serde = value_serde
        self._max_record_bytes = NO_LIMIT
        self._changelog = ""
        self._backend = cache.backend
        # Index entries of new windows and records not yet in the backend (`write_index`).
        self._new_index: list[Change] = []
        # The last index entry expired by this task: the backend keeps it until the checkpoint.
        self._expired_to: bytes | None = None

    def limit_changelog(self, changelog: str, max_record_bytes: int) -> None:
        """Refuse (`ChangelogRecordTooLargeError`) a window whose entry would not fit one
        record of topic `changelog`."""
        self._changelog = changelog
        self._max_record_bytes = max_record_bytes

    # -- bytes, for operators --------------------------------------------------------------

    def key_bytes(self, key: K) -> bytes:
        data = self.key_serde.serialize(key)
        if data is None:
            raise ValueError(f"store {self.name!r}: keys cannot be None")
        return data

    def key_of(self, data: bytes) -> K:
        return cast(K, self.key_serde.deserialize(data))

    def get(self, key: bytes, start: int, end: int) -> WindowEntry | None:
        data = self.cache.get(window_key(key, start, end))
        if data is None:
            return None
        return WindowEntry(key, start, end, U64.unpack_from(data)[0], data[8:])

    def put(
        self,
        key: bytes,
        start: int,
        end: int,
        max_timestamp: int,
        aggregate: bytes,
        *,
        new: bool,
    ) -> None:
        """Write a window; a `new` one is indexed under its end too (locally)."""
        self.put_at(window_key(key, start, end), key, start, end, max_timestamp, aggregate, new)

    # The per-record path of time windows: the stored key built once, no entry object.

    def stored_at(self, prefix: bytes, start: int, end: int) -> bytes:
        """The stored key of the window `start`-`end` of the key whose `key_prefix` is
        `prefix`."""
        return prefix + BOUNDS.pack(start, end)

    def lookup(self, stored: bytes) -> tuple[int, bytes] | None:
        """(largest timestamp, aggregate bytes) of the window stored at `stored`, if any."""
        data = self.cache.get(stored)
        if data is None:
            return None
        return U64.unpack_from(data)[0], data[8:]

    def put_at(
        self,
        stored: bytes,
        key: bytes,
        start: int,
        end: int,
        max_timestamp: int,
        aggregate: bytes,
        new: bool,
    ) -> None:
        """`put`, of the window stored at `stored` (`stored_at`)."""
        value = pack_u64(max_timestamp) + aggregate
        if len(stored) + len(value) > self._max_record_bytes:
            raise ChangelogRecordTooLargeError(
                self.name, self._changelog, len(stored), len(value), self._max_record_bytes
            )
        self.cache.put(stored, value)
        if new:
            self._new_index.append((index_key(end, key, start), b""))

    def remove(self, key: bytes, start: int, end: int) -> None:
        """Delete a window (a changelog tombstone). Its index entry stays until it expires;
        readers skip it."""
        self.cache.delete(window_key(key, start, end))

    def write_index(self) -> None:
        """Put the index entries of new windows and records into the backend."""
        if self._new_index:
            self._backend.write({self.name: self._new_index}, {})
            self._new_index = []

    def windows_of(self, key: bytes) -> Iterator[WindowEntry]:
        """Every window of `key`, in start order."""
        prefix = key_prefix(key)
        for stored, data in self.cache.range(prefix, successor(prefix)):
            if len(stored) != len(prefix) + 16:
                continue
            start, end = BOUNDS.unpack_from(stored, len(prefix))
            yield WindowEntry(key, start, end, U64.unpack_from(data)[0], data[8:])

    def windows_from(self, key: bytes, start_from: int) -> Iterator[WindowEntry]:
        """The windows of `key` starting at `start_from` or later, in start order."""
        prefix = key_prefix(key)
        low = prefix + pack_u64(max(0, start_from))
        for stored, data in self.cache.range(low, successor(prefix)):
            start, end = BOUNDS.unpack_from(stored, len(prefix))
            yield WindowEntry(key, start, end, U64.unpack_from(data)[0], data[8:])

    def closed(
        self, after: bytes | None, before_end: int
    ) -> Iterator[tuple[bytes, WindowEntry | None]]:
        """Index entries past `after` (None: from the oldest) that end before `before_end`,
        oldest first, each with its window (None for a kept record, or a window gone
        meanwhile)."""
        for stored in self._index_until(after, before_end):
            _, kind, key, start, end = parse_index_key(stored)
            yield stored, self.get(key, start, end) if kind == WINDOW else None

    def expire(self, before_end: int) -> int:
        """Delete, for the backend only, every window and kept record that ends before
        `before_end`, with its index entry; returns how many. The deletes reach the backend at
        the task's next checkpoint, after its commit, like every change: a crash or an aborted
        transaction before it must find them still there, as its committed stream time has them
        live."""
        expired = self._index_until(self._expired_to, before_end)
        for stored in expired:
            _, kind, key, start, end = parse_index_key(stored)
            if kind == RECORD:
                self.cache.delete_local(RECORD + U32.pack(len(key)) + key + pack_u64(start))
            else:
                self.cache.delete_local(window_key(key, start, end))
            self.cache.delete_local(stored)
        if expired:
            # Until the checkpoint the backend still has them: the next pass starts after.
            self._expired_to = expired[-1]
        return len(expired)

    def first_live_end(self) -> int | None:
        """The end of the oldest index entry not yet expired."""
        return self.first_end(self._expired_to)

    def first_end(self, after: bytes | None = None) -> int | None:
        """The end of the oldest index entry past `after` (None: of all)."""
        self.write_index()
        low = INDEX if after is None else after + b"\x00"
        scan = self._backend.range(self.name, low, successor(INDEX))
        try:
            for stored, _ in scan:
                return int(U64.unpack_from(stored, 1)[0])
        finally:
            close = getattr(scan, "close", None)
            if close is not None:
                close()
        return None

    def _index_until(self, after: bytes | None, before_end: int) -> list[bytes]:
        self.write_index()
        low = INDEX if after is None else after + b"\x00"
        high = index_bound(before_end)
        if before_end <= 0 or low >= high:
            return []
        return [stored for stored, _ in self._backend.range(self.name, low, high)]

    def meta(self, name: bytes) -> bytes | None:
        return self.cache.get(META + name)

    def set_meta(self, name: bytes, value: bytes) -> None:
        self.cache.put(META + name, value)

    # -- records (sliding windows) ---------------------------------------------------------

    def add_record(self, key: bytes, timestamp: int, value: bytes) -> None:
        stored = RECORD + U32.pack(len(key)) + key + pack_u64(timestamp)
        old = self.cache.get(stored)
        if old is None:
            self._new_index.append((record_index_key(key, timestamp), b""))
        self.cache.put(stored, (old or b"") + U32.pack(len(value)) + value)

    def records(self, key: bytes, low: int, high: int) -> Iterator[tuple[int, bytes]]:
        """(timestamp, value bytes) of `key`'s records with `low <= timestamp <= high`, in
        timestamp order (arrival order within a timestamp)."""
        prefix = RECORD + U32.pack(len(key)) + key
        start = prefix + pack_u64(max(0, low))
        end = prefix + pack_u64(high + 1)
        for stored, data in self.cache.range(start, end):
            (timestamp,) = U64.unpack_from(stored, len(prefix))
            at = 0
            while at < len(data):
                (length,) = U32.unpack_from(data, at)
                yield timestamp, data[at + 4 : at + 4 + length]
                at += 4 + length

    # -- typed reads -----------------------------------------------------------------------

    def value_of(self, aggregate: bytes, key: object = None) -> V:
        try:
            return cast(V, self.value_serde.deserialize(aggregate))
        except TransientError:
            raise
        except Exception as e:
            raise StoredValueError(self.name, self.value_serde.name, key, e) from e

    def fetch(self, key: K, from_ms: int = 0, to_ms: int | None = None) -> list[tuple[Any, V]]:
        """`key`'s windows that start in `[from_ms, to_ms]` (sessions: that overlap it), as
        (Windowed, value), oldest first."""
        data = self.key_bytes(key)
        found = []
        windows = self.windows_of(data) if self.sessions else self.windows_from(data, from_ms)
        for w in windows:
            if to_ms is not None and w.start > to_ms:
                break
            if self.sessions and w.end < from_ms:
                continue
            found.append((Windowed(key, w.start, w.end), self.value_of(w.aggregate, key)))
        return found

    def all(self) -> Iterator[tuple[Windowed[K], V]]:
        """Every window of every key, by key bytes then start."""
        for stored, data in self.cache.range(WINDOW, successor(WINDOW)):
            key_data, start, end = parse_window_key(stored)
            key = self.key_of(key_data)
            yield Windowed(key, start, end), self.value_of(data[8:], key)

    def __repr__(self) -> str:
        return f"WindowStore({self.name!r})"
