"""A write-back cache in front of one store of a `TaskStateBackend`, in bytes.

Writes stay in the cache (dirty) until the commit takes them with `take_dirty()`: each dirty key
once, with its latest value, so a hot key updated 10,000 times in a commit interval costs one
changelog record and one RocksDB write. Reads see the task's own writes, deletes included, and
are cached too (least recently used first out). When the transaction a commit belongs to fails,
`drop()` forgets everything that was not committed.

The commit protocol, per task:

1. `changes = cache.take_dirty()` for each store, and the changes go to the changelog; under
   exactly-once this may happen more than once per transaction;
2. once the broker has them: `backend.write({store: changes, ...}, offsets)`, then
   `cache.mark_written()` (the changes stay cached, as clean entries);
3. or, when the commit fails: `cache.drop()`.

Until `mark_written()` the cache keeps every change taken since the previous one, so reads
never fall back to a backend that does not have them yet.

Memory is bounded in bytes, by the worker's `MemoryBudget` (`processor.state.budget`), which all
caches of a worker share (account `store_cache`). An entry costs `len(key) + len(value) +
ENTRY_OVERHEAD`. Dirty entries and changes taken but not yet written are pinned; clean entries
(values read from the backend, absences included, and written changes) are evictable and give
way, least recently used first, whenever the budget is over its limit: the asking cache's own
first, then the other caches'. When pinned bytes fill the whole budget the cache `is_full` and
the worker commits early; until it sees that, once per batch of records, pinned bytes may pass
the limit. Charging is an integer add per put, no call, unless the budget is over its limit.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import OrderedDict
from collections.abc import Iterator
from itertools import islice

from processor.state.backend import Change, TaskStateBackend
from processor.state.budget import DEFAULT_STORE_CACHE_BYTES, MemoryBudget

STORE_CACHE_ACCOUNT = "store_cache"
"""The budget account of every store cache of a worker."""

ENTRY_OVERHEAD = 200
"""Bytes an entry costs beyond its key's and value's lengths: the two bytes objects' headers
(33 bytes each, rounded up by the allocator), the slot of its dict (dirty, unwritten) or
OrderedDict (clean, with its list node), and, between `take_dirty()` and the checkpoint, the
`(key, value)` tuple and list slot of the change handed to the changelog. Measured with
tracemalloc on CPython 3.11 (`python -m bench.memory --overhead`): 97-118 bytes dirty,
141-171 clean, 161-182 taken and not yet written, 8 more while a range scan keeps the keys
sorted; rounded up to the worst case."""

# Entries a closed cache's `evict` drops at a time.
_CHUNK = 256

# Marks a key a dict does not have (None is a cached absence).
_ABSENT: bytes | None = b"\x00absent"


class StoreCache:
    """Bytes-level write-back cache over `store` of `backend`, charging `budget` (by default
    a budget of its own of `DEFAULT_STORE_CACHE_BYTES`).

    `is_full` says the pinned bytes of every cache sharing the budget fill it: the worker
    should then commit. `close()` gives the cache's bytes back to the budget.
    """

    def __init__(
        self, backend: TaskStateBackend, store: str, *, budget: MemoryBudget | None = None
    ) -> None:
        if store not in backend.stores:
            raise KeyError(f"unknown store {store!r}; the backend has {list(backend.stores)}")
        self._backend = backend
        self._store = store
        self._budget = MemoryBudget(DEFAULT_STORE_CACHE_BYTES) if budget is None else budget
        self._limit = self._budget.limit
        self._account = self._budget.account(STORE_CACHE_ACCOUNT)
        self._account.add_evictor(self)
        self._closed = False
        # Not yet taken, in first-dirtied order (dict order). A key is dirty or clean, not both.
        self._dirty: dict[bytes, bytes | None] = {}
        self._clean: OrderedDict[bytes, bytes | None] = OrderedDict()  # LRU first
        # Taken since the last mark_written(): the backend may not have them yet. A key may
        # also be dirty (changed again since); it is never clean.
        self._unwritten: dict[bytes, bytes | None] = {}
        # Sorted dirty and unwritten keys, each built by the first range() that needs it and
        # kept up to date after it.
        self._dirty_keys: list[bytes] | None = None
        self._unwritten_keys: list[bytes] | None = None
        # Dirty keys whose change is for the backend only, not the changelog (`delete_local`).
        self._local: set[bytes] = set()
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
    def budget(self) -> MemoryBudget:
        return self._budget

    @property
    def dirty_count(self) -> int:
        """Keys changed since the last `take_dirty()`."""
        return len(self._dirty)

    @property
    def cached_count(self) -> int:
        """Clean entries kept for reads."""
        return len(self._clean)

    @property
    def unwritten_count(self) -> int:
        """Keys taken by `take_dirty()` since the last `mark_written()`."""
        return len(self._unwritten)

    @property
    def pinned_bytes(self) -> int:
        """What this cache's dirty and unwritten entries cost (computed: not for hot paths)."""
        return _bytes_of(self._dirty) + _bytes_of(self._unwritten)

    @property
    def cached_bytes(self) -> int:
        """What this cache's clean entries cost (computed: not for hot paths)."""
        return _bytes_of(self._clean)

    @property
    def clean(self) -> bool:
        """Whether the backend has every change (none dirty, none taken and not written)."""
        return not self._dirty and not self._unwritten

    @property
    def is_full(self) -> bool:
        """Whether pinned bytes fill the budget: time to commit."""
        return self._budget.is_full

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
        value = self._unwritten.get(key, _ABSENT)
        if value is not _ABSENT:
            self.hits += 1
            return value
        self.misses += 1
        data = self._backend.get(self._store, key)
        self._cache_clean(key, data)
        return data

    def put(self, key: bytes, value: bytes) -> None:
        # The hot path of every stateful operator: dict operations and integer adds; the
        # budget is looked at only when the cache grows.
        dirty = self._dirty
        old = dirty.get(key, _ABSENT)
        if old is not _ABSENT:  # changed again
            grown = len(value) - (len(old) if old else 0)
        else:
            if self._dirty_keys is not None:
                insort(self._dirty_keys, key)
            cached = self._clean.pop(key, _ABSENT)
            if cached is _ABSENT:
                grown = len(key) + ENTRY_OVERHEAD + len(value)
            else:  # a cached read becomes a change: its bytes are no longer evictable
                cached_size = len(cached) if cached else 0
                self._account.evictable -= len(key) + ENTRY_OVERHEAD + cached_size
                grown = len(value) - cached_size
        dirty[key] = value
        if grown:
            account = self._account
            account.used += grown
            if grown > 0 and account.used > self._limit and account.evictable:
                self._budget.make_room(self)

    def swap(self, key: bytes, value: bytes) -> bytes | None:
        """`put(key, value)`, returning the value `key` had if the cache holds it in memory
        (dirty, clean or taken and not yet written); None when it had none or the cache does
        not know it (never a backend read)."""
        dirty = self._dirty
        old = dirty.get(key, _ABSENT)
        if old is not _ABSENT:  # changed again
            grown = len(value) - (len(old) if old else 0)
        else:
            if self._dirty_keys is not None:
                insort(self._dirty_keys, key)
            old = self._clean.pop(key, _ABSENT)
            if old is _ABSENT:
                grown = len(key) + ENTRY_OVERHEAD + len(value)
                old = self._unwritten.get(key) if self._unwritten else None
            else:  # a cached read becomes a change: its bytes are no longer evictable
                cached_size = len(old) if old else 0
                self._account.evictable -= len(key) + ENTRY_OVERHEAD + cached_size
                grown = len(value) - cached_size
        dirty[key] = value
        if grown:
            account = self._account
            account.used += grown
            if grown > 0 and account.used > self._limit and account.evictable:
                self._budget.make_room(self)
        return old

    def delete(self, key: bytes) -> None:
        self.put(key, b"")  # a delete costs what an empty value does
        self._dirty[key] = None

    def delete_if(self, key: bytes, value: bytes) -> bool:
        """Delete `key` if its value (as `get` reads it) is `value`; whether it was. One
        lookup where a timer's firing did a `get` and a `delete`."""
        dirty = self._dirty
        old = dirty.get(key, _ABSENT)
        if old is not _ABSENT:
            self.hits += 1
            if old != value:
                return False
            self._account.used -= len(value)  # what `delete` would do: an empty value
            dirty[key] = None
            return True
        clean = self._clean
        old = clean.get(key, _ABSENT)
        if old is _ABSENT:  # taken and not written, or in the backend only
            if self.get(key) != value:
                return False
            self.delete(key)
            return True
        self.hits += 1
        if old != value:
            clean.move_to_end(key)
            return False
        # A cached read becomes a change (as in `put`), of an empty value.
        del clean[key]
        account = self._account
        account.evictable -= len(key) + ENTRY_OVERHEAD + len(value)
        account.used -= len(value)
        if self._dirty_keys is not None:
            insort(self._dirty_keys, key)
        dirty[key] = None
        return True

    def delete_local(self, key: bytes) -> None:
        """A delete the backend gets at the checkpoint but the changelog never does: what the
        changelog's own retention drops (an expired window). The caller never also changes
        `key` with `put` or `delete` in the same commit interval."""
        self.delete(key)
        self._local.add(key)

    def take_local(self) -> set[bytes]:
        """The keys among those of the last `take_dirty()` whose change is for the backend
        only."""
        local, self._local = self._local, set()
        return local

    def range(
        self, start: bytes | None = None, end: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Entries with `start <= key < end` (None: unbounded) as this task sees them, in
        ascending byte order. The cached changes are those at the time of the call."""
        overlay: dict[bytes, bytes | None] = {}
        if self._unwritten:
            if self._unwritten_keys is None:
                self._unwritten_keys = sorted(self._unwritten)
            for key in _slice(self._unwritten_keys, start, end):
                overlay[key] = self._unwritten[key]
        if self._dirty:
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
        in first-dirtied order. Write them to the backend, then call `mark_written()`."""
        dirty = self._dirty
        changes = list(dirty.items())
        self._dirty = {}
        self._dirty_keys = None
        unwritten = self._unwritten
        if not unwritten:
            self._unwritten = dirty  # the pinned bytes stay as they are
            return changes
        # Taken again before written: the newer value replaces the older one.
        replaced = {key: unwritten[key] for key in dirty if key in unwritten}
        self._account.used -= _bytes_of(replaced)
        if self._unwritten_keys is not None:
            new_keys = [key for key in dirty if key not in replaced]
            if new_keys:
                new_keys.sort()
                self._unwritten_keys.extend(new_keys)
                self._unwritten_keys.sort()  # two sorted runs: a linear merge
        unwritten.update(dirty)
        return changes

    def mark_written(self) -> None:
        """The backend now has every change taken so far: they stay cached as clean entries,
        the most recently used, unless changed again since."""
        unwritten = self._unwritten
        self._unwritten = {}
        self._unwritten_keys = None
        if not unwritten:
            return
        account = self._account
        dirty = self._dirty
        if dirty:  # changed again since taken: only the dirty entry stands for the key
            stale = {key: unwritten.pop(key) for key in [k for k in unwritten if k in dirty]}
            account.used -= _bytes_of(stale)
        self._clean.update(unwritten.items())  # faster than from the dict itself
        account.evictable += _bytes_of(unwritten)
        if account.used > self._limit:
            self._budget.make_room(self)

    def drop(self) -> None:
        """Forget everything the backend does not have: dirty entries, changes taken but not
        written, and the read cache. Used when a commit's transaction fails."""
        self._drop_changes()
        cached = _bytes_of(self._clean)
        self._account.used -= cached
        self._account.evictable -= cached
        self._clean.clear()

    def _drop_changes(self) -> None:
        """Forget the dirty entries and the changes taken but not written, and their bytes."""
        self._account.used -= _bytes_of(self._dirty) + _bytes_of(self._unwritten)
        self._dirty = {}
        self._dirty_keys = None
        self._unwritten = {}
        self._unwritten_keys = None
        self._local = set()

    def close(self) -> None:
        """The task is closing: give the pinned bytes back to the budget now, and the clean
        entries as the budget tidies (`MemoryBudget.retire`): summing and freeing them here
        would cost the worker's main loop ~0.7 us an entry (a warm 64 MiB cache: 100-150 ms)
        at once. The cache answers nothing after this."""
        if self._closed:
            return
        self._closed = True
        self._drop_changes()
        self._budget.retire(self, self._account)

    def evict(self, nbytes: int) -> int:
        """Drop clean entries, least recently used first, until `nbytes` are freed or none are
        left; returns the bytes freed (the budget's `Evictor`)."""
        clean = self._clean
        freed = 0
        if self._closed:  # no reads any more, so no order to keep: C loops, a chunk at a time
            while freed < nbytes and clean:
                keys = list(islice(clean, _CHUNK))
                values = list(map(clean.pop, keys))
                freed += _bytes_of_pairs(keys, values)
        while freed < nbytes and clean:
            key, value = clean.popitem(last=False)
            freed += len(key) + ENTRY_OVERHEAD + (len(value) if value is not None else 0)
        self._account.used -= freed
        self._account.evictable -= freed
        return freed

    def _cache_clean(self, key: bytes, value: bytes | None) -> None:
        account = self._account
        self._clean[key] = value
        size = len(key) + ENTRY_OVERHEAD + (len(value) if value else 0)
        account.used += size
        account.evictable += size
        if account.used > self._limit:
            self._budget.make_room(self)

    def __repr__(self) -> str:
        return (
            f"StoreCache(store={self._store!r}, dirty={len(self._dirty)}, "
            f"cached={len(self._clean)}, unwritten={len(self._unwritten)})"
        )


def _bytes_of_pairs(keys: list[bytes], values: list[bytes | None]) -> int:
    return sum(map(len, keys)) + sum(map(len, filter(None, values))) + ENTRY_OVERHEAD * len(keys)


def _bytes_of(entries: dict[bytes, bytes | None]) -> int:
    """What `entries` cost in the budget (C loops: ~100 ns an entry).

    The plain dict's views, also for the clean entries' OrderedDict: its own iterators follow
    the LRU links and look every key up again, 3-4 times slower (170,000 entries: 63 ms against
    18 ms on a busy machine), and closing a task's cache (a rebalance giving the task away)
    waits for this on the main loop. The sum does not depend on the order."""
    return (
        sum(map(len, dict.keys(entries)))
        + sum(map(len, filter(None, dict.values(entries))))
        + ENTRY_OVERHEAD * len(entries)
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
