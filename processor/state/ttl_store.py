"""A key-value store whose keys expire: a key not written for `ttl_ms` (on the stream clock or the
wall clock) is removed by its active task, with a changelog tombstone.

Layout: the store's column family and changelog hold `key -> written_at + value`, `written_at`
being 8 bytes big-endian: the stream time (or wall-clock time) of the write. A second column
family, `<store>~expiry` (`expiry_store`), never changelogged, holds the index by expiry time
(`processor.state.time_index`, entries `b"I" + clock + (written_at + ttl_ms) + key`) and, under
`b"N"`, the newest time the task knew when it last wrote the index: what readers without the
task's clock (queries of a standby) compare with.

A key is expired once `now >= written_at + ttl_ms`. From then on reads (`get`, `range`, `all`,
queries) no longer see it, and it is removed, with its expiry handler called once (`on_expired`:
a `process()` operator's `on_expire`, or an aggregation forwarding a tombstone), either by the
expiry pass that runs when the clock reaches its time, or, if it is written or deleted first,
just before that change. After `ttl_ms` changed, local state keeps index entries at the old
times: the pass removes at such an entry a key the new TTL expired, and indexes again one it
has not.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, cast

from processor.errors import ChangelogRecordTooLargeError
from processor.serdes._serde import Serde
from processor.state.backend import Change
from processor.state.cache import StoreCache
from processor.state.time_index import STREAM, U64, TimeIndex, index_entry
from processor.state.typed import KeyValueStore

K = TypeVar("K")
V = TypeVar("V")

EXPIRY_SUFFIX = "~expiry"
NOW = b"N"
"""The index's entry holding the newest time the task knew (8 bytes)."""


def expiry_store(store: str) -> str:
    """The column family of `store`'s expiry index."""
    return store + EXPIRY_SUFFIX


def written_at(data: bytes) -> int:
    return int(U64.unpack_from(data)[0])


def expiry_index_changes(changes: Sequence[Change], clock: bytes, ttl_ms: int) -> list[Change]:
    """The index entries (and the newest write time, `NOW`) the entries among `changes` imply,
    for a restore to write into the expiry store."""
    derived: list[Change] = []
    newest = -1
    for key, value in changes:
        if value is not None:
            at = written_at(value)
            newest = max(newest, at)
            derived.append((index_entry(clock, at + ttl_ms, key), b""))
    if newest >= 0:
        derived.append((NOW, U64.pack(newest)))
    return derived


def _never_now() -> int:
    return 0


def _no_wake(at: int) -> None:
    pass


NEVER = sys.maxsize


class TtlKeyValueStore(KeyValueStore[K, V]):
    """A `KeyValueStore` whose keys expire `ttl_ms` after their last write, on `clock`
    (`time_index.STREAM` or `WALL`); `now` gives that clock's time (set when the task's
    operators are built), `index_cache` is the cache of the expiry store."""

    def __init__(
        self,
        cache: StoreCache,
        index_cache: StoreCache,
        key_serde: Serde[K],
        value_serde: Serde[V],
        *,
        ttl_ms: int,
        clock: bytes,
    ) -> None:
        super().__init__(cache, key_serde, value_serde)
        self.ttl_ms = ttl_ms
        self.clock = clock
        self.index = TimeIndex(index_cache.backend, index_cache.store)
        self._index_store = index_cache.store
        self.now: Callable[[], int] = _never_now
        # Called with (key bytes, stored bytes) of each key as it expires, once it is removed.
        self.on_expired: Callable[[bytes, bytes], None] | None = None
        # The earliest expiry the expiry pass knows of; a write expiring earlier calls `wake`.
        self.due_at = NEVER
        self.wake: Callable[[int], None] = _no_wake

    def get(self, key: K, default: Any = None) -> Any:
        data = self._cache.get(self._key(key))
        if data is None or written_at(data) + self.ttl_ms <= self.now():
            return default
        return self._value(data[8:], key)

    def put(self, key: K, value: V | None) -> None:
        serialized = None if value is None else self._value_serde.serialize(value)
        if serialized is None:
            self.delete(key)
            return
        key_bytes = self._key(key)
        now = max(0, self.now())
        data = U64.pack(now) + serialized
        if len(key_bytes) + len(data) > self._max_record_bytes:
            raise ChangelogRecordTooLargeError(
                self.name, self._changelog, len(key_bytes), len(data), self._max_record_bytes
            )
        self._expire_first(key_bytes)
        self._cache.put(key_bytes, data)
        at = now + self.ttl_ms
        self.index.add(self.clock, at, key_bytes)
        if at < self.due_at:
            self.due_at = at
            self.wake(at)

    def delete(self, key: K) -> None:
        key_bytes = self._key(key)
        self._expire_first(key_bytes)
        self._cache.delete(key_bytes)

    def _expire_first(self, key_bytes: bytes) -> None:
        """About to change `key_bytes`: if it expired and is still there, it expires now
        (`on_expired` is called once for each expiry, also when a write or a delete, not the
        expiry pass, removes it)."""
        if self.on_expired is not None:
            old = self._cache.get(key_bytes)
            if old is not None and written_at(old) + self.ttl_ms <= self.now():
                self.on_expired(key_bytes, old)

    def __contains__(self, key: K) -> bool:
        return self.get(key, None) is not None

    def expires_at(self, data: bytes) -> int:
        """When the key stored as `data` expires."""
        return written_at(data) + self.ttl_ms

    def key_of(self, data: bytes) -> K:
        return cast(K, self._key_serde.deserialize(data))

    def value_of(self, data: bytes, key: object = None) -> V:
        """The value of stored bytes (write time stripped)."""
        return self._value(data[8:], key)

    def expire(self, now: int, limit: int) -> int:
        """Remove the keys expired by `now` (at most about `limit`, whole groups of one time),
        calling `on_expired` for each first; returns how many index entries were consumed."""
        index = self.index
        cache = self._cache
        consumed = 0
        while consumed < limit:
            group = index.due_group(self.clock, now)
            if not group:
                break
            last = max(entry for _, _, entry in group)
            for at, key_bytes, entry in sorted(group, key=lambda item: item[1]):
                index.remove(entry)
                data = cache.get(key_bytes)
                if data is None:
                    continue  # deleted since
                expires = written_at(data) + self.ttl_ms
                if expires > at:
                    # Written again since (its entry is indexed already), or indexed under an
                    # older, shorter `ttl_ms`: it expires at its own time, in that time's group
                    # (the same entry, if there), not in this one. A key indexed under a longer
                    # `ttl_ms` (expires < at) is late already and goes now.
                    index.add(self.clock, expires, key_bytes)
                    continue
                cache.delete(key_bytes)
                if self.on_expired is not None:
                    self.on_expired(key_bytes, data)
            index.consumed(self.clock, last)
            consumed += len(group)
        return consumed

    def next_due(self) -> int | None:
        return self.index.first(self.clock)

    def write_index(self) -> None:
        """Write the pending index entries and the task's time into the expiry store."""
        self.index.write()
        now = self.now()
        if now >= 0 and self.clock is STREAM:  # readers use their own wall clock
            self._cache.backend.write({self._index_store: [(NOW, U64.pack(now))]}, {})

    def _typed(self, entries: Iterator[tuple[bytes, bytes]]) -> Iterator[tuple[K, V]]:
        key_serde = self._key_serde
        now = self.now()
        ttl = self.ttl_ms
        for key_bytes, data in entries:
            if written_at(data) + ttl <= now:
                continue
            key = cast(K, key_serde.deserialize(key_bytes))
            yield key, self._value(data[8:], key)

    def __repr__(self) -> str:
        return f"TtlKeyValueStore({self.name!r}, ttl_ms={self.ttl_ms})"
