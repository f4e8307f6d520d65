"""A write-back cache in front of one store of a `TaskStateBackend`, in bytes.

Writes stay in the cache (dirty) until the commit takes them with `take_dirty()`: each dirty key
once, with its latest value, so a hot key updated 10,000 times in a commit interval costs one
changelog record and one RocksDB write. Reads see the task's own writes, deletes included, and
are cached too (least recently used first out). When the transaction a commit belongs to fails,
`drop()` forgets everything that was not committed.

The commit protocol, per task:

1. `changes = cache.take_dirty()` for each store (the entries then count as clean), and the
   changes go to the changelog; under exactly-once this may happen more than once per
   transaction, whenever a cache `is_full`;
2. once the broker has them: `backend.write({store: changes, ...}, offsets)`, then
   `cache.mark_written()`;
3. or, when the commit fails: `cache.drop()`.

Until `mark_written()` the cache keeps every change taken since the previous one, so reads
never fall back to a backend that does not have them yet (however small `max_cached` is).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import OrderedDict
from collections.abc import Iterator

from processor.state.backend import Change, TaskStateBackend

DEFAULT_MAX_DIRTY = 10_000
DEFAULT_MAX_CACHED = 10_000
# Marks a key a dict does not have (None is a cached absence).
_ABSENT: bytes | None = b"\x00absent"


class StoreCache:
    """Bytes-level write-back cache over `store` of `backend`.

    `max_dirty` is when the cache counts as full (`is_full`): the task should then commit early.
    `max_cached` bounds the clean entries kept for reads (values read from or committed to the
    backend, absences included), least recently used evicted first.
    """

    def __init__(
        self,
        backend: TaskStateBackend,
        store: str,
        *,
        max_dirty: int = DEFAULT_MAX_DIRTY,
        max_cached: int = DEFAULT_MAX_CACHED,
    ) -> None:
        if max_dirty < 1 or max_cached < 0:
            raise ValueError(
                f"need max_dirty >= 1 and max_cached >= 0, got {max_dirty}, {max_cached}"
            )
        if store not in backend.stores:
            raise KeyError(f"unknown store {store!r}; the backend has {list(backend.stores)}")
        self._backend = backend
        self._store = store
        self._max_dirty = max_dirty
        self._max_cached = max_cached
        # Not yet taken, in first-dirtied order (dict order). A key is dirty or clean, not both.
        self._dirty: dict[bytes, bytes | None] = {}
        self._clean: OrderedDict[bytes, bytes | None] = OrderedDict()  # LRU first
        # Taken since the last mark_written(): the backend may not have them yet.
        self._unwritten: dict[bytes, bytes | None] = {}
        self._unwritten_keys: list[bytes] = []  # sorted
        # Sorted dirty keys, built by the first range() and kept up to date after it.
        self._dirty_keys: list[bytes] | None = None
        self.hits = 0
        """Reads answered by the cache."""
        self.misses = 0
        """Reads that went to the backend."""

    @property
    def store(self) -> str:
        return self._store

    @property
    def backend(self) -> TaskStateBackend:
        return self._backend

    @property
    def dirty_count(self) -> int:
        """Keys changed since the last `take_dirty()`."""
        return len(self._dirty)

    @property
    def cached_count(self) -> int:
        """Clean entries kept for reads (at most `max_cached`)."""
        return len(self._clean)

    @property
    def unwritten_count(self) -> int:
        """Keys taken by `take_dirty()` since the last `mark_written()`."""
        return len(self._unwritten)

    @property
    def is_full(self) -> bool:
        """Whether `max_dirty` keys are dirty: time to commit."""
        return len(self._dirty) >= self._max_dirty

    def get(self, key: bytes) -> bytes | None:
        """The value of `key` as this task sees it (uncommitted writes included), or None."""
        value = self._dirty.get(key, _ABSENT)
        if value is not _ABSENT:
            self.hits += 1
            return value
        value = self._clean.get(key, _ABSENT)
        if value is not _ABSENT:
            self.hits += 1
            self._clean.move_to_end(key)
            return value
        if key in self._unwritten:
            self.hits += 1
            return self._unwritten[key]
        self.misses += 1
        data = self._backend.get(self._store, key)
        self._cache_clean(key, data)
        return data

    def put(self, key: bytes, value: bytes) -> None:
        self._set_dirty(key, value)

    def delete(self, key: bytes) -> None:
        self._set_dirty(key, None)

    def range(
        self, start: bytes | None = None, end: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Entries with `start <= key < end` (None: unbounded) as this task sees them, in
        ascending byte order. The cached changes are those at the time of the call."""
        overlay: dict[bytes, bytes | None] = {}
        for key in _slice(self._unwritten_keys, start, end):
            overlay[key] = self._unwritten[key]
        if self._dirty_keys is None:
            self._dirty_keys = sorted(self._dirty)
        for key in _slice(self._dirty_keys, start, end):
            overlay[key] = self._dirty[key]
        if not overlay:
            return self._backend.range(self._store, start, end)
        changes = sorted(overlay.items())
        return _merge(changes, self._backend.range(self._store, start, end))

    def approximate_count(self) -> int:
        """The backend's estimate for the store; uncommitted changes are not counted."""
        return self._backend.approximate_count(self._store)

    def take_dirty(self) -> list[Change]:
        """The changes since the last call, each key once with its latest value (None: delete),
        in first-dirtied order. The entries then count as clean. Write them to the backend,
        then call `mark_written()`."""
        changes = list(self._dirty.items())
        self._dirty = {}
        self._dirty_keys = None
        unwritten = self._unwritten
        new_keys = [key for key, _ in changes if key not in unwritten]
        unwritten.update(changes)
        if new_keys:
            new_keys.sort()
            self._unwritten_keys.extend(new_keys)
            self._unwritten_keys.sort()  # two sorted runs: a linear merge
        if self._max_cached:
            # Dirty keys were taken out of the read cache (`_set_dirty`): they go in last, as
            # the most recently used.
            clean = self._clean
            clean.update(changes)
            while len(clean) > self._max_cached:
                clean.popitem(last=False)
        return changes

    def mark_written(self) -> None:
        """The backend now has every change taken so far: stop keeping them aside."""
        self._unwritten = {}
        self._unwritten_keys = []

    def drop(self) -> None:
        """Forget everything the backend does not have: dirty entries, changes taken but not
        written, and the read cache. Used when a commit's transaction fails."""
        self._dirty = {}
        self._dirty_keys = None
        self._unwritten = {}
        self._unwritten_keys = []
        self._clean.clear()

    def _set_dirty(self, key: bytes, value: bytes | None) -> None:
        if key not in self._dirty:
            if self._dirty_keys is not None:
                insort(self._dirty_keys, key)
            self._clean.pop(key, None)
        self._dirty[key] = value

    def _cache_clean(self, key: bytes, value: bytes | None) -> None:
        if self._max_cached == 0:
            return
        self._clean[key] = value
        self._clean.move_to_end(key)
        if len(self._clean) > self._max_cached:
            self._clean.popitem(last=False)

    def __repr__(self) -> str:
        return (
            f"StoreCache(store={self._store!r}, dirty={len(self._dirty)}, "
            f"cached={len(self._clean)})"
        )


def _slice(keys: list[bytes], start: bytes | None, end: bytes | None) -> list[bytes]:
    lo = 0 if start is None else bisect_left(keys, start)
    hi = len(keys) if end is None else bisect_left(keys, end)
    return keys[lo:hi]


def _merge(
    changes: list[Change], committed: Iterator[tuple[bytes, bytes]]
) -> Iterator[tuple[bytes, bytes]]:
    """`committed` with `changes` (sorted, unique keys) applied: puts win, deletes hide."""
    i, n = 0, len(changes)
    for key, value in committed:
        while i < n and changes[i][0] < key:
            change_key, change = changes[i]
            if change is not None:
                yield change_key, change
            i += 1
        if i < n and changes[i][0] == key:
            change = changes[i][1]
            if change is not None:
                yield key, change
            i += 1
        else:
            yield key, value
    for change_key, change in changes[i:]:
        if change is not None:
            yield change_key, change
